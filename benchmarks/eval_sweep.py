"""Benchmark: closed-loop evaluation sweep, end to end, HDF5 writing included.

``python -m benchmarks.eval_sweep`` builds (untimed) a run of 20 real ``WaypointPolicy``
checkpoints and 500 procedural scenes of 80 controlled steps, then times one
``sim.evaluate`` call on them (scene loading, batching, rollouts, metrics, per-checkpoint
atomic HDF5 commits, verdict with its bootstrap, summary table) and prints one JSON line:
``checkpoints``, ``scenarios``, ``wall_s``, ``rollouts_s`` (the same checkpoints on the same batches in
rollouts alone, one process: :func:`rollouts_alone`), ``wall_over_rollouts``, ``per_checkpoint_s`` (wall over
checkpoints, setup excluded; scenes are prepared on disk beforehand, as an earlier call leaves them),
``bytes_per_checkpoint_scenario`` (the results file and its sidecar folder), ``device`` (plus
``cpu_s`` (this process's CPU time: the machine is shared), ``load_avg_1m``, ``file_bytes``,
``scenes_bytes``, ``setup_s``, and ``peak_rss_mb`` / ``children_peak_rss_mb``: the peak resident memory of this
process and of its largest worker process, MB; ``scene_window``: the ``--scene-window`` it ran with;
``scenes_streamed``: whether the scenes outnumber that window, so ``sim.evaluate`` streamed them; ``executor``
as given and ``executor_used``, ``auto`` resolved as :func:`sim.evaluation.executors.pick_executor` resolves it).
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("benchmarks.eval_sweep", "python -m benchmarks.eval_sweep")

import io
import json
import os
import platform
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks import cli
from sim.batch import ROAD_RESOLUTION, make_batch
from sim.evaluation.executors import EXECUTORS


@dataclass(frozen=True)
class SweepConfig:
    """Benchmark settings (see ``--help``)."""

    checkpoints: int = 20
    scenarios: int = 500
    batch_size: int = 128
    executor: str = "auto"
    device: str = "cpu"
    seed: int = 0
    keep: str | None = None
    compile: bool = False
    scene_window: int | None = None
    rollouts_alone: bool = True


def parse_args(argv=None) -> SweepConfig:
    """Command line -> :class:`SweepConfig` (bad input: one line on stderr, exit status 2, before any work)."""
    d = SweepConfig()
    p = cli.parser("python -m benchmarks.eval_sweep", __doc__.split("\n")[0])
    cli.flag(p, "--checkpoints", "checkpoints of the run built for the sweep", default=d.checkpoints, type=int,
             range=cli.at_least(1))
    cli.flag(p, "--scenarios", "number of procedural scenes to generate and evaluate (a count, not a suite name: "
             "seeds --seed .. --seed + N - 1)", default=d.scenarios, type=int, range=cli.at_least(1), metavar="N")
    cli.flag(p, "--batch-size", "sim.evaluate --batch-size: scenes per batch", default=d.batch_size, type=int,
             range=cli.at_least(1))
    cli.flag(p, "--executor", "sim.evaluate --executor (as sim.evaluate's: worker processes for a long sweep on "
             "several CPUs; processes: one worker process per CPU)", default=d.executor, choices=EXECUTORS)
    cli.flag(p, "--device", "sim.evaluate --device: auto, cpu, cuda, cuda:N or mps", default=d.device)
    cli.flag(p, "--seed", "seed of the scenes, the checkpoints and the evaluation", default=d.seed, type=int,
             range=cli.SEED)
    cli.flag(p, "--keep", "folder to keep the run, scenes and results in (default: a temporary folder)")
    cli.flag(p, "--compile", "evaluate --compile", action="store_true")
    cli.flag(p, "--scene-window", "sim.evaluate --scene-window (default: sim.evaluate's)", type=int,
             range=cli.at_least(0))
    p.add_argument("--no-rollouts-alone", dest="rollouts_alone", action="store_false",
                   help="skip the rollouts-alone pass (rollouts_s and wall_over_rollouts are then null): for "
                        "memory figures of sweeps too long to time twice")
    cfg = SweepConfig(**vars(p.parse_args(argv)))
    from policy.device import DeviceError, resolve_device

    try:
        resolve_device(cfg.device)
    except DeviceError as e:
        p.error(str(e))
    if cfg.keep is not None and Path(cfg.keep).exists() and not Path(cfg.keep).is_dir():
        p.error(f"--keep {cfg.keep}: not a folder")
    if cfg.scene_window is not None:  # its range is sim.evaluate's, checked before minutes of scene preparation
        from sim.evaluate import EvalConfig
        from sim.results.errors import EvaluationError

        try:
            EvalConfig(scene_window=cfg.scene_window)
        except EvaluationError as e:
            p.error(str(e))
    return cfg


def build_run(run: Path, n: int, seed: int = 0) -> None:
    """``n`` real checkpoints in the run layout of docs/run_files.md (random weights, decreasing entropy, speeds)."""
    from policy.checkpoint import save_checkpoint
    from policy.entropy import gaussian_entropy
    from policy.model import PolicyConfig, WaypointPolicy
    from sim.config import NUM_WAYPOINTS, WAYPOINT_STEPS
    from sim.observation import OBS_DIM, OBS_VERSION

    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    k = torch.arange(1, NUM_WAYPOINTS + 1, dtype=torch.float32) * WAYPOINT_STEPS * 0.1
    for j in range(n):
        torch.manual_seed(seed + j)
        p = WaypointPolicy(PolicyConfig(obs_dim=OBS_DIM, num_waypoints=NUM_WAYPOINTS, obs_version=OBS_VERSION,
                                        init_log_std=-0.3 - 0.05 * j))
        with torch.no_grad():
            p.wp_mean.copy_(torch.stack([(6.0 + 0.4 * j) * k, torch.zeros_like(k)], -1).reshape(-1))
            p.wp_std.fill_(0.5)
        ent = float(gaussian_entropy(p.log_std.detach()))
        meta = {"episode": 25 * j, "entropy": ent, "train_reward": float(j),
                "eval_info": {"policy_entropy": ent, "mean_delta_norm": 0.0, "max_delta_norm": 0.0,
                              "std_delta_norm": 0.0}}
        save_checkpoint(run / "checkpoints" / f"ep{25 * j:05d}.pt", p, {"seed": seed}, meta)
    (run / "config.json").write_text(json.dumps({"seed": seed, "benchmark": True}))


@cli.one_line_errors
def main(argv=None) -> dict:
    """Run the sweep and print the JSON line (bad input: one line on stderr, exit status 2)."""
    cfg = parse_args(argv)
    from rich.console import Console

    from scenarios.io import save_scenarios
    from scenarios.loading import streams
    from scenarios.procedural import generate_suite
    from scenarios.scene_file import SceneFile
    from scenarios.suites import prepared_dir
    from sim.evaluate import EvalConfig, run
    from sim.scene_cache import SceneCache

    tmp = None
    if cfg.keep:
        root = Path(cfg.keep)
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="eval_sweep_")
        root = Path(tmp.name)
    try:
        t0 = time.perf_counter()
        scenes_path = root / f"scenes_{cfg.scenarios}.npz"
        if not scenes_path.exists():
            save_scenarios(scenes_path, generate_suite(range(cfg.seed, cfg.seed + cfg.scenarios)))
        run_dir = root / "run"
        if not (run_dir / "checkpoints").is_dir():
            build_run(run_dir, cfg.checkpoints, cfg.seed)
        out = root / "results.h5"
        out.unlink(missing_ok=True)
        cache_dir = root / "cache"
        scenes = _scenes(scenes_path)  # streamed: the benchmark's peak memory is the sweep's
        scene_cache = SceneCache(prepared_dir(str(cache_dir)))
        for s in scenes:  # what an earlier call leaves on disk (untimed)
            scene_cache.get(s, ROAD_RESOLUTION)
        setup_s = time.perf_counter() - t0
        ecfg = EvalConfig(run=str(run_dir), scenarios=str(scenes_path), batch_size=cfg.batch_size, device=cfg.device,
                          out=str(out), executor=cfg.executor, seed=cfg.seed, progress=False,
                          compile=cfg.compile, scenario_cache=str(cache_dir),
                          **({} if cfg.scene_window is None else {"scene_window": cfg.scene_window}))
        t1, c1 = time.perf_counter(), time.process_time()
        run(ecfg, console=Console(file=io.StringIO(), width=150))
        wall, cpu = time.perf_counter() - t1, time.process_time() - c1
        rollouts_s = rollouts_alone(run_dir, scenes, ecfg, scene_cache) if cfg.rollouts_alone else None
        from sim.results.schema import parts_dir

        parts = parts_dir(out)
        size = out.stat().st_size + sum(p.stat().st_size for p in parts.glob("*") if p.is_file())
        import h5py

        with h5py.File(out, "r") as f:
            n_ck = len(f["checkpoints"])
            n_sc = len(f["scenarios"])
            scenes_bytes = sum(
                ds.id.get_storage_size()
                for g in f["scenarios"].values()
                for ds in _datasets(g)
            )
        name = platform.processor() or platform.machine()
        device = cfg.device if cfg.device != "cpu" else f"cpu ({name}, {os.cpu_count()} cores)"
        res = {
            "checkpoints": n_ck,
            "scenarios": n_sc,
            "wall_s": round(wall, 2),
            "rollouts_s": None if rollouts_s is None else round(rollouts_s, 2),
            "wall_over_rollouts": None if rollouts_s is None else round(wall / rollouts_s, 3),
            "per_checkpoint_s": round(wall / max(n_ck, 1), 3),
            "cpu_s": round(cpu, 2),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "bytes_per_checkpoint_scenario": round(size / (n_ck * n_sc), 1),
            "device": device,
            "file_bytes": size,
            "scenes_bytes": int(scenes_bytes),
            "setup_s": round(setup_s, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "children_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "batch_size": cfg.batch_size,
            "executor": cfg.executor,
            "executor_used": _executor_used(ecfg, n_sc, scenes),
            "compile": cfg.compile,
            "scene_window": ecfg.scene_window,
            "scenes_streamed": isinstance(scenes, SceneFile) and streams(3, n_sc, ecfg.scene_window),
        }
        print(json.dumps(res))
        return res
    finally:
        if tmp is not None:
            tmp.cleanup()


def _scenes(path: Path):
    """The benchmark's scenes, streamed from ``path`` (a version-3 file: one block decoded at a time, none held),
    or held (a version-2 file kept from an earlier call)."""
    from scenarios.io import load_scenarios
    from scenarios.scenario import ScenarioError
    from scenarios.scene_file import SceneFile

    try:
        return SceneFile.open(path)
    except ScenarioError:
        return load_scenarios(path)


def rollouts_alone(run_dir: Path, scenes, ecfg, scene_cache) -> float:
    """Seconds the sweep's rollouts take alone: the same checkpoints, shards, batches, threads and policy function,
    batches built beforehand (untimed), no metrics, no files; one process whatever the executor (the executors
    run the same rollouts in W processes: compare the processes executor's wall time with this over W)."""
    from sim.evaluation.plugins import load_agent, policy_fn
    from sim.evaluation.units import make_shards
    from sim.rollout import rollout

    torch.set_num_threads(ecfg.threads)
    agents = [load_agent("own", str(p), ecfg.device) for p in sorted((run_dir / "checkpoints").glob("*.pt"))]
    total = 0.0
    with torch.inference_mode():
        for sh in make_shards(scenes, ecfg.batch_size):  # one batch held at a time: the sweep's peak memory stands
            b = make_batch([scenes[i] for i in sh], device=ecfg.device, cache=scene_cache)
            t = time.perf_counter()
            for agent in agents:
                rollout(b, policy_fn(agent, None), agents=ecfg.agents)
            total += time.perf_counter() - t
    return total


def _executor_used(ecfg, n_scenes: int, scenes) -> str:
    """The executor ``sim.evaluate`` ran on (``--executor auto`` resolved as it resolves it)."""
    from sim.evaluation.executors import pick_executor
    from sim.evaluation.units import SimSettings, make_shards

    n_ck = len(list((Path(ecfg.run) / "checkpoints").glob("*.pt")))
    settings = SimSettings(device=ecfg.device, compile=ecfg.compile)
    return pick_executor(ecfg.executor, n_ck * n_scenes, len(make_shards(scenes, ecfg.batch_size)), settings,
                         ecfg.num_cpus or None)[0]


def _datasets(g):
    import h5py

    for v in g.values():
        if isinstance(v, h5py.Dataset):
            yield v
        else:
            yield from _datasets(v)
