"""The bring-your-own examples run end to end on a tiny budget (real SB3 training, TensorBoard, evaluation)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim.results.reader import read_signal_verdict

REPO = Path(__file__).resolve().parents[3]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_sb3_example_tiny(tmp_path):
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("tensorboard")
    r = _run(["examples.sb3_ppo", "--tiny", "--out", str(tmp_path)])
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list((tmp_path / "checkpoints").glob("rl_model_*_steps.zip"))) == 4
    assert "$ python -m sim.evaluate --agent sb3 --ckpt" in r.stdout  # the example shows the CLI it runs
    v = read_signal_verdict(tmp_path / "results.h5")
    assert v["headline"] == "entropy (-train/entropy_loss)" and len(v["checkpoints"]) == 4
    assert {j["signal"] for j in v["ranking"]} >= {"training step", "train/approx_kl"}
    assert any("entropy_loss = -mean entropy" in n for n in v["notes"])
    assert "(headline)" in r.stdout and "matches" not in r.stderr
    again = _run(["examples.sb3_ppo", "--tiny", "--out", str(tmp_path)])  # SB3 writes tb/PPO_2 beside tb/PPO_1
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"--signals {tmp_path / 'tb' / 'PPO_2'} " in again.stdout


@pytest.mark.slow
def test_custom_agent_example(tmp_path):
    r = _run(["examples.custom_agent", "--out", str(tmp_path), "--scenes", "4"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Which training signal picks the best checkpoint?" in r.stdout and "loss" in r.stdout
    assert {j["signal"] for j in read_signal_verdict(tmp_path / "results.h5")["ranking"]} >= {"loss", "plan_scale"}
