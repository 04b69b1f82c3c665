"""Throughput of the batched closed-loop simulator, side by side with the naive yardstick.

``python -m benchmarks.sim_throughput [--device cpu|cuda|auto] [--batch 1024] [--threads 2] [--workers 0]
[--sweep] [--compile]`` prints ONE JSON line per batch size: closed-loop rollouts with a policy-sized MLP
in the loop and every metric computed on the recorded rollout (``scenario_steps_per_s``, ``agent_steps_per_s``),
the bare transition (log-replay ego, no observation, policy or metrics), peak memory, and the
yardstick ``../shared/bench/proto_step.py`` (loaded by path, same device and thread count) timed
in the same process, alternating with ours (yardstick, ours, yardstick, ours, ...):
``yardstick_scenario_steps_per_s`` (best run) and ``ratio_to_yardstick`` (best over best) with
``ratio_min/median/max`` over the per-repetition pairs. Without the yardstick file those fields
are left out and ``yardstick_note`` says why. ``--sweep`` runs 256..4096 on the CPU and
256..65536 on a GPU. Scenes come from ``scenarios.procedural`` (every family in turn) when it
exists and ``--steps`` is its 80, otherwise from :func:`synthetic_scenes`; the largest batch is
built once and smaller ones are its prefixes. Each figure is the best of ``--repeats`` timed runs
after one warm-up run.

On the CPU the closed loop runs as the product runs it on several cores: ``--workers`` processes
(:class:`sim.evaluation.shards.ShardPool`, default one per thread, each with ``threads / workers`` torch threads)
share the batch's scenes, so the CPU threads the yardstick gets (``--threads``) are the CPU threads
ours gets. ``single_process_scenario_steps_per_s`` is the same closed loop in this one process with
``--threads`` intra-op threads (``--workers 1`` makes that the headline figure).
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("benchmarks.sim_throughput", "python -m benchmarks.sim_throughput")

import json
import resource
import statistics
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from benchmarks import cli
from policy.device import DeviceError, pick_device
from scenarios.scenario import AgentType, Polylines, RoadMap, Scenario
from sim.batch import ScenarioBatch, make_batch
from sim.compiled import StepCompile
from sim.config import NUM_WAYPOINTS, SimError
from sim.evaluation.shards import ShardPool, ShardSettings
from sim.observation import OBS_DIM
from sim.rollout import rollout


@dataclass(frozen=True)
class BenchConfig:
    """Benchmark settings (parsed from the command line)."""

    device: str = "cpu"  # cpu | cuda | auto (policy.device.pick_device)
    batch: int = 256
    agents: int = 32
    steps: int = 80
    repeats: int = 3
    threads: int = 1  # torch intra-op threads; 0 = torch's default (1 is fastest on a shared 2-core box)
    seed: int = 0
    scenes: str = "auto"  # auto | procedural | synthetic
    sweep: bool = False  # one line per batch size in CPU_SWEEP / GPU_SWEEP
    yardstick: str | None = None  # path of proto_step.py (None: ../shared/bench/proto_step.py)
    compile: bool = False  # sim.compiled.StepCompile(enabled=True): every compiled part (PARTS), on any device
    workers: int = 0  # CPU worker processes sharing the scenes (sim.evaluation.shards); 0: one per thread, 1: here


MIN_SCENES_PER_WORKER = 64  # --workers 0 uses fewer workers than threads below this many scenes each


CPU_SWEEP = (256, 512, 1024, 2048, 4096)
GPU_SWEEP = (256, 1024, 4096, 16384, 65536)
MAX_UNIQUE_SCENES = 4096  # a sweep generates at most this many scenes and repeats them beyond


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
    """Procedural scenes (every family in turn) when available, ``steps == 80`` and ``--agents`` is the default (a
    procedural scene holds its own agents, at most 32: it cannot show the cost of more), else synthetic ones."""
    if cfg.scenes == "procedural" or (cfg.scenes == "auto" and cfg.agents == BenchConfig.agents):
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


def bench_policy(device: torch.device):
    """The benchmarks' policy: the yardstick's MLP (OBS_DIM -> 256 -> 256 -> 2 x NUM_WAYPOINTS, seed 0) as small
    offsets from a straight line of waypoints; ``policy_fn(obs [B, OBS_DIM], t) -> (waypoints [B, K, 2], info)``."""
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


def closed_loop(batch: ScenarioBatch, policy_fn, compile: StepCompile | None = None) -> None:
    """One closed-loop pass as the product runs it: the rollout with ``policy_fn``, then every metric."""
    from sim.metrics.registry import compute_metrics

    with torch.no_grad():
        ro = rollout(batch, policy_fn, compile=compile)
        for v in compute_metrics(ro, batch, compile).values():
            v.sum()
    _sync(batch.device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory (MB) and what it measures: CUDA allocator peak, or this process's peak RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_peak_rss"


def worker_count(cfg: BenchConfig, device: torch.device) -> int:
    """Worker processes for ``cfg``: ``--workers`` if given, else one per CPU thread (at least
    :data:`MIN_SCENES_PER_WORKER` scenes each); always 1 on a GPU."""
    if device.type != "cpu":
        return 1
    if cfg.workers > 0:
        return cfg.workers
    threads = cfg.threads if cfg.threads > 0 else torch.get_num_threads()
    return max(1, min(threads, cfg.batch // MIN_SCENES_PER_WORKER))


def run(cfg: BenchConfig, scenes: list[Scenario] | None = None, kind: str = "") -> dict:
    """Time the rollouts (and the yardstick, alternating) for ``cfg.batch`` scenes; returns the JSON record."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device, reason = pick_device(cfg.device, cfg.batch)
    if scenes is None:
        scenes, kind = _scenes(cfg)
    scenes = scenes[: cfg.batch]
    steps = max(s.agents.shape[1] for s in scenes) - 1 - scenes[0].init_step  # the batch's controlled steps
    ss = len(scenes) * steps
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_compile = StepCompile(enabled=cfg.compile)
    workers = worker_count(cfg, device)
    threads = torch.get_num_threads()
    batch = policy_fn = None

    def in_process():
        nonlocal batch, policy_fn
        if batch is None:  # built when first needed: after the worker pool is gone (peak memory)
            batch, policy_fn = make_batch(scenes, device=device, max_agents=cfg.agents), bench_policy(device)
        closed_loop(batch, policy_fn, step_compile)

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    from benchmarks.yardstick import load_yardstick, yardstick_rate

    proto = load_yardstick(cfg.yardstick)
    pool = None
    try:
        if workers > 1:
            pool = ShardPool(scenes, ShardSettings(
                workers=workers, threads=max(1, threads // workers), max_agents=cfg.agents, compile=step_compile))

        def sharded():
            for v in pool.run(bench_policy).values():
                v.sum()

        loop = sharded if pool is not None else in_process
        loop()  # warm-up (and compile, with --compile)
        ours, theirs = [], []
        for _ in range(cfg.repeats):  # alternate: yardstick, ours, yardstick, ours, ...
            if proto is not None:
                theirs.append(yardstick_rate(proto, device.type, len(scenes), cfg.agents, steps))
            ours.append(ss / timed(loop))
        worker_peak = max((s.peak_rss_mb for s in pool.last_stats), default=0.0) if pool is not None else 0.0
    finally:
        if pool is not None:
            pool.close()
    single = ours
    if pool is not None:
        in_process()
        single = [ss / timed(in_process) for _ in range(cfg.repeats)]

    def transition():
        rollout(batch, None)
        _sync(device)

    transition()
    t_tr = min(timed(transition) for _ in range(cfg.repeats))
    peak, peak_kind = _peak_memory_mb(device)
    rec = {
        "scenario_steps_per_s": round(max(ours), 1),
        "agent_steps_per_s": round(max(ours) * batch.num_agents, 1),
        "transition_only_scenario_steps_per_s": round(ss / t_tr, 1),
        "batch": batch.num_scenes,
        "agents": batch.num_agents,
        "steps": steps,
        "device": str(device),
        "device_reason": reason,
        "scenes": kind,
        "metrics": True,
        "compile": cfg.compile,
        "workers": workers,
        "threads_per_worker": max(1, threads // workers) if workers > 1 else threads,
        "single_process_scenario_steps_per_s": round(max(single), 1),
        "closed_loop_s": round(ss / max(ours), 4),
        "transition_s": round(t_tr, 4),
        "peak_memory_mb": round(peak, 1),
        "peak_memory_kind": peak_kind,
        "threads": threads,
    }
    if pool is not None:
        rec["worker_peak_memory_mb"] = round(worker_peak, 1)
    if proto is None:
        from benchmarks.yardstick import DEFAULT_PATH

        where = cfg.yardstick or DEFAULT_PATH
        rec["yardstick_note"] = f"yardstick {where} not found: no side-by-side figure"
    else:
        ratios = sorted(o / y for o, y in zip(ours, theirs))
        rec["yardstick_scenario_steps_per_s"] = round(max(theirs), 1)
        rec["ratio_to_yardstick"] = round(max(ours) / max(theirs), 3)
        rec["ratio_min"], rec["ratio_median"], rec["ratio_max"] = (
            round(ratios[0], 3), round(statistics.median(ratios), 3), round(ratios[-1], 3))
    return rec


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    """Command line -> :class:`BenchConfig` (bad input: one line on stderr, exit status 2)."""
    p = cli.parser("python -m benchmarks.sim_throughput", __doc__.splitlines()[0])
    d = BenchConfig()
    cli.flag(p, "--device", "cpu | cuda | cuda:N | auto (GPU only where faster)", default=d.device)
    cli.flag(p, "--batch", "scenes per batch", default=d.batch, type=int, range=cli.at_least(1))
    cli.flag(p, "--agents", "agents per scene (ego included)", default=d.agents, type=int, range=cli.at_least(1))
    cli.flag(p, "--steps", "controlled steps per scene (procedural scenes need 80)", default=d.steps, type=int,
             range=cli.at_least(1))
    cli.flag(p, "--repeats", "timed runs per figure, after one warm-up run (the best is reported)",
             default=d.repeats, type=int, range=cli.at_least(1))
    cli.flag(p, "--threads", "torch intra-op threads (0 = torch default)", default=d.threads, type=int,
             range=cli.at_least(0))
    cli.flag(p, "--scenes", "scene source (auto: procedural when available and --steps 80)", default=d.scenes,
             choices=["auto", "procedural", "synthetic"])
    cli.flag(p, "--seed", "scene seed", default=d.seed, type=int, range=cli.SEED)
    cli.flag(p, "--sweep", "one line per batch size (256..4096 CPU, ..65536 GPU)", action="store_true")
    cli.flag(p, "--yardstick", "path of proto_step.py (default ../shared/bench/proto_step.py; without it the "
             "side-by-side figures are left out and yardstick_note says why)", default=d.yardstick)
    cli.flag(p, "--compile", "torch.compile the hot parts (sim.compiled.StepCompile)", action="store_true")
    cli.flag(p, "--workers", "CPU worker processes sharing the scenes (0 = one per thread, 1 = this process only)",
             default=d.workers, type=int, range=cli.at_least(0))
    a = p.parse_args(argv)
    try:
        pick_device(a.device, a.batch)
    except (DeviceError, SimError) as e:
        p.error(str(e))
    if a.yardstick is not None:  # a path given must be there; the default's absence is only a note
        try:
            cli.check_file("--yardstick", a.yardstick, (".py",))
        except cli.BenchError as e:
            p.error(str(e))
    return BenchConfig(**vars(a))


@cli.one_line_errors
def main(argv: list[str] | None = None) -> int:
    """CLI: one JSON line per batch size (module docstring); bad input: one line on stderr, exit status 2."""
    cfg = parse_args(argv)
    if not cfg.sweep:
        print(json.dumps(run(cfg)), flush=True)
        return 0
    dev, _ = pick_device(cfg.device, max(CPU_SWEEP))
    sizes = GPU_SWEEP if dev.type == "cuda" else CPU_SWEEP
    scenes, kind = _scenes(replace(cfg, batch=min(max(sizes), MAX_UNIQUE_SCENES)))
    scenes = (scenes * -(-max(sizes) // len(scenes)))[: max(sizes)]  # larger batches repeat scenes
    for b in sizes:
        print(json.dumps(run(replace(cfg, batch=b), scenes, kind)), flush=True)
    return 0
