"""Executors: sharding, the unit function on real scenes and checkpoints, log-replay sanity, Ray == local."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.evaluation.candidates import baseline, discover
from sim.evaluation.executors import LocalExecutor
from sim.evaluation.unit_eval import evaluate_unit
from sim.evaluation.units import SimSettings, WorkUnit, make_shards, make_units
from tests.sim.evaluation.test_evaluate_support import make_run, straight_scene


@settings(max_examples=50, deadline=None)
@given(inits=st.lists(st.sampled_from([5, 10, 12]), min_size=1, max_size=30), bs=st.integers(1, 7))
def test_shards_partition_scenes_by_init_step(inits, bs):
    scenes = [dataclasses.replace(straight_scene(0, 20), id=f"s{i}", init_step=k) for i, k in enumerate(inits)]
    shards = make_shards(scenes, bs)
    flat = [i for sh in shards for i in sh]
    assert sorted(flat) == list(range(len(scenes)))
    for sh in shards:
        assert 1 <= len(sh) <= bs
        assert len({scenes[i].init_step for i in sh}) == 1
        assert list(sh) == sorted(sh)


def test_units_cover_only_what_is_left():
    cands = [baseline("log-replay"), baseline("constant-velocity")]
    shards = [(0, 1), (2, 3), (4,)]
    units = make_units(cands, shards, {"baseline-log-replay": {1, 4}, "baseline-constant-velocity": set()})
    assert [(u.key, u.shard, u.scenes) for u in units] == [("baseline-log-replay", 0, (1,)),
                                                         ("baseline-log-replay", 2, (4,))]


def _unit(key, kind, source, scenes):
    return WorkUnit(key, kind, source, 0, tuple(range(len(scenes))))


def test_log_replay_is_a_perfect_sanity_row_on_every_scene():
    scenes = [straight_scene(i, 30, num_agents=2 + i % 3) for i in range(6)]
    rows = evaluate_unit(_unit("b", "baseline", "log-replay", scenes), scenes, SimSettings()).rows
    m = rows.metrics
    np.testing.assert_array_equal(m["ade"], 0.0)
    np.testing.assert_array_equal(m["fde"], 0.0)
    for k in ("collision", "collision_at_fault", "offroad", "offroad_fraction"):
        np.testing.assert_array_equal(m[k], 0.0)
    assert np.isnan(m["collision_time"]).all()
    np.testing.assert_allclose(m["progress"], 1.0)
    np.testing.assert_array_equal(m["comfortable"], 1.0)  # constant speed, straight: no accel, jerk or yaw rate
    np.testing.assert_allclose(m["score"], 1.0)
    for j, s in enumerate(scenes):  # the stored trajectory is the log
        np.testing.assert_allclose(rows.ego_traj[j, :, :3], s.agents[0, :, :3], atol=1e-5)
        np.testing.assert_allclose(rows.ego_traj[j, :, 3], np.hypot(s.agents[0, :, 3], s.agents[0, :, 4]), atol=1e-5)


def test_results_do_not_depend_on_batch_composition(tmp_path):
    run = make_run(tmp_path, episodes=(0, 10), speeds=[7.0, 11.0])
    cands, _ = discover([], str(run), False, __import__("policy.checkpoint").checkpoint.read_checkpoint)
    c = cands[1]
    scenes = [straight_scene(i, 30, num_agents=1 + 2 * (i % 3)) for i in range(5)]
    together = evaluate_unit(_unit(c.key, "checkpoint", c.path, scenes), scenes, SimSettings()).rows
    for j, s in enumerate(scenes):
        alone = evaluate_unit(_unit(c.key, "checkpoint", c.path, [s]), [s], SimSettings()).rows
        for k, v in alone.metrics.items():
            np.testing.assert_allclose(v[0], together.metrics[k][j], atol=1e-4, equal_nan=True, err_msg=k)
        np.testing.assert_allclose(alone.ego_traj[0], together.ego_traj[j], atol=1e-4)
    assert together.metrics["ade"].max() > 0.1  # the policy really drives differently from the log


@pytest.mark.slow
def test_ray_executor_matches_local(tmp_path):
    ray = pytest.importorskip("ray")
    from policy.checkpoint import read_checkpoint
    from sim.evaluation.executors import RayExecutor

    run = make_run(tmp_path, episodes=(0, 10, 20), speeds=[6.0, 9.0, 12.0])
    cands, _ = discover([], str(run), False, read_checkpoint)
    cands += [baseline("constant-velocity")]
    scenes = [straight_scene(i, 30, num_agents=1 + i % 3) for i in range(7)]
    shards = make_shards(scenes, 3)
    units = make_units(cands, shards, {c.key: set(range(len(scenes))) for c in cands})
    local = {(r.key, r.shard): r.rows for r in LocalExecutor().run(units, scenes, SimSettings())}
    from scenarios.io import save_scenarios
    from scenarios.scene_file import SceneFile

    streamed = SceneFile.open(save_scenarios(tmp_path / "scenes.npz", scenes), cache_blocks=1)
    ex = RayExecutor(num_cpus=2)
    try:
        remote = {(r.key, r.shard): r.rows for r in ex.run(units, scenes, SimSettings())}
        from_file = {(r.key, r.shard): r.rows for r in ex.run(units, streamed, SimSettings())}  # read by the actors
    finally:
        ex.close()
    assert not ray.is_initialized()
    assert remote.keys() == local.keys() == from_file.keys() and len(local) == len(units)
    _assert_same_rows(local, remote)
    _assert_same_rows(local, from_file)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=12), st.integers(1, 3), st.integers(0, 9),
       st.integers(1, 5))
def test_deal_gives_each_shard_to_one_worker_and_keeps_unit_order(sizes, n_cands, window, workers):
    from sim.evaluation.executors import deal

    starts = np.cumsum([0, *sizes])
    shards = [tuple(range(a, b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]
    cands = [baseline("constant-velocity"), baseline("log-replay"), baseline("constant-velocity")][:n_cands]
    cands = [dataclasses.replace(c, key=f"{c.key}{i}") for i, c in enumerate(cands)]
    units = make_units(cands, shards, {c.key: set(range(int(starts[-1]))) for c in cands}, window)
    plans = deal(units, workers)
    assert len(plans) == min(workers, len(shards)) and all(plans)
    assert sorted((u.key, u.shard) for p in plans for u in p) == sorted((u.key, u.shard) for u in units)
    owners = {u.shard: {k for k, p in enumerate(plans) if u in p} for u in units}
    assert all(len(v) == 1 for v in owners.values())  # a shard's batch is built by one worker
    for p in plans:  # each worker keeps the units' order
        assert [units.index(u) for u in p] == sorted(units.index(u) for u in p)


def _assert_same_rows(local: dict, other: dict) -> None:
    """Every unit's rows equal bit for bit (scenario ids, every metric, ego trajectories)."""
    for k, a in local.items():
        b = other[k]
        assert a.scenario_ids == b.scenario_ids
        for name in a.metrics:
            np.testing.assert_array_equal(a.metrics[name], b.metrics[name], err_msg=f"{k} {name}")
        np.testing.assert_array_equal(a.ego_traj, b.ego_traj)


