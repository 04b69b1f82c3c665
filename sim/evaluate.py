"""``python -m sim.evaluate``: closed-loop evaluation of a run's checkpoints, HDF5 results, verdict.

Example (right after ``python -m training.train --episodes 500``)::

    python -m sim.evaluate --ckpt best_entropy.pt

``best_entropy.pt`` resolves in ``out/latest/``; since it belongs to a run, the run's whole
comparison set is evaluated (``--only`` to evaluate just the given files). Results go to
``<run>/results.h5`` (schema: ``docs/results_schema.md``), a run's other scenario sets to their own file beside
it (``sim.results.identity.run_results_path``); pairs already there are skipped. A results file is one
experiment: a call of another run, set, setting or metric version is refused with the ``--out`` to use.
A thin CLI: the flags are generated from :class:`EvalConfig`; the work is done in :mod:`sim.evaluation`.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from scenarios.cli_config import (
    PORT,
    SEED,
    OneLineParser,
    RangeError,
    above,
    add_dataclass_arguments,
    at_least,
    check_ranges,
    dataclass_from_args,
)
from scenarios.suites import DEFAULT_CACHE_DIR, prepared_dir
from sim.batch import select_agents
from sim.evaluation.budget_run import run_budget_cfg
from sim.evaluation.candidates import (
    BASELINES,
    Candidate,
    SkippedCheckpoint,
    baseline,
    comparison_set,
    discover,
    select_after,
    split_by_run,
)
from sim.evaluation.executors import (
    EXECUTORS,
    MAX_ROLLOUTS,
    SimSettings,
    check_rollouts,
    make_executor,
    make_shards,
    make_units,
    run_units,
)
from sim.evaluation.plugin_candidates import plugin_candidates
from sim.evaluation.settings import identity_root
from sim.evaluation.signal_run import SignalPlan, fill_candidates, plan_signals, ranking_lines
from sim.evaluation.signal_run import judge as judge_signals_of
from sim.metrics.catalogue import JUDGED_METRICS
from sim.results.errors import EvaluationError
from sim.results.identity import run_results_path
from sim.results.reader import read_checkpoints, read_scenarios
from sim.results.run_folder import RESULTS_NAME, reused_scenes_line
from sim.results.schema import CheckpointRows, scene_record
from sim.results.store import ResultsWriter
from sim.selection.budget import budget_lines, check_budget
from sim.selection.report import build_verdict, console_width, print_summary, summary_rows
from sim.selection.variance import rollouts_lines, rollouts_section
from sim.selection.verdict import Verdict

MAX_BATCH = 65_536
"""Largest ``--batch-size`` (scenes simulated together)."""
MAX_RESAMPLES = 1_000_000
"""Largest ``--n-resamples`` of the scenario bootstrap."""


def _f(default, help: str, **kw):  # noqa: A002 - argparse's word
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one ``sim.evaluate`` call; every field is a flag (``--help``)."""

    ckpt: tuple[str, ...] = _f((), "checkpoint file, quoted glob, folder (foreign agents), or bare name resolved "
                                   "in out/latest/", metavar="PATH")
    agent: str = _f("own", "agent plug-in that loads the checkpoints: own, sb3, torchscript or MODULE:FACTORY",
                    metavar="NAME")
    signals: str | None = _f(None, "training log to judge every signal of: entropy_history.json, TensorBoard folder, "
                             "CSV or JSON lines (default: the run's entropy_history.json)", metavar="PATH")
    signal_names: tuple[str, ...] = _f((), "a scalar the training log must hold (raw or judged name); every "
                                       "scalar is judged", flag="signal", metavar="NAME")
    run: str | None = _f(None, "evaluate every checkpoint of this run directory", metavar="DIR")
    only: bool = _f(False, "only the given checkpoints, not their run's comparison set")
    baselines: tuple[str, ...] = _f((), "add baseline rows", choices=BASELINES, flag="baseline")
    scenarios: str = _f("procedural:test", "suite name (procedural:test), file, or folder")
    scenario_cache: str = _f(DEFAULT_CACHE_DIR, "on-disk cache of generated bundled suites and of prepared scenes "
                             "(road grids, lane pieces; keyed by content) ('' to disable)")
    max_scenarios: int = _f(0, "evaluate only the first N scenes (0: all)", range=at_least(0))
    scenario_types: str = _f("", "evaluate only scenes of any of these scenario types, comma-separated "
                             "(scenarios/types.py: starting_left_turn, changing_lane, ...; '': all)", metavar="A,B")
    strict: bool = _f(False, "stop at the first unusable scene file instead of skipping it")
    backend: str = _f("kinematic", "simulator", choices=("kinematic", "carla"))
    carla_host: str = _f("localhost", "CARLA host(s), comma-separated")
    carla_port: tuple[int, ...] = _f((2000,), "CARLA RPC port(s): one server each, scenes spread across them",
                                     range=PORT)
    agents: str = _f("log", "other agents: log replay or IDM", choices=("log", "idm"))
    batch_size: int = _f(64, "scenes simulated together", range=at_least(1, MAX_BATCH))
    device: str = _f("cpu", "torch device: cpu, cuda, cuda:N, or auto (CUDA only from a batch size where it is "
                              "faster; the choice is printed)")
    threads: int = _f(1, "torch CPU threads per process (small tensors: 1 is fastest)", range=at_least(1, 1024))
    compile: bool = _f(False, "torch.compile the hot parts (sim.compiled.StepCompile: observation, controller, "
                       "the metrics' candidate filters and route projection; continuous metrics differ from "
                       "eager's at float32 round-off, a borderline boolean one can flip; about 20 s to compile "
                       "per process: pays on long sweeps); falls back to eager with a warning")
    out: str | None = _f(None, "results file, one experiment each (default <run>/results.h5; a run's other "
                               "scenario sets: <run>/results.<set>.h5)")
    consolidate: bool = _f(False, "at the end, copy the sidecar commits into one self-contained results file")
    seed: int = _f(0, "torch and bootstrap seed", range=SEED)
    executor: str = _f("local", "where work units run: this process, worker processes here, or Ray",
                       choices=EXECUTORS)
    ray_address: str | None = _f(None, "Ray cluster address (default: start a local instance)")
    num_cpus: int = _f(0, "worker processes (--executor processes) or CPUs of a local Ray instance (0: all)",
                       range=at_least(0))
    metric: str = _f("score", "metric that defines the best checkpoint in the verdict")
    budget: float = _f(0.0, "budgeted selection: at most N (checkpoint, scene) rollouts, or a fraction in (0, 1] of "
                       "the full sweep; clearly worse checkpoints stop receiving scenes, the race stops once one is "
                       "best with probability --confidence (docs/selection.md; 0: full sweep)", metavar="N",
                       range=at_least(0))
    confidence: float = _f(0.95, "--budget stops once one checkpoint is best by --metric with this probability, "
                           "in (0, 1]", metavar="P", range=above(0, 1))
    rollouts: int = _f(0, "besides the mean action, run each (checkpoint, scene) K more times with actions sampled "
                       "from the policy's Gaussian head (seeded by --seed), stored beside the mean-action rows, and "
                       f"report the variance within and between scenes (0 to {MAX_ROLLOUTS}; 0: mean action only)",
                       metavar="K", range=at_least(0, MAX_ROLLOUTS))
    n_resamples: int = _f(999, "scenario bootstrap resamples", range=at_least(1, MAX_RESAMPLES))
    latest: str = _f("out/latest", "the run folder that bare --ckpt names resolve in")
    progress: bool = _f(True, "progress bar")

    def __post_init__(self) -> None:
        object.__setattr__(self, "baselines", tuple(dict.fromkeys(self.baselines)))
        try:
            check_ranges(self)
            check_budget(self.budget)
        except (RangeError, ValueError) as e:
            raise EvaluationError(str(e)) from None
        try:
            check_rollouts(self.rollouts)
        except ValueError as e:
            raise EvaluationError(str(e)) from None


