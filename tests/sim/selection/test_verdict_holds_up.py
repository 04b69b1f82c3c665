"""Issue 12 on the evaluation side: settings-aware results, one policy counted once, one verdict per run,
roles from the run, honest statistics, one-line workflow errors. Real checkpoints, real HDF5, the real CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from policy.checkpoint import read_checkpoint
from sim.evaluate import main
from sim.results.reader import read_checkpoints, read_root_attrs, read_summary, read_verdict
from sim.selection.report import build_verdict, rate_interval
from tests.sim.evaluation.test_evaluate_support import make_run, straight_scene, write_scenes

ARGS = ["--scenarios", "scenes.npz", "--no-progress", "--n-resamples", "100", "--batch-size", "8"]


@pytest.fixture()
def work(tmp_path, monkeypatch):
    run = make_run(tmp_path, episodes=(0, 50, 100, 150), log_stds=[-0.5, -0.9, -0.7, -1.1],
                   rewards=[0.0, 3.0, 1.0, 2.0])
    write_scenes(tmp_path / "scenes.npz", 4, num_steps=30)
    monkeypatch.chdir(tmp_path)
    return run


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _means(path: Path) -> dict[str, float]:
    return {s.attrs["name"]: float(np.mean(s.rows.metrics["score"])) for s in read_checkpoints(path)}


def test_idm_on_a_log_agent_file_is_refused_and_the_file_is_untouched(work, capsys):
    """The issue's scenario: log-agent results, then --agents idm on the same --out."""
    assert main(["--ckpt", "last.pt", *ARGS]) == 0
    res = work / "results.h5"
    before, config = _sha(res), read_summary(res).attrs["config"]
    log_means = _means(res)
    capsys.readouterr()
    assert main(["--ckpt", "last.pt", "--agents", "idm", "--out", str(res), *ARGS]) == 2
    err = _err_line(capsys)
    assert str(res) in err and "agents=log" in err and "agents=idm" in err
    assert f"--out {work / 'results-idm.h5'}" in err
    assert _sha(res) == before and read_summary(res).attrs["config"] == config  # nothing mixed, config kept
    # following the advice gives rows of their own, labelled
    assert main(["--ckpt", "last.pt", "--agents", "idm", "--out", str(work / "results-idm.h5"), *ARGS]) == 0
    attrs, _ = read_root_attrs(work / "results-idm.h5")
    assert json.loads(attrs["settings"])["agents"] == "idm"
    assert json.loads(read_root_attrs(res)[0]["settings"])["agents"] == "log"
    assert _means(res) == log_means
    assert "Resuming" not in capsys.readouterr().out


def test_changed_scene_content_under_the_same_ids_is_refused(work, capsys):
    assert main(["--run", str(work), *ARGS]) == 0
    before = _sha(work / "results.h5")
    from scenarios.io import save_scenarios

    moved = []
    for i in range(4):  # same ids, the other agents shifted by a metre: other closed-loop numbers
        s = straight_scene(i, 30)
        a = s.agents.copy()
        a[1:, :, 0] += 1.0
        moved.append(type(s)(**{**s.__dict__, "agents": a}))
    save_scenarios(Path("scenes.npz"), moved)
    capsys.readouterr()
    assert main(["--run", str(work), *ARGS]) == 2
    err = _err_line(capsys)
    assert "straight-0000" in err and "other content" in err and "--out" in err
    assert _sha(work / "results.h5") == before


def _same_acting_weights_as_bc(run: Path) -> None:
    """ep00050.pt gets bc's acting weights with another value head (what PPO's value warm-up produces)."""
    obj = read_checkpoint(run / "checkpoints" / "ep00000.pt")
    sd = {k: v.clone() for k, v in obj["state_dict"].items()}
    changed = [k for k in sd if k.startswith("value")]
    assert changed, sorted(sd)
    for k in changed:
        sd[k] += 0.5
    obj = {**obj, "state_dict": sd, "meta": {**obj["meta"], "episode": 50, "kind": "candidate"}}
    obj["meta"].pop("policy_digest", None)
    torch.save(obj, run / "checkpoints" / "ep00050.pt")
    obj = read_checkpoint(run / "best_reward.pt")  # keep the role file a copy of its episode file
    meta = {k: v for k, v in obj["meta"].items() if k != "policy_digest"}
    torch.save({**obj, "state_dict": sd, "meta": {**meta, "episode": 50}}, run / "best_reward.pt")


def test_one_policy_counted_once_with_all_its_names(work, capsys):
    _same_acting_weights_as_bc(work)
    assert main(["--run", str(work), *ARGS]) == 0
    out = capsys.readouterr().out
    names = sorted(s.attrs["name"] for s in read_checkpoints(work / "results.h5"))
    assert names == ["ep00000.pt = ep00050.pt", "ep00100.pt", "ep00150.pt"]
    assert "3 distinct policies (8 checkpoint files)" in out
    v = read_verdict(work / "results.h5")
    assert v["n_checkpoints"] == 3 and v["correlations"]["score"]["n"] == 3


