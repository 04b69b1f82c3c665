"""ScenarioNet scenario-dict pickles (``sd_*.pkl``) -> :class:`~scenarios.scenario.Scenario`.

ScenarioNet's converters write one dict per scene (Waymo, nuScenes, nuPlan, Argoverse):
``tracks[id]['state']`` arrays (``position [T, 3]``, ``heading [T]``, ``velocity [T, 2]``,
``valid [T]``, ``length``/``width`` ``[T]`` or ``[T, 1]``), ``map_features[id]`` with a
``type`` and a ``polyline``/``polygon``, and ``metadata`` with ``sdc_id`` (the ego) and
``ts`` (seconds). Files are read with :mod:`scenarios.importers.safe_pickle`: no code runs.

The map's semantics (``docs/importers.md``, "Map semantics"): lane polygons (nuScenes' own; Waymo's
centreline offset by its per-point left/right ``width``), ``speed_limit_mph`` (Waymo; nuScenes'
``speed_limit_kmh`` is the converter's constant 100 on lane connectors, not a mapped limit, and is
ignored), ``entry_lanes``/``exit_lanes`` and ``left_neighbor``/``right_neighbor``, intersection lanes
(Waymo ``interpolating``; nuScenes lane connectors, the lanes without a polygon), ``STOP_SIGN``
features, and ``dynamic_map_states`` traffic lights (per-step ``object_state``, ``stop_point``,
controlled ``lane``). nuScenes' ``boundary_*`` rings outline its drivable area.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from scenarios.import_options import ImportOptions
from scenarios.importers.common import Recording, content_errors, recording_to_scenes
from scenarios.importers.repair import usable_lines, warn_skipped
from scenarios.importers.safe_pickle import safe_load
from scenarios.importers.scenarionet_map import map_semantics
from scenarios.scenario import NUM_FIELDS, AgentType, Polylines, Scenario, ScenarioError

TYPES = {"VEHICLE": AgentType.VEHICLE, "PEDESTRIAN": AgentType.PEDESTRIAN, "CYCLIST": AgentType.CYCLIST}
DRIVING_LANES = ("LANE_SURFACE_STREET", "LANE_FREEWAY", "LANE_UNKNOWN")


def _xy(a) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ScenarioError(f"polyline must be [n, 2 or 3], got {list(arr.shape)}")
    return arr[:, :2]


def _per_step(a, n: int, what: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.full(n, float(arr[0]))
    if arr.shape != (n,):
        raise ScenarioError(f"{what} has {arr.size} values for {n} steps")
    return arr


def _tracks(d: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    tracks = d["tracks"]
    if not isinstance(tracks, dict) or not tracks:
        raise ScenarioError("no tracks")
    ids = list(tracks)
    n_t = len(np.asarray(tracks[ids[0]]["state"]["position"]))
    states = np.zeros((len(ids), n_t, NUM_FIELDS), dtype=np.float64)
    valid = np.zeros((len(ids), n_t), dtype=bool)
    types = np.zeros(len(ids), dtype=np.int8)
    for i, tid in enumerate(ids):
        tr = tracks[tid]
        st = tr["state"]
        pos = np.asarray(st["position"], dtype=np.float64)
        if pos.ndim != 2 or pos.shape[0] != n_t or pos.shape[1] < 2:
            raise ScenarioError(f"track {tid}: position must be [{n_t}, 2 or 3], got {list(pos.shape)}")
        vel = np.asarray(st["velocity"], dtype=np.float64).reshape(n_t, 2)
        states[i, :, 0:2] = pos[:, :2]
        states[i, :, 2] = _per_step(st["heading"], n_t, f"track {tid} heading")
        states[i, :, 3:5] = vel
        states[i, :, 5] = _per_step(st["length"], n_t, f"track {tid} length")
        states[i, :, 6] = _per_step(st["width"], n_t, f"track {tid} width")
        valid[i] = _per_step(st["valid"], n_t, f"track {tid} valid") > 0.5
        types[i] = TYPES.get(str(tr.get("type", "")), AgentType.OTHER)
    valid &= np.all(np.isfinite(states), axis=2)
    return states, valid, types, [str(k) for k in ids]


def _is_outline(fid: object, kind: str, mf: dict) -> bool:
    """nuScenes' ``boundary_*`` rings (ScenarioNet): the outline of the drivable area, not a painted line."""
    if not (str(fid).startswith("boundary_") and kind.startswith(("ROAD_LINE", "ROAD_EDGE"))):
        return False
    pts = np.asarray(mf.get("polyline", []), dtype=np.float64)
    return pts.ndim == 2 and len(pts) >= 4 and bool(np.all(np.abs(pts[0, :2] - pts[-1, :2]) <= 0.01))


