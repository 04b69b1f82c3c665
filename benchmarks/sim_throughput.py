"""Throughput of the batched closed-loop simulator.

``python -m benchmarks.sim_throughput [--device cpu|cuda] [--batch 256 --agents 32 --steps 80]``
prints ONE JSON line: closed-loop rollouts with a policy-sized MLP in the loop and every metric
computed on the recorded rollout (``scenario_steps_per_s``, ``agent_steps_per_s``), and the bare
transition (log-replay ego, no observation, policy or metrics: ``transition_only_scenario_steps_per_s``).
Scenes come from ``scenarios.procedural`` (every family in turn) when it exists and ``--steps``
is its 80, otherwise from :func:`synthetic_scenes`. Each figure is the best of ``--repeats`` timed
runs after one warm-up run. Torch runs with one intra-op thread by default: on a busy 2-core
machine extra threads spin-wait on each other and make small-tensor reductions many times slower.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from scenarios.scenario import AgentType, Polylines, RoadMap, Scenario, ScenarioError
from sim.batch import make_batch
from sim.config import NUM_WAYPOINTS, SimError
from sim.observation import OBS_DIM
from sim.rollout import rollout


@dataclass(frozen=True)
class BenchConfig:
    """Benchmark settings (parsed from the command line)."""

    device: str = "cpu"
    batch: int = 256
    agents: int = 32
    steps: int = 80
    repeats: int = 3
    threads: int = 1  # torch intra-op threads; 0 = torch's default (1 is fastest on a shared 2-core box)
    seed: int = 0
    scenes: str = "auto"  # auto | procedural | synthetic


def track(x, y, yaw, speed, length: float = 4.5, width: float = 1.9) -> np.ndarray:
    """A ``[T, 7]`` agent track from per-step x, y, yaw (rad) and speed (m/s) arrays (scalars broadcast)."""
    x, y, yaw, speed = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, y, yaw, speed)))
    out = np.zeros((len(x), 7), np.float32)
    out[:, 0], out[:, 1], out[:, 2] = x, y, np.remainder(yaw + np.pi, 2 * np.pi) - np.pi
    out[:, 3], out[:, 4] = speed * np.cos(yaw), speed * np.sin(yaw)
    out[:, 5], out[:, 6] = length, width
    return out


def scene_from_tracks(
    tracks: list[np.ndarray],
    *,
    valid: np.ndarray | None = None,
    ego: int = 0,
    drivable: list[np.ndarray] | None = None,
    route: np.ndarray | None = None,
    init_step: int = 10,
    dt: float = 0.1,
    scene_id: str = "synthetic",
) -> Scenario:
    """A validated :class:`Scenario` from agent tracks ``[T, 7]`` (route default: the ego's path)."""
    agents = np.stack(tracks).astype(np.float32)
    if valid is None:
        valid = np.ones(agents.shape[:2], bool)
    if route is None:
        route = agents[ego, :, :2].astype(np.float64)
    road = RoadMap(drivable=Polylines.from_list(drivable)) if drivable else RoadMap()
    return Scenario(
        id=scene_id,
        source="synthetic",
        agents=agents,
        valid=valid,
        agent_type=np.full(len(tracks), int(AgentType.VEHICLE), np.int8),
        ego=ego,
        map=road,
        route=route,
        dt=dt,
        init_step=init_step,
    ).validate()


def synthetic_scenes(n: int, agents: int, steps: int, seed: int = 0, init_step: int = 10) -> list[Scenario]:
    """Straight multi-lane road scenes: ego at 8-14 m/s in lane 0, others on 4 lanes, some oncoming.

    Args:
        n: number of scenes. agents: agents per scene (ego included). steps: controlled steps.
        seed: RNG seed. init_step: history steps before control.

    Returns:
        ``n`` validated scenes of ``init_step + steps + 1`` steps.
    """
    rng = np.random.default_rng(seed)
    n_t = init_step + steps + 1
    t = np.arange(n_t) * 0.1
    out = []
    for i in range(n):
        ag = np.zeros((agents, n_t, 7), np.float32)
        v = np.full(agents, 0.0)
        v[0] = rng.uniform(8, 14)
        lane = np.zeros(agents)
        x0 = np.zeros(agents)
        lane[1:] = rng.integers(-1, 3, agents - 1) * 3.5
        x0[1:] = rng.uniform(-60, 160, agents - 1)
        v[1:] = rng.uniform(0, 14, agents - 1)
        sign = np.where(lane < 0, -1.0, 1.0)
        for a in range(agents):
            ag[a, :, 0] = x0[a] + sign[a] * v[a] * t
            ag[a, :, 1] = lane[a]
            ag[a, :, 2] = 0.0 if sign[a] > 0 else np.pi
            ag[a, :, 3] = sign[a] * v[a]
            ag[a, :, 5] = 4.5
            ag[a, :, 6] = 1.9
        valid = np.ones((agents, n_t), bool)
        valid[1:, : rng.integers(0, n_t // 2)] = rng.random() < 0.2
        drivable = Polylines.from_list([np.array([[-120, -6.0], [320, -6.0], [320, 9.0], [-120, 9.0]])])
        route = np.stack([np.linspace(0, 300, 61), np.zeros(61)], 1)
        out.append(
            Scenario(
                id=f"synthetic-{seed}-{i}",
                source="synthetic",
                agents=ag,
                valid=valid,
                agent_type=np.full(agents, int(AgentType.VEHICLE), np.int8),
                ego=0,
                map=RoadMap(drivable=drivable),
                route=route,
                init_step=init_step,
                family="straight",
            ).validate()
        )
    return out


def _scenes(cfg: BenchConfig) -> tuple[list[Scenario], str]:
    """Procedural scenes (every family in turn) when available and ``steps == 80``, else synthetic ones."""
    if cfg.scenes in ("auto", "procedural"):
        try:
            from scenarios.procedural import FAMILY_NAMES, INIT_STEP, T_STEPS, generate
        except ImportError:
            if cfg.scenes == "procedural":
                raise SimError("--scenes procedural: scenarios.procedural is not available") from None
        else:
            if cfg.steps == T_STEPS - 1 - INIT_STEP or cfg.scenes == "procedural":
                fams = FAMILY_NAMES
                return [generate(fams[i % len(fams)], cfg.seed + i) for i in range(cfg.batch)], "procedural"
    return synthetic_scenes(cfg.batch, cfg.agents, cfg.steps, cfg.seed), "synthetic"


def _policy(device: torch.device):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(OBS_DIM, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 2 * NUM_WAYPOINTS),
    ).to(device)
    base = torch.linspace(1.0, 8.0, NUM_WAYPOINTS, device=device) * 5.0

    def policy_fn(obs, t):
        out = net(obs).view(-1, NUM_WAYPOINTS, 2) * 0.1
        wps = torch.stack([base.expand(obs.shape[0], -1), torch.zeros_like(base).expand(obs.shape[0], -1)], -1)
        return wps + out, {"value": out[:, 0, 0]}

    return policy_fn


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(cfg: BenchConfig) -> dict:
    """Time the rollouts; returns the JSON record."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    scenes, kind = _scenes(cfg)
    batch = make_batch(scenes, device=device, max_agents=cfg.agents)
    try:
        from sim.metrics import compute_metrics
    except ImportError:
        compute_metrics = None
    policy_fn = _policy(device)
    steps = batch.num_steps - 1 - batch.init_step

    def closed_loop():
        with torch.no_grad():
            ro = rollout(batch, policy_fn)
            if compute_metrics is not None:
                m = compute_metrics(ro, batch)
                for v in m.values():
                    v.sum()
        _sync(device)

    def transition():
        rollout(batch, None)
        _sync(device)

    timings = {}
    for name, fn in (("closed", closed_loop), ("transition", transition)):
        fn()  # warm-up
        best = float("inf")
        for _ in range(cfg.repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        timings[name] = best
    ss = batch.num_scenes * steps
    return {
        "scenario_steps_per_s": round(ss / timings["closed"], 1),
        "agent_steps_per_s": round(ss * batch.num_agents / timings["closed"], 1),
        "transition_only_scenario_steps_per_s": round(ss / timings["transition"], 1),
        "batch": batch.num_scenes,
        "agents": batch.num_agents,
        "steps": steps,
        "device": str(device),
        "scenes": kind,
        "metrics": compute_metrics is not None,
        "closed_loop_s": round(timings["closed"], 4),
        "transition_s": round(timings["transition"], 4),
        "threads": torch.get_num_threads(),
    }


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    """Command line -> :class:`BenchConfig`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = BenchConfig()
    p.add_argument("--device", default=d.device, choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--agents", type=int, default=d.agents)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--repeats", type=int, default=d.repeats)
    p.add_argument("--threads", type=int, default=d.threads, help="torch intra-op threads (0 = torch default)")
    p.add_argument("--scenes", default=d.scenes, choices=["auto", "procedural", "synthetic"])
    p.add_argument("--seed", type=int, default=d.seed)
    a = p.parse_args(argv)
    if a.batch < 1 or a.agents < 1 or a.steps < 1 or a.repeats < 1:
        p.error("--batch, --agents, --steps and --repeats must be >= 1")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device available")
    return BenchConfig(**vars(a))


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        rec = run(cfg)
    except (SimError, ScenarioError) as e:
        print(f"sim_throughput: {e}", file=sys.stderr)
        return 1
    print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
