"""HDF5 results file of closed-loop evaluations (schema: ``docs/results_schema.md``).

The writer appends one checkpoint (or baseline) at a time. Every commit is atomic at the
file level: the current file is copied to a temporary file in the same folder, the new
group is written there (under a temporary name, then renamed), the copy is flushed,
fsynced and moved over the original with ``os.replace``. A process killed at any moment
therefore leaves either the previous complete file or the new complete file, and a
reader (the dashboard) that has the file open keeps reading a consistent snapshot.

This module needs only h5py, numpy and the standard library.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

SCHEMA_VERSION = 1
TMP_PREFIX = ".tmp-"
MAP_KINDS = ("lanes", "road_edges", "road_lines", "drivable", "crosswalks")
STR = h5py.string_dtype("utf-8")


class EvaluationError(Exception):
    """Bad input or state for an evaluation. The message is one line naming the file and the problem."""


def utc_now() -> str:
    """ISO-8601 UTC time, seconds precision."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def tool_version() -> str:
    """Installed version of the project package (``0+unknown`` when not installed)."""
    try:
        from importlib.metadata import version

        return version("driveselect")
    except Exception:  # noqa: BLE001 - metadata missing in a bare checkout
        return "0+unknown"


@dataclass(frozen=True, eq=False)
class CheckpointRows:
    """Closed-loop results of one checkpoint (or baseline) on N scenarios, rows aligned.

    Attributes:
        scenario_ids: the N scenario ids.
        metrics: metric name -> float64 ``[N]`` (booleans as 0/1, NaN where undefined).
        ego_traj: float32 ``[N, T, 4]`` closed-loop ego x (m), y (m), yaw (rad), speed (m/s), NaN padded.
    """

    scenario_ids: tuple[str, ...]
    metrics: Mapping[str, np.ndarray]
    ego_traj: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.scenario_ids)
        if self.ego_traj.ndim != 3 or self.ego_traj.shape[0] != n or self.ego_traj.shape[2] != 4:
            raise ValueError(f"ego_traj must be [{n}, T, 4], got {list(self.ego_traj.shape)}")
        for k, v in self.metrics.items():
            if np.shape(v) != (n,):
                raise ValueError(f"metric {k} must be [{n}], got {list(np.shape(v))}")

    @staticmethod
    def concat(parts: Sequence[CheckpointRows]) -> CheckpointRows:
        """Concatenate row sets (trajectories NaN-padded to the longest T)."""
        parts = [p for p in parts if len(p.scenario_ids)]
        if not parts:
            raise ValueError("nothing to concatenate")
        t_max = max(p.ego_traj.shape[1] for p in parts)
        trajs = []
        for p in parts:
            pad = t_max - p.ego_traj.shape[1]
            trajs.append(np.pad(p.ego_traj, ((0, 0), (0, pad), (0, 0)), constant_values=np.nan) if pad else p.ego_traj)
        names = list(parts[0].metrics)
        for p in parts[1:]:
            if list(p.metrics) != names:
                raise ValueError(f"metric sets differ: {names} vs {list(p.metrics)}")
        return CheckpointRows(
            scenario_ids=tuple(i for p in parts for i in p.scenario_ids),
            metrics={k: np.concatenate([np.asarray(p.metrics[k], dtype=np.float64) for p in parts]) for k in names},
            ego_traj=np.concatenate(trajs, axis=0).astype(np.float32),
        )

    def select(self, ids: Sequence[str]) -> CheckpointRows:
        """Rows for ``ids`` in that order (each must be present)."""
        pos = {s: i for i, s in enumerate(self.scenario_ids)}
        idx = np.array([pos[s] for s in ids], dtype=np.int64)
        return CheckpointRows(tuple(ids), {k: np.asarray(v)[idx] for k, v in self.metrics.items()}, self.ego_traj[idx])


@dataclass(frozen=True, eq=False)
class StoredCheckpoint:
    """One ``/checkpoints/<key>`` group read back: its attributes and rows."""

    key: str
    attrs: dict[str, Any]
    rows: CheckpointRows
    scenario_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(json.loads(self.attrs.get("roles", "[]")))


def _attr(v: Any) -> Any:
    return v.decode("utf-8") if isinstance(v, bytes) else (v.item() if isinstance(v, np.generic) else v)


def read_schema_version(path: str | os.PathLike) -> int:
    """Schema version of an existing results file.

    Raises:
        EvaluationError: the file is not a readable results file.
    """
    try:
        with h5py.File(path, "r", locking=False) as f:
            if "schema_version" not in f.attrs:
                raise EvaluationError(f"{path}: not a results file (no schema_version attribute)")
            return int(f.attrs["schema_version"])
    except EvaluationError:
        raise
    except (OSError, ValueError) as e:
        raise EvaluationError(f"{path}: unreadable results file ({e})") from None


