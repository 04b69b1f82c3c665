"""Training signals from any trainer (torch-free): read logged scalars, match checkpoints to logged steps.

Sources (:func:`read_signals` picks by path):

- this project's ``entropy_history.json``: every numeric series aligned with ``episodes`` (``entropy``,
  ``train_reward``, delta norms, ``val_score``, PPO statistics when the trainer logs them); steps = episodes.
- a TensorBoard event folder (or one event file), read with tensorboard's own ``EventAccumulator``: scalars and
  size-1 tensors of the scalars plugin (TF2 ``tf.summary.scalar``), and the run's ``add_scalars`` subfolders
  (``<main_tag>_<name>/``, series ``main_tag/name``); a folder holding one run below it (SB3 writes ``PPO_1/``) is
  used; several runs are refused (name one).
- CSV (``.csv``) or JSON lines (``.jsonl``/``.ndjson``) with a step column (:data:`STEP_COLUMNS`); a W&B run's
  "Export CSV" has ``_step``.
- an MLflow file store (``mlruns/``), one experiment's folder in it, or one run's folder
  (``mlruns/<experiment id>/<run id>``), read with MLflow's own ``MlflowClient`` (``mlflow-skinny``): every metric's
  whole history (``get_metric_history``), steps as logged; a store holding several runs is refused (name one).

Sign conventions are handled by name (:data:`SIGN_CONVENTIONS`): SB3's ``train/entropy_loss`` is minus the mean
entropy, so it is stored negated under ``entropy (-train/entropy_loss)`` and a note says so. Every value is then
"larger = more of the named quantity", and "pick the max" of any entropy series picks the most entropic checkpoint.

A NaN or inf value stays at the step it was logged at: a checkpoint matched to it gets no value for that series
(never a neighbouring step's), with a note; a scalar without one finite value is named in the notes (no series).

Errors are :class:`SignalError`, one line naming the file and the problem (and a checkpoint by its file name).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

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
    """Every series of one log.

    Attributes:
        source: the file or folder read.
        series: name -> :class:`Series` (non-finite values kept where they were logged).
        non_finite: raw name -> number of logged values, for scalars whose every value is NaN or inf (not series).
    """

    source: str
    series: Mapping[str, Series] = field(default_factory=dict)
    non_finite: Mapping[str, int] = field(default_factory=dict)

    @property
    def headline(self) -> str | None:
        """Name of the entropy series (the headline signal), or None."""
        return next((n for n in ENTROPY_NAMES if n in self.series), None)

    def notes(self) -> list[str]:
        """One line per transformed series (e.g. SB3's entropy_loss sign) and per scalar left out (no finite value)."""
        return [f"{s.raw_name}: {s.note}" for s in self.series.values() if s.note] + [
            f"{raw}: {ALL_NON_FINITE.format(n=n)}, not judged" for raw, n in self.non_finite.items()]


ALL_NON_FINITE = "every logged value ({n}) is NaN or inf"
"""How a scalar without one finite value is named (notes and errors)."""


def _make(points: Mapping[str, list[tuple[int, float]]], source: str) -> Signals:
    """Series from ``raw name -> [(step, value)]``. A NaN or inf value is kept at its step (a checkpoint matched to
    it gets no value, never a neighbour's); a scalar with no finite value at all is listed in ``non_finite``."""
    out: dict[str, Series] = {}
    non_finite: dict[str, int] = {}
    for raw, pts in points.items():
        if raw.startswith(SKIP_PREFIXES):
            continue
        pts = sorted(((int(s), float(v)) for s, v in pts if v is not None), key=lambda p: p[0])  # stable: log order
        if not pts:
            continue
        dedup: dict[int, float] = {}
        for s, v in pts:
            dedup[s] = v  # the last value logged at a step wins
        if not any(math.isfinite(v) for v in dedup.values()):
            non_finite[raw] = len(dedup)
            continue
        name, factor, note = SIGN_CONVENTIONS.get(raw, (raw, 1.0, ""))
        out[name] = Series(name, tuple(dedup), tuple(factor * v for v in dedup.values()), raw, note)
    return Signals(source, out, non_finite)


def _num(v: object) -> float | None:
    """A logged number (NaN and inf included: logged, not missing), or None (empty, missing, not a number)."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


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


EVENTS_PREFIX = "events.out.tfevents"
"""TensorBoard event file names start with this."""

SCALARS_PLUGIN = "scalars"
"""The TensorBoard plugin whose size-1 tensors are scalars (TF2 ``tf.summary.scalar``, ``scalar_pb``)."""


def _event_folders(p: Path) -> list[Path]:
    """Folders below ``p`` (itself included) that hold event files, in path order."""
    return sorted({f.parent for f in p.rglob(EVENTS_PREFIX + "*") if f.is_file()})


def _event_dir(p: Path) -> Path:
    """The one run of ``p``: the file, ``p`` when it holds event files, else the one top-most folder below it that
    does (folders below a run, such as ``add_scalars``' ``<tag>_<name>/``, belong to it)."""
    if p.is_file():
        return p
    if any(f.name.startswith(EVENTS_PREFIX) for f in p.iterdir() if f.is_file()):
        return p
    folders = _event_folders(p)
    runs = [r for r in folders if not any(o in r.parents for o in folders)]
    if not runs:
        raise SignalError(f"{p}: no TensorBoard event files in this folder")
    if len(runs) > 1:
        names = ", ".join(str(r.relative_to(p)) for r in runs[:4])
        raise SignalError(f"{p}: several TensorBoard runs ({names}); pass one of them")
    return runs[0]


def _scalar_events(src: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list[str]]]:
    """The scalars of one event file or folder (not its subfolders), read with tensorboard's ``EventAccumulator``:
    ``simple_value`` scalars and the size-1 tensors of the scalars plugin (``tensor_util.make_ndarray``); and the
    tags of other kinds, by kind."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    acc = EventAccumulator(str(src), size_guidance={"scalars": 0, "tensors": 0})  # 0: every event, not a sample
    try:
        acc.Reload()
    except Exception as e:  # corrupt records
        raise SignalError(f"{src}: unreadable TensorBoard events ({str(e).splitlines()[0][:200]})") from None
    tags = acc.Tags()
    points = {t: [(ev.step, ev.value) for ev in acc.Scalars(t)] for t in tags.get("scalars", [])}
    other: dict[str, list[str]] = {}
    for t in tags.get("tensors", []):
        plugin, vals = "", None
        try:
            plugin = acc.SummaryMetadata(t).plugin_data.plugin_name
            arrays = [(ev.step, make_ndarray(ev.tensor_proto)) for ev in acc.Tensors(t)]
            if plugin == SCALARS_PLUGIN and all(a.size == 1 for _, a in arrays):
                vals = [(s, float(a.reshape(-1)[0])) for s, a in arrays]
        except (KeyError, TypeError, ValueError):  # no metadata, or a tensor that is no number
            vals = None
        if vals is not None:
            points.setdefault(t, []).extend(vals)
        else:
            other.setdefault(f"tensors of plugin {plugin!r}" if plugin else "tensors", []).append(t)
    for kind in ("histograms", "distributions", "images", "audio"):
        if tags.get(kind):
            other[kind] = list(tags[kind])
    return points, other


def _add_scalars_names(folder: Path, tags: Sequence[str]) -> dict[str, str] | None:
    """``tag -> series name`` for a folder that ``SummaryWriter.add_scalars(main_tag, {name: value})`` wrote
    (``<main_tag with / as _>_<name>/`` holding tag ``main_tag``): ``main_tag/name``; None for any other folder."""
    out = {}
    for t in tags:
        prefix = t.replace("/", "_") + "_"
        if not folder.name.startswith(prefix) or len(folder.name) == len(prefix):
            return None
        out[t] = f"{t}/{folder.name[len(prefix):]}"
    return out or None


def read_tensorboard(path: str | Path) -> Signals:
    """Scalars of a TensorBoard event folder (or file), read with tensorboard's ``EventAccumulator``.

    Scalars are ``simple_value`` scalars (``SummaryWriter.add_scalar``) and size-1 tensors of the scalars plugin
    (TF2 ``tf.summary.scalar``, ``scalar_pb``). The run's subfolders that ``SummaryWriter.add_scalars(main_tag,
    {name: value})`` wrote (``<main_tag>_<name>/``) are read too, each series named ``main_tag/name``; other
    subfolders are other runs (not read).
    """
    p = Path(path)
    src = _event_dir(p)
    points, other = _scalar_events(src)
    others: list[str] = []
    for folder in (f for f in _event_folders(src) if f != src) if src.is_dir() else ():
        sub, _ = _scalar_events(folder)
        names = _add_scalars_names(folder, list(sub)) if folder.parent == src else None
        if names is None:
            others.append(str(folder.relative_to(src)))
            continue
        for t, pts in sub.items():
            points[names[t] if names[t] not in points else f"{folder.name}/{t}"] = pts
    if not points:
        found = [f"{kind}: {', '.join(ts[:4])}{', ...' if len(ts) > 4 else ''}" for kind, ts in other.items()]
        what = f" (its event files hold {'; '.join(found)})" if found else " (its event files hold no tags)"
        runs = f"; other runs below it: {', '.join(others[:4])}: pass one of them" if others else ""
        raise SignalError(f"{src}: TensorBoard events hold no scalars{what}{runs}")
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
        if s is None or not math.isfinite(s):
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


URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
"""A URI's scheme (``file:``, ``sqlite:``, ``http:``, ...; two letters at least, so ``C:`` stays a drive)."""
TRACKING_SCHEMES = frozenset({"file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks",
                              "databricks-uc", "uc"})