def parse_args(argv: Sequence[str] | None = None) -> EvalConfig:
    """Parse the command line into an :class:`EvalConfig` (``--ckpt`` and ``--baseline`` may repeat)."""
    p = OneLineParser(prog="python -m sim.evaluate", description=__doc__.split("\n")[0])
    add_dataclass_arguments(p, EvalConfig, exclude=("ckpt", "baselines", "signal_names"))
    p.add_argument("--ckpt", action="append", metavar="PATH", default=argparse.SUPPRESS,
                   help=EvalConfig.__dataclass_fields__["ckpt"].metadata["help"] + " (repeatable)")
    p.add_argument("--signal", action="append", metavar="NAME", dest="signal_names", default=argparse.SUPPRESS,
                   help=EvalConfig.__dataclass_fields__["signal_names"].metadata["help"] + " (repeatable)")
    p.add_argument("--baseline", action="append", choices=BASELINES, dest="baselines", default=argparse.SUPPRESS,
                   help="add a baseline row (repeatable)")
    return dataclass_from_args(EvalConfig, p.parse_args(argv))


def _wanted_types(cfg: EvalConfig) -> set[str]:
    """The scenario types of ``--scenario-types`` (empty: every scene); an unknown name is an EvaluationError."""
    from scenarios.types import parse_types

    try:
        return set(parse_types(cfg.scenario_types))
    except ValueError as e:
        raise EvaluationError(str(e)) from None


