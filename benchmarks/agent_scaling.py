"""What agents cost: closed-loop scenario-steps/s at several agent counts, measured in one run.

``python -m benchmarks.agent_scaling [--agents 32,64,128,256] [--batch 512] [--threads 2] [--rounds 5]`` prints ONE
JSON line. Each agent count gets its own batch of :func:`benchmarks.sim_throughput.synthetic_scenes` (every agent
valid at every step, spread along a four-lane road, so the number of agents within reach of the ego grows with
the count) and the closed loop of :func:`benchmarks.sim_throughput.closed_loop` (a policy-sized MLP in the loop,
log-replay agents, every metric), in this one process with ``--threads`` torch threads. Each batch is rolled out
twice before timing, as every checkpoint after the second one of a sweep finds it (its log-replay record kept).

Rounds alternate the counts (32, 64, ..., 256, 32, ...), so a change of load on a shared machine reaches every
count alike. Per count: ``rate`` (best round) and ``rate_median``; per count after the first: ``ratio`` (best over
best, to the first count) and ``ratio_min/median/max`` over the rounds, each round's rates divided.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("benchmarks.agent_scaling", "python -m benchmarks.agent_scaling")

import json
import statistics
import sys
import time
from dataclasses import dataclass

import torch

from benchmarks import cli
from benchmarks.sim_throughput import bench_policy, closed_loop, synthetic_scenes
from sim.batch import make_batch


@dataclass(frozen=True)
class ScalingConfig:
    """Benchmark settings (parsed from the command line)."""

    agents: tuple[int, ...] = (32, 64, 128, 256)
    batch: int = 512
    steps: int = 80
    threads: int = 2
    rounds: int = 5
    seed: int = 0


def run(cfg: ScalingConfig) -> dict:
    """Time every agent count in alternating rounds; returns the JSON record."""
    torch.set_num_threads(cfg.threads)
    device = torch.device("cpu")
    policy_fn = bench_policy(device)
    batches = {}
    for a in cfg.agents:
        batches[a] = make_batch(synthetic_scenes(cfg.batch, a, cfg.steps, cfg.seed), max_agents=a)
        for _ in range(2):  # as a sweep's later checkpoints find the batch: its log-replay record kept
            closed_loop(batches[a], policy_fn)
    steps = cfg.batch * cfg.steps
    rates: dict[int, list[float]] = {a: [] for a in cfg.agents}
    for r in range(cfg.rounds):
        for a in cfg.agents:
            t0 = time.perf_counter()
            closed_loop(batches[a], policy_fn)
            rates[a].append(steps / (time.perf_counter() - t0))
        print(f"round {r + 1}/{cfg.rounds}: " + ", ".join(f"{a} agents {rates[a][-1]:,.0f}/s" for a in cfg.agents),
              file=sys.stderr, flush=True)
    first = cfg.agents[0]
    per_count = {}
    for a in cfg.agents:
        rec = {"rate": round(max(rates[a]), 1), "rate_median": round(statistics.median(rates[a]), 1)}
        if a != first:
            ratios = sorted(x / y for x, y in zip(rates[a], rates[first]))
            rec.update(ratio=round(max(rates[a]) / max(rates[first]), 3), ratio_min=round(ratios[0], 3),
                       ratio_median=round(statistics.median(ratios), 3), ratio_max=round(ratios[-1], 3))
        per_count[str(a)] = rec
    return {
        "unit": "scenario_steps_per_s", "batch": cfg.batch, "steps": cfg.steps, "threads": cfg.threads,
        "rounds": cfg.rounds, "device": str(device), "scenes": "synthetic", "metrics": True,
        "ratio_to": first, "agents": per_count,
    }


def parse_args(argv: list[str] | None = None) -> ScalingConfig:
    """Command line -> :class:`ScalingConfig`."""
    d = ScalingConfig()
    p = cli.parser("python -m benchmarks.agent_scaling", __doc__.splitlines()[0])
    cli.flag(p, "--agents", "agent counts, comma-separated, distinct, each >= 1 (the first is what ratios are to)",
             default=",".join(map(str, d.agents)))
    cli.flag(p, "--batch", "scenes per batch", default=d.batch, type=int, range=cli.at_least(1))
    cli.flag(p, "--steps", "controlled steps per scene", default=d.steps, type=int, range=cli.at_least(1))
    cli.flag(p, "--threads", "torch intra-op threads", default=d.threads, type=int, range=cli.at_least(1))
    cli.flag(p, "--rounds", "timed rounds, each over every count", default=d.rounds, type=int,
             range=cli.at_least(1))
    cli.flag(p, "--seed", "scene seed", default=d.seed, type=int, range=cli.SEED)
    a = p.parse_args(argv)
    try:
        agents = tuple(int(x) for x in a.agents.split(","))
    except ValueError:
        p.error(f"--agents: expected comma-separated integers, got {a.agents!r}")
    if not agents or min(agents) < 1 or len(set(agents)) != len(agents):
        p.error(f"--agents must be distinct counts >= 1, got {a.agents}")
    return ScalingConfig(agents=agents, batch=a.batch, steps=a.steps, threads=a.threads, rounds=a.rounds, seed=a.seed)


@cli.one_line_errors
def main(argv: list[str] | None = None) -> int:
    """CLI: one JSON line (module docstring); bad input: one line on stderr, exit status 2."""
    print(json.dumps(run(parse_args(argv))), flush=True)
    return 0
