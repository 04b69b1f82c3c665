"""Training signals from any trainer (torch-free): read logged scalars, match checkpoints to logged steps.

Sources (:func:`read_signals` picks by path):

- this project's ``entropy_history.json``: every numeric series aligned with ``episodes`` (``entropy``,
  ``train_reward``, delta norms, ``val_score``, PPO statistics when the trainer logs them); steps = episodes.
- a TensorBoard event folder (or one event file), read with tensorboard's own ``EventAccumulator``; a folder
  holding one run below it (SB3 writes ``PPO_1/``) is used; several runs are refused (name one).
- CSV (``.csv``) or JSON lines (``.jsonl``/``.ndjson``) with a step column (:data:`STEP_COLUMNS`); a W&B run's
  "Export CSV" has ``_step``.
- an MLflow file store (``mlruns/``), one experiment's folder in it, or one run's folder
  (``mlruns/<experiment id>/<run id>``), read with MLflow's own ``MlflowClient`` (``mlflow-skinny``): every metric's
  whole history (``get_metric_history``), steps as logged; a store holding several runs is refused (name one).

Sign conventions are handled by name (:data:`SIGN_CONVENTIONS`): SB3's ``train/entropy_loss`` is minus the mean
entropy, so it is stored negated under ``entropy (-train/entropy_loss)`` and a note says so. Every value is then
"larger = more of the named quantity", and "pick the max" of any entropy series picks the most entropic checkpoint.

Errors are :class:`SignalError`, one line naming the file and the problem.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STEP_COLUMNS = ("step", "steps", "global_step", "time/total_timesteps", "total_timesteps", "num_timesteps",
                "timesteps", "episode", "episodes", "_step", "iteration")
"""Step column names recognised in CSV / JSON lines, first found wins."""

SIGN_CONVENTIONS: dict[str, tuple[str, float, str]] = {
    "train/entropy_loss": ("entropy (-train/entropy_loss)", -1.0,
                           "SB3 logs train/entropy_loss = -mean entropy; judged negated, as entropy"),
    "entropy_loss": ("entropy (-entropy_loss)", -1.0, "entropy_loss = -mean entropy; judged negated, as entropy"),
}
"""raw name -> (stored name, factor, note)."""

SKIP_PREFIXES = ("time/", "_runtime", "_timestamp")
"""Logged bookkeeping that is no training signal (SB3's ``time/fps``, ``time/iterations``, ..., W&B's wall clock
columns ``_runtime`` and ``_timestamp``): not read."""

ENTROPY_NAMES = ("entropy", "entropy (-train/entropy_loss)", "entropy (-entropy_loss)", "losses/entropy",
                 "train/entropy")
"""Series that are the policy entropy, in order of preference (the headline signal)."""


class SignalError(ValueError):
    """A training log cannot be read or matched; the message names the file and the problem."""


@dataclass(frozen=True)
class Series:
    """One logged scalar.

    Attributes:
        name: stored name (after sign handling).
        steps: logged steps, increasing (episodes for the project's history, env steps for SB3).
        values: one value per step, oriented so that larger = more of ``name``.
        raw_name: the name in the log.
        note: how the value was transformed ("" when stored as logged).
    """

    name: str
    steps: tuple[int, ...]
    values: tuple[float, ...]
    raw_name: str
    note: str = ""


@dataclass(frozen=True)
class Signals:
    """Every series of one log. ``series``: name -> :class:`Series`; ``source``: the file or folder read."""

    source: str
    series: Mapping[str, Series] = field(default_factory=dict)

    @property
    def headline(self) -> str | None:
        """Name of the entropy series (the headline signal), or None."""
        return next((n for n in ENTROPY_NAMES if n in self.series), None)

    def notes(self) -> list[str]:
        """One line per transformed series (e.g. SB3's entropy_loss sign)."""
        return [f"{s.raw_name}: {s.note}" for s in self.series.values() if s.note]


def _make(points: Mapping[str, list[tuple[int, float]]], source: str) -> Signals:
    out: dict[str, Series] = {}
    for raw, pts in points.items():
        if raw.startswith(SKIP_PREFIXES):
            continue
        pts = sorted((int(s), float(v)) for s, v in pts if v is not None and math.isfinite(float(v)))
        if not pts:
            continue
        dedup: dict[int, float] = {}
        for s, v in pts:
            dedup[s] = v  # the last value logged at a step wins
        name, factor, note = SIGN_CONVENTIONS.get(raw, (raw, 1.0, ""))
        out[name] = Series(name, tuple(dedup), tuple(factor * v for v in dedup.values()), raw, note)
    return Signals(source, out)


def _num(v: object) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def read_history_json(path: str | Path) -> Signals:
    """The project's ``entropy_history.json``: numeric series aligned with ``episodes``."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as e:  # ValueError: bad JSON or not UTF-8
        raise SignalError(f"{p}: not readable JSON ({e})") from None
    eps = doc.get("episodes") if isinstance(doc, dict) else None
    if not isinstance(eps, list) or not all(isinstance(e, int) for e in eps):
        raise SignalError(f"{p}: no 'episodes' list of integers (not an entropy_history.json)")
    points: dict[str, list[tuple[int, float]]] = {}
    for k, v in doc.items():
        if k in ("episodes", "steps") or not isinstance(v, list) or len(v) != len(eps):
            continue
        vals = [_num(x) for x in v]
        if any(x is not None for x in vals):
            points[k] = [(e, x) for e, x in zip(eps, vals) if x is not None]
    return _make(points, str(p))


def _event_dir(p: Path) -> Path:
    if p.is_file():
        return p
    if any(f.name.startswith("events.out.tfevents") for f in p.iterdir() if f.is_file()):
        return p
    runs = sorted({f.parent for f in p.rglob("events.out.tfevents*")})
    if not runs:
        raise SignalError(f"{p}: no TensorBoard event files in this folder")
    if len(runs) > 1:
        names = ", ".join(str(r.relative_to(p)) for r in runs[:4])
        raise SignalError(f"{p}: several TensorBoard runs ({names}); pass one of them")
    return runs[0]


def read_tensorboard(path: str | Path) -> Signals:
    """Scalars of a TensorBoard event folder (or file), read with tensorboard's ``EventAccumulator``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    p = Path(path)
    src = _event_dir(p)
    acc = EventAccumulator(str(src), size_guidance={"scalars": 0})
    try:
        acc.Reload()
    except Exception as e:  # corrupt records
        raise SignalError(f"{src}: unreadable TensorBoard events ({str(e).splitlines()[0][:200]})") from None
    tags = acc.Tags().get("scalars", [])
    points = {t: [(ev.step, ev.value) for ev in acc.Scalars(t)] for t in tags}
    if not points:
        raise SignalError(f"{src}: TensorBoard events hold no scalars")
    return _make(points, str(src))


def _rows_to_signals(p: Path, rows: Sequence[Mapping[str, object]]) -> Signals:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    step_col = next((c for c in STEP_COLUMNS if c in cols), None)
    if step_col is None:
        raise SignalError(f"{p}: no step column (expected one of {', '.join(STEP_COLUMNS)}; has "
                          f"{', '.join(map(str, cols[:8]))})")
    points: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        s = _num(r.get(step_col))
        if s is None:
            continue
        for c, v in r.items():
            x = _num(v)
            if c != step_col and x is not None:
                points.setdefault(c, []).append((int(s), x))
    if not points:
        raise SignalError(f"{p}: no numeric column besides the step column {step_col!r}")
    return _make(points, str(p))


def read_csv(path: str | Path) -> Signals:
    """CSV with a header and a step column (SB3's ``progress.csv`` works: ``time/total_timesteps``)."""
    p = Path(path)
    try:
        with p.open(newline="") as f:
            rows = [{k: v for k, v in r.items() if k is not None} for r in csv.DictReader(f)]  # None: extra cells
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SignalError(f"{p}: not readable CSV ({e})") from None
    return _rows_to_signals(p, rows)


def read_jsonl(path: str | Path) -> Signals:
    """JSON lines, one object per line, with a step key."""
    p = Path(path)
    rows = []
    try:
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if line.strip():
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise SignalError(f"{p}: line {i} is not a JSON object")
                rows.append(obj)
    except (OSError, ValueError) as e:  # ValueError: bad JSON or not UTF-8
        raise SignalError(f"{p}: not readable JSON lines ({e})") from None
    return _rows_to_signals(p, rows)


MLFLOW_ENV = "MLFLOW_ALLOW_FILE_STORE"
"""MLflow 3 refuses file stores unless this is "true"; set while reading the user's existing store (never written)."""


def _mlflow_layout(p: Path) -> tuple[Path, str | None, str | None] | None:
    """``(store, experiment id, run id)`` when ``p`` is an MLflow file store, experiment or run folder, else None."""
    if (p / "meta.yaml").is_file() and (p / "metrics").is_dir():
        return p.parent.parent, p.parent.name, p.name
    if (p / "meta.yaml").is_file() and any((d / "meta.yaml").is_file() for d in p.iterdir() if d.is_dir()):
        return p.parent, p.name, None
    if any((d / "meta.yaml").is_file() for d in p.iterdir() if d.is_dir() and d.name != ".trash"):
        return p, None, None
    return None


def read_mlflow(path: str | Path) -> Signals:
    """Every metric history of one MLflow run, read with MLflow's own ``MlflowClient`` from a file store.

    Args:
        path: the store (``mlruns/``, exactly one active run in it), an experiment folder in it (one run), or a
            run's folder ``mlruns/<experiment id>/<run id>``.

    Returns:
        One series per metric key; steps as logged (MLflow's ``step``, 0 when none was given); where a step was
        logged several times the latest value (by timestamp) wins.

    Raises:
        SignalError: mlflow missing, not an MLflow file store, several runs, no run, unreadable store, no metrics.
    """
    p = Path(path)
    layout = _mlflow_layout(p) if p.is_dir() else None
    if layout is None:
        raise SignalError(f"{p}: not an MLflow file store, experiment or run folder (no meta.yaml)")
    try:
        import yaml
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise SignalError(f"{p}: reading MLflow runs needs mlflow-skinny: pip install 'driveselect[mlflow]'") from None
    store, exp, run = layout
    old = os.environ.get(MLFLOW_ENV)
    os.environ[MLFLOW_ENV] = "true"
    try:
        client = MlflowClient(tracking_uri=store.resolve().as_uri())
        if run is None:
            exps = [exp] if exp is not None else [e.experiment_id for e in client.search_experiments()]
            runs = client.search_runs(exps) if exps else []
            if not runs:
                raise SignalError(f"{p}: the MLflow store holds no active run")
            if len(runs) > 1:
                names = ", ".join(f"{r.info.experiment_id}/{r.info.run_id} ({r.info.run_name})" for r in runs[:4])
                raise SignalError(f"{p}: {len(runs)} MLflow runs ({names}{', ...' if len(runs) > 4 else ''}); "
                                  "pass one run's folder")
            exp, run = runs[0].info.experiment_id, runs[0].info.run_id
        keys = sorted(client.get_run(run).data.metrics)
        points: dict[str, list[tuple[int, float]]] = {}
        for key in keys:
            hist = sorted(client.get_metric_history(run, key), key=lambda m: (m.step, m.timestamp))
            last = {int(m.step): float(m.value) for m in hist}  # the latest value logged at a step wins
            points[key] = list(last.items())
    except SignalError:
        raise
    except (MlflowException, OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:  # a damaged store
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise SignalError(f"{p}: unreadable MLflow store ({type(e).__name__}: {first})") from None
    finally:
        if old is None:
            os.environ.pop(MLFLOW_ENV, None)
        else:
            os.environ[MLFLOW_ENV] = old
    if not points:
        raise SignalError(f"{p}: MLflow run {run} logged no metrics")
    src = store / str(exp) / str(run)
    return _make(points, str(src))


def read_signals(path: str | Path, require: Sequence[str] = ()) -> Signals:
    """Read any supported log; ``require``: scalar names (raw or stored) that must be present.

    Raises:
        SignalError: missing path, unknown format, unreadable file, or a required scalar absent.
    """
    p = Path(path)
    if not p.exists():
        raise SignalError(f"{p}: no such file or folder")
    if p.is_dir() and _mlflow_layout(p) is not None:
        sig = read_mlflow(p)
    elif p.is_dir() or p.name.startswith("events.out.tfevents"):
        sig = read_tensorboard(p)
    elif p.suffix == ".csv":
        sig = read_csv(p)
    elif p.suffix in (".jsonl", ".ndjson"):
        sig = read_jsonl(p)
    elif p.suffix == ".json":
        sig = read_history_json(p)
    else:
        raise SignalError(f"{p}: unknown signal format (entropy_history.json, .csv, .jsonl, a TensorBoard folder or "
                          "an MLflow mlruns/ or run folder)")
    known = set(sig.series) | {s.raw_name for s in sig.series.values()}
    for name in require:
        if name not in known:
            raise SignalError(f"{sig.source}: no scalar {name!r} (has: {', '.join(sorted(known)[:12])})")
    return sig


@dataclass(frozen=True)
class Match:
    """One checkpoint matched to a series' nearest logged step."""

    checkpoint: str
    checkpoint_step: int
    signal: str
    logged_step: int
    value: float

    def line(self) -> str:
        """``CKPT (step N) -> SIGNAL @ LOGGED_STEP = VALUE``."""
        return (f"{self.checkpoint} (step {self.checkpoint_step}) -> {self.signal} @ {self.logged_step} "
                f"= {self.value:.4g}")


@dataclass(frozen=True)
class MatchedSignals:
    """Signal values per checkpoint.

    Attributes:
        checkpoints: checkpoint keys in input order (C).
        values: signal name -> C values (NaN where the series has no step within tolerance).
        matches: every match made.
        notes: sign notes and series left out.
    """

    checkpoints: tuple[str, ...]
    values: Mapping[str, tuple[float, ...]]
    matches: tuple[Match, ...]
    notes: tuple[str, ...]


def match_checkpoints(signals: Signals, steps: Mapping[str, int | None], tolerance: float | None = None
                      ) -> MatchedSignals:
    """Match each checkpoint to the nearest logged step of every series.

    Args:
        signals: what :func:`read_signals` gave.
        steps: checkpoint key (path or identity) -> its training step (from metadata or the file name).
        tolerance: largest |checkpoint step - logged step| accepted; None = each series' largest gap between
            consecutive logged steps (a checkpoint beyond the logged range by more than that matches nothing).

    Raises:
        SignalError: a checkpoint without a step, one that matches no logged step of any series, or a log that
            belongs to other checkpoints: checkpoints at two or more different steps, and no series tells any two
            of them apart (each series matches them all to one logged step, or matches none).
    """
    keys = tuple(steps)
    values: dict[str, list[float]] = {}
    matches: list[Match] = []
    matched_any = dict.fromkeys(keys, False)
    for key in keys:
        if steps[key] is None:
            raise SignalError(f"{key}: no training step in its metadata or file name; cannot match {signals.source}")
    for name, s in signals.series.items():
        gaps = [b - a for a, b in zip(s.steps, s.steps[1:])]
        tol = tolerance if tolerance is not None else (max(gaps) if gaps else 0)
        col: list[float] = []
        for key in keys:
            st = int(steps[key])  # type: ignore[arg-type]
            j = min(range(len(s.steps)), key=lambda i: (abs(s.steps[i] - st), s.steps[i]))
            if abs(s.steps[j] - st) <= tol:
                col.append(s.values[j])
                matches.append(Match(key, st, name, s.steps[j], s.values[j]))
                matched_any[key] = True
            else:
                col.append(math.nan)
        values[name] = col
    for key, ok in matched_any.items():
        if not ok:
            raise SignalError(f"{signals.source}: checkpoint {key} (step {steps[key]}) matches no logged step")
    distinct = sorted({int(steps[k]) for k in keys})  # type: ignore[arg-type]
    if len(distinct) >= 2 and not any(len({m.logged_step for m in matches if m.signal == n}) >= 2 for n in values):
        lo = min(s.steps[0] for s in signals.series.values())
        hi = max(s.steps[-1] for s in signals.series.values())
        raise SignalError(f"{signals.source}: not the log of these checkpoints: it logs steps {lo}..{hi} and the "
                          f"checkpoints are at steps {distinct[0]}..{distinct[-1]}, which no logged series tells "
                          "apart (a log of another run, or of other units: episodes vs environment steps?)")
    notes = list(signals.notes())
    for name, col in values.items():
        missing = sum(math.isnan(v) for v in col)
        if missing:
            notes.append(f"{name}: {missing} of {len(col)} checkpoints have no logged step nearby")
    return MatchedSignals(keys, {k: tuple(v) for k, v in values.items()}, tuple(matches), tuple(notes))
