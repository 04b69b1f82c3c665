"""``sim.evaluate --rollouts K``: sampled-action rollouts beside the mean action, stored per checkpoint, and the
variance decomposition (within a scene, between scenes, between seeds) against direct computations."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sim.evaluate import main
from sim.evaluation.plugins import AgentError, AgentInfo, policy_fn
from sim.evaluation.unit_eval import evaluate_unit, rollout_seed
from sim.evaluation.units import SimSettings, WorkUnit
from sim.results.reader import read_checkpoints, read_root_attrs, read_sampled, read_verdict
from sim.results.schema import CheckpointRows, SampledRows
from sim.results.store import ResultsWriter
from sim.selection.variance import across_seeds, decompose, decompose_rows, scene_matrix
from tests.sim.evaluation.test_evaluate_support import make_run, straight_scene, write_scenes

ARGS = ["--no-progress", "--n-resamples", "50"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rollouts")
    make_run(root, episodes=(0, 50, 100), log_stds=[0.3, -0.5, -2.0])
    write_scenes(root / "scenes.npz", 4, num_steps=30)
    return root


def _unit(run: Path, ep: int = 0) -> WorkUnit:
    return WorkUnit(f"k{ep}", "checkpoint", str(run / "checkpoints" / f"ep{ep:05d}.pt"), 0, (0, 1, 2))


SCENES = [straight_scene(i, 30) for i in range(3)]


def test_same_seed_same_samples_and_k0_mean_rows_unchanged(work):
    run = work / "out" / "run1"
    u = _unit(run)
    base = evaluate_unit(u, SCENES, SimSettings()).rows
    a = evaluate_unit(u, SCENES, SimSettings(rollouts=3)).rows
    b = evaluate_unit(u, SCENES, SimSettings(rollouts=3)).rows
    other = evaluate_unit(u, SCENES, SimSettings(rollouts=3, seed=1)).rows
    assert base.sampled is None
    for k, v in base.metrics.items():  # the mean-action rows of K = 3 are those of K = 0, bit for bit
        assert np.asarray(v).tobytes() == np.asarray(a.metrics[k]).tobytes(), k
    assert a.sampled is not None and b.sampled is not None and other.sampled is not None
    assert a.sampled.scenario_ids == tuple(s.id for s in SCENES) * 3
    assert a.sampled.rollout.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    for k in a.sampled.metrics:  # same seed: the same samples
        np.testing.assert_array_equal(a.sampled.metrics[k], b.sampled.metrics[k])
    ade = a.sampled.metrics["ade"].reshape(3, 3)
    assert not np.array_equal(ade[0], ade[1])  # rollouts draw different samples (log-std 0.3: wide Gaussian)
    assert not np.array_equal(a.sampled.metrics["ade"], other.sampled.metrics["ade"])  # another --seed
    assert not np.array_equal(ade[0], base.metrics["ade"])  # a sample is not the mean action


def test_rollout_seed_depends_on_every_input():
    ref = rollout_seed(0, "k", 0, ("a", "b"))
    assert ref == rollout_seed(0, "k", 0, ("a", "b")) and 0 <= ref < 2**63
    others = {rollout_seed(1, "k", 0, ("a", "b")), rollout_seed(0, "j", 0, ("a", "b")),
              rollout_seed(0, "k", 1, ("a", "b")), rollout_seed(0, "k", 0, ("a", "c")),
              rollout_seed(0, "k", 0, ("ab",))}
    assert ref not in others and len(others) == 5


def test_baselines_get_no_sampled_rows():
    u = WorkUnit("baseline-log-replay", "baseline", "log-replay", 0, (0, 1, 2))
    assert evaluate_unit(u, SCENES, SimSettings(rollouts=2)).rows.sampled is None


def test_an_agent_that_cannot_sample_is_refused_in_one_line():
    import torch

    class Fixed:
        info = AgentInfo("mod:make", "/x/model.bin", "0" * 64, None, "none")

        def waypoints(self, obs):
            return torch.zeros(obs.shape[0], 8, 2)

    with pytest.raises(AgentError, match=r"/x/model.bin: --rollouts samples actions.*mod:make"):
        policy_fn(Fixed(), torch.Generator())


def test_cli_stores_sampled_rows_beside_unchanged_mean_rows(work, capsys):
    run = work / "out" / "run1"
    sc = ["--scenarios", str(work / "scenes.npz")]
    assert main(["--run", str(run), *sc, *ARGS]) == 0
    k0 = {s.key: s.rows for s in read_checkpoints(run / "results.h5")}
    assert read_sampled(run / "results.h5") == {}
    assert "rollouts" not in json.loads(read_root_attrs(run / "results.h5")[0]["settings"])
    capsys.readouterr()
    assert main(["--run", str(run), *sc, *ARGS, "--rollouts", "2"]) == 0
    out = capsys.readouterr().out
    path = run / "results.rollouts-2.h5"  # another K: its own file beside results.h5, never mixed
    assert f"Results: {path}" in out and "Variance of score over 2 sampled rollouts" in out
    assert json.loads(read_root_attrs(path)[0]["settings"])["rollouts"] == 2
    stored = {s.key: s.rows for s in read_checkpoints(path)}
    sampled = read_sampled(path)
    assert set(stored) == set(k0) == set(sampled)
    for key, rows in stored.items():
        for m, v in rows.metrics.items():
            assert np.asarray(v).tobytes() == np.asarray(k0[key].metrics[m]).tobytes()
        s = sampled[key]
        assert sorted(zip(s.scenario_ids, s.rollout.tolist(), strict=True)) == \
            sorted((i, k) for i in rows.scenario_ids for k in range(2))
    with h5py.File(path) as f:  # an old reader's view: the mean-action datasets where they always were
        g = f["checkpoints"][sorted(stored)[0]]
        assert g["metrics/score"].shape == (4,) and g["sampled/metrics/score"].shape == (8,)
    v = read_verdict(path)
    sec = v["rollouts"]
    assert sec["k"] == 2 and sec["metric"] == "score" and set(sec["checkpoints"]) == set(stored)
    for key, e in sec["checkpoints"].items():
        want = decompose_rows(sampled[key], "score")
        assert e["n_scenes"] == 4 and e["within_scene"] == pytest.approx(want.within_scene, nan_ok=True)
    snap = path.read_bytes()
    assert main(["--run", str(run), *sc, *ARGS, "--rollouts", "2"]) == 0  # resume: nothing to add
    assert "Resuming: 12 (checkpoint, scenario) pairs" in capsys.readouterr().out
    assert {k: r.metrics["score"].tolist() for k, r in read_sampled(path).items()} == \
        {k: r.metrics["score"].tolist() for k, r in sampled.items()}
    assert len(snap) > 0


def test_sampled_rows_merge_across_windows_and_an_extended_file(work):
    """Rows read back from the file (the file's metric order) merge with new ones (the registry's order): a
    scene-windowed call and a file extended from 2 to 4 scenes hold what one call over the 4 scenes holds."""
    run = work / "out" / "run1"
    sc = ["--run", str(run), "--scenarios", str(work / "scenes.npz"), "--only", "--ckpt", "ep00050.pt", *ARGS,
          "--rollouts", "1", "--batch-size", "2"]
    files = {name: work / f"merge-{name}.h5" for name in ("whole", "windowed", "extended")}
    assert main([*sc, "--out", str(files["whole"])]) == 0
    assert main([*sc, "--scene-window", "2", "--out", str(files["windowed"])]) == 0
    assert main([*sc, "--max-scenarios", "2", "--out", str(files["extended"])]) == 0
    assert main([*sc, "--out", str(files["extended"])]) == 0

    def sampled(path):
        ((key, rows),) = read_sampled(path).items()
        order = sorted(range(len(rows.scenario_ids)), key=lambda i: (rows.scenario_ids[i], rows.rollout[i]))
        return key, {m: np.asarray(v)[order].tolist() for m, v in rows.metrics.items()}

    key, whole = sampled(files["whole"])
    assert len(whole["score"]) == 4
    for name in ("windowed", "extended"):
        k, got = sampled(files[name])
        assert k == key and set(got) == set(whole)
        for m, v in whole.items():
            assert np.array_equal(got[m], v, equal_nan=True), (name, m)


def test_cli_refuses_another_k_in_a_file_and_bad_k(work, capsys):
    run = work / "out" / "run1"
    out = work / "k.h5"
    sc = ["--scenarios", str(work / "scenes.npz"), "--max-scenarios", "2", "--only", "--ckpt",
          str(run / "last.pt")]
    assert main([*sc, *ARGS, "--rollouts", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main([*sc, *ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rollouts=1" in err and f"--out {work / 'k-rollouts-0.h5'}" in err
    assert main([*sc, *ARGS, "--rollouts", "1", "--backend", "carla", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--rollouts is not available with --backend carla" in err
    for bad in ("-1", "65"):
        code = main([*sc, *ARGS, "--rollouts", bad, "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "--rollouts" in err and "Traceback" not in err


def test_sampled_rows_round_trip_and_merge(tmp_path):
    scenes = [straight_scene(i, 20) for i in range(3)]

    def rows(ids, off):
        n = len(ids)
        s = SampledRows(tuple(ids) * 2, np.repeat(np.arange(2, dtype=np.int32), n),
                        {"score": np.arange(2 * n, dtype=np.float64) + off})
        return CheckpointRows(tuple(ids), {"score": np.full(n, off, dtype=np.float64)},
                              np.zeros((n, 20, 4), np.float32), s)

    w = ResultsWriter(tmp_path / "r.h5")
    with w.lock():
        w.commit("k", {"name": "a", "kind": "checkpoint"}, rows([s.id for s in scenes[:2]], 10.0), scenes[:2], {})
        w.commit("k", {"name": "a", "kind": "checkpoint"}, rows([scenes[2].id], 20.0), scenes[2:], {})
    got = read_sampled(tmp_path / "r.h5")["k"]
    a, b, c = (s.id for s in scenes)
    assert got.scenario_ids == (a, b, a, b, c, c)
    assert got.rollout.tolist() == [0, 0, 1, 1, 0, 1]
    assert got.metrics["score"].tolist() == [10, 11, 12, 13, 20, 21]
    sel = read_checkpoints(tmp_path / "r.h5")[0].rows.select([c, a])
    assert sel.sampled.scenario_ids == (a, a, c, c)


# --- the decomposition against direct computations ---------------------------------------------------------


def _direct(y: np.ndarray) -> tuple[float, float, float]:
    """Within-scene, between-scene-means and total variance with the statistics module, scene by scene."""
    within = statistics.fmean(statistics.variance(row) for row in y.tolist())
    between = statistics.variance([statistics.fmean(row) for row in y.tolist()])
    return within, between, statistics.variance(y.reshape(-1).tolist())


values = st.integers(2, 9).flatmap(lambda s: st.integers(2, 6).flatmap(
    lambda k: arrays(np.float64, (s, k), elements=st.floats(-1.0, 1.0, allow_nan=False).map(lambda x: round(x, 3)))))


@given(values)
@settings(max_examples=60, deadline=None)
def test_decompose_matches_direct_computation(y):
    p = decompose(y)
    within, between, total = _direct(y)
    s, k = y.shape
    assert (p.n_scenes, p.n_rollouts) == (s, k)
    assert p.mean == pytest.approx(statistics.fmean(y.reshape(-1).tolist()), abs=1e-12)
    assert p.within_scene == pytest.approx(within, abs=1e-12)
    assert p.between_scene_means == pytest.approx(between, abs=1e-12)
    assert p.total == pytest.approx(total, abs=1e-12)
    assert p.between_scene == pytest.approx(max(between - within / k, 0.0), abs=1e-12)
    # ANOVA identity: total sum of squares = within + between sums of squares
    ss_total = p.total * (s * k - 1)
    assert ss_total == pytest.approx(p.within_scene * s * (k - 1) + p.between_scene_means * k * (s - 1), abs=1e-9)


@given(values, st.integers(0, 2**31 - 1))
@settings(max_examples=30, deadline=None)
def test_scene_matrix_round_trips_shuffled_rows(y, seed):
    s, k = y.shape
    ids = [f"s{i}" for i in range(s)]
    flat = [(ids[i], j, y[i, j]) for i in range(s) for j in range(k)]
    order = np.random.default_rng(seed).permutation(len(flat))
    sid, r, v = zip(*[flat[i] for i in order], strict=True)
    np.testing.assert_array_equal(scene_matrix(sid, np.array(r), np.array(v), ids), y)
    partial = scene_matrix(sid, np.array(r), np.array(v), ids + ["missing"])
    assert np.isnan(partial[-1]).all()
    assert decompose(partial) == decompose(y)  # a scene without its K values is left out


def _scores(s: int, k: int):
    return arrays(np.float64, (s, k), elements=st.floats(-1.0, 1.0, allow_nan=False).map(lambda x: round(x, 3)))


# runs of one K drawn directly (a filter on a list of any K rejects most draws: hypothesis's health check fails it
# on a loaded machine)
equal_k_runs = st.integers(2, 6).flatmap(lambda k: st.lists(st.integers(2, 9).flatmap(lambda s: _scores(s, k)),
                                                            min_size=2, max_size=5))


@given(equal_k_runs)
@settings(max_examples=40, deadline=None)
def test_across_seeds_matches_direct_computation(ys):
    sv = across_seeds([decompose(y) for y in ys])
    means = [statistics.fmean(y.reshape(-1).tolist()) for y in ys]
    raw = statistics.variance(means)
    own = statistics.fmean(_direct(y)[1] / y.shape[0] for y in ys)
    assert sv.n_runs == len(ys) and sv.run_means == pytest.approx(means, abs=1e-12)
    assert sv.between_seed_means == pytest.approx(raw, abs=1e-12)
    assert sv.between_seed == pytest.approx(max(raw - own, 0.0), abs=1e-12)
    assert sv.within_scene == pytest.approx(statistics.fmean(_direct(y)[0] for y in ys), abs=1e-12)


def test_decompose_recovers_known_components():
    """Simulated scores with between-scene sd 0.3 and within-scene sd 0.1: the estimates come close."""
    rng = np.random.default_rng(0)
    y = rng.normal(0, 0.3, size=(4000, 1)) + rng.normal(0, 0.1, size=(4000, 8))
    p = decompose(y)
    assert p.within_scene == pytest.approx(0.01, rel=0.05)
    assert p.between_scene == pytest.approx(0.09, rel=0.08)
    assert decompose(np.ones((5, 1))).within_scene != decompose(np.ones((5, 1))).within_scene  # K = 1: NaN


def test_across_reports_the_between_seed_variance(tmp_path, capsys):
    from sim.across import main as across

    runs = [make_run(tmp_path, episodes=(0, 50, 100), log_stds=[0.3, -0.5, -2.0], name=f"s{i}", seed=i,
                     speeds=[6.0 + i, 8.0, 10.0 - i]) for i in range(2)]
    write_scenes(tmp_path / "scenes.npz", 3, num_steps=30)
    sc = ["--scenarios", str(tmp_path / "scenes.npz"), *ARGS]
    for r in runs:
        assert main(["--run", str(r), *sc, "--rollouts", "2"]) == 0
    capsys.readouterr()
    files = [str(r / "results.h5") for r in runs]  # K = 2 is the runs' first experiment: results.h5
    assert across([*files, "--json", str(tmp_path / "a.json"), "--n-resamples", "99"]) == 0
    out = capsys.readouterr().out
    assert "Variance of score over sampled rollouts" in out
    doc = json.loads((tmp_path / "a.json").read_text())
    parts = []
    for f in files:
        v, sampled = read_verdict(f), read_sampled(f)
        parts.append(decompose_rows(sampled[v["rules"]["last"]["key"]], "score"))
    want = across_seeds(parts)
    got = doc["variance"]["last"]
    assert got["n_runs"] == 2 and got["run_means"] == pytest.approx(list(want.run_means))
    assert got["between_seed_means"] == pytest.approx(want.between_seed_means)
    assert got["within_scene"] == pytest.approx(want.within_scene, nan_ok=True)
    assert main(["--run", str(runs[0]), *sc]) == 0  # K = 0: its own file, and never judged with K = 2 runs
    capsys.readouterr()
    assert across([str(runs[0] / "results.rollouts-0.h5"), files[1]]) == 2
    assert "other evaluation settings (rollouts" in capsys.readouterr().err
