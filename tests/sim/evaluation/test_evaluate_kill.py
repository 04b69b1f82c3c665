"""Kill ``python -m sim.evaluate`` at random moments: the file stays readable, the rerun resumes to the same result."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sim.results.reader import read_checkpoints, read_summary
from tests.sim.evaluation.test_evaluate_support import make_run, write_scenes

REPO = Path(__file__).resolve().parents[3]
N_SCENES = 16


def _cmd(run: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "sim.evaluate", "--run", str(run), "--scenarios", "scenes.npz", "--batch-size", "2",
            "--no-progress", "--n-resamples", "100", "--out", str(out)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_sigkill_mid_run_leaves_every_completed_checkpoint_and_resumes(tmp_path):
    episodes = (0, 10, 20, 30, 40, 50)
    run = make_run(tmp_path / "a", episodes=episodes, speeds=[5.0 + j for j in range(6)])
    write_scenes(tmp_path / "a" / "scenes.npz", N_SCENES, num_steps=40)
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    out = tmp_path / "a" / "results.h5"
    rng = np.random.default_rng(7)
    counts = []
    for it in range(2):
        proc = subprocess.Popen(_cmd(run, out), cwd=tmp_path / "a", env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # wait until this run has committed something new, then kill it at a random moment after
        while proc.poll() is None:
            if out.exists() and len(read_summary(out).checkpoints) > it:
                break
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0.0, 0.3)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        s = read_summary(out)  # readable after every kill
        for c in s.checkpoints.values():
            assert c.n == N_SCENES and np.isfinite(c.metrics["ade"]).all()
        counts.append(len(s.checkpoints))
    assert 0 < counts[0] < len(episodes)  # the first kill landed mid-run
    assert counts == sorted(counts)  # never loses a committed checkpoint
    done = subprocess.run(_cmd(run, out), cwd=tmp_path / "a", env=_env(), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-500:]
    ref_run = tmp_path / "b" / "out" / "run1"
    ref_out = tmp_path / "b" / "results.h5"
    ref = subprocess.run(_cmd(ref_run, ref_out), cwd=tmp_path / "b", env=_env(), capture_output=True, timeout=300)
    assert ref.returncode == 0, ref.stderr.decode()[-500:]
    got = {c.key: c for c in read_checkpoints(out, with_traj=True)}
    want = {c.key: c for c in read_checkpoints(ref_out, with_traj=True)}
    assert got.keys() == want.keys() and len(got) == len(episodes)
    for k, w in want.items():
        g = got[k].rows.select(w.rows.scenario_ids)
        for name, v in w.rows.metrics.items():
            np.testing.assert_array_equal(g.metrics[name], v, err_msg=name)
        np.testing.assert_array_equal(g.ego_traj, w.rows.ego_traj)


@pytest.mark.slow
def test_reader_can_read_while_an_evaluation_writes(tmp_path):
    run = make_run(tmp_path, episodes=(0, 10, 20, 30), speeds=[5.0, 6.0, 7.0, 8.0])
    write_scenes(tmp_path / "scenes.npz", N_SCENES, num_steps=40)
    out = tmp_path / "results.h5"
    proc = subprocess.Popen(_cmd(run, out), cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    seen = set()
    try:
        while proc.poll() is None:
            if out.exists():
                s = read_summary(out)  # never fails, never shows a partial checkpoint
                assert all(c.n == N_SCENES for c in s.checkpoints.values())
                seen.add(len(s.checkpoints))
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert len(read_summary(out).checkpoints) == 4 and len(seen) >= 2
