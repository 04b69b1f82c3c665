"""Stable-Baselines3 PPO on ``driveselect/ClosedLoop-v0`` and SB3 checkpoint evaluation through the agent plug-in.

``python -m benchmarks.sb3_env_speed [--num-envs 64 256] [--iterations 2] [--checkpoints 10 --scenes 200]``
prints ONE JSON line:

- ``env_steps_per_s[N]``: the bare batched env over one episode (random actions; reward, metrics and the
  autoreset's batch build included, first call not warmed up).
- ``ppo_env_steps_per_s[N]``: ``PPO("MlpPolicy", env, n_steps=80).learn(...)`` end to end (rollouts + updates),
  after one warm-up iteration.
- ``eval_s``: wall time of ``python -m sim.evaluate --agent sb3`` on ``--checkpoints`` SB3 ``.zip`` files x
  ``--scenes`` held-out scenes (a new process: load without unpickling, closed loop, every metric, the verdict and
  the results file; the scenes come from the ``out/cache`` scene cache once generated).

Torch runs with one intra-op thread (see ``benchmarks.sim_throughput``).
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("benchmarks.sb3_env_speed", "python -m benchmarks.sb3_env_speed")

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import cli

ROOT = Path(__file__).resolve().parents[1]


def env_rate(n: int, steps: int = 80) -> float:
    from sim.rl.gym_env import ACTION_DIM, BatchedClosedLoop

    core = BatchedClosedLoop(n, scenarios="procedural:train")
    core.reset(0)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for _ in range(steps):
        _, _, te, tr, _ = core.step(rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32))
        if (te | tr).any():
            core.reset()
    return n * steps / (time.perf_counter() - t)


def ppo_rate(n: int, iterations: int) -> float:
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger

    from sim.rl.gym_env import make_sb3_vec_env

    env = make_sb3_vec_env(n, scenarios="procedural:train")
    model = PPO("MlpPolicy", env, n_steps=80, batch_size=n * 80 // 4, n_epochs=4, device="cpu", seed=0)
    model.set_logger(Logger(None, []))  # SB3's default logger makes a /tmp/SB3-<time> folder per model
    model.learn(n * 80)  # warm-up iteration
    t = time.perf_counter()
    model.learn(n * 80 * iterations, reset_num_timesteps=False)
    return n * 80 * iterations / (time.perf_counter() - t)


def eval_time(n_ckpt: int, n_scenes: int) -> float:
    """Wall time of ``python -m sim.evaluate --agent sb3 --ckpt 'DIR/*.zip'`` on fresh PPO checkpoints (a new
    process: start, imports, loading, closed loop, metrics, verdict, results file)."""
    from stable_baselines3 import PPO

    from sim.rl.gym_env import make_sb3_vec_env

    with tempfile.TemporaryDirectory() as d:
        env = make_sb3_vec_env(2, scenarios="procedural-small:train")
        for i in range(n_ckpt):
            PPO("MlpPolicy", env, device="cpu", seed=i).save(Path(d) / f"rl_model_{i * 1000}_steps.zip")
        cmd = [sys.executable, "-m", "sim.evaluate", "--agent", "sb3", "--ckpt", str(Path(d) / "*.zip"),
               "--scenarios", "procedural:test", "--max-scenarios", str(n_scenes), "--out",
               str(Path(d) / "results.h5"), "--no-progress"]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        return time.perf_counter() - t


@cli.one_line_errors
def main(argv: list[str] | None = None) -> None:
    """CLI: one JSON line (module docstring); bad input: one line on stderr, exit status 2."""
    ap = cli.parser("python -m benchmarks.sb3_env_speed", __doc__.splitlines()[0])
    cli.flag(ap, "--num-envs", "batched env sizes, one rate each (none: skip the env rates)", default=[64, 256],
             type=int, range=cli.at_least(1), nargs="*", metavar="N")
    cli.flag(ap, "--iterations", "timed PPO iterations of 80 steps per env, after one warm-up", default=2, type=int,
             range=cli.at_least(1))
    cli.flag(ap, "--checkpoints", "SB3 checkpoints evaluated by sim.evaluate --agent sb3 (0: skip eval_s)",
             default=10, type=int, range=cli.at_least(0))
    cli.flag(ap, "--scenes", "held-out scenes of that evaluation", default=200, type=int, range=cli.at_least(1))
    cli.flag(ap, "--threads", "torch intra-op threads (0 = torch default)", default=1, type=int,
             range=cli.at_least(0))
    a = ap.parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    out = {"env_steps_per_s": {}, "ppo_env_steps_per_s": {}}
    for n in a.num_envs:
        out["env_steps_per_s"][n] = round(env_rate(n))
        out["ppo_env_steps_per_s"][n] = round(ppo_rate(n, a.iterations))
    if a.checkpoints > 0:
        out["eval_s"] = round(eval_time(a.checkpoints, a.scenes), 1)
        out["eval"] = f"{a.checkpoints} SB3 checkpoints x {a.scenes} scenes"
    out["threads"] = torch.get_num_threads()
    print(json.dumps(out))
