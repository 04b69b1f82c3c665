"""Schema of the results file (``docs/results_schema.md``): constants and the typed records written and read.

Needs only h5py, numpy and the standard library (the dashboard imports it through the reader).

Version 2 (this tool) keeps version 1's layout as seen through h5py and adds the ``/skipped`` table and
per-scene ``offset`` / ``agents_dropped``. The main file is an index: ``/checkpoints/<key>`` and
``/scenarios/s<n>`` may be HDF5 external links into small commit files in the sidecar folder
``<name>.parts/`` (:data:`PARTS_SUFFIX`), which h5py follows transparently; a consolidated file holds the
groups themselves. Version 1 files (groups only, no sidecar) are read as they are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
PARTS_SUFFIX = ".parts"  # sidecar folder of commit files: results.h5 -> results.h5.parts/
LAYOUT_ATTR, LAYOUT_INDEX = "layout", "index"  # root attribute of a main file that links into the sidecar
TMP_PREFIX = ".tmp-"  # in-progress files and groups (readers ignore them)
MAP_KINDS: tuple[str, ...] = ("lanes", "road_edges", "road_lines", "drivable", "crosswalks")
SKIPPED_FIELDS: tuple[str, ...] = ("file", "scene_id", "reason")
SAMPLED_GROUP = "sampled"  # /checkpoints/<key>/sampled: rollouts with sampled actions (--rollouts K)
STR = h5py.string_dtype("utf-8")


def parts_dir(path: str | Path) -> Path:
    """The sidecar folder of a results file (``results.h5`` -> ``results.h5.parts``)."""
    p = Path(path)
    return p.with_name(p.name + PARTS_SUFFIX)


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


def to_json(obj: Any) -> str:
    """Strict JSON (NaN/inf written as null; numpy scalars/arrays and paths converted)."""

    def clean(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            return clean(x.tolist())
        if isinstance(x, np.generic):
            x = x.item()
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, Path):
            return str(x)
        if isinstance(x, Mapping):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(obj), allow_nan=False)


def attr_value(v: Any) -> Any:
    """An HDF5 attribute as a plain Python value (bytes decoded, numpy scalars unwrapped)."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape == ():
        return attr_value(v.item())
    return v.item() if isinstance(v, np.generic) else v


def attr_str(v: Any) -> str:
    """An HDF5 attribute as ``str`` (bytes decoded as UTF-8, 0-d arrays unwrapped)."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape == ():
        return attr_str(v.item())
    return str(v)


def attr_float(v: Any, default: float = math.nan) -> float:
    """An HDF5 attribute as ``float``; ``default`` when absent or not a number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def attr_int(v: Any, default: int = -1) -> int:
    """An HDF5 attribute as ``int``; ``default`` when absent or not a number."""
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def attr_json(v: Any, default: Any) -> Any:
    """A JSON-string HDF5 attribute decoded; ``default`` when absent or not JSON."""
    if v is None:
        return default
    try:
        return json.loads(attr_str(v))
    except (ValueError, TypeError):
        return default


