"""``python -m sim.evaluate``: closed-loop evaluation of a run's checkpoints, HDF5 results, verdict.

Example (right after ``python -m training.train --episodes 500``)::

    python -m sim.evaluate --ckpt best_entropy.pt

``best_entropy.pt`` resolves in ``out/latest/``; since it belongs to a run, the run's whole
comparison set is evaluated (``--only`` to evaluate just the given files). Results go to
``<run>/results.h5`` (schema: ``docs/results_schema.md``); pairs already there are skipped.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.candidates import BASELINES, Candidate, baseline, discover
from sim.executors import SimSettings, make_executor, make_shards, make_units, run_units
from sim.results import CheckpointRows, EvaluationError, ResultsWriter, read_checkpoints, to_json
from sim.verdict import compute_verdict, verdict_input_from_rows

TABLE_METRICS = (("ade", "ADE m"), ("fde", "FDE m"), ("collision", "collision rate"), ("offroad", "offroad rate"),
                 ("score", "score"))


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one ``sim.evaluate`` call (see ``--help``)."""

    ckpt: tuple[str, ...] = ()
    run: str | None = None
    only: bool = False
    baselines: tuple[str, ...] = ()
    scenarios: str = "procedural:test"
    scenario_cache: str = "out/cache"
    max_scenarios: int = 0
    backend: str = "kinematic"
    carla_host: str = "localhost"
    carla_port: tuple[int, ...] = (2000,)
    agents: str = "log"
    batch_size: int = 64
    device: str = "cpu"
    threads: int = 1
    out: str | None = None
    seed: int = 0
    executor: str = "local"
    ray_address: str | None = None
    num_cpus: int = 0
    metric: str = "score"
    n_resamples: int = 999
    latest: str = "out/latest"
    progress: bool = True


def parse_args(argv: Sequence[str] | None = None) -> EvalConfig:
    """Parse the command line into an :class:`EvalConfig`."""
    p = argparse.ArgumentParser(prog="python -m sim.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", action="append", default=[], metavar="PATH",
                   help="checkpoint file, glob, or bare name resolved in out/latest/ (repeatable)")
    p.add_argument("--run", metavar="DIR", help="evaluate every checkpoint of this run directory")
    p.add_argument("--only", action="store_true", help="only the given checkpoints, not their run's comparison set")
    p.add_argument("--baseline", action="append", default=[], choices=BASELINES, dest="baselines",
                   help="add a baseline row (repeatable)")
    p.add_argument("--scenarios", default="procedural:test", help="suite name (procedural:test), file, or folder")
    p.add_argument("--scenario-cache", default="out/cache",
                   help="on-disk cache of generated bundled suites ('' to disable)")
    p.add_argument("--max-scenarios", type=int, default=0, help="evaluate only the first N scenes (0: all)")
    p.add_argument("--backend", choices=("kinematic", "carla"), default="kinematic")
    p.add_argument("--carla-host", default="localhost", help="CARLA host(s), comma-separated")
    p.add_argument("--carla-port", type=int, nargs="+", default=[2000], help="CARLA RPC port(s): one server each")
    p.add_argument("--agents", choices=("log", "idm"), default="log", help="other agents: log replay or IDM")
    p.add_argument("--batch-size", type=int, default=64, help="scenes simulated together")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (small tensors: 1 is fastest)")
    p.add_argument("--out", help="results file (default <run>/results.h5)")
    p.add_argument("--seed", type=int, default=0, help="torch and bootstrap seed")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--ray-address", help="Ray cluster address (default: start a local instance)")
    p.add_argument("--num-cpus", type=int, default=0, help="CPUs of a local Ray instance (0: all)")
    p.add_argument("--metric", default="score", help="metric that defines the best checkpoint in the verdict")
    p.add_argument("--n-resamples", type=int, default=999, help="scenario bootstrap resamples")
    p.add_argument("--latest", default="out/latest", help=argparse.SUPPRESS)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    a = p.parse_args(argv)
    d = vars(a)
    d["ckpt"], d["baselines"] = tuple(a.ckpt), tuple(dict.fromkeys(a.baselines))
    d["carla_port"] = tuple(a.carla_port)
    return EvalConfig(**d)


def _load_scenes(cfg: EvalConfig) -> list:
    try:
        from scenarios.suites import load_suite
    except ImportError:  # suites not available: files and folders still work
        from scenarios.formats import load_any

        if not Path(cfg.scenarios).exists():
            raise EvaluationError(f"--scenarios {cfg.scenarios}: no such file or folder") from None
        scenes = list(load_any(cfg.scenarios))
    else:
        cache = cfg.scenario_cache or None
        try:
            scenes = list(load_suite(cfg.scenarios, cache_dir=cache))
        except OSError:  # cache folder not writable: generate in memory
            scenes = list(load_suite(cfg.scenarios))
    if cfg.max_scenarios > 0:
        scenes = scenes[: cfg.max_scenarios]
    if not scenes:
        raise EvaluationError(f"--scenarios {cfg.scenarios}: no scenes")
    ids = [s.id for s in scenes]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise EvaluationError(f"--scenarios {cfg.scenarios}: scenario id {dup!r} appears more than once")
    return scenes


