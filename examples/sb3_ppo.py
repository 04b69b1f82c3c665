"""Bring your own trainer: SB3 PPO on ``driveselect/ClosedLoop-v0``, then which training signal picks best.

1. Train ``PPO("MlpPolicy", env)`` on the natively batched env with ``CheckpointCallback`` (``rl_model_N_steps.zip``)
   and TensorBoard logging.
2. Evaluate every checkpoint in closed loop through the ``sb3`` agent plug-in (nothing unpickled) on held-out scenes.
3. Read the TensorBoard scalars, match checkpoints to logged steps, judge every signal (entropy is the headline;
   SB3's ``train/entropy_loss`` is minus the entropy and is judged negated).

Run from the repo root: ``python -m examples.sb3_ppo --out out/sb3_example`` (minutes on 2 cores with the
defaults); ``--tiny`` runs in about a minute. Writes ``OUT/checkpoints/``, ``OUT/tb/``, ``OUT/signal_verdict.json``.
The same evaluation through the CLI (once wired):
``python -m sim.evaluate --agent sb3 --ckpt 'OUT/checkpoints/*' --signals OUT/tb``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def train(out: Path, num_envs: int, total_steps: int, save_every: int, scenarios: str, seed: int) -> None:
    """PPO on the batched env; checkpoints every ``save_every`` env steps, TensorBoard under ``out/tb``."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CheckpointCallback

    from sim.gym_env import make_sb3_vec_env

    env = make_sb3_vec_env(num_envs, scenarios=scenarios)
    env.seed(seed)
    n_steps = 80  # one 8 s episode per env per rollout
    model = PPO("MlpPolicy", env, n_steps=n_steps, batch_size=n_steps * num_envs // 4, n_epochs=4,
                learning_rate=3e-4, tensorboard_log=str(out / "tb"), seed=seed, verbose=0, device="cpu")
    every = max(1, save_every // num_envs)  # CheckpointCallback counts vector steps
    model.learn(total_steps, callback=CheckpointCallback(every, str(out / "checkpoints"), name_prefix="rl_model"),
                tb_log_name="PPO")


def evaluate(paths: list[Path], scenarios: str, n_scenes: int, metric: str) -> tuple[list, np.ndarray]:
    """Closed-loop ``metric`` per checkpoint and scene ``[C, S]`` through the ``sb3`` agent plug-in."""
    from scenarios.loading import load_scenes
    from sim.batch import make_batch
    from sim.harness.agents import load_agent, policy_fn
    from sim.metrics import compute_metrics
    from sim.rollout import rollout

    batch = make_batch(load_scenes(scenarios).scenes[:n_scenes])
    agents = [load_agent("sb3", str(p)) for p in paths]
    rows = [compute_metrics(rollout(batch, policy_fn(a)), batch)[metric].numpy() for a in agents]
    return agents, np.stack(rows).astype(np.float64)


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
    from sim.harness.signal_verdict import judge_signals
    from sim.harness.signals import match_checkpoints, read_signals

    t0 = time.perf_counter()
    train(a.out, a.num_envs, a.total_steps, a.save_every, a.scenarios, a.seed)
    t1 = time.perf_counter()
    print(f"trained {a.total_steps} env steps in {t1 - t0:.1f} s ({a.total_steps / (t1 - t0):.0f} env-steps/s)")
    paths = sorted((a.out / "checkpoints").glob("rl_model_*_steps.zip"), key=lambda p: int(p.stem.split("_")[2]))
    agents, metric = evaluate(paths, a.eval_scenarios, a.eval_scenes, a.metric)
    t2 = time.perf_counter()
    print(f"evaluated {len(paths)} checkpoints x {metric.shape[1]} scenes in {t2 - t1:.1f} s")
    signals = read_signals(a.out / "tb", require=("train/entropy_loss",))
    keys = [str(p) for p in paths]
    matched = match_checkpoints(signals, {k: ag.info.step for k, ag in zip(keys, agents)})
    for m in matched.matches:
        if m.signal == signals.headline:
            print("match:", m.line())
    verdict = judge_signals(metric, matched.values, keys, metric_name=a.metric, headline=signals.headline,
                            steps=[ag.info.step for ag in agents], notes=matched.notes, seed=a.seed)
    print("\n".join(verdict.lines()))
    (a.out / "signal_verdict.json").write_text(json.dumps(verdict.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