@dataclass(frozen=True)
class CheckpointAttrs:
    """Attributes of one ``/checkpoints/<key>`` group.

    Attributes:
        name: file name (``ep00100.pt``) or baseline name. path: checkpoint path ("" for baselines).
        sha256: sha256 of the file ("" for baselines). weights_sha256: digest of the weights and architecture.
        kind: ``checkpoint`` or ``baseline``. roles: among ``candidate, best_entropy, last, best_reward, bc``.
        files: every file merged into this entry (same weights). episode: training episode (-1: none).
        entropy: nats (NaN: unknown). entropy_per_dim: nats per action dimension.
        train_reward: mean training return (NaN: unknown). eval_info: the checkpoint's ``meta.eval_info``.
        backend: ``kinematic`` or ``carla``.
    """

    name: str
    kind: str
    path: str = ""
    sha256: str = ""
    weights_sha256: str = ""
    roles: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    episode: int = -1
    entropy: float = math.nan
    entropy_per_dim: tuple[float, ...] = ()
    train_reward: float = math.nan
    eval_info: Mapping[str, Any] | None = None
    backend: str = ""

    def to_hdf5(self) -> dict[str, Any]:
        """Attribute dict as stored (lists and dicts as JSON strings)."""
        return {
            "name": self.name, "path": self.path, "sha256": self.sha256, "weights_sha256": self.weights_sha256,
            "kind": self.kind, "roles": to_json(list(self.roles)), "files": to_json(list(self.files)),
            "episode": int(self.episode), "entropy": float(self.entropy),
            "entropy_per_dim": to_json(list(self.entropy_per_dim)), "train_reward": float(self.train_reward),
            "eval_info": to_json(dict(self.eval_info or {})), "backend": self.backend,
        }

    @classmethod
    def from_hdf5(cls, a: Mapping[str, Any], key: str) -> CheckpointAttrs:
        """The inverse of :meth:`to_hdf5`: the record of group ``/checkpoints/<key>`` from its attributes, tolerant
        of older files (a missing attribute takes its default; the kind of a ``baseline-*`` key is ``baseline``)."""
        return cls(
            name=attr_str(a.get("name", key)),
            kind=attr_str(a.get("kind", "baseline" if key.startswith("baseline") else "checkpoint")),
            path=attr_str(a.get("path", "")),
            sha256=attr_str(a.get("sha256", "")),
            weights_sha256=attr_str(a.get("weights_sha256", "")),
            roles=tuple(str(r) for r in attr_json(a.get("roles"), []) or ()),
            files=tuple(str(f) for f in attr_json(a.get("files"), []) or ()),
            episode=attr_int(a.get("episode"), -1),
            entropy=attr_float(a.get("entropy")),
            entropy_per_dim=tuple(attr_float(x) for x in attr_json(a.get("entropy_per_dim"), []) or ()),
            train_reward=attr_float(a.get("train_reward")),
            eval_info=attr_json(a.get("eval_info"), {}) or {},
            backend=attr_str(a.get("backend", "")),
        )


def _common_names(sets: Sequence[Mapping[str, Any]], what: str) -> list[str]:
    """The metric names every one of ``sets`` holds, in the first's order (rows read back from a file come in the
    file's order, new ones in the registry's: the same set in another order concatenates).

    Raises:
        ValueError: the sets differ (names one holds and another lacks).
    """
    names = list(sets[0]) if sets else []
    for m in sets[1:]:
        if set(m) != set(names):
            raise ValueError(f"{what} sets differ: {sorted(set(names) ^ set(m))} in one part only")
    return names


@dataclass(frozen=True, eq=False)
class SampledRows:
    """Rollouts with sampled actions (``sim.evaluate --rollouts K``) of one checkpoint: M = N scenes x K rows.

    Stored under ``/checkpoints/<key>/sampled`` (docs/results_schema.md), beside the mean-action rows, which
    they never replace.

    Attributes:
        scenario_ids: M scenario ids. rollout: int32 ``[M]`` rollout index 0..K-1 of each row.
        metrics: metric name -> float64 ``[M]`` (as :attr:`CheckpointRows.metrics`).
    """

    scenario_ids: tuple[str, ...]
    rollout: np.ndarray
    metrics: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        m = len(self.scenario_ids)
        if np.shape(self.rollout) != (m,):
            raise ValueError(f"rollout must be [{m}], got {list(np.shape(self.rollout))}")
        for k, v in self.metrics.items():
            if np.shape(v) != (m,):
                raise ValueError(f"sampled metric {k} must be [{m}], got {list(np.shape(v))}")

    @staticmethod
    def concat(parts: Sequence[SampledRows]) -> SampledRows:
        """Concatenate sampled row sets (same metric names)."""
        names = _common_names([p.metrics for p in parts], "sampled metric")
        rollout = np.concatenate([np.asarray(p.rollout, dtype=np.int32) for p in parts] or [np.zeros(0, np.int32)])
        metrics = {k: np.concatenate([np.asarray(p.metrics[k], dtype=np.float64) for p in parts]) for k in names}
        return SampledRows(tuple(i for p in parts for i in p.scenario_ids), rollout, metrics)

    def only(self, ids: Sequence[str], keep: bool = True) -> SampledRows:
        """The rows of scenes in ``ids`` (``keep=False``: of scenes not in ``ids``), in stored order."""
        want = set(ids)
        idx = np.array([i for i, s in enumerate(self.scenario_ids) if (s in want) == keep], dtype=np.int64)
        return SampledRows(tuple(self.scenario_ids[i] for i in idx), np.asarray(self.rollout, dtype=np.int32)[idx],
                           {k: np.asarray(v)[idx] for k, v in self.metrics.items()})