def test_runs_are_never_pooled(tmp_path, monkeypatch, capsys):
    for name in ("s0", "s1"):
        make_run(tmp_path, name=name, log_stds=[-0.5, -0.9, -0.7, -1.1])
    write_scenes(tmp_path / "scenes.npz", 3, num_steps=30)
    monkeypatch.chdir(tmp_path)
    given = ["--ckpt", "out/s0/best_entropy.pt", "--ckpt", "out/s1/best_entropy.pt", *ARGS]
    assert main([*given, "--out", "pooled.h5"]) == 2
    err = _err_line(capsys)
    assert "2 runs" in err and "never pooled" in err and not Path("pooled.h5").exists()
    assert main(given) == 0
    out = capsys.readouterr().out
    for name in ("s0", "s1"):
        assert f"Verdict ({name}):" in out
        v = read_verdict(tmp_path / "out" / name / "results.h5")
        assert v["n_checkpoints"] == 4 and v["rules"]["max_entropy"]["name"] == "ep00000.pt"
        assert all(str(tmp_path / "out" / name) in s.attrs["path"]
                   for s in read_checkpoints(tmp_path / "out" / name / "results.h5"))


def test_a_role_without_results_picks_nothing_and_the_gap_is_said(work):
    assert main(["--run", str(work), *ARGS]) == 0
    res = work / "results.h5"
    expected = json.loads(read_root_attrs(res)[0]["comparison_set"])
    stored = [s for s in read_checkpoints(res) if "best_entropy" not in s.roles]  # as if interrupted
    ids = list(stored[0].rows.scenario_ids)
    v = build_verdict(stored, ids, "score", 50, 0, expected=expected)
    assert v["rules"]["max_entropy"] is None  # not the highest entropy among what happens to be evaluated
    assert v["unevaluated_roles"] == ["max_entropy", "bc"]
    assert v["completeness"]["missing_checkpoints"] == 1 and v["completeness"]["missing_pairs"] == len(ids)
    assert v["sentence"].startswith("Partial comparison set: 3 of 4 checkpoints")


def test_no_correlation_below_three_policies(work, capsys):
    assert main(["--ckpt", "checkpoints/ep0000*.pt", "--ckpt", "checkpoints/ep0005*.pt", "--only",
                 "--out", "two.h5", *ARGS]) == 0
    out = " ".join(capsys.readouterr().out.split())
    v = read_verdict(work.parent.parent / "two.h5")
    assert v["correlations"]["score"]["spearman"] is None
    assert "Spearman" not in v["sentence"] and "no rank correlation with 2 distinct" in v["sentence"]
    assert "n/a, n/a" not in out


@pytest.mark.parametrize("k,n", [(0, 5), (5, 5), (1, 7), (3, 200)])
def test_rates_use_wilson_within_zero_one(k, n):
    from scipy.stats import binomtest

    v = np.r_[np.ones(k), np.zeros(n - k)]
    p, lo, hi = rate_interval(v)
    ci = binomtest(k, n).proportion_ci(method="wilson")
    assert p == pytest.approx(k / n) and lo == pytest.approx(ci.low) and hi == pytest.approx(ci.high)
    assert 0.0 <= lo <= p <= hi <= 1.0 and hi > lo


@pytest.mark.parametrize("metric,values", [("ade", [0.5, 2.0, 26.4]), ("fde", [0.1, 0.2, 9.0]),
                                           ("score", [0.0, 0.02, 0.97]), ("progress", [1.0, 0.98, 0.05])])
def test_mean_intervals_stay_within_what_the_metric_can_take(metric, values):
    """Three scenes, one far off: the normal interval of the mean reaches past the metric's range (a negative
    distance, a score above 1); the table's interval stops at the range and still holds the mean; its other end is
    the normal interval's (scipy's normal quantile)."""
    from scipy.stats import norm

    from sim.metrics.catalogue import SPECS
    from sim.selection.report import metric_interval

    v = np.asarray(values)
    m, lo, hi = metric_interval(metric, v)
    h = norm.ppf(0.975) * v.std(ddof=1) / np.sqrt(v.size)
    lo_b, hi_b = SPECS[metric].bounds
    assert m == pytest.approx(v.mean())
    assert lo == pytest.approx(max(m - h, lo_b)) and hi == pytest.approx(min(m + h, hi_b))
    assert lo_b <= lo <= m <= hi <= hi_b
    assert m - h < lo_b or m + h > hi_b  # each case does reach past the range


@pytest.mark.parametrize("device,says", [("cuda:7", "--device cuda:7"), ("bogus", "not a device name")])
def test_unusable_device_is_one_line(work, capsys, device, says):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    assert main(["--run", str(work), "--device", device, *ARGS]) == 2
    assert says in _err_line(capsys)
    assert not (work / "results.h5").exists()


def test_ray_address_without_a_cluster_fails_after_a_bounded_wait(work, capsys, monkeypatch):
    import socket
    import time

    pytest.importorskip("ray")
    import sim.evaluation.executors as ex

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(ex, "RAY_CONNECT_TIMEOUT_S", 2.0)
    monkeypatch.setattr(ex.RayExecutor.__init__, "__defaults__", (None, None, 2.0))
    t0 = time.monotonic()
    assert main(["--run", str(work), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", *ARGS]) == 2
    assert time.monotonic() - t0 < 15
    err = _err_line(capsys)
    assert f"--ray-address 127.0.0.1:{port}: no Ray cluster answers there after 2 s" in err


@pytest.mark.slow
def test_no_progress_silences_every_bar(work):
    """The bundled suite's generation bar too (it was printed even with --no-progress)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "sim.evaluate", "--ckpt", "last.pt", "--only", "--scenarios",
                        "procedural:test", "--scenario-cache", "", "--max-scenarios", "2", "--no-progress",
                        "--n-resamples", "20", "--out", "np.h5"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and "scene/s" not in r.stdout