def check_readable_version(path: str | os.PathLike) -> None:
    """Raise :class:`EvaluationError` when the file's schema is newer than this tool writes."""
    v = read_schema_version(path)
    if v > SCHEMA_VERSION:
        raise EvaluationError(
            f"{path}: results schema version {v} is newer than this tool supports ({SCHEMA_VERSION}); upgrade"
        )


def read_checkpoints(path: str | os.PathLike, with_traj: bool = False) -> list[StoredCheckpoint]:
    """Read every committed ``/checkpoints/<key>`` group (metrics; trajectories on request).

    Returns:
        Groups in key order; ``rows.ego_traj`` is ``[N, 0, 4]`` unless ``with_traj``.
    """
    out = []
    with h5py.File(path, "r", locking=False) as f:
        grp = f.get("checkpoints")
        if grp is None:
            return out
        for key in sorted(grp):
            if key.startswith(TMP_PREFIX):
                continue
            g = grp[key]
            ids = tuple(s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in g["scenario_id"][()])
            metrics = {k: np.asarray(g["metrics"][k][()], dtype=np.float64) for k in g["metrics"]}
            traj = np.asarray(g["ego_traj"][()]) if with_traj else np.zeros((len(ids), 0, 4), np.float32)
            attrs = {k: _attr(v) for k, v in g.attrs.items()}
            out.append(StoredCheckpoint(key, attrs, CheckpointRows(ids, metrics, traj), np.asarray(g["scenario"][()])))
    return out


def read_verdict(path: str | os.PathLike) -> dict | None:
    """The stored selection verdict, or None."""
    with h5py.File(path, "r", locking=False) as f:
        if "verdict" not in f or "json" not in f["verdict"].attrs:
            return None
        return json.loads(_attr(f["verdict"].attrs["json"]))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_json(obj: Any) -> str:
    """JSON with NaN/inf written as null (strict JSON)."""

    def clean(x: Any) -> Any:
        if isinstance(x, float | np.floating):
            return float(x) if math.isfinite(x) else None
        if isinstance(x, Mapping):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(obj), default=_json_default, allow_nan=False)


