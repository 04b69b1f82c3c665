"""The evaluation as a plain function: :func:`run` takes an :class:`~sim.evaluation.config.EvalConfig` and does what
``python -m sim.evaluate`` does (load the scenes and the comparison set, simulate the missing pairs with an executor,
commit them, judge the selection rules, print the summary); the CLI only parses flags and maps errors to exit codes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

from scenarios.scene_file import SceneFile, scene_ids, take
from scenarios.suites import prepared_dir
from sim.batch import agents_dropped
from sim.evaluation.budget_run import check_budget, run_budget_cfg
from sim.evaluation.candidates import (
    RUN_ATTRS,
    Candidate,
    SkippedCheckpoint,
    baseline,
    comparison_set,
    discover,
    select_after,
    split_by_run,
    stale_attrs,
)
from sim.evaluation.config import EvalConfig
from sim.evaluation.executors import make_executor, pick_executor, run_units
from sim.evaluation.plugin_candidates import plugin_candidates
from sim.evaluation.settings import identity_root
from sim.evaluation.signal_run import (
    LOG_ATTRS,
    SignalPlan,
    fill_candidates,
    plan_signals,
    ranking_lines,
    stale_note,
)
from sim.evaluation.signal_run import judge as judge_signals_of
from sim.evaluation.units import SimSettings, batches_held, make_shards, make_units
from sim.metrics.catalogue import JUDGED_METRICS, METRICS_VERSION
from sim.results.errors import EvaluationError
from sim.results.identity import run_results_path, scene_digest
from sim.results.reader import read_checkpoints
from sim.results.run_folder import RESULTS_NAME, SAME_POLICY, reused_scenes_line, step_unit
from sim.results.schema import CheckpointRows, scene_record
from sim.results.store import ResultsWriter
from sim.selection.budget import budget_lines
from sim.selection.report import build_verdict, console_width, print_summary, summary_rows
from sim.selection.variance import rollouts_lines, rollouts_section
from sim.selection.verdict import Verdict


def _wanted_types(cfg: EvalConfig) -> set[str]:
    """The scenario types of ``--scenario-types`` (empty: every scene); an unknown name is an EvaluationError."""
    from scenarios.types import parse_types

    try:
        return set(parse_types(cfg.scenario_types))
    except ValueError as e:
        raise EvaluationError(str(e)) from None


def _load_scenes(cfg: EvalConfig, log):
    """Scenes of ``--scenarios`` (``scenarios.loading.load_scenes``) and the ones skipped, with reasons."""
    from scenarios.loading import load_scenes
    from scenarios.types import scenario_types

    wanted = _wanted_types(cfg)
    window = cfg.scene_window or None  # more scenes than a window: streamed from a version-3 file, not held
    try:
        report = load_scenes(cfg.scenarios, cache_dir=cfg.scenario_cache or None, strict=cfg.strict,
                             progress=cfg.progress, window=window)
    except OSError as e:  # cache folder not writable: generate in memory, and say so
        log(f"note: --scenario-cache {cfg.scenario_cache}: not a writable folder ({str(e).splitlines()[0]}); "
            "scenes are generated in memory this time")
        report = load_scenes(cfg.scenarios, strict=cfg.strict, progress=cfg.progress, window=window)
    scenes = report.scenes
    if isinstance(scenes, SceneFile):
        log(f"Streaming {len(scenes)} scenes from {scenes.path} (more than --scene-window {cfg.scene_window}: "
            "decoded when needed, not held)")
    idx = list(range(len(scenes)))  # the scenes evaluated, as indices into the loaded ones
    if wanted:
        idx = [i for i, s in enumerate(scenes) if wanted & set(scenario_types(s))]
        log(f"--scenario-types {cfg.scenario_types}: {len(idx)} of {len(scenes)} scenes")
        if not idx and len(scenes):
            raise EvaluationError(f"--scenario-types {cfg.scenario_types}: no scene of these types among the "
                                  f"{len(scenes)} scenes of --scenarios {cfg.scenarios}")
    idx, repeated = _first_of_each_id(cfg, scenes, report.files, idx)
    idx = idx[: cfg.max_scenarios or None]
    if not idx:
        raise EvaluationError(f"--scenarios {cfg.scenarios}: no scenes")
    if len(idx) < len(scenes):
        scenes = take(scenes, idx)
    for note in report.notes:
        log(f"note: {note}")
    skipped = list(report.skipped) + repeated
    for s in skipped:
        log(s.line())
    return scenes, skipped


def _first_of_each_id(cfg: EvalConfig, scenes, files: Sequence[str], idx: list[int]):
    """``idx`` without the scenes whose id an earlier one has (results are keyed by scene id), and those as
    skipped scenes naming both files (:func:`scenarios.loading.first_of_each_id`); with ``--strict`` the first
    repeat is an error instead."""
    from scenarios.loading import first_of_each_id

    keep, repeated = first_of_each_id(scene_ids(scenes), files, idx, used_as="the first is evaluated")
    if repeated and cfg.strict:
        raise EvaluationError(f"--scenarios {cfg.scenarios}: {repeated[0].reason.split(';')[0]}; results are keyed "
                              "by scene id: rename or remove one (--strict)")
    return keep, repeated


def _preflight(cfg: EvalConfig, cands: Sequence[Candidate]) -> None:
    """Load every checkpoint once and probe the CARLA servers before any work."""
    from sim.evaluation.unit_eval import carla_endpoints, load_policy

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
        return None, [f"Training signals not judged: --metric {cfg.metric} is not applicable on any scene these "
                      "checkpoints share"] if rows else []
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
    bad_ckpts: list[SkippedCheckpoint] = []  # acting weights (or a plug-in's probe output) not finite: recorded
    if cfg.agent == "own":
        cands, run_dir = discover(cfg.ckpt, cfg.run, cfg.only, read_checkpoint, Path(cfg.latest), log=log,
                                  skipped=bad_ckpts)
    elif cfg.run is not None or not cfg.ckpt:
        raise EvaluationError(f"--agent {cfg.agent}: give the checkpoints with --ckpt (--run is for this "
                              "project's own runs)")
    else:
        cands, run_dir = plugin_candidates(cfg.ckpt, cfg.agent, cfg.device, Path(cfg.latest), log,
                                           sampling=cfg.rollouts > 0, skipped=bad_ckpts)
    for s in bad_ckpts:
        log(s.line())
    groups = split_by_run(cands, run_dir)
    bases = [baseline(b) for b in cfg.baselines]
    if not cands and not bases:
        raise EvaluationError(f"nothing to evaluate: {len(bad_ckpts)} checkpoint(s) skipped, every one given "
                              f"({bad_ckpts[0].file}: {bad_ckpts[0].reason})"
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


def _scene_digests(scenes) -> dict[str, str]:
    """Each scene's digest (:func:`sim.results.identity.scene_digest`: types are not part of it, so none are mined
    here), from its record built and dropped one scene at a time (memory never holds every scene twice)."""
    return {s.id: scene_digest(scene_record(s, types=())) for s in scenes}


def _store_scenes(writer: ResultsWriter, scenes, root: dict, skipped, max_agents: int, write: bool
                  ) -> dict[str, tuple[str, ...]]:
    """Mine each scene's types and, when ``write``, store the scenes not yet in the file (each record built with
    its types, one at a time) and the skipped list; returns the types (the verdict's strata)."""
    from scenarios.types import scenario_types

    types = {s.id: scenario_types(s) for s in scenes}
    if write:
        writer.prepare(scenes, root, record=lambda s: scene_record(s, agents_dropped(s, max_agents), types=types[s.id]))
    writer.write_skipped(skipped)
    return types


def _evaluate_run(cfg: EvalConfig, console, run_dir: Path | None, cands: Sequence[Candidate], scenes,
                  skipped, plan: SignalPlan | None = None) -> Verdict:
    """Evaluate one run's comparison set (plus baselines) into its results file; its verdict (and the verdict
    over every training signal of ``plan``, stored beside it)."""
    from rich.markup import escape

    log = functools.partial(console.print, soft_wrap=True)  # log lines are never wrapped; tables fit the width
    if cfg.budget:
        check_budget(cands, scenes, cfg.budget)  # refused before anything is written
    out = _output(cfg, run_dir)
    writer = ResultsWriter(out)
    writer.preflight()
    label = run_dir.name if run_dir else out.stem
    if out.name != RESULTS_NAME and not cfg.out:
        log(f"Scenario set {cfg.scenarios} with agents {cfg.agents}" + (f", --rollouts {cfg.rollouts}" if cfg.rollouts
            else "") + f" has its own results file: {out} ({RESULTS_NAME} holds another experiment)")
    reused = reused_scenes_line(run_dir, scene_ids(scenes))
    if reused:
        log(escape(reused))
    with writer.lock():
        ids = scene_ids(scenes)
        index_of = {sid: i for i, sid in enumerate(ids)}
        shards = make_shards(scenes, cfg.batch_size)
        settings = SimSettings(backend=cfg.backend, device=cfg.device, agents=cfg.agents, seed=cfg.seed,
                               threads=cfg.threads, carla_host=cfg.carla_host, carla_ports=cfg.carla_port,
                               agent=cfg.agent, compile=cfg.compile, rollouts=cfg.rollouts,
                               scene_cache=prepared_dir(cfg.scenario_cache),
                               batches_held=batches_held(shards, cfg.scene_window))
        digests = _scene_digests(scenes)
        root = identity_root(out, cfg.agents, cfg.backend, digests, cands, asdict(cfg), run_dir=run_dir)
        root.update({"backend": cfg.backend, "suite": cfg.scenarios, "run_dir": str(run_dir) if run_dir else ""})
        done = writer.done()
        todo = {c.key: {i for i, s in enumerate(ids) if s not in done.get(c.key, set())} for c in cands}
        n_ck = sum(not c.is_baseline for c in cands)
        n_files = sum(len(c.files) for c in cands if not c.is_baseline)
        log(f"Run {label}: evaluating {n_ck} distinct policies ({n_files} checkpoint files) and "
            f"{len(cands) - n_ck} baseline(s) on {len(scenes)} scenes ({cfg.scenarios}, backend {cfg.backend}, "
            f"agents {cfg.agents}, metrics version {METRICS_VERSION}) -> {out}")
        for c in cands:
            if SAME_POLICY in c.name:
                log(f"  one policy, counted once: {c.name} (same acting weights)")
        n_done = sum(len(ids) - len(v) for v in todo.values())
        if n_done:
            log(f"Resuming: {n_done} (checkpoint, scenario) pairs already in {out.name} with the same settings "
                "are skipped")
        units = make_units(cands, shards, todo, cfg.scene_window)
        executor = results = None
        if cfg.budget and cfg.executor == "auto":  # a budget's rounds are short: worker processes would not pay
            name, why = "local", "auto: --budget runs short rounds of rollouts, in this process"
        else:
            name, why = pick_executor(cfg.executor, sum(len(u.scenes) for u in units), len(shards), settings,
                                      cfg.num_cpus or None)
        if why and units:
            log(f"Executor {name} ({why})")
        if units and not cfg.budget:  # started now: its first batch, or its workers, start up beside the scene writes
            executor = make_executor(name, cfg.ray_address, cfg.num_cpus or None)
            results = executor.run(units, scenes, settings)
        # the scenes' types and records are written on a thread of their own while the rollouts start; every commit
        # waits for them (a commit links to its scenes), and so does the verdict (the types are its strata)
        side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scene-writer")
        failed: dict[str, SkippedCheckpoint] = {}  # the agent returned a NaN or an infinity: skipped, not scored
        try:
            stored_scenes = side.submit(_store_scenes, writer, scenes, root, skipped, settings.max_agents,
                                        not out.exists() or bool(units))
            by_key = {c.key: c for c in cands}

            def commit(key: str, rows: CheckpointRows) -> None:
                stored_scenes.result()
                writer.commit(key, by_key[key].attrs(cfg.backend), rows,
                              take(scenes, [index_of[i] for i in rows.scenario_ids]), root)

            def fail(key: str, reason: str) -> None:
                failed[key] = SkippedCheckpoint(by_key[key].path, "", reason, str(run_dir) if run_dir else None)
                log(failed[key].line())

            race, vids = None, ids  # --budget: the race's section of the verdict, judged on its common scenes
            if cfg.budget:
                race, vids = run_budget_cfg(replace(cfg, executor=name), cands, scenes, settings, out, commit)
            elif executor is not None:
                run_units(executor, units, scenes, settings, commit, progress=cfg.progress, results=results,
                          on_failed=fail)
            types = stored_scenes.result()
            if failed:
                skipped = [*skipped, *failed.values()]
                writer.write_skipped(skipped)
        finally:
            side.shutdown(wait=True, cancel_futures=True)
            if executor is not None:
                executor.close()
        cands = [c for c in cands if c.key not in failed]  # a failed checkpoint is out of this call's verdict
        stored = {s.key: s for s in read_checkpoints(out) if s.key not in failed}
        records = {k: s.record for k, s in stored.items()}
        # pairs stored by an earlier call keep its attributes: this call's verdict follows this call's training log
        # and, over a run's whole comparison set, the run's current roles and files (a resumed training moves last)
        stale = stale_attrs(cands, records, cfg.backend, LOG_ATTRS)
        moved = stale_attrs(cands, records, cfg.backend, RUN_ATTRS) if run_dir is not None and not cfg.only else {}
        for k, new in moved.items():
            stale.setdefault(k, {}).update(new)
        if stale:
            writer.set_checkpoint_attrs(stale)
            for k, new in stale.items():
                stored[k].attrs.update(new)
        if any(a in d for d in stale.values() for a in LOG_ATTRS):
            log(escape(stale_note(out, {k: d for k, d in stale.items() if set(d) & set(LOG_ATTRS)}, plan)))
        if moved:
            log(escape(f"note: {out}: {len(moved)} checkpoint(s) evaluated by an earlier call have other roles or "
                       f"files in run {run_dir} now (a resumed training, new role files): updated, as a fresh --out "
                       "would hold them"))
        expected = comparison_set(cands)
        verdict = build_verdict(list(stored.values()), vids, cfg.metric, cfg.n_resamples, cfg.seed,
                                expected=expected if run_dir is not None else None,
                                after_episode=select_after(run_dir),
                                types=types)
        if race is not None:
            verdict["budget"] = race
        if cfg.rollouts:
            verdict["rollouts"] = rollouts_section({k: s.rows.sampled for k, s in stored.items()
                                                    if s.rows.sampled is not None},
                                                   {c.key: c.name for c in cands}, vids, cfg.metric, cfg.rollouts)
        sv, sv_lines = signal_verdict_doc(plan, stored, vids, cands, cfg)
        writer.write_verdict(verdict, root, signals=sv)
        shown = [stored[c.key] for c in cands if c.key in stored]
        print_summary(console, summary_rows(shown, vids), verdict, skipped, run=label, unit=step_unit(cfg.agent))
        extra = rollouts_lines(verdict["rollouts"]) if cfg.rollouts else []
        held = [set(s.rows.scenario_ids) for s in stored.values() if s.attrs.get("kind") != "baseline"]
        n_held = len(set.intersection(*held)) if held else 0
        if n_held > len(vids) and race is None:  # the file holds more than this call judged: say whose verdict
            extra.append(f"note: the verdict judges this call's {len(vids)} scenes; {out.name} holds {n_held} for "
                         "every checkpoint (the dashboard says so): a call without --scenario-types and "
                         "--max-scenarios judges them all, reusing the stored rows")
        for line in sv_lines + (budget_lines(race) if race else []) + extra:
            log(escape(line))
        if cfg.consolidate:  # in the same session: no other evaluation can commit between the two
            writer.consolidate()
    log(f"Results: {out}")
    return verdict
