"""No traceback from any input (issue 21 item 5): every entry point fed malformed inputs of every accepted format.

Property, per entry point: a malformed input (random bytes, a truncated valid file, a valid file with flipped
bytes, JSON of the wrong types, NaN / infinite / huge numbers, an unwritable output) ends with either success (the
input happened to be usable) or exactly one ``error:`` line, a non-zero exit and nothing written; never an
uncaught exception or a ``Traceback``. The CLIs' ``main`` functions run in-process (``SystemExit`` caught).

The default profile tries a few examples per entry point (the file runs in well under 90 s); the ``slow``
variant tries many more. Every input tried is counted in :data:`TRIED` and the counts are printed at the end
of the module (``fuzz inputs tried: ...``).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import io
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sim.config import NUM_WAYPOINTS
from sim.observation import OBS_DIM
from tests.conftest import SHARED_DATA
from tests.sim.evaluation.test_evaluate_support import make_policy, make_run, write_scenes

TRIED: collections.Counter[str] = collections.Counter()
"""Inputs tried per entry point (printed when the module ends)."""

QUICK, BIG = 6, 60
BUDGETS = [pytest.param(QUICK, id="quick"), pytest.param(BIG, id="big", marks=pytest.mark.slow)]
FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate])  # no shrinking: each example is a whole CLI call


@pytest.fixture(scope="module", autouse=True)
def report_count(request):
    yield
    total = sum(TRIED.values())
    line = f"fuzz inputs tried: {total} (" + ", ".join(f"{k} {v}" for k, v in sorted(TRIED.items())) + ")"
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    out = os.environ.get("FUZZ_COUNT_FILE")
    if out:
        Path(out).write_text(json.dumps({"total": total, **TRIED}) + "\n")


# --- malformed bytes ----------------------------------------------------------------------------------------------

JSON_LEAF = (st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.text(max_size=8)
             | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e308, -1e308, 2**63, 10**18]))
JSON_ANY = st.recursive(JSON_LEAF, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c,
                                                                                        max_size=4), max_leaves=12)


def _leaf_paths(doc, path=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaf_paths(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:50]):
            yield from _leaf_paths(v, (*path, i))
    yield path


def _replace(doc, path, value):
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: _replace(doc[head], rest, value)}
    return [*doc[:head], _replace(doc[head], rest, value), *doc[head + 1:]]


@functools.lru_cache(maxsize=32)
def _bytes(path: str) -> bytes:
    return Path(path).read_bytes()


@functools.lru_cache(maxsize=32)
def _doc_paths(path: str) -> tuple[object, tuple]:
    doc = json.loads(_bytes(path))
    return doc, tuple(_leaf_paths(doc))[:400]


@st.composite
def mutated_json(draw, src: Path | bytes) -> bytes:
    """A valid JSON document with one value (a leaf or a whole sub-tree) replaced by one of another type."""
    if isinstance(src, Path):
        valid, paths = _doc_paths(str(src))
    else:
        valid = json.loads(src)
        paths = tuple(_leaf_paths(valid))
    path = draw(st.sampled_from(paths))
    doc = _replace(valid, path, draw(JSON_ANY))
    return json.dumps(doc, allow_nan=True).encode()


@st.composite
def damaged(draw, src: Path | bytes) -> bytes:
    """Random bytes, a truncated copy, or a copy with a few bytes overwritten (of a file or of bytes)."""
    valid = _bytes(str(src)) if isinstance(src, Path) else src
    how = draw(st.sampled_from(["random", "truncated", "flipped", "empty"]))
    if how == "random":
        return draw(st.binary(min_size=1, max_size=4096))
    if how == "truncated":
        return valid[: draw(st.integers(0, max(0, len(valid) - 1)))]
    if how == "empty":
        return b""
    out = bytearray(valid)
    for _ in range(draw(st.integers(1, 8))):
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    return bytes(out)


def malformed(src: Path | bytes, is_json: bool = False) -> st.SearchStrategy[bytes]:
    """Every kind of malformed input for a file (or bytes) ``src``; a JSON format also gets type mutations."""
    strategies = [damaged(src), JSON_ANY.map(lambda d: json.dumps(d, allow_nan=True).encode())]
    if is_json:
        strategies.append(mutated_json(src))
    return st.one_of(*strategies)


@st.composite
def mutated_npz(draw, valid: Path) -> bytes:
    """A valid scene ``.npz`` with one array replaced: NaN, infinities, huge values, another shape or dtype."""
    with np.load(valid, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    key = draw(st.sampled_from(sorted(arrays)))
    a = arrays[key]
    kind = draw(st.sampled_from(["nan", "inf", "huge", "shape", "dtype", "drop"]))
    if kind == "drop":
        del arrays[key]
    elif kind == "shape":
        arrays[key] = np.zeros(draw(st.lists(st.integers(0, 3), max_size=3)), a.dtype)
    elif kind == "dtype":
        arrays[key] = np.array(["x"] * max(1, a.size))
    elif a.dtype.kind == "f":
        fill = {"nan": np.nan, "inf": np.inf, "huge": 1e38}[kind]
        b = a.copy()
        b.reshape(-1)[: draw(st.integers(1, max(1, b.size)))] = fill
        arrays[key] = b
    else:
        arrays[key] = np.full(a.shape, {"nan": -1, "inf": 2**31 - 1, "huge": 2**31 - 1}[kind]).astype(a.dtype)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


# --- calling an entry point ---------------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with (size, mtime_ns): what "nothing written" compares."""
    out = {}
    for p in sorted(root.rglob("*")):
        st_ = p.lstat()
        out[str(p.relative_to(root))] = (st_.st_size if p.is_file() else -1, st_.st_mtime_ns if p.is_file() else 0)
    return out


