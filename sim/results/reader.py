"""Reader for ``results.h5`` (schema: docs/results_schema.md) that needs only h5py, numpy and the stdlib.

The dashboard imports this module, so it must never import torch or anything of the project that does.
Files may be written concurrently by ``sim.evaluate``: they are opened read-only, a locked or partial file is
retried briefly, a read that a commit overtook (its index replaced mid-read) is read again from the new index
(then refused with "try again"), and checkpoint groups still under a temporary name (or without their
``completed`` mark) are ignored. A commit file that is missing or unreadable is named in the error. The opening,
retries and sidecar checks are :mod:`sim.results.opening`.

Version 2 files are an index of HDF5 external links into the sidecar folder ``<name>.parts/`` (see
:mod:`sim.results.store`); h5py follows them, so the code below reads versions 1 and 2 alike.

Public API:
    read_summary(path) -> ResultsSummary      # attrs, scenarios, per-checkpoint metrics, verdict, skipped scenes
    read_checkpoints(path, with_traj) -> list[StoredCheckpoint]  # rows as the writer takes them
    read_verdict(path) -> dict | None; read_schema_version(path) -> int
    read_signal_verdict(path) -> dict | None  # the verdict over every training signal
    read_scenarios(path) -> tuple[ScenarioInfo, ...]  # the scenario table alone
    read_scene(path, row) -> SceneDetail      # logged ego, agents, route, map polylines of one scenario
    read_experiment(path) -> (Experiment | None, notes)  # the one experiment the file holds; why an old one mixes
    read_ego_traj(path, key, rows) -> ndarray  # closed-loop ego trajectory [len(rows), T, 4] of one checkpoint
    read_sampled(path) -> {key: SampledRows}  # rollouts with sampled actions (--rollouts K)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

from sim.results.errors import ResultsError
from sim.results.identity import SOURCE_ATTR, Experiment, mix_notes
from sim.results.opening import open_read, open_results, reading
from sim.results.schema import (
    SAMPLED_GROUP,
    SCHEMA_VERSION,
    SKIPPED_FIELDS,
    TMP_PREFIX,
    CheckpointAttrs,
    CheckpointRows,
    SampledRows,
    SceneHeader,
    attr_float,
    attr_int,
    attr_json,
    attr_str,
    attr_value,
)

T = TypeVar("T")
_TEMP_NAME = re.compile(r"^[._~]|tmp|temp|partial|incomplete|writing", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class ScenarioInfo(SceneHeader):
    """One row of ``/scenarios``: the scene's header (:class:`~sim.results.schema.SceneHeader`) and its row.

    Attributes:
        row: row number (the ``<n>`` of ``/scenarios/s<n>``).
    """

    row: int


@dataclass(frozen=True)
class SkippedRow:
    """One row of ``/skipped``: a scene (or whole file, ``scene_id`` "") that could not be used, and why."""

    file: str
    scene_id: str
    reason: str


@dataclass(frozen=True)
class CheckpointResult:
    """Summary of one ``/checkpoints/<key>`` group (no trajectories): its record and its per-scenario metrics.

    Attributes:
        key: group name (sha256 prefix or ``baseline-...``).
        record: the group's attributes, typed (:class:`~sim.results.schema.CheckpointAttrs`, the one checkpoint
            record the writer stores and every reader gets); its fields are properties of this object.
        completed: ISO time of the commit. scenario: int32 [N] scenario rows. scenario_id: N ids.
        metrics: name -> float64 [N] per-scenario values, rows aligned with ``scenario``.
    """

    key: str
    record: CheckpointAttrs
    completed: str
    scenario: np.ndarray
    scenario_id: tuple[str, ...]
    metrics: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """File name or baseline name (the record's)."""
        return self.record.name

    @property
    def path(self) -> str:
        """Checkpoint path (the record's)."""
        return self.record.path

    @property
    def sha256(self) -> str:
        """Sha256 of the file (the record's)."""
        return self.record.sha256

    @property
    def kind(self) -> str:
        """``checkpoint`` or ``baseline`` (the record's)."""
        return self.record.kind

    @property
    def roles(self) -> tuple[str, ...]:
        """Among :data:`~sim.results.run_folder.ROLES` (the record's)."""
        return self.record.roles

    @property
    def episode(self) -> int:
        """Training episode (-1: none) (the record's)."""
        return self.record.episode

    @property
    def entropy(self) -> float:
        """Nats (nan: unknown) (the record's)."""
        return self.record.entropy

    @property
    def entropy_per_dim(self) -> tuple[float, ...]:
        """Nats per action dimension (the record's)."""
        return self.record.entropy_per_dim

    @property
    def train_reward(self) -> float:
        """Mean training return (nan: unknown) (the record's)."""
        return self.record.train_reward

    @property
    def eval_info(self) -> dict[str, Any]:
        """The checkpoint's ``meta.eval_info`` (the record's)."""
        return dict(self.record.eval_info or {})

    @property
    def backend(self) -> str:
        """``kinematic`` or ``carla`` (the record's)."""
        return self.record.backend

    @property
    def files(self) -> tuple[str, ...]:
        """Base names of every file holding this policy (``ep00050.pt``, ``bc.pt``, ``best_entropy.pt``)."""
        return tuple(Path(f).name for f in self.record.files)

    @property
    def n(self) -> int:
        """Number of scenarios evaluated."""
        return int(self.scenario.shape[0])

    def mean(self, metric: str) -> float:
        """Mean of a metric over scenarios, ignoring NaN (NaN when absent or all NaN)."""
        v = self.metrics.get(metric)
        if v is None or v.size == 0 or np.all(np.isnan(v)):
            return math.nan
        return float(np.nanmean(v))


@dataclass(frozen=True)
class ResultsSummary:
    """Everything the dashboard needs at first paint.

    Attributes:
        path: the file. schema_version: root attr. attrs: other root attrs (config parsed to a dict).
        scenarios: rows in order. checkpoints: key -> result, sorted baselines last then by episode.
        verdict: parsed ``/verdict`` json, or None when absent or unparsable.
        skipped: scenes the evaluation could not use, with reasons.
        experiment: the one experiment the file holds (:class:`sim.results.identity.Experiment`).
        warnings: one line each where a file of an older tool already pools experiments (two runs or two
            scenario sets, :func:`sim.results.identity.mix_notes`): its numbers are not one experiment's.
    """

    path: Path
    schema_version: int
    attrs: dict[str, Any]
    scenarios: tuple[ScenarioInfo, ...]
    checkpoints: dict[str, CheckpointResult]
    verdict: dict[str, Any] | None
    skipped: tuple[SkippedRow, ...] = ()
    experiment: Experiment | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class SceneDetail:
    """One scenario's geometry, for the replay.

    Attributes:
        info: the scenario row. log_ego: float32 [T, 3] logged ego x, y, yaw (m, rad).
        agents: float32 [A, T, 5] x, y, yaw, length, width (ego is row 0). valid: bool [A, T].
        agent_type: int8 [A]. route: float32 [R, 2] m. map: kind -> list of float32 [P_i, 2] polylines.
    """

    info: ScenarioInfo
    log_ego: np.ndarray
    agents: np.ndarray
    valid: np.ndarray
    agent_type: np.ndarray
    route: np.ndarray
    map: dict[str, list[np.ndarray]]


_s, _f, _i, _json = attr_str, attr_float, attr_int, attr_json  # the one set of decoders (schema)


def _scenario_info(name: str, g: h5py.Group) -> ScenarioInfo:
    m = re.search(r"(\d+)$", name)
    return ScenarioInfo(row=int(m.group(1)) if m else -1, **SceneHeader.header_fields(g.attrs, name))


def _is_temp(name: str) -> bool:
    return bool(_TEMP_NAME.search(name))


def _checkpoint(key: str, g: h5py.Group) -> CheckpointResult | None:
    a = g.attrs
    if "completed" not in a or "scenario" not in g:
        return None  # not committed yet
    metrics: dict[str, np.ndarray] = {}
    if "metrics" in g:
        for mname, ds in g["metrics"].items():
            if isinstance(ds, h5py.Dataset):
                metrics[mname] = np.asarray(ds[()], dtype=np.float64).reshape(-1)
    scenario = np.asarray(g["scenario"][()], dtype=np.int32).reshape(-1)
    sid = tuple(_s(x) for x in g["scenario_id"][()]) if "scenario_id" in g else tuple(str(r) for r in scenario)
    return CheckpointResult(key=key, record=CheckpointAttrs.from_hdf5(a, key), completed=_s(a.get("completed", "")),
                            scenario=scenario, scenario_id=sid, metrics=metrics)


def read_scenarios(path: str | Path) -> tuple[ScenarioInfo, ...]:
    """The scenario table alone (one attribute read per scenario: the slow part of ``read_summary``)."""
    return reading(path, _scenarios, "malformed /scenarios")


def _scenarios(f: h5py.File) -> tuple[ScenarioInfo, ...]:
    scen: list[ScenarioInfo] = []
    if "scenarios" in f:
        for name in sorted(f["scenarios"].keys()):
            g = f["scenarios"][name]
            if isinstance(g, h5py.Group) and not _is_temp(name):
                scen.append(_scenario_info(name, g))
    return tuple(scen)


def read_summary(path: str | Path, with_scenarios: bool = True) -> ResultsSummary:
    """Read attrs, the scenario table, every committed checkpoint's metrics, and the verdict.

    Trajectories and maps are not read (see ``read_scene`` / ``read_ego_traj``). With ``with_scenarios=False``
    the scenario table is left empty (read it later with ``read_scenarios``): about 4x faster on 500 scenes.

    Raises:
        ResultsError: missing, unopenable, newer schema, or a malformed group (message names the file).
    """
    p = Path(path)

    def read(f: h5py.File) -> ResultsSummary:
        ver = _i(f.attrs.get("schema_version"), -1)
        if ver < 0:
            raise ResultsError(f"{p}: no schema_version attribute (not a results file?)")
        if ver > SCHEMA_VERSION:
            raise ResultsError(f"{p}: schema_version {ver} is newer than this reader ({SCHEMA_VERSION}); update")
        attrs: dict[str, Any] = {}
        for k, v in f.attrs.items():
            if k == "schema_version":
                continue
            attrs[k] = _json(v, _s(v)) if k == "config" else (_s(v) if isinstance(v, (bytes, str)) else v)
        scen = _scenarios(f) if with_scenarios else ()
        cks: list[CheckpointResult] = []
        if "checkpoints" in f:
            for key in f["checkpoints"]:
                if _is_temp(key):
                    continue
                g = f["checkpoints"][key]
                if isinstance(g, h5py.Group):
                    c = _checkpoint(key, g)
                    if c is not None:
                        cks.append(c)
        verdict = _json(f["verdict"].attrs.get("json"), None) if "verdict" in f else None
        cks.sort(key=lambda c: (c.kind == "baseline", c.episode, c.name))
        notes = mix_notes(attrs, [(c.kind, c.path) for c in cks])
        return ResultsSummary(
            path=p, schema_version=ver, attrs=attrs, scenarios=scen,
            checkpoints={c.key: c for c in cks}, verdict=verdict if isinstance(verdict, dict) else None,
            skipped=_skipped(f), experiment=Experiment.from_attrs(attrs),
            warnings=tuple(f"{p}: {n}" for n in notes),
        )

    return reading(p, read)


def _skipped(f: h5py.File) -> tuple[SkippedRow, ...]:
    if "skipped" not in f:
        return ()
    cols = [[_s(x) for x in f["skipped"][name][()]] for name in SKIPPED_FIELDS]
    return tuple(SkippedRow(*row) for row in zip(*cols, strict=True))


def _polylines(g: h5py.Group) -> list[np.ndarray]:
    pts = np.asarray(g["points"][()], dtype=np.float32).reshape(-1, 2)
    off = np.asarray(g["offsets"][()], dtype=np.int64).reshape(-1)
    return [pts[off[i]:off[i + 1]] for i in range(len(off) - 1) if off[i + 1] > off[i]]


def read_scene(path: str | Path, row: int) -> SceneDetail:
    """Read one scenario's logged trajectories, route and map polylines (for the replay).

    Args:
        path: results file. row: scenario row number.
    """
    p = Path(path)
    name = f"s{row:05d}"

    def read(f: h5py.File) -> SceneDetail:
        if "scenarios" not in f or name not in f["scenarios"]:
            raise ResultsError(f"{p}: no scenario row {row}")
        g = f["scenarios"][name]  # follows the link into its commit file: may fail (read_scene's error says which)
        mp: dict[str, list[np.ndarray]] = {}
        if "map" in g:
            for kind in g["map"]:
                mp[kind] = _polylines(g["map"][kind])
        agents = np.asarray(g["agents"][()], dtype=np.float32)
        return SceneDetail(
            info=_scenario_info(name, g),
            log_ego=np.asarray(g["log_ego"][()], dtype=np.float32),
            agents=agents,
            valid=np.asarray(g["valid"][()], dtype=bool) if "valid" in g else np.ones(agents.shape[:2], bool),
            agent_type=np.asarray(g["agent_type"][()], dtype=np.int8) if "agent_type" in g
            else np.zeros(agents.shape[0], np.int8),
            route=np.asarray(g["route"][()], dtype=np.float32).reshape(-1, 2) if "route" in g
            else np.zeros((0, 2), np.float32),
            map=mp,
        )

    return reading(p, read, f"scenario row {row} is malformed")


def read_ego_traj(path: str | Path, key: str, rows: Sequence[int] | None = None) -> np.ndarray:
    """Closed-loop ego trajectory of one checkpoint.

    Args:
        path: results file. key: checkpoint group name.
        rows: positions within the checkpoint's rows (0..N-1, aligned with ``CheckpointResult.scenario``); None = all.

    Returns:
        float32 [len(rows), T, 4]: x, y (m), yaw (rad), speed (m/s), NaN padded.
    """
    p = Path(path)

    def read(f: h5py.File) -> np.ndarray:
        if "checkpoints" not in f or key not in f["checkpoints"] or "ego_traj" not in f["checkpoints"][key]:
            raise ResultsError(f"{p}: no ego_traj for checkpoint {key}")
        ds = f["checkpoints"][key]["ego_traj"]
        if rows is None:
            return np.asarray(ds[()], dtype=np.float32)
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return np.zeros((0,) + ds.shape[1:], dtype=np.float32)
        if idx.min() < 0 or idx.max() >= ds.shape[0]:
            raise ResultsError(f"{p}: rows out of range 0..{ds.shape[0] - 1} for checkpoint {key}")
        uniq, inv = np.unique(idx, return_inverse=True)  # h5py needs increasing unique indices
        return np.asarray(ds[uniq], dtype=np.float32)[inv]

    return reading(p, read)


open_index = open_results  # the writer reads the index through the same retrying open


def scenario_ids_of(g: h5py.Group) -> tuple[str, ...]:
    """Scenario ids of one ``/checkpoints/<key>`` group, in row order."""
    return tuple(_s(x) for x in g["scenario_id"][()])


def read_sampled_group(g: h5py.Group) -> SampledRows | None:
    """The sampled-action rollouts of one ``/checkpoints/<key>`` group (``sampled`` subgroup), None without."""
    sg = g.get(SAMPLED_GROUP)
    if sg is None:
        return None
    metrics = {k: np.asarray(sg["metrics"][k][()], dtype=np.float64).reshape(-1) for k in sg["metrics"]}
    return SampledRows(tuple(_s(x) for x in sg["scenario_id"][()]),
                       np.asarray(sg["rollout"][()], dtype=np.int32).reshape(-1), metrics)


def read_sampled(path: str | Path) -> dict[str, SampledRows]:
    """Checkpoint key -> its rollouts with sampled actions (``sim.evaluate --rollouts K``); keys without none."""
    def read(f: h5py.File) -> dict[str, SampledRows]:
        out = {}
        grp = f.get("checkpoints")
        for key in sorted(grp) if grp is not None else ():
            if key.startswith(TMP_PREFIX) or _is_temp(key) or "completed" not in grp[key].attrs:
                continue
            rows = read_sampled_group(grp[key])
            if rows is not None:
                out[key] = rows
        return out

    return reading(path, read)


def read_schema_version(path: str | Path) -> int:
    """Schema version of an existing results file.

    Raises:
        ResultsError: not a readable results file (no ``schema_version``, not HDF5).
    """
    p = Path(path)
    try:
        with open_read(p) as f:
            if "schema_version" not in f.attrs:
                raise ResultsError(f"{p}: not a results file (no schema_version attribute)")
            return int(f.attrs["schema_version"])
    except (OSError, ValueError) as e:
        raise ResultsError(f"{p}: unreadable results file ({str(e).splitlines()[0] if str(e) else e})") from None


@dataclass(frozen=True, eq=False)
class StoredCheckpoint:
    """One ``/checkpoints/<key>`` group read back as the writer takes it: attributes and rows.

    Attributes:
        key: group name. attrs: attributes as plain values (JSON strings left as stored).
        rows: metrics (and ``ego_traj`` ``[N, T, 4]`` if asked, else ``[N, 0, 4]``). scenario_rows: int32 [N].
    """

    key: str
    attrs: dict[str, Any]
    rows: CheckpointRows
    scenario_rows: np.ndarray

    @property
    def record(self) -> CheckpointAttrs:
        """The group's attributes, typed (:meth:`~sim.results.schema.CheckpointAttrs.from_hdf5`)."""
        return CheckpointAttrs.from_hdf5(self.attrs, self.key)

    @property
    def roles(self) -> tuple[str, ...]:
        """The group's roles."""
        return self.record.roles


def read_checkpoints(path: str | Path, with_traj: bool = False) -> list[StoredCheckpoint]:
    """Every committed checkpoint group, in key order (trajectories on request)."""
    def read(f: h5py.File) -> list[StoredCheckpoint]:
        out = []
        grp = f.get("checkpoints")
        for key in sorted(grp) if grp is not None else ():
            if key.startswith(TMP_PREFIX) or _is_temp(key):
                continue
            g = grp[key]
            ids = scenario_ids_of(g)
            metrics = {k: np.asarray(g["metrics"][k][()], dtype=np.float64) for k in g["metrics"]}
            traj = np.asarray(g["ego_traj"][()]) if with_traj else np.zeros((len(ids), 0, 4), np.float32)
            attrs = {k: attr_value(v) for k, v in g.attrs.items()}
            rows = CheckpointRows(ids, metrics, traj, read_sampled_group(g))
            out.append(StoredCheckpoint(key, attrs, rows, np.asarray(g["scenario"][()])))
        return out

    return reading(path, read)


def read_verdict(path: str | Path) -> dict | None:
    """The stored selection verdict, or None."""
    def read(f: h5py.File) -> dict | None:
        if "verdict" not in f or "json" not in f["verdict"].attrs:
            return None
        return json.loads(_s(f["verdict"].attrs["json"]))

    return reading(path, read)


def read_root_attrs(path: str | Path) -> tuple[dict[str, Any], bool]:
    """Root attributes of a results file as plain values, and whether it holds checkpoint rows.

    Returns ``({}, False)`` when the file does not exist.
    """
    p = Path(path)
    if not p.exists():
        return {}, False
    def read(f: h5py.File) -> tuple[dict[str, Any], bool]:
        grp = f.get("checkpoints")
        return {k: attr_value(v) for k, v in f.attrs.items()}, grp is not None and any(not _is_temp(k) for k in grp)

    return reading(p, read)


def read_experiment(path: str | Path) -> tuple[Experiment | None, tuple[str, ...]]:
    """The experiment a results file holds and, for a file of an older tool, why it already pools several
    (:func:`sim.results.identity.mix_notes`); ``(None, ())`` when the file does not exist.

    Raises:
        ResultsError: the file cannot be read (one line naming it).
    """
    p = Path(path)
    if not p.exists():
        return None, ()
    def read(f: h5py.File) -> tuple[Experiment | None, tuple[str, ...]]:
        attrs = {k: attr_value(v) for k, v in f.attrs.items()}
        grp = f.get("checkpoints") if SOURCE_ATTR not in attrs else None  # recorded: checked at every call
        cks = [(_s(grp[k].attrs.get("kind", "")), _s(grp[k].attrs.get("path", "")))
               for k in (grp if grp is not None else ()) if not _is_temp(k)]
        return Experiment.from_attrs(attrs), mix_notes(attrs, cks)

    return reading(p, read)


# Keys of every ``ranking`` entry of a stored signal verdict (SignalJudgement's fields that its tables read).
SIGNAL_RANKING_KEYS = frozenset({"signal", "n_checkpoints", "regret", "regret_max", "regret_min", "pick_max",
                                 "pick_min"})


def read_signal_verdict(path: str | Path) -> dict | None:
    """The stored verdict over every training signal (``/verdict`` attribute ``signals_json``), or None.

    Keys as :meth:`sim.selection.signal_verdict.SignalVerdict.to_dict` plus ``source`` (the log read), ``agent``
    (the plug-in) and ``checkpoint_names`` (key -> file name); docs/results_schema.md.

    Raises:
        ResultsError: one line naming the file when the attribute is not JSON or not such a verdict (an object with
            ``metric`` and a ``ranking`` list whose entries hold :data:`SIGNAL_RANKING_KEYS`).
    """
    def read(f: h5py.File) -> dict | None:
        if "verdict" not in f or "signals_json" not in f["verdict"].attrs:
            return None
        v = json.loads(_s(f["verdict"].attrs["signals_json"]))
        ranking = v.get("ranking") if isinstance(v, dict) else None
        if not isinstance(ranking, list) or "metric" not in v or not all(
                isinstance(j, dict) and j.keys() >= SIGNAL_RANKING_KEYS for j in ranking):
            raise ValueError("signals_json is not a signal verdict (an object with metric and a ranking whose "
                             f"entries hold {', '.join(sorted(SIGNAL_RANKING_KEYS))})")
        return v

    return reading(path, read)
