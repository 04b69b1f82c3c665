"""Disk full and read-only output, on real (tmpfs) file systems: a clear one-line error, nothing earlier lost.

Needs permission to mount tmpfs (root, as in CI); skips with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sim.results.reader import read_summary

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow

TINY_TRAIN = ["--episodes", "24", "--eval-interval", "8", "--scenarios", "procedural-small", "--bc-scenes", "16",
              "--batch-scenes", "8", "--val-scenes", "8", "--no-progress"]


def _mount(path: Path, size: str, *opts: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *opts]), "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")


@pytest.fixture
def mounts():
    done: list[Path] = []

    def mount(path: Path, size: str, *opts: str) -> Path:
        _mount(path, size, *opts)
        done.append(path)
        return path

    yield mount
    for p in reversed(done):
        subprocess.run(["umount", "-l", str(p)], capture_output=True)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "error" in ln.lower()]
    assert lines, proc.stderr[-2000:]
    msg = lines[-1]
    for n in needles:
        assert n.lower() in msg.lower(), msg
    return msg


def test_training_on_a_full_disk_fails_cleanly(tmp_path, mounts):
    disk = mounts(tmp_path / "disk", "1500k")
    proc = _run(["training.train", *TINY_TRAIN, "--out-dir", str(disk / "run")], tmp_path)
    _one_line_error(proc, "space")
    # Whatever was written is whole: every checkpoint loads, every JSON parses, no temp files remain.
    for pt in (disk / "run").rglob("*.pt"):
        torch.load(pt, weights_only=True)
    for js in (disk / "run").rglob("*.json"):
        json.loads(js.read_text())
    assert not [p for p in (disk / "run").rglob("*") if p.name.endswith(".tmp")]


def test_training_into_a_read_only_folder_fails_cleanly(tmp_path, mounts):
    ro = mounts(tmp_path / "ro", "64k", "ro")
    proc = _run(["training.train", *TINY_TRAIN, "--out-dir", str(ro / "run")], tmp_path)
    _one_line_error(proc, "read-only")


def test_evaluation_on_a_full_disk_keeps_earlier_results(tmp_path, mounts):
    scen = ["--scenarios", "procedural-small:test", "--max-scenarios", "6", "--no-progress", "--scenario-cache", ""]
    ok = _run(["training.train", *TINY_TRAIN, "--out-dir", str(tmp_path / "run")], tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    disk = mounts(tmp_path / "disk", "2m")
    out = disk / "results.h5"
    first = _run(["sim.evaluate", "--baseline", "log-replay", "--out", str(out), *scen], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    before = read_summary(out, with_scenarios=False)
    # Fill the disk so that the next commit (a copy of the file) cannot fit.
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * max(0, free - out.stat().st_size // 2))
    second = _run(["sim.evaluate", "--run", str(tmp_path / "run"), "--out", str(out), *scen], tmp_path)
    _one_line_error(second, "space")
    after = read_summary(out, with_scenarios=False)
    assert list(before.checkpoints) == ['baseline-log-replay']
    assert list(after.checkpoints) == list(before.checkpoints)
    assert not [p for p in disk.iterdir() if p.name.endswith(".tmp")]


def test_evaluation_into_a_read_only_folder_fails_cleanly(tmp_path, mounts):
    ro = mounts(tmp_path / "ro", "64k", "ro")
    proc = _run(["sim.evaluate", "--baseline", "log-replay", "--out", str(ro / "results.h5"),
                 "--scenarios", "procedural-small:test", "--max-scenarios", "2", "--no-progress"], tmp_path)
    _one_line_error(proc, "results.h5")