def test_overlapped_local_executor_equals_one_unit_after_another(tmp_path):
    """Metrics and the next batch on a second thread, sampled rollouts included: the same rows, in unit order,
    and a unit's error still reaches the caller."""
    from policy.checkpoint import read_checkpoint

    run = make_run(tmp_path, episodes=(0, 10), speeds=[6.0, 12.0])
    cands, _ = discover([], str(run), False, read_checkpoint)
    cands += [baseline("constant-velocity")]
    scenes = [straight_scene(i, 30, num_agents=1 + i % 3) for i in range(5)]
    units = make_units(cands, make_shards(scenes, 2), {c.key: set(range(len(scenes))) for c in cands})
    sim = SimSettings(rollouts=2)
    seq = [(r.key, r.shard, r.rows) for r in LocalExecutor(overlap=False).run(units, scenes, sim)]
    ovl = [(r.key, r.shard, r.rows) for r in LocalExecutor().run(units, scenes, sim)]
    assert [(k, s) for k, s, _ in ovl] == [(u.key, u.shard) for u in units]
    _assert_same_rows({(k, s): r for k, s, r in seq}, {(k, s): r for k, s, r in ovl})
    assert sum(r.sampled is not None for _, _, r in ovl) == 6  # two checkpoints x three shards
    for (_, _, a), (_, _, b) in zip(seq, ovl, strict=True):
        for name in a.sampled.metrics if a.sampled is not None else ():
            np.testing.assert_array_equal(a.sampled.metrics[name], b.sampled.metrics[name])
    bad = WorkUnit("x", "checkpoint", str(tmp_path / "missing.pt"), 0, (0,))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        list(LocalExecutor().run([units[0], bad], scenes, sim))