"""MLflow's tracking-URI schemes (``+driver`` suffixes aside): only these prefixes make a URI; others are paths."""


def local_path(path: str | Path) -> Path:
    """The file or folder a ``--signals`` value names: a path, or a ``file:`` URI (MLflow's tracking URI
    ``file:./mlruns``, ``file:///abs/mlruns``) turned into its path.

    Raises:
        SignalError: any other URI (an MLflow database or server: ``sqlite:///mlflow.db``, ``http://host:5000``),
            which is not read: the message says what to pass instead.
    """
    m = URI_SCHEME.match(path) if isinstance(path, str) else None
    scheme = m.group(1).lower().split("+")[0] if m else ""
    if scheme not in TRACKING_SCHEMES or Path(path).exists():  # "run:v2/x.csv" or a file named so: a path
        return Path(path)
    if scheme == "file":
        parts = urlsplit(path)
        if parts.netloc not in ("", "localhost"):
            raise SignalError(f"{path}: a file URI on another host ({parts.netloc}) is not read; mount it and pass "
                              "its local path")
        return Path(unquote(parts.path))
    raise SignalError(f"{path}: a {m.group(1)} tracking URI is not read (only files and folders: an MLflow file "
                      "store mlruns/ or one run's folder, TensorBoard, CSV, JSON lines); export the run's metrics "
                      "as CSV, or pass its file store")