def _preflight_checkpoints(cands: Sequence[Candidate], device: str) -> None:
    from sim.executors import load_policy

    for c in cands:
        if not c.is_baseline:
            load_policy(c.path, device)


def _check_carla(cfg: EvalConfig) -> None:
    """Probe the CARLA server(s) before any work (the backend module is imported lazily)."""
    from sim.executors import carla_module

    mod = carla_module()
    endpoints = mod.parse_endpoints(cfg.carla_host, list(cfg.carla_port))
    if hasattr(mod, "check_servers"):
        mod.check_servers(endpoints)


def _ci(v: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of the mean over scenarios (NaN ignored)."""
    from scipy import stats

    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size < 2 or np.all(v == v[0]):
        return m, m, m
    lo, hi = stats.t.interval(level, v.size - 1, loc=m, scale=stats.sem(v))
    return m, float(lo), float(hi)


def summary_rows(stored: Sequence[Any], ids: Sequence[str]) -> list[dict[str, Any]]:
    """Per-row means and 95% intervals over ``ids`` of the table metrics."""
    out = []
    for s in stored:
        rows = s.rows.select(ids)
        r = {"key": s.key, "name": s.attrs.get("name", s.key), "kind": s.attrs.get("kind", ""),
             "episode": int(s.attrs.get("episode", -1)), "entropy": float(s.attrs.get("entropy", math.nan)),
             "roles": s.roles}
        for m, _ in TABLE_METRICS:
            r[m] = _ci(np.asarray(rows.metrics[m], dtype=np.float64))
        out.append(r)
    return out


def _cell(mean: float, lo: float, hi: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f} ±{max(hi - mean, mean - lo):.3f}"


def print_summary(console, rows: Sequence[dict[str, Any]], verdict: dict[str, Any] | None) -> None:
    """Rich table per checkpoint (mean ± 95% CI half-width over scenarios) and the verdict."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="Closed loop: mean ±95% CI over scenarios")
    t.add_column("checkpoint", no_wrap=True)
    for col in ("episode", "entropy", "roles"):
        t.add_column(col)
    for _, label in TABLE_METRICS:
        t.add_column(label, justify="right", no_wrap=True)
    for r in rows:
        roles = ",".join(x for x in r["roles"] if x != "candidate")
        cells = [r["name"], "-" if r["episode"] < 0 else str(r["episode"]),
                 "-" if math.isnan(r["entropy"]) else f"{r['entropy']:.3f}", roles]
        cells += [_cell(*r[m]) for m, _ in TABLE_METRICS]
        t.add_row(*cells, style="dim" if r["kind"] == "baseline" else None)
    console.print(t)
    if verdict is None or not verdict.get("rules"):
        if verdict is not None:
            console.print(f"[bold]Verdict:[/bold] {escape(verdict['sentence'])}")
        return
    rt = Table(title=f"Selection rules (best checkpoint by {verdict['metric']})")
    for col in ("rule", "picks", "episode", verdict["metric"], "rank", "regret"):
        rt.add_column(col)
    for name, e in verdict["rules"].items():
        if e is None:
            rt.add_row(name, "n/a", "", "", "", "")
        elif name == "random":
            rt.add_row(name, "uniform", "", f"{e['value']:.3f}", "", f"{e['expected_regret']:.3f} (expected)")
        else:
            rt.add_row(name, e["name"], str(e["episode"]), f"{e['value']:.3f}", str(e["rank"]), f"{e['regret']:.3f}")
    console.print(rt)
    console.print(f"[bold]Verdict:[/bold] {escape(verdict['sentence'])}")


def build_verdict(stored: Sequence[Any], ids: Sequence[str], cfg: EvalConfig) -> dict[str, Any]:
    """Verdict over the stored checkpoints (not baselines) that cover every scenario of this call."""
    from sim.metrics import REGISTRY

    cps = [s for s in stored if s.attrs.get("kind") == "checkpoint" and set(ids) <= set(s.rows.scenario_ids)]
    names = [m for m in REGISTRY if m != "collision_time" and all(m in s.rows.metrics for s in cps)]
    if cfg.metric not in REGISTRY:
        raise EvaluationError(f"--metric {cfg.metric}: unknown metric; choose from {', '.join(REGISTRY)}")
    inp = verdict_input_from_rows(
        keys=[s.key for s in cps],
        names=[s.attrs.get("name", s.key) for s in cps],
        episodes=[int(s.attrs.get("episode", -1)) for s in cps],
        entropy=[float(s.attrs.get("entropy", math.nan)) for s in cps],
        train_reward=[float(s.attrs.get("train_reward", math.nan)) for s in cps],
        roles=[s.roles for s in cps],
        metrics=[s.rows.select(ids).metrics for s in cps],
        metric_names=names,
    ) if cps else None
    if inp is None:
        return {"metric": cfg.metric, "n_checkpoints": 0, "n_scenarios": len(ids), "rules": {}, "best": None,
                "correlations": {}, "step_correlations": {}, "entropy_beats_step": False,
                "sentence": "No checkpoint results: nothing to judge."}
    return compute_verdict(inp, metric=cfg.metric, higher_is_better={m: REGISTRY[m].higher_is_better for m in names},
                           n_resamples=cfg.n_resamples, seed=cfg.seed)


def run(cfg: EvalConfig, console=None) -> dict[str, Any]:
    """Evaluate, write results and the verdict, print the summary. Returns the verdict."""
    from rich.console import Console

    from policy.checkpoint import read_checkpoint
    from sim.metrics import REGISTRY

    console = console or Console(width=None if sys.stdout.isatty() else 150)
    log = console.print
    if cfg.metric not in REGISTRY or cfg.metric == "collision_time":
        raise EvaluationError(f"--metric {cfg.metric}: unknown metric; choose from {', '.join(REGISTRY)}")
    if cfg.backend == "carla" and cfg.agents != "log":
        raise EvaluationError("--agents idm is not available with --backend carla (it replays logged agents only)")
    cands, run_dir = discover(cfg.ckpt, cfg.run, cfg.only, read_checkpoint, Path(cfg.latest), log=log)
    cands = cands + [baseline(b) for b in cfg.baselines]
    if not cands:
        raise EvaluationError("nothing to evaluate: give --ckpt, --run or --baseline")
    if cfg.out:
        out = Path(cfg.out)
    elif run_dir is not None:
        out = run_dir / "results.h5"
    else:
        raise EvaluationError("no run directory to put results.h5 in: give --out")
    writer = ResultsWriter(out)
    writer.preflight()
    with writer.lock():
        _preflight_checkpoints(cands, cfg.device)
        if cfg.backend == "carla":
            _check_carla(cfg)
        scenes = _load_scenes(cfg)
        ids = [s.id for s in scenes]
        scene_of = {s.id: s for s in scenes}
        done = writer.done()
        todo = {c.key: {i for i, s in enumerate(ids) if s not in done.get(c.key, set())} for c in cands}
        n_ck = sum(not c.is_baseline for c in cands)
        skipped = sum(len(ids) - len(v) for v in todo.values())
        log(f"Evaluating {n_ck} checkpoint(s) and {len(cands) - n_ck} baseline(s) on {len(scenes)} scenes "
            f"({cfg.scenarios}, backend {cfg.backend}) -> {out}")
        if skipped:
            log(f"Resuming: {skipped} (checkpoint, scenario) pairs already in {out.name} are skipped")
        root = {"backend": cfg.backend, "suite": cfg.scenarios, "config": to_json(asdict(cfg)),
                "run_dir": str(run_dir) if run_dir else ""}
        shards = make_shards(scenes, cfg.batch_size)
        units = make_units(cands, shards, todo)
        settings = SimSettings(backend=cfg.backend, device=cfg.device, agents=cfg.agents, seed=cfg.seed,
                               threads=cfg.threads, carla_host=cfg.carla_host, carla_ports=cfg.carla_port)
        if not out.exists() or units:
            writer.prepare(scenes, root)
        by_key = {c.key: c for c in cands}

        def commit(key: str, rows: CheckpointRows) -> None:
            c = by_key[key]
            writer.commit(key, c.attrs(cfg.backend), rows, [scene_of[i] for i in rows.scenario_ids], root)

        if units:
            executor = make_executor(cfg.executor, cfg.ray_address, cfg.num_cpus or None)
            try:
                run_units(executor, units, scenes, settings, commit, progress=cfg.progress)
            finally:
                executor.close()
        stored = {s.key: s for s in read_checkpoints(out)}
        verdict = build_verdict(list(stored.values()), ids, cfg)
        writer.write_verdict(verdict, root)
        shown = [stored[c.key] for c in cands if c.key in stored]
        print_summary(console, summary_rows(shown, ids), verdict)
    log(f"Results: {out}")
    return verdict


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: one-line errors on stderr, non-zero exit."""
    from policy.checkpoint import CheckpointError
    from scenarios.scenario import ScenarioError
    from sim.config import SimError

    errors: tuple[type[BaseException], ...] = (EvaluationError, CheckpointError, ScenarioError, SimError, OSError)
    try:
        from sim.carla import CarlaError

        errors += (CarlaError,)
    except ImportError:
        pass
    cfg = parse_args(argv)
    try:
        run(cfg)
    except errors as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt:
        print("interrupted: completed checkpoints are saved; run again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