@pytest.mark.slow
def test_process_executor_matches_local_and_reports_a_unit_error(tmp_path):
    from policy.checkpoint import read_checkpoint
    from sim.evaluation.executors import ProcessExecutor
    from sim.evaluation.units import WorkUnit

    run = make_run(tmp_path, episodes=(0, 10), speeds=[6.0, 12.0])
    cands, _ = discover([], str(run), False, read_checkpoint)
    cands += [baseline("constant-velocity")]
    scenes = [straight_scene(i, 30, num_agents=1 + i % 3) for i in range(5)]
    units = make_units(cands, make_shards(scenes, 2), {c.key: set(range(len(scenes))) for c in cands})
    local = {(r.key, r.shard): r.rows for r in LocalExecutor().run(units, scenes, SimSettings())}
    ex = ProcessExecutor(workers=2)
    procs = {(r.key, r.shard): r.rows for r in ex.run(units, scenes, SimSettings())}
    assert procs.keys() == local.keys() and len(local) == len(units) == 9
    _assert_same_rows(local, procs)
    bad = WorkUnit("x", "checkpoint", str(tmp_path / "missing.pt"), 0, (0,))
    with pytest.raises(FileNotFoundError, match="missing.pt"):  # the same error as in this process
        list(ex.run([bad], scenes, SimSettings()))


class _Unpicklable:
    def __reduce__(self):
        raise TypeError("this scene cannot be pickled")


def test_a_worker_that_cannot_start_is_an_error_of_the_results_and_close_still_works():
    """Workers start from threads of their own (run() returns at once): a start that fails is raised by the
    results, the other worker is stopped, and close() is safe before and after."""
    from sim.evaluation.executors import ProcessExecutor

    cv = baseline("constant-velocity")
    scenes = [straight_scene(0, 30), _Unpicklable()]
    units = make_units([cv], [(0,), (1,)], {cv.key: {0, 1}})
    ex = ProcessExecutor(workers=2)
    results = ex.run(units, scenes, SimSettings())
    with pytest.raises(TypeError, match="cannot be pickled"):
        list(results)
    ex.close()
    assert ex._procs == [] and ex._starts == []
    ex.run(units, scenes, SimSettings())  # never iterated: close() joins the starts and stops the worker
    ex.close()


@pytest.mark.slow
def test_evaluate_cli_runs_on_worker_processes(tmp_path, capsys):
    from sim.evaluate import main

    out = tmp_path / "r.h5"
    assert main(["--baseline", "constant-velocity", "--scenarios", "procedural-small", "--max-scenarios", "4",
                 "--batch-size", "2", "--executor", "processes", "--num-cpus", "2", "--out", str(out),
                 "--no-progress"]) == 0
    assert out.is_file() and "constant-velocity" in capsys.readouterr().out