def read_signals(path: str | Path, require: Sequence[str] = ()) -> Signals:
    """Read any supported log; ``require``: scalar names (raw or stored) that must be present.

    Raises:
        SignalError: missing path, unknown format, unreadable file, a required scalar absent or without one finite
            value, or a log whose every scalar has no finite value.
    """
    p = local_path(path)
    if not p.exists():
        raise SignalError(f"{p}: no such file or folder")
    if p.is_dir() and _mlflow_layout(p) is not None:
        sig = read_mlflow(p)
    elif p.is_dir() or p.name.startswith(EVENTS_PREFIX):
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
    empty = {**{SIGN_CONVENTIONS.get(raw, (raw,))[0]: n for raw, n in sig.non_finite.items()}, **sig.non_finite}
    for name in require:
        if name in empty:
            raise SignalError(f"{sig.source}: scalar {name!r}: {ALL_NON_FINITE.format(n=empty[name])}")
        if name not in known:
            raise SignalError(f"{sig.source}: no scalar {name!r} (has: {', '.join(sorted(known)[:12])})")
    if not sig.series and sig.non_finite:
        left = [f"{raw}: {ALL_NON_FINITE.format(n=n)}" for raw, n in sig.non_finite.items()]
        raise SignalError(f"{sig.source}: no scalar has a finite value ({'; '.join(left[:4])}"
                          f"{'; ...' if len(left) > 4 else ''})")
    if not sig.series:
        raise SignalError(f"{sig.source}: no training signal, only bookkeeping ({', '.join(SKIP_PREFIXES)}: not read)")
    return sig


@dataclass(frozen=True)
class Match:
    """One checkpoint matched to a series' nearest logged step (``value``: as logged there, NaN or inf included;
    a non-finite one gives the checkpoint no value for that series)."""

    checkpoint: str
    checkpoint_step: int
    signal: str
    logged_step: int
    value: float

    def line(self) -> str:
        """``CKPT (step N) -> SIGNAL @ LOGGED_STEP = VALUE``."""
        return (f"{self.checkpoint} (step {self.checkpoint_step}) -> {self.signal} @ {self.logged_step} "
                f"= {self.value:.4g}" + ("" if math.isfinite(self.value) else " (not finite: no value)"))


