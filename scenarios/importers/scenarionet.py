"""ScenarioNet scenario-dict pickles (``sd_*.pkl``) -> :class:`~scenarios.scenario.Scenario`.

ScenarioNet's converters (Waymo, nuScenes, nuPlan, Argoverse 2, MetaDrive's PG) write one dict per scene:
``tracks[id]`` with a ``type`` (``VEHICLE``, ``PEDESTRIAN``, ``CYCLIST``; ``TRAFFIC_CONE``, ``TRAFFIC_BARRIER``,
``TRAFFIC_OBJECT``, ``OTHER``, ``UNSET``... are :attr:`AgentType.OTHER`) and ``state`` arrays (``position [T, 2 or 3]``,
``heading [T]`` or ``[T, 1]``, ``velocity [T, 2]``, ``valid [T]``, ``length``/``width`` ``[T]`` or ``[T, 1]``),
``map_features[id]`` with a ``type`` and a ``polyline``/``polygon``, and ``metadata`` with ``sdc_id`` (the ego, a
track id as str or int; ``sdc_track_index`` where it is missing), ``ts`` (seconds, ``[T]``; else ``sample_rate`` s
per step; else 0.1 s) and ``dataset``. A track without ``velocity`` gets the one its positions imply (then
repaired as any other); without ``length``/``width``, its type's default size (MetaDrive's PG export writes sizes
only for the objects that have them); either is one :class:`~scenarios.importers.repair.FieldFallback` note per
file. Files are read with :mod:`scenarios.importers.safe_pickle`: no code runs.

The map: :mod:`scenarios.importers.scenarionet_kinds` (what each feature type is),
:mod:`scenarios.importers.scenarionet_features` (geometry, drivable-area outlines) and
:mod:`scenarios.importers.scenarionet_map` (semantics); ``docs/importers.md``, "Map semantics".
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from scenarios.import_options import ImportOptions
from scenarios.importers.common import Recording, content_errors, recording_to_scenes
from scenarios.importers.repair import FieldFallback, warn_skipped
from scenarios.importers.resample import DT, velocity_from_positions
from scenarios.importers.safe_pickle import safe_load
from scenarios.importers.scenarionet_features import map_geometry
from scenarios.importers.scenarionet_kinds import TRACK_TYPES, dataset_of
from scenarios.importers.scenarionet_map import map_semantics
from scenarios.scenario import MAP_SEMANTICS, NUM_FIELDS, AgentType, Polylines, Scenario, ScenarioError


def _per_step(a, n: int, what: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.full(n, float(arr[0]))
    if arr.shape != (n,):
        raise ScenarioError(f"{what} has {arr.size} values for {n} steps")
    return arr


def _timestamps(meta: dict, n_t: int, fallbacks: list[str]) -> np.ndarray:
    """``[n_t]`` s: ``ts`` when it has one finite increasing value per step, else from ``sample_rate``, else
    :data:`~scenarios.importers.resample.DT` (0.1 s, every converter's step)."""
    ts = np.asarray(meta.get("ts", []), dtype=np.float64).reshape(-1)
    if ts.shape == (n_t,) and np.all(np.isfinite(ts)) and np.all(np.diff(ts) > 0):
        return ts
    rate = meta.get("sample_rate")
    step = float(rate) if rate is not None and np.isfinite(float(rate)) and float(rate) > 0 else DT
    why = "no metadata.ts" if "ts" not in meta else f"metadata.ts unusable ({ts.size} values for {n_t} steps)"
    if "ts" in meta or rate is None:
        fallbacks.append(f"{why}: {step:g} s per step ({'sample_rate' if rate is not None else 'default'})")
    return np.arange(n_t) * step


def _tracks(tracks: object, meta: dict, fallbacks: list[str]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
    """``(states [A, T, 7], valid [A, T], agent types [A], track ids, t [T])``."""
    if not isinstance(tracks, dict) or not tracks:
        raise ScenarioError("no tracks")
    ids = list(tracks)
    n_t = len(np.asarray(tracks[ids[0]]["state"]["position"]))
    t = _timestamps(meta, n_t, fallbacks)
    states = np.zeros((len(ids), n_t, NUM_FIELDS), dtype=np.float64)
    valid = np.zeros((len(ids), n_t), dtype=bool)
    types = np.zeros(len(ids), dtype=np.int8)
    no_vel, no_size = 0, 0
    for i, tid in enumerate(ids):
        tr = tracks[tid]
        st = tr["state"]
        pos = np.asarray(st["position"], dtype=np.float64)
        if pos.ndim != 2 or pos.shape[0] != n_t or pos.shape[1] < 2:
            raise ScenarioError(f"track {tid}: position must be [{n_t}, 2 or 3], got {list(pos.shape)}")
        valid[i] = _per_step(st["valid"], n_t, f"track {tid} valid") > 0.5
        states[i, :, 0:2] = pos[:, :2]
        states[i, :, 2] = _per_step(st["heading"], n_t, f"track {tid} heading")
        if "velocity" in st:
            vel = np.asarray(st["velocity"], dtype=np.float64)
            if vel.size != 2 * n_t:
                raise ScenarioError(f"track {tid}: velocity must be [{n_t}, 2], got {list(vel.shape)}")
            states[i, :, 3:5] = vel.reshape(n_t, 2)
        else:
            no_vel += 1
            states[i, :, 3:5] = velocity_from_positions(pos[:, :2], valid[i] & np.all(np.isfinite(pos), 1), t)
        no_size += int("length" not in st or "width" not in st)
        for col, key in ((5, "length"), (6, "width")):  # missing: 0, filled with the type's default size
            if key in st:
                states[i, :, col] = _per_step(st[key], n_t, f"track {tid} {key}")
        types[i] = TRACK_TYPES.get(str(tr.get("type", "")), AgentType.OTHER)
    if no_vel:
        fallbacks.append(f"{no_vel} track(s) without velocity: derived from their positions")
    if no_size:
        fallbacks.append(f"{no_size} track(s) without length/width: their type's default size")
    valid &= np.all(np.isfinite(states), axis=2)
    return states, valid, types, [str(k) for k in ids], t


def _map(d: dict, n_t: int, dataset: str) -> dict:
    """The recording's map fields: geometry (``map_geometry``) and semantics (``map_semantics``)."""
    features = d.get("map_features") or {}
    notes: list[str] = []
    g = map_geometry(features, notes)
    sem = map_semantics(features, g["lane_fids"], g["lanes"], d.get("dynamic_map_states") or {}, n_t, dataset,
                        notes)
    warn_skipped(notes)
    unknown = set(sem["unknown"]) | (set() if g["edges_known"] else {"road_edges"})
    return {
        **sem,
        "unknown": tuple(s for s in MAP_SEMANTICS if s in unknown),
        "drivable_outlines": Polylines.from_list(g["outlines"]),
        "lanes": Polylines.from_list(g["lanes"]),
        "lane_widths": np.asarray(g["widths"], dtype=np.float64),
        "road_edges": Polylines.from_list(g["edges"]),
        "road_lines": Polylines.from_list(g["lines"]),
        "crosswalks": Polylines.from_list(g["crosswalks"]),
        "drivable_extra": Polylines.from_list(g["extra"]),
        "lane_has_polygon": np.asarray(g["has_poly"], dtype=bool),
    }


def _ego(meta: dict, ids: list[str]) -> int:
    """Index of the ego track: ``metadata.sdc_id``, else ``metadata.sdc_track_index``."""
    if "sdc_id" not in meta and "sdc_track_index" in meta:
        k = int(meta["sdc_track_index"])
        if not 0 <= k < len(ids):
            raise ScenarioError(f"sdc_track_index {k} is not one of the {len(ids)} tracks")
        return k
    sdc = str(meta["sdc_id"])
    if sdc not in ids:
        raise ScenarioError(f"sdc_id {sdc!r} is not a track")
    return ids.index(sdc)


def scenarionet_recording(d: object) -> Recording:
    """Build a :class:`Recording` from an unpickled ScenarioNet scenario dict.

    Raises:
        ScenarioError: missing keys or inconsistent shapes (message without file name).
    """
    if not isinstance(d, dict):
        raise ScenarioError(f"not a ScenarioNet scenario dict (top level is {type(d).__name__})")
    with content_errors("ScenarioNet scenario dict"):
        meta = d["metadata"]
        fallbacks: list[str] = []
        states, valid, types, ids, ts = _tracks(d["tracks"], meta, fallbacks)
        ego = _ego(meta, ids)
        if fallbacks:
            warnings.warn(FieldFallback("; ".join(fallbacks)), stacklevel=3)
        dataset = dataset_of(d)
        return Recording(
            id=str(d.get("id", meta.get("scenario_id", "scene"))),
            source=f"scenarionet/{dataset}",
            t=ts,
            states=states,
            valid=valid,
            agent_type=types,
            ego=ego,
            tags=("real", dataset),
            **_map(d, states.shape[1], dataset),
        )


def load_scenarionet(
    path: str | os.PathLike, options: ImportOptions | None = None, skipped: list[tuple[str, str]] | None = None
) -> list[Scenario]:
    """Import one ScenarioNet pickle.

    Args:
        path: an ``sd_*.pkl`` file.
        options: windowing and init step.
        skipped: see :func:`~scenarios.importers.common.recording_to_scenes`.

    Returns:
        Validated scenarios (one per window), ego at agent 0.

    Raises:
        ScenarioError: one line naming the file (refused global, truncated pickle, bad content).
    """
    path = Path(path)
    try:
        rec = scenarionet_recording(safe_load(path))
        return recording_to_scenes(rec, options or ImportOptions(), skipped)
    except ScenarioError as e:
        msg = str(e)
        raise ScenarioError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