@dataclass(frozen=True, eq=False)
class CheckpointRows:
    """Closed-loop results of one checkpoint (or baseline) on N scenarios, rows aligned.

    Attributes:
        scenario_ids: the N scenario ids.
        metrics: metric name -> float64 ``[N]`` (booleans as 0/1, NaN where undefined).
        ego_traj: float32 ``[N, T, 4]`` closed-loop ego x (m), y (m), yaw (rad), speed (m/s), NaN padded.
        sampled: the rollouts with sampled actions on these scenes (``--rollouts K``), None without.
    """

    scenario_ids: tuple[str, ...]
    metrics: Mapping[str, np.ndarray]
    ego_traj: np.ndarray
    sampled: SampledRows | None = None

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
        names = _common_names([p.metrics for p in parts], "metric")
        sampled = [p.sampled for p in parts if p.sampled is not None]
        return CheckpointRows(
            scenario_ids=tuple(i for p in parts for i in p.scenario_ids),
            metrics={k: np.concatenate([np.asarray(p.metrics[k], dtype=np.float64) for p in parts]) for k in names},
            ego_traj=np.concatenate(trajs, axis=0).astype(np.float32),
            sampled=SampledRows.concat(sampled) if sampled else None,
        )

    def select(self, ids: Sequence[str]) -> CheckpointRows:
        """Rows for ``ids`` in that order (each must be present); sampled rows of those scenes kept."""
        pos = {s: i for i, s in enumerate(self.scenario_ids)}
        idx = np.array([pos[s] for s in ids], dtype=np.int64)
        return CheckpointRows(tuple(ids), {k: np.asarray(v)[idx] for k, v in self.metrics.items()}, self.ego_traj[idx],
                              None if self.sampled is None else self.sampled.only(ids))


@dataclass(frozen=True, kw_only=True)
class SceneHeader:
    """The attributes of one ``/scenarios/s<n>`` group: the one typed scene record's header, what the writer stores
    (:class:`SceneRecord`) and every reader gets (:class:`sim.results.reader.ScenarioInfo`).

    Attributes:
        id, source, family: identity. tags: free tags. dt: step length, s. init_step: first controlled step.
        num_steps: T, steps in the log. offset: the recentring shift applied on import, m (world = local + offset;
        None: not recorded). agents_dropped: agents left out of the simulated batch (-1: not recorded).
        types: scenario types (:func:`scenarios.types.scenario_types`; empty: not recorded, a file written before
        types).
    """

    id: str
    source: str
    family: str
    tags: tuple[str, ...]
    dt: float
    init_step: int
    num_steps: int
    offset: tuple[float, float] | None = None
    agents_dropped: int = -1
    types: tuple[str, ...] = ()

    def header_hdf5(self) -> dict[str, Any]:
        """The group's attributes as stored (lists as JSON strings; an unknown offset as NaN, NaN)."""
        off = (math.nan, math.nan) if self.offset is None else self.offset
        return {"id": self.id, "source": self.source, "family": self.family, "tags": to_json(list(self.tags)),
                "dt": float(self.dt), "init_step": int(self.init_step), "num_steps": int(self.num_steps),
                "offset": np.asarray(off, dtype=np.float64), "agents_dropped": int(self.agents_dropped),
                "types": to_json(list(self.types))}

    @staticmethod
    def header_fields(a: Mapping[str, Any], name: str) -> dict[str, Any]:
        """The inverse of :meth:`header_hdf5`, as keyword arguments, tolerant of older files (a missing attribute
        takes its default; the id of a group without one is its name)."""
        off = np.asarray(a.get("offset") if a.get("offset") is not None else [], dtype=float).reshape(-1)
        return {
            "id": attr_str(a.get("id", name)), "source": attr_str(a.get("source", "")),
            "family": attr_str(a.get("family", "")), "tags": tuple(str(t) for t in attr_json(a.get("tags"), []) or ()),
            "dt": attr_float(a.get("dt"), 0.1), "init_step": attr_int(a.get("init_step"), 0),
            "num_steps": attr_int(a.get("num_steps"), 0),
            "offset": (float(off[0]), float(off[1])) if off.size >= 2 and np.isfinite(off[:2]).all() else None,
            "agents_dropped": attr_int(a.get("agents_dropped"), -1),
            "types": tuple(str(t) for t in attr_json(a.get("types"), []) or ()),
        }


