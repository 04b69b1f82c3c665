"""Does RL help? Closed-loop metrics of a run's ``bc.pt`` and ``last.pt`` and a constant-velocity baseline.

``python -m benchmarks.train_quality RUN_DIR [RUN_DIR ...] [--scenarios procedural:test]`` prints one JSON line
per run: ``{"run", "scenes", "bc": {...}, "last": {...}, "constant_velocity": {...}, "entropy": {...}}`` with means
of ade, fde (m), collision, offroad, comfortable (rates) and score over the held-out scenes, and the policy entropy
(nats) of ``bc.pt`` and ``last.pt`` as recorded in their ``meta``.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("benchmarks.train_quality", "python -m benchmarks.train_quality")

import json
from pathlib import Path

import torch

from benchmarks import cli
from policy.checkpoint import load_checkpoint
from scenarios.suites import load_suite
from sim.baselines import constant_velocity_policy
from sim.batch import make_batch
from sim.metrics.registry import compute_metrics
from sim.rollout import rollout
from training.ppo import make_deterministic_policy_fn

METRICS = ("score", "collision", "offroad", "comfortable", "progress", "ade", "fde")
CHUNK = 64


def closed_loop(policy_fn_for, scenes) -> dict[str, float]:
    """Scene-weighted means of :data:`METRICS` for ``policy_fn_for(batch)`` over ``scenes``."""
    sums = dict.fromkeys(METRICS, 0.0)
    for i in range(0, len(scenes), CHUNK):
        batch = make_batch(scenes[i:i + CHUNK], "cpu", 16)
        m = compute_metrics(rollout(batch, policy_fn_for(batch)), batch)
        for k in METRICS:
            sums[k] += float(torch.nan_to_num(m[k].float()).sum())
    return {k: round(v / len(scenes), 4) for k, v in sums.items()}


@cli.one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Print one JSON line per run directory (bad input: one line on stderr, exit status 2)."""
    p = cli.parser("python -m benchmarks.train_quality", __doc__)
    cli.flag(p, "runs", "run folders of python -m training.train (each with bc.pt and last.pt)", nargs="+",
             metavar="RUN_DIR")
    cli.flag(p, "--scenarios", "held-out scenes: a suite name (suite:split) or a scenario file or folder",
             default="procedural:test")
    a = p.parse_args(argv)
    for run in a.runs:  # checked before minutes of closed loop
        cli.check_dir("", run)
        for name in ("bc", "last"):
            cli.check_file("", Path(run) / f"{name}.pt")
    torch.set_num_threads(1)
    with cli.blame(f"--scenarios {a.scenarios}"):
        scenes = load_suite(a.scenarios)
    if not scenes:
        raise cli.BenchError(f"--scenarios {a.scenarios}: no scenes")
    cv = closed_loop(lambda b: constant_velocity_policy(b.dt), scenes)
    for run in a.runs:
        out = {"run": str(run), "scenes": len(scenes), "constant_velocity": cv}
        out["entropy"] = {}
        for name in ("bc", "last"):
            ck = load_checkpoint(Path(run) / f"{name}.pt")
            out[name] = closed_loop(lambda b, pol=ck.policy: make_deterministic_policy_fn(pol), scenes)
            out["entropy"][name] = round(float(ck.meta["entropy"]), 3)
        print(json.dumps(out), flush=True)
    return 0
