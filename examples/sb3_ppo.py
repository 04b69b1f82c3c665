"""Bring your own trainer: SB3 PPO on ``driveselect/ClosedLoop-v0``, then which training signal picks best.

1. Train ``PPO("MlpPolicy", env)`` on the natively batched env with ``CheckpointCallback`` (``rl_model_N_steps.zip``)
   and TensorBoard logging.
2. ``python -m sim.evaluate --agent sb3 --ckpt 'OUT/checkpoints/*.zip' --signals OUT/tb/PPO_N ...`` (the TensorBoard run
   this training wrote: a second call into the same ``OUT`` writes ``PPO_2``): every checkpoint in
   closed loop through the ``sb3`` agent plug-in (nothing unpickled) on held-out scenes; the TensorBoard scalars
   matched to the checkpoints' steps; every signal judged (entropy is the headline; SB3's ``train/entropy_loss`` is
   minus the entropy and is judged negated). The command is printed before it runs.

Run from the repo root: ``python -m examples.sb3_ppo --out out/sb3_example`` (minutes on 2 cores with the
defaults); ``--tiny`` runs in under a minute. Writes ``OUT/checkpoints/``, ``OUT/tb/`` and ``OUT/results.h5``
(the signal verdict in it: ``sim.results.reader.read_signal_verdict``; the dashboard shows it with
``streamlit run dashboard/app.py -- --runs-dir OUT/..``).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch


def train(out: Path, num_envs: int, total_steps: int, save_every: int, scenarios: str, seed: int) -> Path:
    """PPO on the batched env; checkpoints every ``save_every`` env steps, TensorBoard under ``out/tb``.

    Returns:
        The TensorBoard run this training wrote (``out/tb/PPO_N``: SB3 numbers a new run beside the earlier ones,
        so a second call into the same ``out`` writes ``PPO_2``).
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CheckpointCallback

    from sim.rl.gym_env import make_sb3_vec_env

    env = make_sb3_vec_env(num_envs, scenarios=scenarios)
    env.seed(seed)
    n_steps = 80  # one 8 s episode per env per rollout
    model = PPO("MlpPolicy", env, n_steps=n_steps, batch_size=n_steps * num_envs // 4, n_epochs=4,
                learning_rate=3e-4, tensorboard_log=str(out / "tb"), seed=seed, verbose=0, device="cpu")
    every = max(1, save_every // num_envs)  # CheckpointCallback counts vector steps
    model.learn(total_steps, callback=CheckpointCallback(every, str(out / "checkpoints"), name_prefix="rl_model"),
                tb_log_name="PPO")
    return Path(model.logger.get_dir())


def eval_command(out: Path, scenarios: str, n_scenes: int, metric: str, seed: int, tb: Path | None = None
                 ) -> list[str]:
    """The ``sim.evaluate`` call: every checkpoint through the ``sb3`` plug-in, every TensorBoard scalar judged.

    Args:
        tb: the TensorBoard run to judge (:func:`train`'s); None: ``out/tb`` (which must then hold one run).
    """
    return [sys.executable, "-m", "sim.evaluate", "--agent", "sb3", "--ckpt", str(out / "checkpoints" / "*.zip"),
            "--signals", str(tb or out / "tb"), "--signal", "train/entropy_loss", "--scenarios", scenarios,
            "--max-scenarios", str(n_scenes), "--metric", metric, "--seed", str(seed), "--out",
            str(out / "results.h5"), "--no-progress"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/sb3_example"))
    ap.add_argument("--num-envs", type=int, default=64)
    ap.add_argument("--total-steps", type=int, default=64 * 80 * 20)
    ap.add_argument("--save-every", type=int, default=64 * 80 * 2, help="env steps between checkpoints")
    ap.add_argument("--scenarios", default="procedural:train")
    ap.add_argument("--eval-scenarios", default="procedural:test")
    ap.add_argument("--eval-scenes", type=int, default=200)
    ap.add_argument("--metric", default="score")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--tiny", action="store_true", help="8 envs, 4 PPO iterations, 16 scenes (CI budget)")
    a = ap.parse_args(argv)
    if a.tiny:
        a.num_envs, a.total_steps, a.save_every, a.eval_scenes = 8, 8 * 80 * 4, 8 * 80, 16
        a.scenarios, a.eval_scenarios = "procedural-small:train", "procedural-small:test"
    torch.set_num_threads(a.threads)  # one thread is fastest on a busy 2-core machine (benchmarks.sim_throughput)
    t0 = time.perf_counter()
    tb = train(a.out, a.num_envs, a.total_steps, a.save_every, a.scenarios, a.seed)
    t1 = time.perf_counter()
    print(f"trained {a.total_steps} env steps in {t1 - t0:.1f} s ({a.total_steps / (t1 - t0):.0f} env-steps/s)")
    cmd = eval_command(a.out, a.eval_scenarios, a.eval_scenes, a.metric, a.seed, tb)
    print("$ " + " ".join(shlex.quote(c) for c in ["python", *cmd[1:]]), flush=True)
    rc = subprocess.run(cmd).returncode
    print(f"sim.evaluate took {time.perf_counter() - t1:.1f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
