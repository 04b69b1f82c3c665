"""End to end: the three commands in order (small settings), in a fresh working directory.

train -> out/latest; evaluate --ckpt best_entropy.pt (a bare name resolved in out/latest) -> results.h5;
the dashboard (AppTest) opens on out/latest and shows the run's verdict. Marked slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch

from sim.results.schema import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("e2e")
    _run(["training.train", "--episodes", "24", "--eval-interval", "8", "--scenarios", "procedural-small",
          "--bc-scenes", "16", "--batch-scenes", "8", "--val-scenes", "8", "--no-progress"], cwd)
    return cwd


def test_train_writes_the_run_contract(workdir):
    latest = workdir / "out" / "latest"
    assert latest.is_symlink() and latest.resolve().parent == (workdir / "out").resolve()
    hist = json.loads((latest / "entropy_history.json").read_text())
    metrics = json.loads((latest / "train_metrics.json").read_text())
    assert hist["episodes"] == [8, 16, 24]
    best = torch.load(latest / "best_entropy.pt", weights_only=True)
    assert best["meta"]["entropy"] == pytest.approx(hist["best_entropy"])
    assert best["meta"]["episode"] == hist["best_episode"] == metrics["best_checkpoint"]["episode"]
    for f in ("last.pt", "bc.pt", "best_reward.pt", "config.json", "checkpoints/ep00024.pt"):
        assert (latest / f).exists(), f


def test_evaluate_bare_name_then_dashboard(workdir, monkeypatch):
    proc = _run(["sim.evaluate", "--ckpt", "best_entropy.pt", "--scenarios", "procedural-small:test",
                 "--max-scenarios", "12", "--no-progress"], workdir)
    out = proc.stdout
    assert "best_entropy.pt ->" in out and "comparison set" in out and "Verdict" in out
    results = (workdir / "out" / "latest" / "results.h5").resolve()
    with h5py.File(results, "r") as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        groups = list(f["checkpoints"])
        # one group per distinct acting policy of the run (ep00008.pt = bc.pt while PPO warms up the value head)
        from policy.checkpoint import acting_digest, read_checkpoint
        from sim.evaluation.candidates import run_files

        objs = [read_checkpoint(p) for p in run_files(results.parent)]
        distinct = {acting_digest(o["state_dict"], o["config"].get("policy"))[:16] for o in objs}
        assert sorted(groups) == sorted(distinct) and len(groups) >= 2
        for g in groups:
            assert f["checkpoints"][g]["metrics/ade"].shape == (12,)
        verdict = json.loads(f["verdict"].attrs["json"])
    assert verdict["n_scenarios"] == 12

    # Second call: every pair is already there (resume) and nothing changes.
    size = results.stat().st_size
    again = _run(["sim.evaluate", "--ckpt", "best_entropy.pt", "--scenarios", "procedural-small:test",
                  "--max-scenarios", "12", "--no-progress"], workdir)
    assert "already in results.h5 with the same settings are skipped" in again.stdout
    assert results.stat().st_size >= size

    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(sys, "argv", ["app.py", "--runs-dir", str(workdir / "out")])
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=120).run()
    assert not at.exception
    shown = "\n".join(str(e.value) for kind in ("markdown", "caption", "info") for e in getattr(at, kind))
    assert verdict["sentence"].split(";")[0][:40] in shown
    assert len(at.get("plotly_chart")) >= 2
