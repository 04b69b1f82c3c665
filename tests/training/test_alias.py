"""The seed's own command, ``python -m training.rl.train_rl_delta_waypoint``, is an alias of the trainer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from training.config import build_parser
from training.rl.train_rl_delta_waypoint import PROG

REPO = Path(__file__).resolve().parents[2]
TINY = ["--scenarios", "procedural-small", "--train-pool", "8", "--bc-scenes", "4", "--val-scenes", "3",
        "--bc-epochs", "2", "--batch-scenes", "4", "--eval-interval", "4", "--hidden", "32", "--no-progress"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=600)


def _options(help_text: str) -> set[str]:
    return {w.strip("[],") for w in help_text.split() if w.startswith(("--", "[--"))}


def test_alias_has_the_trainers_flags(tmp_path):
    proc = _run(["training.rl.train_rl_delta_waypoint", "--help"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: {PROG}")
    trainer = build_parser().format_help()
    assert _options(proc.stdout) == _options(trainer) and "--out-dir" in _options(trainer)


@pytest.mark.slow
def test_alias_writes_the_run_and_sim_evaluate_reads_it(tmp_path):
    run = Path("out/rl_delta_waypoint_v0/run_001")
    proc = _run(["training.rl.train_rl_delta_waypoint", "--out-dir", str(run), "--episodes", "8", *TINY], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / run
    for f in ("best_entropy.pt", "entropy_history.json", "train_metrics.json", "last.pt", "bc.pt"):
        assert (run / f).is_file(), f
    best = json.loads((run / "train_metrics.json").read_text())["best_checkpoint"]
    assert best["path"] == "best_entropy.pt" and best["episode"] in (4, 8)
    assert not (tmp_path / "out" / "latest").exists()  # --out-dir leaves out/latest alone
    ev = _run(["sim.evaluate", "--ckpt", str(run / "best_entropy.pt"), "--only", "--max-scenarios", "4",
               "--no-progress"], tmp_path)
    assert ev.returncode == 0, ev.stderr[-2000:]
    with h5py.File(run / "results.h5", "r") as f:
        groups = list(f["checkpoints"])
        assert len(groups) == 1
        assert f["checkpoints"][groups[0]]["metrics/score"].shape == (4,)