class ResultsWriter:
    """Appends checkpoint results to one ``results.h5`` with atomic, crash-safe commits.

    Args:
        path: the results file; created on the first commit. Its folder must be writable.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def preflight(self) -> None:
        """Check, before any work, that the file can be read (if present) and written.

        Raises:
            EvaluationError: newer schema, not a results file, or folder not writable.
        """
        folder = self.path.parent
        if self.path.exists():
            if not self.path.is_file():
                raise EvaluationError(f"{self.path}: output exists and is not a file")
            check_readable_version(self.path)
        if not folder.is_dir():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise EvaluationError(f"{self.path}: cannot create output folder ({e.strerror or e})") from None
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".probe")
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            raise EvaluationError(f"{self.path}: output folder is not writable ({e.strerror or e})") from None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the results file for one evaluation; remove temp copies of killed runs.

        Raises:
            EvaluationError: another evaluation holds the lock.
        """
        lock_path = self.path.parent / f".{self.path.name}.lock"
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as e:
            raise EvaluationError(f"{self.path}: cannot create lock file ({e.strerror or e})") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise EvaluationError(f"{self.path}: another evaluation is writing this file") from None
            for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                stale.unlink(missing_ok=True)
            yield
        finally:
            os.close(fd)

    def done(self) -> dict[str, set[str]]:
        """Scenario ids already committed, per checkpoint key (empty when no file)."""
        if not self.path.exists():
            return {}
        with h5py.File(self.path, "r", locking=False) as f:
            grp = f.get("checkpoints")
            if grp is None:
                return {}
            return {
                k: {s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in grp[k]["scenario_id"][()]}
                for k in grp
                if not k.startswith(TMP_PREFIX)
            }

    @contextmanager
    def _transaction(self) -> Iterator[h5py.File]:
        folder = self.path.parent
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        try:
            if self.path.exists():
                shutil.copyfile(self.path, tmp)
                f = h5py.File(tmp, "r+", locking=False)
            else:
                f = h5py.File(tmp, "w", locking=False, libver="latest")
                f.attrs["schema_version"] = SCHEMA_VERSION
                f.attrs["created"] = utc_now()
            try:
                yield f
                f.attrs["tool_version"] = tool_version()
                f.attrs["updated"] = utc_now()
                f.flush()
            finally:
                f.close()
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(folder)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _set_root(f: h5py.File, root: Mapping[str, Any]) -> None:
        for k, v in root.items():
            f.attrs[k] = v if not isinstance(v, Mapping | list | tuple) else to_json(v)

    @staticmethod
    def _write_scenes(f: h5py.File, scenes: Sequence[Any]) -> dict[str, int]:
        grp = f.require_group("scenarios")
        ids = json.loads(_attr(grp.attrs["ids"])) if "ids" in grp.attrs else []
        rows = {s: i for i, s in enumerate(ids)}
        for s in scenes:
            if s.id in rows:
                continue
            n = len(ids)
            g = grp.create_group(f"s{n:05d}")
            g.attrs.update(
                {
                    "id": s.id,
                    "source": s.source,
                    "family": s.family,
                    "tags": json.dumps(list(s.tags)),
                    "dt": float(s.dt),
                    "init_step": int(s.init_step),
                    "num_steps": int(s.num_steps),
                }
            )
            ego = s.agents[s.ego]
            g.create_dataset("log_ego", data=ego[:, :3].astype(np.float32))
            order = [s.ego] + [a for a in range(s.num_agents) if a != s.ego]
            g.create_dataset("agents", data=s.agents[order][..., [0, 1, 2, 5, 6]].astype(np.float32))
            g.create_dataset("valid", data=s.valid[order].astype(np.bool_))
            g.create_dataset("agent_type", data=s.agent_type[order].astype(np.int8))
            g.create_dataset("route", data=np.asarray(s.route, dtype=np.float32))
            for kind in MAP_KINDS:
                pl = getattr(s.map, kind)
                g.create_dataset(f"map/{kind}/points", data=np.asarray(pl.points, dtype=np.float32).reshape(-1, 2))
                g.create_dataset(f"map/{kind}/offsets", data=np.asarray(pl.offsets, dtype=np.int64))
            rows[s.id] = n
            ids.append(s.id)
        grp.attrs["ids"] = json.dumps(ids)
        return rows

    def prepare(self, scenes: Sequence[Any], root: Mapping[str, Any]) -> None:
        """Store the scenes (those not yet in the file) and the root attributes, in one commit."""
        with self._transaction() as f:
            self._set_root(f, root)
            self._write_scenes(f, scenes)

    def commit(
        self,
        key: str,
        attrs: Mapping[str, Any],
        rows: CheckpointRows,
        scenes: Sequence[Any],
        root: Mapping[str, Any],
    ) -> None:
        """Add ``rows`` for checkpoint ``key``, merged with any rows already stored, atomically.

        Args:
            key: group name (16 hex digits of the sha256, or ``baseline-<name>``).
            attrs: group attributes (see the schema); dicts and lists are stored as JSON.
            rows: the new rows (scenario ids not yet stored for this key).
            scenes: the Scenario objects of ``rows`` (stored under ``/scenarios`` when new).
            root: root attributes to set (backend, suite, config, run_dir).
        """
        with self._transaction() as f:
            self._set_root(f, root)
            scene_rows = self._write_scenes(f, scenes)
            cps = f.require_group("checkpoints")
            merged = rows
            if key in cps:
                old = cps[key]
                old_ids = tuple(s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in old["scenario_id"][()])
                keep = [i for i, s in enumerate(old_ids) if s not in set(rows.scenario_ids)]
                old_rows = CheckpointRows(
                    tuple(old_ids[i] for i in keep),
                    {k: np.asarray(old["metrics"][k][()])[keep] for k in old["metrics"]},
                    np.asarray(old["ego_traj"][()])[keep],
                )
                if set(old_rows.metrics) != set(rows.metrics):
                    raise EvaluationError(
                        f"{self.path}: stored metrics of {key} differ from this tool's ({sorted(old_rows.metrics)})"
                    )
                old_rows = CheckpointRows(old_rows.scenario_ids, {k: old_rows.metrics[k] for k in rows.metrics},
                                          old_rows.ego_traj)
                merged = CheckpointRows.concat([old_rows, rows])
            tmp_name = TMP_PREFIX + key
            if tmp_name in cps:
                del cps[tmp_name]
            g = cps.create_group(tmp_name)
            for k, v in attrs.items():
                g.attrs[k] = v if not isinstance(v, Mapping | list | tuple) else to_json(v)
            g.attrs["completed"] = utc_now()
            g.create_dataset("scenario", data=np.array([scene_rows[s] for s in merged.scenario_ids], dtype=np.int32))
            g.create_dataset("scenario_id", data=np.array(merged.scenario_ids, dtype=object), dtype=STR)
            m = g.create_group("metrics")
            for k, v in merged.metrics.items():
                m.create_dataset(k, data=np.asarray(v, dtype=np.float64))
            g.create_dataset("ego_traj", data=merged.ego_traj.astype(np.float32))
            if key in cps:
                del cps[key]
            cps.move(tmp_name, key)

    def write_verdict(self, verdict: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> None:
        """Store the selection verdict JSON under ``/verdict`` (atomic commit)."""
        with self._transaction() as f:
            if root:
                self._set_root(f, root)
            g = f.require_group("verdict")
            g.attrs["json"] = to_json(verdict)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