@dataclass(frozen=True)
class MatchedSignals:
    """Signal values per checkpoint.

    Attributes:
        checkpoints: checkpoint keys in input order (C).
        values: signal name -> C values (NaN where the series has no step within tolerance, or where the matched
            step holds NaN or inf).
        matches: every match made.
        notes: sign notes, series left out, and checkpoints without a value (no step nearby, or a non-finite one).
    """

    checkpoints: tuple[str, ...]
    values: Mapping[str, tuple[float, ...]]
    matches: tuple[Match, ...]
    notes: tuple[str, ...]


def match_checkpoints(signals: Signals, steps: Mapping[str, int | None], tolerance: float | None = None,
                      names: Mapping[str, str] | None = None) -> MatchedSignals:
    """Match each checkpoint to the nearest logged step of every series.

    A checkpoint whose nearest logged step holds NaN or inf gets NaN for that series (never a neighbouring step's
    value), and a note names the checkpoint, the step, the logged tag and the log.

    Args:
        signals: what :func:`read_signals` gave.
        steps: checkpoint key (path or identity) -> its training step (from metadata or the file name).
        tolerance: largest |checkpoint step - logged step| accepted; None = each series' largest gap between
            consecutive logged steps (a checkpoint beyond the logged range by more than that matches nothing).
        names: checkpoint key -> its file name, for errors and notes (default: the key).

    Raises:
        SignalError: a checkpoint without a step, one that matches no logged step of any series, or a log that
            belongs to other checkpoints: checkpoints at two or more different steps, and no series tells any two
            of them apart (each series matches them all to one logged step, or matches none).
    """
    keys = tuple(steps)
    label = {k: (names or {}).get(k, k) for k in keys}
    values: dict[str, list[float]] = {}
    matches: list[Match] = []
    no_value: list[str] = []
    missing: dict[str, int] = {}
    matched_any = dict.fromkeys(keys, False)
    for key in keys:
        if steps[key] is None:
            raise SignalError(f"{label[key]}: no training step in its metadata or file name; cannot match "
                              f"{signals.source}")
    for name, s in signals.series.items():
        gaps = [b - a for a, b in zip(s.steps, s.steps[1:])]
        tol = tolerance if tolerance is not None else (max(gaps) if gaps else 0)
        col: list[float] = []
        for key in keys:
            st = int(steps[key])  # type: ignore[arg-type]
            j = min(range(len(s.steps)), key=lambda i: (abs(s.steps[i] - st), s.steps[i]))
            if abs(s.steps[j] - st) > tol:
                col.append(math.nan)
                missing[name] = missing.get(name, 0) + 1
                continue
            v = s.values[j]
            matches.append(Match(key, st, name, s.steps[j], v))
            matched_any[key] = True
            col.append(v if math.isfinite(v) else math.nan)
            if not math.isfinite(v):
                no_value.append(f"{name}: {label[key]} (step {st}) has no value: its logged step {s.steps[j]} of "
                                f"{s.raw_name!r} in {signals.source} holds {'NaN' if math.isnan(v) else 'inf'}")
        values[name] = col
    lo = min((s.steps[0] for s in signals.series.values()), default=0)
    hi = max((s.steps[-1] for s in signals.series.values()), default=0)
    for key, ok in matched_any.items():
        if not ok:
            raise SignalError(f"{signals.source}: checkpoint {label[key]} (step {steps[key]}) matches no logged step "
                              f"(it logs steps {lo}..{hi})")
    distinct = sorted({int(steps[k]) for k in keys})  # type: ignore[arg-type]
    if len(distinct) >= 2 and not any(len({m.logged_step for m in matches if m.signal == n}) >= 2 for n in values):
        raise SignalError(f"{signals.source}: not the log of these checkpoints: it logs steps {lo}..{hi} and the "
                          f"checkpoints are at steps {distinct[0]}..{distinct[-1]}, which no logged series tells "
                          "apart (a log of another run, or of other units: episodes vs environment steps?)")
    notes = list(signals.notes())
    for name, n in missing.items():
        notes.append(f"{name}: {n} of {len(keys)} checkpoints have no logged step nearby")
    notes += no_value
    return MatchedSignals(keys, {k: tuple(v) for k, v in values.items()}, tuple(matches), tuple(notes))