def test_auto_executor_picks_worker_processes_only_where_they_pay():
    from sim.evaluation.executors import AUTO_PROCESSES_MIN_ROLLOUTS as big
    from sim.evaluation.executors import pick_executor

    cpu = SimSettings()
    assert pick_executor("auto", big, 4, cpu, cpus=2)[0] == "processes"
    assert pick_executor("auto", big - 1, 4, cpu, cpus=2) == (
        "local", f"auto: {big - 1} rollouts in 4 batch(es), under the {big} at which worker processes pay")
    assert pick_executor("auto", big, 1, cpu, cpus=2)[0] == "local"  # one batch: one worker's work
    assert pick_executor("auto", big, 4, cpu, cpus=1) == ("local", "auto: one CPU")
    for other in (dataclasses.replace(cpu, device="cuda"), dataclasses.replace(cpu, compile=True),
                  dataclasses.replace(cpu, backend="carla"), dataclasses.replace(cpu, agent="my.module:Agent")):
        assert pick_executor("auto", big, 4, other, cpus=2)[0] == "local"
    for named in ("local", "processes", "ray"):  # a named executor is what runs, whatever the size
        assert pick_executor(named, 1, 1, cpu, cpus=1) == (named, "")


def test_evaluate_default_executor_says_what_auto_picked(tmp_path, capsys):
    from sim.evaluate import main

    out = tmp_path / "r.h5"
    assert main(["--baseline", "constant-velocity", "--scenarios", "procedural-small", "--max-scenarios", "3",
                 "--batch-size", "2", "--out", str(out), "--no-progress"]) == 0
    assert "Executor local (auto: 3 rollouts in 2 batch(es), under the" in capsys.readouterr().out


def test_negative_worker_count_is_a_one_line_error(tmp_path, capsys):
    from sim.evaluate import main

    out = tmp_path / "r.h5"
    code = main(["--baseline", "log-replay", "--scenarios", "procedural-small", "--max-scenarios", "2",
                 "--executor", "processes", "--num-cpus", "-1", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and "--num-cpus must be >= 0" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())  # refused before anything is written


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 9), min_size=0, max_size=20), window=st.integers(0, 25))
def test_scene_windows_partition_shards_in_order_within_the_window(sizes, window):
    from sim.evaluation.units import batches_held, scene_windows

    shards, n = [], 0
    for k in sizes:
        shards.append(tuple(range(n, n + k)))
        n += k
    wins = scene_windows(shards, window)
    assert [k for w in wins for k in w] == list(range(len(shards)))  # every shard once, in order
    for j, w in enumerate(wins):
        scenes = sum(len(shards[k]) for k in w)
        assert window == 0 or scenes <= window or len(w) == 1  # only a shard larger than the window exceeds it
        if window and j + 1 < len(wins):  # greedy: the next window's first shard did not fit
            assert scenes + len(shards[wins[j + 1][0]]) > window
    assert window != 0 or len(wins) == (1 if shards else 0)
    assert batches_held(shards, window) == max((len(w) for w in wins), default=0) + 1


def test_units_run_window_by_window_every_checkpoint_within_one():
    cands = [baseline("log-replay"), baseline("constant-velocity")]
    shards = [(0, 1), (2, 3), (4,)]
    todo = {c.key: set(range(5)) for c in cands}
    units = make_units(cands, shards, todo, window=4)
    lr, cv = "baseline-log-replay", "baseline-constant-velocity"
    assert [(u.window, u.key, u.shard) for u in units] == [(0, lr, 0), (0, lr, 1), (0, cv, 0), (0, cv, 1),
                                                          (1, lr, 2), (1, cv, 2)]
    assert [(u.key, u.shard) for u in make_units(cands, shards, todo)] == [  # one window: checkpoint by checkpoint
        (lr, 0), (lr, 1), (lr, 2), (cv, 0), (cv, 1), (cv, 2)]