def _load_scenes(cfg: EvalConfig, log):
    """Scenes of ``--scenarios`` (``scenarios.loading.load_scenes``) and the ones skipped, with reasons."""
    from scenarios.loading import duplicate_line, load_scenes
    from scenarios.types import scenario_types

    wanted = _wanted_types(cfg)
    try:
        report = load_scenes(cfg.scenarios, cache_dir=cfg.scenario_cache or None, strict=cfg.strict,
                             progress=cfg.progress)
    except OSError:  # cache folder not writable: generate in memory
        report = load_scenes(cfg.scenarios, strict=cfg.strict, progress=cfg.progress)
    scenes = list(report.scenes)
    if wanted:
        n_all = len(scenes)
        scenes = [s for s in scenes if wanted & set(scenario_types(s))]
        log(f"--scenario-types {cfg.scenario_types}: {len(scenes)} of {n_all} scenes")
        if not scenes and n_all:
            raise EvaluationError(f"--scenario-types {cfg.scenario_types}: no scene of these types among the "
                                  f"{n_all} scenes of --scenarios {cfg.scenarios}")
    scenes = scenes[: cfg.max_scenarios or None]
    if not scenes:
        raise EvaluationError(f"--scenarios {cfg.scenarios}: no scenes")
    dups = report.duplicates(len(scenes))
    if dups:
        more = f" (and {len(dups) - 1} more repeated ids)" if len(dups) > 1 else ""
        raise EvaluationError(f"--scenarios {cfg.scenarios}: {duplicate_line(dups[0])}{more}; results are keyed by "
                              "scene id: rename or remove one")
    for note in report.notes:
        log(f"note: {note}")
    for s in report.skipped:
        log(s.line())
    return scenes, list(report.skipped)


def _preflight(cfg: EvalConfig, cands: Sequence[Candidate]) -> None:
    """Load every checkpoint once and probe the CARLA servers before any work."""
    from sim.evaluation.executors import carla_endpoints, load_policy

    for c in cands:
        if not c.is_baseline and cfg.agent == "own":  # other plug-ins loaded each file when building the set
            load_policy(c.path, cfg.device)
    if cfg.backend == "carla":
        from sim.evaluation.carla_pool import check_servers

        check_servers(carla_endpoints(cfg.carla_host, cfg.carla_port))


def _output(cfg: EvalConfig, run_dir: Path | None) -> Path:
    if cfg.out:
        return Path(cfg.out)
    if run_dir is not None:
        return run_results_path(run_dir, cfg.scenarios, cfg.agents, cfg.rollouts)  # results.h5, or its own file
    raise EvaluationError("no run directory to put results.h5 in: give --out")


def signal_verdict_doc(plan: SignalPlan | None, stored: dict, ids: Sequence[str], cands: Sequence[Candidate],
                       cfg: EvalConfig) -> tuple[dict | None, list[str]]:
    """The signal verdict as stored in ``/verdict`` attribute ``signals_json`` (docs/results_schema.md) and its
    printout, or (None, [])."""
    if plan is None:
        return None, []
    rows = {k: stored[k].rows.select(ids).metrics[cfg.metric] for k in plan.keys
            if k in stored and set(ids) <= set(stored[k].rows.scenario_ids)}
    v = judge_signals_of(plan, rows, cfg.metric, cfg.n_resamples, cfg.seed)
    if v is None:
        return None, []
    names = {c.key: c.name for c in cands if c.key in rows}
    doc = {**v.to_dict(), "source": plan.source, "agent": cfg.agent, "checkpoint_names": names}
    return doc, ranking_lines(v, names)


