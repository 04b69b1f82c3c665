"""Loading for the dashboard: run discovery, cached file reads keyed on modification time, tidy frames.

Reads JSON and ``results.h5`` only (through ``sim.results.reader``; no torch). Every cached loader takes the
file's ``(mtime_ns, size)`` as part of its key, so a file rewritten by the trainer or the evaluator is re-read
on the next rerun and an unchanged one never is. First paint reads summaries only; trajectories and maps are
read lazily per scene for the replay.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from dashboard.run_kind import run_kind
from dashboard.table import BASE_COLUMNS, Rows
from scenarios.commands import command
from sim.metrics.catalogue import METRICS_VERSION, TABLE_METRICS
from sim.results.identity import Experiment, results_files, results_name, set_slug
from sim.results.opening import BUSY
from sim.results.reader import (
    ResultsError,
    ResultsSummary,
    ScenarioInfo,
    SceneDetail,
    read_ego_traj,
    read_root_attrs,
    read_scenarios,
    read_scene,
    read_summary,
)
from sim.results.run_folder import RESULTS_NAME, RUN_MARKERS
from sim.selection.report import metric_interval

if TYPE_CHECKING:  # pandas is imported by the views after the first paint only (dashboard.table)
    import pandas as pd

TRAIN_CMD = "python -m training.train --episodes 500"
EVAL_CMD = "python -m sim.evaluate --ckpt best_entropy.pt"
MAIN_METRICS = TABLE_METRICS  # the CLI summary's columns
MARKERS = (*RUN_MARKERS, RESULTS_NAME)  # a folder with any of these is a run


def eval_cmd(run: Path) -> str:
    """The exact command that evaluates ``run`` (its whole comparison set into ``<run>/results.h5``)."""
    return command("python -m sim.evaluate", "--run", run)


def runs_dir_problem(runs_dir: Path) -> str | None:
    """Why ``--runs-dir`` cannot be listed (missing, a file, or a single run folder), None when it can."""
    if not runs_dir.exists():
        return (f"--runs-dir {runs_dir}: no such folder. Train a run first ({TRAIN_CMD} creates out/ and a run "
                "in it), or give the folder that holds your run folders.")
    if not runs_dir.is_dir():
        return f"--runs-dir {runs_dir}: is a file, not a folder of runs. Give the folder that holds your run folders."
    if any((runs_dir / m).exists() for m in MARKERS):
        return (f"--runs-dir {runs_dir}: is a single run folder, not a folder of runs. Give its parent: "
                f"--runs-dir {runs_dir.resolve().parent}")
    return None


@dataclass(frozen=True)
class RunRef:
    """A run folder under the runs directory. mtime: newest modification time of its marker files, s."""

    name: str
    path: Path
    mtime: float
    has_results: bool
    has_history: bool


@dataclass(frozen=True)
class RunData:
    """Everything loaded for one run at first paint.

    Attributes:
        ref: the run. config / history / train_metrics: parsed JSON or None. summary: results or None.
        problems: (level, message) pairs to show, level in ``info, warning, error``.
    """

    ref: RunRef
    config: dict[str, Any] | None
    history: dict[str, Any] | None
    train_metrics: dict[str, Any] | None
    summary: ResultsSummary | None
    problems: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    results: Path | None = None

    @property
    def results_path(self) -> Path:
        """Path of the results file shown: the chosen scenario set's, else the run's ``results.h5``."""
        return self.results if self.results is not None else self.ref.path / results_name()


@dataclass(frozen=True)
class ResultSet:
    """One results file of a run: one scenario set (and settings), shown alone, never pooled with another.

    Attributes:
        path: the file (``results.h5``, ``results.<set>.h5``, ``results-<label>.h5``).
        label: what the picker shows: the set's name and the file's.
    """

    path: Path
    label: str


def file_key(path: Path) -> tuple[int, int]:
    """(mtime_ns, size) of a file, (0, -1) when absent: the cache key part that tracks rewrites."""
    try:
        s = path.stat()
        return s.st_mtime_ns, s.st_size
    except OSError:
        return 0, -1


def list_runs(runs_dir: Path) -> list[RunRef]:
    """Run folders under ``runs_dir`` (any folder holding a run file), newest first; ``latest`` excluded."""
    runs: list[RunRef] = []
    if not runs_dir.is_dir():
        return runs
    for p in runs_dir.iterdir():
        if p.name == "latest" or p.name.startswith(".") or not p.is_dir():
            continue
        present = [p / m for m in MARKERS if (p / m).exists()]
        if not present:
            continue
        runs.append(RunRef(name=p.name, path=p, mtime=max(x.stat().st_mtime for x in present),
                           has_results=bool(results_files(p)),
                           has_history=(p / "entropy_history.json").is_file()))
    runs.sort(key=lambda r: (-r.mtime, r.name))
    return runs


def latest_run_name(runs_dir: Path) -> str | None:
    """Name of the run ``runs_dir/latest`` points at, None when missing or dangling."""
    link = runs_dir / "latest"
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return target.name if target.is_dir() and target.parent == runs_dir.resolve() else None


@st.cache_data(show_spinner=False, max_entries=64)
def _read_json(path: str, key: tuple[int, int]) -> tuple[Any, str | None]:
    try:
        with open(path) as f:
            return json.load(f), None
    except (OSError, ValueError) as e:
        return None, f"{path}: unreadable JSON ({str(e).splitlines()[0]})"


@st.cache_data(show_spinner=False, max_entries=16)
def _read_summary(path: str, key: tuple[int, int]) -> tuple[ResultsSummary | None, str | None]:
    try:
        return read_summary(path, with_scenarios=False), None  # the scenario table is read lazily
    except ResultsError as e:
        return None, str(e)


@st.cache_data(show_spinner=False, max_entries=16)
def _read_scenarios(path: str, key: tuple[int, int]) -> tuple[tuple[ScenarioInfo, ...], str | None]:
    try:
        return read_scenarios(path), None
    except ResultsError as e:
        return (), str(e)


@st.cache_data(show_spinner=False, max_entries=64)
def _read_scene(path: str, key: tuple[int, int], row: int) -> tuple[SceneDetail | None, str | None]:
    try:
        return read_scene(path, row), None
    except ResultsError as e:
        return None, str(e)


@st.cache_data(show_spinner=False, max_entries=256)
def _read_traj(path: str, key: tuple[int, int], ck: str, pos: int) -> tuple[np.ndarray | None, str | None]:
    try:
        return read_ego_traj(path, ck, [pos])[0], None
    except ResultsError as e:
        return None, str(e)


@st.cache_data(show_spinner=False, max_entries=64)
def _read_set(path: str, key: tuple[int, int]) -> str:
    try:
        return Experiment.from_attrs(read_root_attrs(path)[0]).scenario_set
    except ResultsError:
        return ""


def result_sets(ref: RunRef) -> tuple[ResultSet, ...]:
    """The run's results files, ``results.h5`` first (:func:`sim.results.identity.results_files`), each labelled
    by the scenario set it holds (read from the file, cached on its mtime)."""
    out = []
    for p in results_files(ref.path):
        held = _read_set(str(p), file_key(p))
        out.append(ResultSet(p, f"{set_slug(held) if held else 'unrecorded set'} ({p.name})"))
    return tuple(out)


def load_json(path: Path) -> tuple[Any, str | None]:
    """Parsed JSON (cached on mtime) and an error message, (None, None) when the file is absent."""
    if not path.is_file():
        return None, None
    return _read_json(str(path), file_key(path))


def older_metrics_line(summary: ResultsSummary) -> str | None:
    """A warning when the file's rows follow other metric definitions than this tool's
    (:data:`sim.metrics.catalogue.METRICS_VERSION`): read and labelled, never to be compared with newer files."""
    mv = summary.experiment.metrics_version if summary.experiment is not None else ""
    if mv == str(METRICS_VERSION):
        return None
    was = f"version {mv}" if mv else "a version this file does not record (written before versions)"
    newer = mv.isdigit() and int(mv) > METRICS_VERSION
    return (f"{summary.path}: metrics of {was}; this tool computes version {METRICS_VERSION} (docs/metrics.md): "
            f"the numbers follow {'newer definitions (update the tool)' if newer else 'the older definitions'} and "
            "are not comparable with files of other versions. Re-evaluate into a new file to compare them "
            "(sim.evaluate names one when it refuses to mix them).")


def verdict_scope_line(summary: ResultsSummary) -> str | None:
    """A warning when the stored verdict judges fewer scenes than every evaluated checkpoint has (the last
    ``sim.evaluate`` call judged a subset, e.g. with ``--scenario-types`` or ``--max-scenarios``, while the page's
    tables and charts show them all); None when it judges them all, or when there is no verdict to compare."""
    n = (summary.verdict or {}).get("n_scenarios")
    cks = [c for c in summary.checkpoints.values() if c.kind != "baseline"]
    if not isinstance(n, int) or isinstance(n, bool) or not cks:
        return None
    common = set(cks[0].scenario_id).intersection(*(c.scenario_id for c in cks[1:]))
    if n >= len(common):
        return None
    return (f"{summary.path}: the stored verdict (statistics, correlations, per-type table) judges {n} of the "
            f"{len(common)} scenes every checkpoint has: the last `sim.evaluate` call's (with --scenario-types or "
            f"--max-scenarios?), while the tables and charts show all {len(common)}. Re-run that evaluation without "
            "them to judge every scene (the stored rows are reused).")


def load_run(ref: RunRef, results: str | Path | None = None) -> RunData:
    """Load a run's JSON files and one results file's summary, collecting problems as messages (never raising).

    Args:
        ref: the run. results: which of its results files (:func:`result_sets`; a path or a file name); None or
            one the run does not have: ``results.h5``, else its first. One file is one experiment: files of
            other scenario sets are never pooled into it. A file of an older tool that already pools runs or
            sets is read and its :attr:`ResultsSummary.warnings` become warnings.
    """
    problems: list[tuple[str, str]] = []
    loaded: dict[str, Any] = {}
    for name in ("config.json", "entropy_history.json", "train_metrics.json"):
        obj, err = load_json(ref.path / name)
        if err:
            problems.append(("error", f"{err}. Re-run training to rewrite it: {TRAIN_CMD}"))
        loaded[name] = obj if isinstance(obj, dict) else None
    hist = loaded["entropy_history.json"]
    if hist is not None and not (isinstance(hist.get("episodes"), list) and isinstance(hist.get("entropy"), list)
                                 and len(hist["episodes"]) == len(hist["entropy"])):
        problems.append(("error", f"{ref.path / 'entropy_history.json'}: needs equal-length 'episodes' and "
                                  f"'entropy' lists. Re-run training: {TRAIN_CMD}"))
        hist = None
    after = (hist or {}).get("select_after")
    if after is not None and (isinstance(after, bool) or not isinstance(after, (int, float))
                              or not math.isfinite(after)):  # NaN and Infinity parse as JSON floats
        problems.append(("warning", f"{ref.path / 'entropy_history.json'}: 'select_after' is {after!r}, not an "
                                    f"episode number: the what-if rule starts at episode 0."))
        hist = {k: v for k, v in hist.items() if k != "select_after"}
    summary = None
    files = results_files(ref.path)
    wanted = [f for f in files if results is not None and f.name == Path(results).name]
    res = (wanted or files or [ref.path / results_name()])[0]
    if res.is_file():
        summary, err = _read_summary(str(res), file_key(res))
        if err and ("commit file" in err or BUSY in err):  # its .parts folder moved or changed, or an evaluation
            problems.append(("error", err))                 # committed while it was read: the rest is good, keep it
        elif err:
            problems.append(("error", f"{err}. Re-create it: {command('rm', res)} && {eval_cmd(ref.path)}"))
        if summary is not None:
            problems.extend(("warning", f"{w}; its numbers are not one experiment's. Re-create it, one run and "
                                        f"one scenario set per file: {command('rm -r', res, f'{res}.parts')} && "
                                        f"{eval_cmd(ref.path)}")
                            for w in summary.warnings)
        if summary is not None and not summary.checkpoints:
            problems.append(("info", f"{res}: no checkpoint evaluated yet (an evaluation may be running). "
                                     f"Run: {eval_cmd(ref.path)}"))
        scope = verdict_scope_line(summary) if summary is not None else None
        if scope:
            problems.append(("warning", scope))
        older = older_metrics_line(summary) if summary is not None and summary.checkpoints else None
        if older:
            problems.append(("warning", older))
    else:
        problems.append(("info", f"No closed-loop results for run '{ref.name}' yet. Run: {eval_cmd(ref.path)}"))
    plugin = run_kind(summary).plugin  # a foreign trainer's checkpoints: no entropy_history.json to expect
    if hist is None and not plugin and not any("entropy_history" in m for _, m in problems):
        problems.append(("warning", f"No entropy_history.json in {ref.path}: the entropy curve shows only the "
                                    f"evaluated checkpoints. Training writes it: {TRAIN_CMD}"))
    return RunData(ref=ref, config=loaded["config.json"], history=hist, train_metrics=loaded["train_metrics.json"],
                   summary=summary, problems=tuple(problems), results=res)


def load_scenarios(run: RunData) -> tuple[tuple[ScenarioInfo, ...], str | None]:
    """The run's scenario table (lazy: only the per-scenario view needs it; cached on the file's mtime)."""
    return _read_scenarios(str(run.results_path), file_key(run.results_path))


def load_scene(run: RunData, row: int) -> tuple[SceneDetail | None, str | None]:
    """One scenario's geometry for the replay (lazy, cached on the results file's mtime)."""
    return _read_scene(str(run.results_path), file_key(run.results_path), int(row))


def load_traj(run: RunData, key: str, pos: int) -> tuple[np.ndarray | None, str | None]:
    """Closed-loop ego trajectory float32 [T, 4] (x, y, yaw, speed) of checkpoint ``key`` at row position ``pos``."""
    return _read_traj(str(run.results_path), file_key(run.results_path), key, int(pos))


def _find_flag(obj: Any, needle: str = "state_dependent") -> bool | None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if needle in str(k) and isinstance(v, bool):
                return v
        for v in obj.values():
            r = _find_flag(v, needle)
            if r is not None:
                return r
    return None


def log_std_state_dependent(run: RunData) -> bool | None:
    """Whether the policy's log-std depends on the state (config.json, entropy_history.json, results config,
    checkpoint meta: any boolean key containing ``state_dependent``, e.g. ``state_dependent_std``).

    Returns None when no source records it.
    """
    for src in (run.config, run.history, run.summary.attrs.get("config") if run.summary else None):
        r = _find_flag(src)
        if r is not None:
            return r
    if run.summary:
        for c in run.summary.checkpoints.values():
            r = _find_flag(c.eval_info)
            if r is not None:
                return r
    return None


def checkpoint_rows(summary: ResultsSummary | None) -> Rows:
    """One row per evaluated checkpoint or baseline, without pandas (the first paint's table).

    Returns:
        :class:`dashboard.table.Rows` keyed by checkpoint key with ``name, kind, episode, entropy, train_reward,
        roles (tuple), n, entropy_per_dim (tuple), files (tuple of base names), scenario_id (tuple)`` and, per
        metric ``m``, ``m`` (mean over scenarios) and ``m_lo``/``m_hi`` (95 % interval,
        :func:`sim.selection.report.metric_interval`: the CLI's methods, normal approximation for means and
        Wilson for 0/1 rates); NaN where a row lacks a metric.
    """
    rows = []
    for c in summary.checkpoints.values() if summary else ():
        row: dict[str, Any] = {"name": c.name, "kind": c.kind, "episode": c.episode, "entropy": c.entropy,
                               "train_reward": c.train_reward, "roles": c.roles, "n": c.n,
                               "entropy_per_dim": c.entropy_per_dim, "files": c.files,
                               "scenario_id": c.scenario_id}
        for m, v in c.metrics.items():
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = metric_interval(m, v)
        rows.append((c.key, row))
    names = list(BASE_COLUMNS)
    for _, row in rows:
        names += [k for k in row if k not in names]
    return Rows(tuple(k for k, _ in rows), {n: tuple(r.get(n, math.nan) for _, r in rows) for n in names})


def checkpoint_frame(summary: ResultsSummary | None) -> pd.DataFrame:
    """:func:`checkpoint_rows` as a pandas DataFrame indexed by ``key`` (the views below the first paint)."""
    return checkpoint_rows(summary).frame()


def per_scene_matrix(summary: ResultsSummary, keys: list[str], metric: str) -> np.ndarray:
    """float [C, N] metric per checkpoint (``keys`` order) on the scenarios common to all of them (by row)."""
    cks = [summary.checkpoints[k] for k in keys]
    if not cks or any(metric not in c.metrics for c in cks):
        return np.zeros((len(cks), 0))
    common = set(cks[0].scenario.tolist())
    for c in cks[1:]:
        common &= set(c.scenario.tolist())
    rows = np.array(sorted(common), dtype=np.int64)
    out = np.empty((len(cks), rows.size))
    for i, c in enumerate(cks):
        pos = {int(r): j for j, r in enumerate(c.scenario)}
        out[i] = c.metrics[metric][[pos[int(r)] for r in rows]]
    return out


# Failure thresholds of the per-scenario table, each written once (severity: later classes override earlier ones).
NO_PROGRESS = 0.2  # ego progress below it: nuPlan's "making progress" multiplier is 0 (REFERENCE.md)
LOW_PROGRESS = 0.5  # ego progress below it: covered less than half the expert's path (this project's line)
LARGE_ADE = 8.0  # m, ADE above it: drifted from the log (nuPlan's open-loop max_average_l2_error_threshold)
FAILURE_CHECKS = (  # (metric, failed when, label), least severe first
    ("comfortable", lambda v: v < 0.5, "uncomfortable"), ("ttc_ok", lambda v: v < 0.5, "low TTC"),
    ("progress", lambda v: v < LOW_PROGRESS, "low progress"), ("ade", lambda v: v > LARGE_ADE, "large ADE"),
    ("progress", lambda v: v < NO_PROGRESS, "no progress"), ("offroad", lambda v: v > 0.5, "offroad"),
    ("collision", lambda v: v > 0.5, "collision"), ("collision_at_fault", lambda v: v > 0.5, "at-fault collision"))


def failure_kind(metrics: dict[str, np.ndarray]) -> np.ndarray:
    """Per-scenario failure label (str [N]): the most severe of at-fault collision, collision, offroad, no progress
    (progress < :data:`NO_PROGRESS`), large ADE (ADE > :data:`LARGE_ADE` m), low progress (< :data:`LOW_PROGRESS`),
    low TTC, uncomfortable; ``ok`` otherwise (:data:`FAILURE_CHECKS`). Metrics absent from ``metrics`` and NaN
    values fail no check."""
    n = len(next(iter(metrics.values()))) if metrics else 0
    out = np.full(n, "ok", dtype=object)
    for name, test, label in FAILURE_CHECKS:  # later checks override: most severe last
        if name in metrics:
            with np.errstate(invalid="ignore"):
                out[test(np.asarray(metrics[name], dtype=float))] = label
    return out


def scene_frame(summary: ResultsSummary, key: str, scenarios: tuple[ScenarioInfo, ...] | None = None) -> pd.DataFrame:
    """Per-scenario table for one checkpoint: ``pos`` (row position in the checkpoint), ``row``, ``id``,
    ``family``, ``source``, ``failure`` and every metric. ``scenarios`` defaults to ``summary.scenarios``."""
    import pandas as pd

    c = summary.checkpoints[key]
    info = {s.row: s for s in (summary.scenarios if scenarios is None else scenarios)}
    df = pd.DataFrame({"pos": np.arange(c.n), "row": c.scenario.astype(int),
                       "id": [info[int(r)].id if int(r) in info else sid for r, sid in zip(c.scenario, c.scenario_id)],
                       "family": [info[int(r)].family if int(r) in info else "" for r in c.scenario],
                       "source": [info[int(r)].source if int(r) in info else "" for r in c.scenario],
                       "failure": failure_kind(c.metrics)})
    for m, v in c.metrics.items():
        df[m] = v
    return df