def test_windowed_sweep_builds_each_batch_once_holds_one_window_and_gives_the_same_rows(tmp_path, monkeypatch):
    """Scene windows of 4 scenes (batches of 2) against one window: the same rows for every checkpoint, one
    commit per (checkpoint, window), each batch built exactly once, and never more than a window's batches plus
    one held."""
    import sim.batch
    from policy.checkpoint import read_checkpoint
    from sim.evaluation import unit_eval
    from sim.evaluation.executors import run_units
    from sim.evaluation.units import batches_held

    run = make_run(tmp_path, episodes=(0, 10), speeds=[6.0, 12.0])
    cands, _ = discover([], str(run), False, read_checkpoint)
    cands += [baseline("constant-velocity")]
    scenes = [straight_scene(i, 30, num_agents=1 + i % 3) for i in range(9)]
    shards = make_shards(scenes, 2)
    todo = {c.key: set(range(len(scenes))) for c in cands}
    built, held = [], []
    real = sim.batch.make_batch

    def counting(sc, *a, **kw):
        built.append(tuple(s.id for s in sc))
        held.append(len(unit_eval._BATCHES))
        return real(sc, *a, **kw)

    monkeypatch.setattr(sim.batch, "make_batch", counting)

    def sweep(window):
        unit_eval.clear_batches()
        built.clear()
        held.clear()
        got: list[tuple[str, tuple[str, ...]]] = []
        rows: dict[str, list] = {}

        def commit(key, r):
            got.append((key, r.scenario_ids))
            rows.setdefault(key, []).append(r)

        settings = SimSettings(batches_held=batches_held(shards, window))
        run_units(LocalExecutor(), make_units(cands, shards, todo, window), scenes, settings, commit, progress=False)
        return got, {k: type(v[0]).concat(v) for k, v in rows.items()}, list(built), max(held)

    one, one_rows, one_built, _ = sweep(0)
    win, win_rows, win_built, win_held = sweep(4)
    assert len(one) == len(cands) and len(win) == 3 * len(cands)  # 9 scenes: windows of 4, 4 and 1
    assert sorted(win_built) == sorted(one_built) and len(set(win_built)) == len(shards)  # each batch once
    assert win_held <= batches_held(shards, 4) == 3
    _assert_same_rows({k: r for k, r in one_rows.items()}, {k: r for k, r in win_rows.items()})


def test_evaluate_cli_scene_window_gives_the_same_results_file_rows(tmp_path, capsys):
    from sim.evaluate import main
    from sim.results.reader import read_checkpoints

    common = ["--baseline", "constant-velocity", "--baseline", "log-replay", "--scenarios", "procedural-small",
              "--max-scenarios", "5", "--batch-size", "2", "--no-progress"]
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert main([*common, "--out", str(a)]) == 0
    assert main([*common, "--scene-window", "2", "--out", str(b)]) == 0
    ra, rb = ({s.key: s.rows for s in read_checkpoints(p)} for p in (a, b))
    assert ra.keys() == rb.keys() and len(ra) == 2
    for k in ra:  # windows commit a checkpoint's rows three times: merged into the same rows
        assert sorted(ra[k].scenario_ids) == sorted(rb[k].scenario_ids) and len(ra[k].scenario_ids) == 5
        ia, ib = np.argsort(ra[k].scenario_ids), np.argsort(rb[k].scenario_ids)
        for name in ra[k].metrics:
            np.testing.assert_array_equal(ra[k].metrics[name][ia], rb[k].metrics[name][ib], err_msg=name)
    capsys.readouterr()
    assert main([*common, "--scene-window", "-1", "--out", str(tmp_path / "c.h5")]) != 0
    err = capsys.readouterr().err
    assert "--scene-window" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("executor", ["local", pytest.param("processes", marks=pytest.mark.slow)])