def run(cfg: EvalConfig, console=None) -> Verdict:
    """Evaluate, write results and the verdict, print the summary, one verdict per run.

    Checkpoints of several runs (``--ckpt s0/best_entropy.pt --ckpt s1/best_entropy.pt``) are never pooled:
    each run is evaluated into its own ``<run>/results.h5`` with its own roles and verdict. Returns the
    verdict of the last run.
    """
    from rich.console import Console

    from policy.checkpoint import read_checkpoint
    from policy.device import pick_device

    console = console or Console(width=console_width())
    log = functools.partial(console.print, soft_wrap=True)  # log lines are never wrapped; tables fit the width
    if cfg.metric not in JUDGED_METRICS:
        raise EvaluationError(f"--metric {cfg.metric}: unknown metric; choose from {', '.join(JUDGED_METRICS)}")
    if cfg.backend == "carla" and cfg.agents != "log":
        raise EvaluationError("--agents idm is not available with --backend carla (it replays logged agents only)")
    if cfg.backend == "carla" and cfg.rollouts:
        raise EvaluationError("--rollouts is not available with --backend carla (one rollout per scene and server)")
    if cfg.num_cpus < 0:
        raise EvaluationError(f"--num-cpus must be >= 0 (0: all CPUs), got {cfg.num_cpus}")
    _wanted_types(cfg)
    device, why = pick_device(cfg.device, cfg.batch_size)
    if cfg.device == "auto":
        log(f"device: {why}")
    cfg = replace(cfg, device=str(device))
    bad_ckpts: list[SkippedCheckpoint] = []  # acting weights not finite: recorded, never evaluated
    if cfg.agent == "own":
        cands, run_dir = discover(cfg.ckpt, cfg.run, cfg.only, read_checkpoint, Path(cfg.latest), log=log,
                                  skipped=bad_ckpts)
    elif cfg.run is not None or not cfg.ckpt:
        raise EvaluationError(f"--agent {cfg.agent}: give the checkpoints with --ckpt (--run is for this "
                              "project's own runs)")
    else:
        cands, run_dir = plugin_candidates(cfg.ckpt, cfg.agent, cfg.device, Path(cfg.latest), log)
    for s in bad_ckpts:
        log(s.line())
    groups = split_by_run(cands, run_dir)
    bases = [baseline(b) for b in cfg.baselines]
    if not cands and not bases:
        raise EvaluationError(f"nothing to evaluate: {len(bad_ckpts)} checkpoint(s) skipped for non-finite weights"
                              if bad_ckpts else "nothing to evaluate: give --ckpt, --run or --baseline")
    if len(groups) > 1 and cfg.out:
        raise EvaluationError(f"--out {cfg.out}: the checkpoints belong to {len(groups)} runs "
                              f"({', '.join(str(g[0] or 'no run') for g in groups)}); runs are never pooled into one "
                              "verdict: drop --out and each run's results go to <run>/results.h5")
    if cfg.signals and not groups:
        raise EvaluationError(f"--signals {cfg.signals}: a training log judges checkpoints, and none are given "
                              "(add --ckpt or --run)")
    if len(groups) > 1 and cfg.signals:
        raise EvaluationError(f"--signals {cfg.signals}: one training log belongs to one run, and the checkpoints "
                              f"belong to {len(groups)} runs; evaluate each run with its own --signals")
    plans = {}
    for rd, group in groups:  # read and match every training log before anything is written
        plans[rd] = plan_signals(cfg.signals, cfg.signal_names, group, rd, log)
    _preflight(cfg, cands)
    scenes, skipped = _load_scenes(cfg, log)
    verdict: Verdict | None = None
    for rd, group in groups or [(run_dir, [])]:
        plan = plans.get(rd)
        own_bad = [s for s in bad_ckpts if s.run_dir == (str(rd) if rd else None)]
        verdict = _evaluate_run(cfg, console, rd, fill_candidates(group, plan) + bases, scenes, own_bad + skipped,
                                plan)
    assert verdict is not None
    return verdict