def call(main, argv: list[str]) -> tuple[int, str, str]:
    """Run a CLI ``main`` in-process: (exit status, stdout, stderr); SystemExit is an exit status."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def check_outcome(name: str, code: int, out: str, err: str, work: Path, before: dict, *,
                  error_on_stdout: bool = False) -> None:
    """The property: success, or one ``error:`` line, non-zero exit and nothing written; never a traceback."""
    TRIED[name] += 1
    assert "Traceback" not in out + err, (name, err[-2000:])
    if code == 0:
        return
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    if error_on_stdout and not lines:  # scenarios.check: no usable scene is a report (table, --json), not an error
        assert "skipped" in out, (name, out[-500:])
        return
    assert len(lines) == 1, (name, err[-2000:])
    assert snapshot(work) == before, (name, "wrote files on failure", err[-500:])


# --- fixtures: one valid file of each format ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Path]:
    """Valid inputs the malformed ones are derived from (own run, scenes, SB3 zip, TorchScript module)."""
    d = tmp_path_factory.mktemp("seeds")
    run = make_run(d, episodes=(0, 10), name="run1")
    write_scenes(d / "scenes.npz", 1, num_steps=20)
    torch.manual_seed(0)
    hidden = 16
    state = {"mlp_extractor.policy_net.0.weight": torch.randn(hidden, OBS_DIM) * 0.01,
             "mlp_extractor.policy_net.0.bias": torch.zeros(hidden),
             "action_net.weight": torch.randn(2 * NUM_WAYPOINTS, hidden) * 0.01,
             "action_net.bias": torch.zeros(2 * NUM_WAYPOINTS)}
    box = "<class 'gymnasium.spaces.box.Box'>"
    data = {"policy_kwargs": {}, "num_timesteps": 100,
            "observation_space": {":type:": box, "_shape": [OBS_DIM]},
            "action_space": {":type:": box, "_shape": [2 * NUM_WAYPOINTS], "low": [-2.0] * (2 * NUM_WAYPOINTS),
                             "high": [2.0] * (2 * NUM_WAYPOINTS)}}
    buf = io.BytesIO()
    torch.save(state, buf)
    (d / "sb3").mkdir()
    with zipfile.ZipFile(d / "sb3" / "rl_model_100_steps.zip", "w") as z:
        z.writestr("data", json.dumps(data))
        z.writestr("policy.pth", buf.getvalue())

    plan = torch.nn.Linear(OBS_DIM, 2 * NUM_WAYPOINTS)
    torch.jit.trace(torch.nn.Sequential(plan, torch.nn.Unflatten(1, (NUM_WAYPOINTS, 2))),
                    torch.zeros(2, OBS_DIM)).save(str(d / "plan.ts"))
    # a complete training run to --resume (its last.pt is at its last episode: resuming has nothing to do)
    from policy.checkpoint import read_checkpoint, save_checkpoint
    from training.config import TrainConfig

    done = d / "done"
    done.mkdir()
    cfg = TrainConfig(episodes=10).to_dict()
    (done / "config.json").write_text(json.dumps({"schema_version": 1, "train": cfg, "seed": 0, "init": None}))
    meta = read_checkpoint(run / "last.pt")["meta"]
    state_ = {"episode": 10, "iteration": 1, "below_min": 0, "stop_reason": None, "records": [], "bc": {},
              "optimizer": {}}
    save_checkpoint(done / "last.pt", make_policy(8.0, -0.5), {"train": cfg}, meta, extra={"train_state": state_})
    return {"d": d, "run": run, "scenes": d / "scenes.npz", "ckpt": run / "checkpoints" / "ep00010.pt",
            "sb3": d / "sb3" / "rl_model_100_steps.zip", "ts": d / "plan.ts", "history": run / "entropy_history.json",
            "done": done}


@pytest.fixture()
def work(tmp_path, monkeypatch):
    """An empty working directory (cwd) whose contents "nothing written" is checked against."""
    w = tmp_path / "work"
    w.mkdir()
    monkeypatch.chdir(w)
    return w


def _write(work: Path, name: str, data: bytes) -> Path:
    p = work.parent / "in" / name
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(data)
    return p


def _clean(work: Path) -> None:
    """Remove what a successful call wrote, so the next example starts from the same snapshot."""
    import shutil

    for p in work.iterdir():
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _real(name: str) -> Path | None:
    files = sorted((SHARED_DATA / name).glob("*")) if SHARED_DATA.is_dir() else []
    return min(files, key=lambda p: p.stat().st_size) if files else None


@pytest.fixture(scope="module")
def formats(seeds) -> dict[str, st.SearchStrategy[bytes]]:
    """Malformed bytes of every scene format (``.npz``; ``.json``, ``.pkl``, ``.xml`` from ../shared when present)."""
    out = {".npz": st.one_of(damaged(seeds["scenes"]), mutated_npz(seeds["scenes"]))}
    for suffix, folder in ((".json", "waymo_json"), (".pkl", "scenarionet"), (".xml", "commonroad")):
        real = _real(folder)
        if real is None:
            out[suffix] = st.one_of(st.binary(max_size=2048), JSON_ANY.map(lambda d: json.dumps(d).encode()))
            continue
        out[suffix] = malformed(real, is_json=True) if suffix == ".json" else damaged(real)
    return out


def scene_input(formats) -> st.SearchStrategy[tuple[str, bytes]]:
    return st.sampled_from(sorted(formats)).flatmap(lambda s: st.tuples(st.just(s), formats[s]))


@st.composite
def mutated_ckpt(draw, valid: Path) -> bytes:
    """A checkpoint: damaged bytes, or a readable one with one value of another type, NaN or infinite weights."""
    if draw(st.booleans()):
        return draw(damaged(valid))
    obj = torch.load(valid, weights_only=True)
    path = draw(st.sampled_from(list(_leaf_paths(obj))))
    value = draw(st.one_of(JSON_ANY, st.sampled_from([math.nan, math.inf]).map(lambda v: torch.full((3,), v))))
    buf = io.BytesIO()
    torch.save(_replace(obj, path, value), buf)
    return buf.getvalue()


EVAL_TAIL = ["--no-progress", "--n-resamples", "10", "--scenario-cache="]


def _evaluate(seeds, work, name, argv, what):
    from sim.evaluate import main

    before = snapshot(work)
    code, out, err = call(main, [*argv, "--out", str(work / "r.h5"), *EVAL_TAIL])
    check_outcome(what, code, out, err, work, before)
    _clean(work)


@pytest.mark.parametrize("budget", BUDGETS)
def test_evaluate_scenarios(budget, seeds, formats, work):
    @settings(FUZZ, max_examples=budget)
    @given(case=scene_input(formats))
    def run(case):
        suffix, data = case
        path = _write(work, "scene" + suffix, data)
        _evaluate(seeds, work, "x", ["--baseline", "log-replay", "--scenarios", str(path)], "sim.evaluate --scenarios")

    run()


@pytest.mark.parametrize("budget", BUDGETS)
def test_evaluate_ckpt(budget, seeds, work):
    @settings(FUZZ, max_examples=budget)
    @given(data=mutated_ckpt(seeds["ckpt"]))
    def run(data):
        path = _write(work, "model.pt", data)
        _evaluate(seeds, work, "x", ["--ckpt", str(path), "--only", "--scenarios", str(seeds["scenes"])],
                  "sim.evaluate --ckpt")

    run()


@st.composite
def sb3_zip(draw, valid: Path) -> bytes:
    """An SB3 zip: damaged as a whole, or with its ``data`` or ``policy.pth`` member malformed."""
    with zipfile.ZipFile(valid) as z:
        members = {n: z.read(n) for n in z.namelist()}
    which = draw(st.sampled_from(["whole", "data", "policy.pth", "missing"]))
    if which == "whole":
        return draw(damaged(valid))
    if which == "missing":
        members.pop(draw(st.sampled_from(sorted(members))))
    elif which == "data":
        members["data"] = draw(malformed(members["data"], is_json=True))
    else:
        state = torch.load(io.BytesIO(members["policy.pth"]), weights_only=True)
        if draw(st.booleans()):
            members["policy.pth"] = draw(damaged(members["policy.pth"]))
        else:
            key = draw(st.sampled_from(sorted(state)))
            state[key] = draw(st.sampled_from([torch.zeros(3), torch.full_like(state[key], math.nan),
                                               torch.zeros(0, 5), torch.zeros(2, 2, 2)]))
            buf = io.BytesIO()
            torch.save(state, buf)
            members["policy.pth"] = buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    return buf.getvalue()


@pytest.mark.parametrize("budget", BUDGETS)
def test_evaluate_agent_sb3(budget, seeds, work):
    @settings(FUZZ, max_examples=budget)
    @given(data=sb3_zip(seeds["sb3"]))
    def run(data):
        path = _write(work, "rl_model_100_steps.zip", data)
        _evaluate(seeds, work, "x", ["--agent", "sb3", "--ckpt", str(path), "--scenarios", str(seeds["scenes"])],
                  "sim.evaluate --agent sb3")

    run()


@pytest.mark.parametrize("budget", BUDGETS)
def test_evaluate_agent_torchscript(budget, seeds, work):
    @settings(FUZZ, max_examples=budget)
    @given(data=damaged(seeds["ts"]))
    def run(data):
        path = _write(work, "plan.ts", data)
        _evaluate(seeds, work, "x", ["--agent", "torchscript", "--ckpt", str(path), "--scenarios",
                                     str(seeds["scenes"])], "sim.evaluate --agent torchscript")

    run()


@pytest.mark.parametrize("budget", BUDGETS)
def test_evaluate_signals(budget, seeds, work):
    logs = st.one_of(st.tuples(st.just(".json"), malformed(seeds["history"], is_json=True)),
                     st.tuples(st.sampled_from([".csv", ".jsonl"]),
                               st.one_of(st.binary(max_size=512), st.text(max_size=300).map(str.encode),
                                         st.lists(JSON_ANY, max_size=5).map(
                                             lambda rows: "\n".join(json.dumps(r) for r in rows).encode()))))

    @settings(FUZZ, max_examples=budget)
    @given(case=logs)
    def run(case):
        suffix, data = case
        path = _write(work, "log" + suffix, data)
        _evaluate(seeds, work, "x", ["--run", str(seeds["run"]), "--signals", str(path), "--scenarios",
                                     str(seeds["scenes"])], "sim.evaluate --signals")

    run()


@pytest.mark.parametrize("budget", BUDGETS)
def test_scenarios_check_and_convert(budget, seeds, formats, work):
    from scenarios.check import main as check
    from scenarios.convert import main as convert

    @settings(FUZZ, max_examples=budget)
    @given(case=scene_input(formats))
    def run(case):
        suffix, data = case
        path = _write(work, "scene" + suffix, data)
        before = snapshot(work)
        code, out, err = call(check, [str(path), "--no-progress", "--json", str(work / "report.json")])
        check_outcome("scenarios.check", code, out, err, work, before, error_on_stdout=True)
        _clean(work)
        code, out, err = call(convert, [str(path), str(work / "out.npz")])
        check_outcome("scenarios.convert", code, out, err, work, before)
        _clean(work)

    run()


def test_unwritable_outputs(seeds, work):
    """--json, dst and --out under a regular file (unwritable even for root)."""
    from scenarios.check import main as check
    from scenarios.convert import main as convert
    from sim.evaluate import main as evaluate

    blocker = work.parent / "in" / "a-file"
    blocker.parent.mkdir(exist_ok=True)
    blocker.write_text("not a folder")
    before = snapshot(work)
    for name, main, argv in (
            ("scenarios.check", check, [str(seeds["scenes"]), "--no-progress", "--json", str(blocker / "r.json")]),
            ("scenarios.convert", convert, [str(seeds["scenes"]), str(blocker / "out.npz")]),
            ("sim.evaluate --out", evaluate, ["--baseline", "log-replay", "--scenarios", str(seeds["scenes"]),
                                              "--out", str(blocker / "r.h5"), *EVAL_TAIL])):
        code, out, err = call(main, argv)
        assert code != 0, name
        check_outcome(name, code, out, err, work, before)
        assert "a-file" in [ln for ln in err.splitlines() if "error:" in ln][0]


TRAIN_TINY = ["--train-pool", "2", "--bc-scenes", "1", "--val-scenes", "1", "--bc-epochs", "1", "--dagger-rounds",
              "0", "--batch-scenes", "1", "--eval-interval", "1", "--episodes", "1", "--eval-states", "8",
              "--hidden", "8", "--no-progress"]


def _train(work: Path, argv: list[str], what: str, watch: Path | None = None) -> None:
    from training.train import main

    before = snapshot(work)
    code, out, err = call(main, argv)
    check_outcome(what, code, out, err, work, before)
    _clean(work)


@pytest.mark.parametrize("budget", BUDGETS)
def test_training_scenarios_and_init(budget, seeds, formats, work):
    @settings(FUZZ, max_examples=budget)
    @given(case=scene_input(formats), ckpt=mutated_ckpt(seeds["ckpt"]))
    def run(case, ckpt):
        suffix, data = case
        path = _write(work, "scene" + suffix, data)
        _train(work, ["--scenarios", str(path), "--out-dir", str(work / "run"), *TRAIN_TINY],
               "training.train --scenarios")
        init = _write(work, "init.pt", ckpt)
        _train(work, ["--scenarios", str(seeds["scenes"]), "--init", str(init), "--out-dir", str(work / "run"),
                      *TRAIN_TINY[:-2]], "training.train --init")

    run()


@pytest.mark.parametrize("budget", BUDGETS)
def test_training_resume(budget, seeds, work):
    import shutil

    @settings(FUZZ, max_examples=budget)
    @given(which=st.sampled_from(["config.json", "last.pt"]), data=st.data())
    def run(which, data):
        run_dir = work / "done"
        shutil.rmtree(run_dir, ignore_errors=True)  # hypothesis replays a failing example in the same folder
        shutil.copytree(seeds["done"], run_dir)
        src = seeds["done"] / which
        bad = data.draw(malformed(src, is_json=True) if which == "config.json" else mutated_ckpt(src))
        (run_dir / which).write_bytes(bad)
        _train(work, ["--resume", str(run_dir), "--episodes", "10", "--no-progress"], "training.train --resume")

    run()


@pytest.fixture(scope="module")
def results(seeds, tmp_path_factory) -> Path:
    """A real results file of the seed run (evaluated once)."""
    from sim.evaluate import main

    out = tmp_path_factory.mktemp("res") / "a" / "results.h5"
    out.parent.mkdir()
    code, _, err = call(main, ["--run", str(seeds["run"]), "--scenarios", str(seeds["scenes"]), "--out", str(out),
                               *EVAL_TAIL])
    assert code == 0, err
    return out


@pytest.mark.parametrize("budget", BUDGETS)
def test_across_and_dashboard_loader(budget, results, work):
    import shutil

    from dashboard.data import RunRef, load_run
    from sim.across import main as across

    @settings(FUZZ, max_examples=budget)
    @given(data=st.data(), which=st.sampled_from(["results.h5", "config.json", "entropy_history.json",
                                                  "train_metrics.json"]))
    def run(data, which):
        good, bad = work.parent / "in" / "good", work.parent / "in" / "bad"
        for d in (good, bad):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            shutil.copy(results, d / "results.h5")
        (bad / which).write_bytes(data.draw(damaged(results) if which == "results.h5" else
                                            malformed(b'{"episodes": [0, 10], "entropy": [1.0, 2.0]}', True)))
        before = snapshot(work)
        code, out, err = call(across, [str(good), str(bad), "--json", str(work / "across.json"),
                                       "--n-resamples", "20"])
        check_outcome("sim.across", code, out, err, work, before)
        _clean(work)
        TRIED["dashboard load_run"] += 1
        loaded = load_run(RunRef(name="bad", path=bad, mtime=0.0, has_results=True, has_history=True))
        assert all("\n" not in msg for _, msg in loaded.problems)

    run()


@pytest.mark.parametrize("budget", BUDGETS)
def test_gym_env_constructor(budget, seeds, formats, work):
    from scenarios.scenario import ScenarioError
    from sim.config import SimError
    from sim.rl.gym_env import ClosedLoopEnv

    scene = [__import__("tests.sim.evaluation.test_evaluate_support", fromlist=["x"]).straight_scene(0, 20)]
    odd = st.one_of(st.none(), st.booleans(), st.text(max_size=6), st.floats(allow_nan=True),
                    st.integers(-10, 10**12))

    @settings(FUZZ, max_examples=budget * 4)
    @given(num_envs=st.one_of(st.integers(-2, 4), odd), device=st.one_of(
        st.sampled_from(["cpu", "cuda", "cuda:7", "mps", "xla", "", "auto", "cpu:0"]), odd),
        agents=st.one_of(st.sampled_from(["log", "idm"]), odd), delta_bound=st.one_of(st.floats(0.1, 5.0), odd),
        max_agents=st.one_of(st.integers(1, 64), odd), case=st.one_of(st.none(), scene_input(formats)))
    def run(num_envs, device, agents, delta_bound, max_agents, case):
        TRIED["gym env constructor"] += 1
        kw = {"num_envs": num_envs, "device": device, "agents": agents, "delta_bound": delta_bound,
              "max_agents": max_agents}
        if case is None:
            kw["scenes"] = scene
        else:
            kw["scenarios"] = str(_write(work, "scene" + case[0], case[1]))
            kw["scenario_cache"] = None
        kw.pop("num_envs")
        if num_envs != 1:
            kw["num_envs"] = num_envs
        try:
            from sim.rl.gym_env import ClosedLoopVectorEnv

            (ClosedLoopVectorEnv if "num_envs" in kw else ClosedLoopEnv)(**kw)
        except (SimError, ScenarioError) as e:
            assert "\n" not in str(e) and str(e)

    run()


def test_the_tracebacks_named_in_issue_21(seeds, work):
    """The inputs the issue lists, each one line now: --agent sb3 whose data is not JSON, the Gym env on cuda
    without CUDA, sim.evaluate --seed -1 (refused before the simulation)."""
    from sim.config import SimError
    from sim.evaluate import main as evaluate
    from sim.rl.gym_env import ClosedLoopEnv

    bad = work.parent / "in" / "rl_model_5_steps.zip"
    bad.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(seeds["sb3"]) as src, zipfile.ZipFile(bad, "w") as dst:
        dst.writestr("data", b"\x80 not json")
        dst.writestr("policy.pth", src.read("policy.pth"))
    before = snapshot(work)
    for name, argv, needle in (
            ("sim.evaluate --agent sb3", ["--agent", "sb3", "--ckpt", str(bad)], "SB3 data file is not JSON"),
            ("sim.evaluate --seed", ["--seed", "-1"], "--seed must be in [0, 4294967295], got -1")):
        code, out, err = call(evaluate, [*argv, "--scenarios", str(seeds["scenes"]), "--out", str(work / "r.h5"),
                                         *EVAL_TAIL])
        assert code == 2 and needle in err, err
        check_outcome(name, code, out, err, work, before)
    if not torch.cuda.is_available():
        with pytest.raises(SimError, match="device cuda: no cuda device is available"):
            from tests.sim.evaluation.test_evaluate_support import straight_scene

            ClosedLoopEnv(scenes=[straight_scene(0, 20)], device="cuda")