@dataclass(frozen=True, eq=False, kw_only=True)
class SceneRecord(SceneHeader):
    """One scene as stored under ``/scenarios/s<n>`` (what the replay needs): the header and the arrays.

    Attributes:
        log_ego: float32 [T, 3] x, y (m), yaw (rad). agents: float32 [A, T, 5] x, y, yaw, length, width (ego
        first). valid: bool [A, T]. agent_type: int8 [A]. route: float32 [R, 2] m.
        map: kind -> (points float32 [P, 2], offsets int64 [L + 1]).
    """

    log_ego: np.ndarray
    agents: np.ndarray
    valid: np.ndarray
    agent_type: np.ndarray
    route: np.ndarray
    map: Mapping[str, tuple[np.ndarray, np.ndarray]]


def recentring_offset(scene: Any) -> tuple[float, float] | None:
    """The scene's import recentring offset (m): world = local + offset (``Scenario.world_origin``); None if none."""
    off = getattr(scene, "world_origin", None)
    if off is None:
        return None
    a = np.asarray(off, dtype=np.float64).reshape(-1)
    return (float(a[0]), float(a[1])) if a.size >= 2 and np.isfinite(a[:2]).all() else None


def scene_record(scene: Any, agents_dropped: int = -1, types: tuple[str, ...] | None = None) -> SceneRecord:
    """The stored view of a :class:`scenarios.scenario.Scenario` (ego first), built anew on each call (copies of
    the scene's arrays; an evaluation builds one record at a time and drops it, so that memory never holds every
    scene twice).

    Args:
        scene: the scene. agents_dropped: agents the cap left out (-1: unknown).
        types: its scenario types when already mined (None: :func:`scenarios.types.scenario_types` now).
    """
    from scenarios.types import scenario_types

    order = [scene.ego] + [a for a in range(scene.num_agents) if a != scene.ego]
    return SceneRecord(
        id=scene.id, source=scene.source, family=scene.family, tags=tuple(scene.tags), dt=float(scene.dt),
        init_step=int(scene.init_step), num_steps=int(scene.num_steps),
        log_ego=scene.agents[scene.ego][:, :3].astype(np.float32),
        agents=scene.agents[order][..., [0, 1, 2, 5, 6]].astype(np.float32),
        valid=scene.valid[order].astype(np.bool_), agent_type=scene.agent_type[order].astype(np.int8),
        route=np.asarray(scene.route, dtype=np.float32).reshape(-1, 2),
        map={k: (np.asarray(getattr(scene.map, k).points, dtype=np.float32).reshape(-1, 2),
                 np.asarray(getattr(scene.map, k).offsets, dtype=np.int64)) for k in MAP_KINDS},
        offset=recentring_offset(scene), agents_dropped=int(agents_dropped),
        types=scenario_types(scene) if types is None else tuple(types),
    )