def _map(d: dict, n_t: int) -> dict:
    lanes, widths, edges, lines, cross, extra, has_poly, notes = [], [], [], [], [], [], [], []
    lane_fids, outlines = [], []
    todo = []  # (feature id, kind, points) of the kinds used
    for fid, mf in d.get("map_features", {}).items():
        kind = str(mf.get("type", ""))
        if _is_outline(fid, kind, mf):
            kind = "OUTLINE"
        area = kind in ("CROSSWALK", "DRIVEWAY")
        if not (area or kind in DRIVING_LANES or kind.startswith(("ROAD_EDGE", "ROAD_LINE")) or kind == "OUTLINE"):
            continue  # stop signs, signals, bike lanes...
        geom = mf.get("polygon" if area else "polyline")
        try:
            todo.append((fid, kind, _xy(geom if geom is not None else [])))
        except ScenarioError as e:
            raise ScenarioError(f"map feature {fid} ({kind}): {e}") from None
    ok = np.ones(len(todo), dtype=bool)
    for area in (False, True):
        sel = [i for i, (_, kind, _) in enumerate(todo) if (kind in ("CROSSWALK", "DRIVEWAY")) == area]
        if sel:
            ok[sel] = usable_lines([todo[i][2] for i in sel], [f"{todo[i][0]} ({todo[i][1]})" for i in sel],
                                   3 if area else 2, notes)
    features = d.get("map_features", {})
    for (fid, kind, pts), good in zip(todo, ok):
        if not good:
            continue
        mf = features[fid]
        try:
            if kind in DRIVING_LANES:
                lanes.append(pts)
                lane_fids.append(str(fid))
                w = np.asarray(mf.get("width", np.zeros((0, 2))), dtype=np.float64)
                widths.append(float(np.median(w.reshape(len(w), -1).sum(axis=1))) if w.size else np.nan)
                has_poly.append("polygon" in mf and len(mf["polygon"]) >= 3)
                if has_poly[-1]:
                    extra.append(_xy(mf["polygon"]))
            elif kind == "OUTLINE":
                outlines.append(pts)
            elif kind.startswith("ROAD_EDGE"):
                edges.append(pts)
            elif kind.startswith("ROAD_LINE"):
                lines.append(pts)
            elif kind == "CROSSWALK":
                cross.append(pts)
            elif kind == "DRIVEWAY":
                extra.append(pts)
        except ScenarioError as e:
            raise ScenarioError(f"map feature {fid} ({kind}): {e}") from None
    warn_skipped(notes)
    dataset = str(d.get("metadata", {}).get("dataset", ""))
    sem = map_semantics(features, lane_fids, lanes, d.get("dynamic_map_states") or {}, n_t, dataset)
    if outlines:
        sem["unknown"] = tuple(u for u in sem["unknown"] if u != "road_edges")
    return {
        **sem,
        "drivable_outlines": Polylines.from_list(outlines),
        "lanes": Polylines.from_list(lanes),
        "lane_widths": np.asarray(widths, dtype=np.float64),
        "road_edges": Polylines.from_list(edges),
        "road_lines": Polylines.from_list(lines),
        "crosswalks": Polylines.from_list(cross),
        "drivable_extra": Polylines.from_list(extra),
        "lane_has_polygon": np.asarray(has_poly, dtype=bool),
    }


def scenarionet_recording(d: object) -> Recording:
    """Build a :class:`Recording` from an unpickled ScenarioNet scenario dict.

    Raises:
        ScenarioError: missing keys or inconsistent shapes (message without file name).
    """
    if not isinstance(d, dict):
        raise ScenarioError(f"not a ScenarioNet scenario dict (top level is {type(d).__name__})")
    with content_errors("ScenarioNet scenario dict"):
        meta = d["metadata"]
        states, valid, types, ids = _tracks(d)
        sdc = str(meta["sdc_id"])
        if sdc not in ids:
            raise ScenarioError(f"sdc_id {sdc!r} is not a track")
        n_t = states.shape[1]
        ts = np.asarray(meta.get("ts", []), dtype=np.float64).reshape(-1)
        if ts.shape != (n_t,):
            ts = np.arange(n_t) * float(meta.get("sample_rate", 0.1))
        dataset = str(meta.get("dataset", "unknown"))
        return Recording(
            id=str(d.get("id", meta.get("scenario_id", "scene"))),
            source=f"scenarionet/{dataset}",
            t=ts,
            states=states,
            valid=valid,
            agent_type=types,
            ego=ids.index(sdc),
            tags=("real", dataset),
            **_map(d, n_t),
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