def _evaluate_run(cfg: EvalConfig, console, run_dir: Path | None, cands: Sequence[Candidate], scenes,
                  skipped, plan: SignalPlan | None = None) -> Verdict:
    """Evaluate one run's comparison set (plus baselines) into its results file; its verdict (and the verdict
    over every training signal of ``plan``, stored beside it)."""
    log = functools.partial(console.print, soft_wrap=True)  # log lines are never wrapped; tables fit the width
    out = _output(cfg, run_dir)
    writer = ResultsWriter(out)
    writer.preflight()
    label = run_dir.name if run_dir else out.stem
    if out.name != RESULTS_NAME and not cfg.out:
        log(f"Scenario set {cfg.scenarios} with agents {cfg.agents}" + (f", --rollouts {cfg.rollouts}" if cfg.rollouts
            else "") + f" has its own results file: {out} ({RESULTS_NAME} holds another experiment)")
    reused = reused_scenes_line(run_dir, [s.id for s in scenes])
    if reused:
        from rich.markup import escape

        log(escape(reused))
    with writer.lock():
        ids = [s.id for s in scenes]
        scene_of = {s.id: s for s in scenes}
        root = identity_root(out, cfg.agents, cfg.backend, scenes, cands, asdict(cfg), run_dir=run_dir)
        root.update({"backend": cfg.backend, "suite": cfg.scenarios, "run_dir": str(run_dir) if run_dir else ""})
        done = writer.done()
        todo = {c.key: {i for i, s in enumerate(ids) if s not in done.get(c.key, set())} for c in cands}
        n_ck = sum(not c.is_baseline for c in cands)
        n_files = sum(len(c.files) for c in cands if not c.is_baseline)
        log(f"Run {label}: evaluating {n_ck} distinct policies ({n_files} checkpoint files) and "
            f"{len(cands) - n_ck} baseline(s) on {len(scenes)} scenes ({cfg.scenarios}, backend {cfg.backend}, "
            f"agents {cfg.agents}) -> {out}")
        for c in cands:
            if " = " in c.name:
                log(f"  one policy, counted once: {c.name} (same acting weights)")
        n_done = sum(len(ids) - len(v) for v in todo.values())
        if n_done:
            log(f"Resuming: {n_done} (checkpoint, scenario) pairs already in {out.name} with the same settings "
                "are skipped")
        units = make_units(cands, make_shards(scenes, cfg.batch_size), todo)
        settings = SimSettings(backend=cfg.backend, device=cfg.device, agents=cfg.agents, seed=cfg.seed,
                               threads=cfg.threads, carla_host=cfg.carla_host, carla_ports=cfg.carla_port,
                               agent=cfg.agent, compile=cfg.compile, rollouts=cfg.rollouts,
                               scene_cache=prepared_dir(cfg.scenario_cache))
        if not out.exists() or units:
            writer.prepare([scene_record(s, select_agents(s, settings.max_agents)[1]) for s in scenes], root)
        writer.write_skipped(skipped)
        by_key = {c.key: c for c in cands}

        def commit(key: str, rows: CheckpointRows) -> None:
            writer.commit(key, by_key[key].attrs(cfg.backend), rows, [scene_of[i] for i in rows.scenario_ids], root)

        race, vids = None, ids  # --budget: the race's section of the verdict, judged on its common scenes
        if cfg.budget:
            race, vids = run_budget_cfg(cfg, cands, scenes, settings, out, commit)
        elif units:
            executor = make_executor(cfg.executor, cfg.ray_address, cfg.num_cpus or None)
            try:
                run_units(executor, units, scenes, settings, commit, progress=cfg.progress)
            finally:
                executor.close()
        stored = {s.key: s for s in read_checkpoints(out)}
        expected = comparison_set(cands)
        verdict = build_verdict(list(stored.values()), vids, cfg.metric, cfg.n_resamples, cfg.seed,
                                expected=expected if run_dir is not None else None,
                                after_episode=select_after(run_dir),
                                types={i.id: i.types for i in read_scenarios(out)})
        if race is not None:
            verdict["budget"] = race
        if cfg.rollouts:
            verdict["rollouts"] = rollouts_section({k: s.rows.sampled for k, s in stored.items()
                                                    if s.rows.sampled is not None},
                                                   {c.key: c.name for c in cands}, vids, cfg.metric, cfg.rollouts)
        sv, sv_lines = signal_verdict_doc(plan, stored, vids, cands, cfg)
        writer.write_verdict(verdict, root, signals=sv)
        shown = [stored[c.key] for c in cands if c.key in stored]
        print_summary(console, summary_rows(shown, vids), verdict, skipped, run=label)
        from rich.markup import escape

        extra = rollouts_lines(verdict["rollouts"]) if cfg.rollouts else []
        for line in sv_lines + (budget_lines(race) if race else []) + extra:
            log(escape(line))
    if cfg.consolidate:
        writer.consolidate()
    log(f"Results: {out}")
    return verdict


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: one-line errors on stderr, non-zero exit."""
    from policy.checkpoint import CheckpointError
    from policy.device import DeviceError
    from scenarios.scenario import ScenarioError
    from sim.config import SimError
    from sim.evaluation.plugins import AgentError
    from sim.selection.signals import SignalError

    errors: tuple[type[BaseException], ...] = (EvaluationError, CheckpointError, ScenarioError, SimError, OSError,
                                               DeviceError, AgentError, SignalError)
    try:
        from sim.backends.carla import CarlaError

        errors += (CarlaError,)
    except ImportError:
        pass
    try:
        cfg = parse_args(argv)
    except SystemExit as e:  # --help, or a flag refused with one line
        return e.code if isinstance(e.code, int) else 2
    except errors as e:  # a value the config refuses as a whole (--budget 2.5)
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
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