def test_streamed_scenes_give_the_same_results_file_as_held_ones(tmp_path, capsys, executor):
    """A version-3 file of more scenes than --scene-window is streamed (never held whole); the results file has the
    same rows and the same stored scenes as when the scenes are held (--scene-window 0), on either executor."""
    import h5py

    from scenarios.io import save_scenarios
    from sim.evaluate import main
    from sim.results.reader import read_checkpoints

    scenes = [straight_scene(i, 24 + i % 5, num_agents=1 + i % 3, init_step=4 + (i % 7 == 0)) for i in range(70)]
    path = save_scenarios(tmp_path / "scenes.npz", scenes)
    common = ["--baseline", "constant-velocity", "--baseline", "log-replay", "--scenarios", str(path),
              "--batch-size", "8", "--no-progress", "--executor", executor, "--scenario-cache", ""]
    a, b = tmp_path / "held.h5", tmp_path / "streamed.h5"
    assert main([*common, "--scene-window", "0", "--out", str(a)]) == 0
    assert "Streaming" not in capsys.readouterr().out
    assert main([*common, "--scene-window", "16", "--out", str(b)]) == 0
    assert "Streaming 70 scenes" in capsys.readouterr().out
    ra, rb = ({s.key: s.rows for s in read_checkpoints(p)} for p in (a, b))
    assert ra.keys() == rb.keys() and len(ra) == 2
    for k in ra:
        ia, ib = np.argsort(ra[k].scenario_ids), np.argsort(rb[k].scenario_ids)
        assert list(np.asarray(ra[k].scenario_ids)[ia]) == sorted(s.id for s in scenes)
        assert list(np.asarray(rb[k].scenario_ids)[ib]) == sorted(s.id for s in scenes)
        for name in ra[k].metrics:
            np.testing.assert_array_equal(ra[k].metrics[name][ia], rb[k].metrics[name][ib], err_msg=name)
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert fa["scenarios"].attrs["ids"] == fb["scenarios"].attrs["ids"]
        for name in fa["scenarios"]:
            ga, gb = fa["scenarios"][name], fb["scenarios"][name]
            assert ga.attrs.keys() == gb.attrs.keys(), name
            for k in ga.attrs:
                np.testing.assert_array_equal(ga.attrs[k], gb.attrs[k], err_msg=f"{name} {k}")
            for ds in ga:
                if isinstance(ga[ds], h5py.Dataset):
                    np.testing.assert_array_equal(ga[ds][()], gb[ds][()], err_msg=f"{name}/{ds}")


def test_a_worker_keeps_the_batches_of_its_own_shards_of_a_window():
    from sim.evaluation.units import batches_held, scene_windows, worker_batches_held

    cands = [baseline("constant-velocity"), baseline("log-replay")]
    shards = [tuple(range(i, min(i + 4, 50))) for i in range(0, 50, 4)]  # 13 shards of at most 4 scenes
    todo = {c.key: set(range(50)) for c in cands}
    units = make_units(cands, shards, todo, 16)  # windows of 4 shards (the last one 1)
    assert [len(w) for w in scene_windows(shards, 16)] == [4, 4, 4, 1] and batches_held(shards, 16) == 5
    for n_w, expect in ((1, 5), (2, 3), (3, 3), (4, 2)):  # shard k goes to worker k mod W, as ProcessExecutor deals
        plans = [[u for u in units if u.shard % n_w == w] for w in range(n_w)]
        assert max(worker_batches_held(p, 5) for p in plans) == expect
        for p in plans:  # never more than one window of its own shards plus one, never above the call's cap
            mine = {u.window: {v.shard for v in p if v.window == u.window} for u in p}
            assert worker_batches_held(p, 5) == min(5, max(map(len, mine.values())) + 1)
    assert worker_batches_held([], 5) == 1
