"""Argoverse 2 motion-forecasting scenarios -> :class:`~scenarios.scenario.Scenario`, read with the ``av2`` package.

A scenario is a folder holding ``scenario_<id>.parquet`` (tracks: ``object_type``, ``object_category``,
position, heading, velocity per ``timestep``; 110 steps at 10 Hz) and ``log_map_archive_<id>.json`` (lane
segments with both boundaries, successors, left/right neighbours, ``is_intersection``; drivable areas;
pedestrian crossings). The parquet is read with
``av2.datasets.motion_forecasting.scenario_serialization.load_argoverse_scenario_parquet`` and the map with
``av2.map.map_api.ArgoverseStaticMap.from_json`` (see ``../shared/REFERENCE.md``, "Argoverse 2").

- Ego: the track ``"AV"`` (the recording vehicle) unless :attr:`ImportOptions.ego` names another track id.
- Types: :data:`TYPES` (``vehicle``/``bus`` vehicles, ``motorcyclist``/``cyclist`` cyclists, everything
  else, static objects included, ``OTHER``). A step is valid where the track has a state for it.
- Sizes: the data has none (av2-api issue #18), so every track gets its category's box from
  :data:`CATEGORY_SIZE` (one place; documented in ``docs/importers.md``).
- Map: vehicle and bus lane segments (bike lanes left out, as Waymo's) become lanes: centreline and mean
  width from ``av2.geometry.interpolate.compute_midpoint_line`` (av2's own ``get_lane_segment_centerline``),
  the lane polygon from the right boundary and the reversed left one (av2's ``get_lane_segment_polygon``),
  ``is_intersection`` -> ``lane_intersection``, successors -> ``lane_successors``, left/right neighbours ->
  ``lane_neighbours``. The drivable area is the union of the drivable-area polygons and the lane polygons;
  pedestrian crossings are crosswalks; painted lane boundaries are road lines. The source has no speed
  limits, stop signs, traffic-light states, kerb polylines or mapped-area outline: recorded in
  ``RoadMap.unknown``.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from scenarios.import_options import ImportOptions
from scenarios.importers.common import Recording, recording_to_scenes
from scenarios.scenario import NUM_FIELDS, AgentType, Polylines, Scenario, ScenarioError

AV_TRACK = "AV"  # Argoverse 2's track id of the recording vehicle (the default ego)
SOURCE = "argoverse2"
SCENARIO_FILE = re.compile(r"^scenario_(?P<id>.+)\.parquet$")
MAP_FILE = "log_map_archive_{id}.json"
MAP_PREFIX = "log_map_archive_"

# object_type -> AgentType (av2.datasets.motion_forecasting.data_schema.ObjectType)
TYPES = {
    "vehicle": AgentType.VEHICLE,
    "bus": AgentType.VEHICLE,
    "pedestrian": AgentType.PEDESTRIAN,
    "cyclist": AgentType.CYCLIST,
    "motorcyclist": AgentType.CYCLIST,
}
# (length, width) m per object_type: Argoverse 2 records no object sizes (av2-api issue #18). Typical boxes:
# a mid-size car (and the AV), a 12 m city bus, a rider on a bicycle / motorcycle, a walking person, a parked
# bicycle, a traffic cone or barrel (construction), and 1 m for static / background / unknown objects.
CATEGORY_SIZE = {
    "vehicle": (4.5, 2.0),
    "bus": (12.0, 2.55),
    "cyclist": (1.8, 0.7),
    "motorcyclist": (2.2, 0.9),
    "pedestrian": (0.6, 0.6),
    "riderless_bicycle": (1.8, 0.6),
    "construction": (0.5, 0.5),
    "static": (1.0, 1.0),
    "background": (1.0, 1.0),
    "unknown": (1.0, 1.0),
}
REPEATED_POINT = 1e-6  # m: a boundary point this close to the one before repeats it (av2 maps hold cm)
DRIVING_LANE_TYPES = ("VEHICLE", "BUS")  # av2.map.lane_segment.LaneType values kept as lanes (not BIKE)
UNKNOWN = ("speed_limits", "stop_signs", "traffic_lights", "road_edges", "mapped_area")


def is_av2_map(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an Argoverse 2 map archive (``log_map_archive_<id>.json``), read with its parquet."""
    return Path(path).name.startswith(MAP_PREFIX) and Path(path).suffix.lower() == ".json"


def map_path(parquet: Path) -> Path:
    """The ``log_map_archive_<id>.json`` beside ``scenario_<id>.parquet`` (else the folder's only map archive).

    Raises:
        ScenarioError: no map archive, or several and none named after the scenario.
    """
    m = SCENARIO_FILE.match(parquet.name)
    if m and (parquet.parent / MAP_FILE.format(id=m["id"])).is_file():
        return parquet.parent / MAP_FILE.format(id=m["id"])
    maps = sorted(parquet.parent.glob(MAP_PREFIX + "*.json"))
    if len(maps) == 1:
        return maps[0]
    want = MAP_FILE.format(id=m["id"] if m else "<id>")
    raise ScenarioError(f"no Argoverse 2 map {want} beside it ({len(maps)} map archives in the folder)")


def _av2():
    try:
        from av2.datasets.motion_forecasting import scenario_serialization
        from av2.geometry import interpolate
        from av2.map.map_api import ArgoverseStaticMap
    except ImportError:
        raise ScenarioError("Argoverse 2 needs the av2 package: pip install 'driveselect[av2]'") from None
    return scenario_serialization, interpolate, ArgoverseStaticMap


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _tracks(scenario, ego_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """``(t [T] s, states [A, T, 7], valid [A, T], agent_type [A], ego index)`` of an ``ArgoverseScenario``."""
    ts = np.asarray(scenario.timestamps_ns, dtype=np.float64)
    n_t = len(ts)
    if n_t < 2:
        raise ScenarioError(f"{n_t} timestamps (needs >= 2)")
    tracks = list(scenario.tracks)
    ids = [str(tr.track_id) for tr in tracks]
    if ego_id not in ids:
        shown = ", ".join(ids[:8]) + (", ..." if len(ids) > 8 else "")
        raise ScenarioError(f"no track {ego_id!r} to use as ego (tracks: {shown})")
    states = np.zeros((len(tracks), n_t, NUM_FIELDS), dtype=np.float64)
    valid = np.zeros((len(tracks), n_t), dtype=bool)
    types = np.zeros(len(tracks), dtype=np.int8)
    for i, tr in enumerate(tracks):
        kind = str(tr.object_type.value)
        types[i] = TYPES.get(kind, AgentType.OTHER)
        st = tr.object_states
        k = np.array([s.timestep for s in st], dtype=np.int64)
        if k.size and (k.min() < 0 or k.max() >= n_t):
            raise ScenarioError(f"track {tr.track_id}: timestep outside [0, {n_t})")
        states[i, k, 0:2] = [s.position for s in st]
        states[i, k, 2] = [s.heading for s in st]
        states[i, k, 3:5] = [s.velocity for s in st]
        states[i, k, 5:7] = CATEGORY_SIZE.get(kind, CATEGORY_SIZE["unknown"])
        valid[i, k] = True
    valid &= np.all(np.isfinite(states), axis=2)
    states[~valid] = 0.0
    return (ts - ts[0]) * 1e-9, states, valid, types, ids.index(ego_id)


def _ring(xy: np.ndarray) -> np.ndarray:
    """A closed polygon ``[n, 2]`` without the repeated first point."""
    xy = np.asarray(xy, dtype=np.float64)[:, :2]
    return xy[:-1] if len(xy) > 1 and np.array_equal(xy[0], xy[-1]) else xy


def _distinct(xy: np.ndarray) -> np.ndarray:
    """``xy [n, 2]`` without the points that repeat the one before (m): av2's arc-length interpolation divides by
    each segment's length, so one repeated boundary point made the whole centreline NaN and the lane vanished."""
    xy = np.asarray(xy, dtype=np.float64)
    keep = np.ones(len(xy), dtype=bool)
    keep[1:] = np.any(np.abs(np.diff(xy, axis=0)) > REPEATED_POINT, axis=1)
    return xy[keep]


def _lane_map(static_map, interpolate) -> dict:
    """Lanes and their semantics from an ``ArgoverseStaticMap`` (world frame, m)."""
    segs = [s for s in static_map.vector_lane_segments.values() if s.lane_type.value in DRIVING_LANE_TYPES]
    index = {s.id: i for i, s in enumerate(segs)}
    centres, widths, polys, inter, succ, neigh, paint = [], [], [], [], [], [], []
    for i, s in enumerate(segs):
        left, right = _distinct(s.left_lane_boundary.xyz[:, :2]), _distinct(s.right_lane_boundary.xyz[:, :2])
        centre, width = interpolate.compute_midpoint_line(
            left_ln_boundary=left, right_ln_boundary=right, num_interp_pts=interpolate.NUM_CENTERLINE_INTERP_PTS
        )
        centres.append(np.asarray(centre, dtype=np.float64)[:, :2])
        widths.append(float(width))
        polys.append(np.vstack([right, left[::-1]]))
        inter.append(1 if s.is_intersection else 0)
        succ += [(i, index[j]) for j in s.successors if j in index]
        for nid, side in ((s.left_neighbor_id, 1), (s.right_neighbor_id, -1)):
            if nid is not None and nid in index:
                neigh.append((i, index[nid], side))
        for line, mark in ((left, s.left_mark_type), (right, s.right_mark_type)):
            if mark.value != "NONE":
                paint.append(line)
    return {
        "lanes": Polylines.from_list(centres),
        "widths": np.asarray(widths, dtype=np.float64),
        "polygons": polys,
        "intersection": np.asarray(inter, dtype=np.int8),
        "successors": np.asarray(succ, dtype=np.int64).reshape(-1, 2),
        "neighbours": np.asarray(neigh, dtype=np.int64).reshape(-1, 3),
        "road_lines": Polylines.from_list(paint),
    }


def _kept(scene_lanes: Polylines, lanes: Polylines, offset: np.ndarray) -> np.ndarray:
    """int64 ``[L_scene]``: the index among ``lanes`` (world frame) of each lane the scene kept (in order).

    The scene's lanes are the source's lanes moved by ``-offset`` and cropped, order preserved.
    """
    out, j = [], 0
    for line in scene_lanes:
        while j < len(lanes) and not np.array_equal(lanes[j] - offset, line):
            j += 1
        if j == len(lanes):
            raise ScenarioError("internal: a scene lane is not among the map's lanes")
        out.append(j)
        j += 1
    return np.asarray(out, dtype=np.int64)


def _with_semantics(scene: Scenario, lm: dict) -> Scenario:
    """``scene`` with the lane polygons, intersections, successors and neighbours of its kept lanes."""
    offset = np.asarray(scene.world_origin, dtype=np.float64)
    kept = _kept(scene.map.lanes, lm["lanes"], offset)
    new = np.full(len(lm["lanes"]), -1, dtype=np.int64)
    new[kept] = np.arange(len(kept))

    def remap(rows: np.ndarray, cols: int) -> np.ndarray:
        rows = rows[(new[rows[:, 0]] >= 0) & (new[rows[:, 1]] >= 0)].copy()
        rows[:, :2] = new[rows[:, :2]]
        return rows.reshape(-1, cols)

    road = replace(
        scene.map,
        lane_polygons=Polylines.from_list([lm["polygons"][k] - offset for k in kept]),
        lane_intersection=lm["intersection"][kept],
        lane_successors=remap(lm["successors"], 2),
        lane_neighbours=remap(lm["neighbours"], 3),
        unknown=UNKNOWN,
    )
    return replace(scene, map=road).validate()


def av2_recording(scenario, static_map, ego_id: str = AV_TRACK) -> tuple[Recording, dict]:
    """A :class:`Recording` and its lane semantics from av2's ``ArgoverseScenario`` and ``ArgoverseStaticMap``.

    Raises:
        ScenarioError: no track ``ego_id``, or malformed content (message without file name).
    """
    _, interpolate, _ = _av2()
    t, states, valid, types, ego = _tracks(scenario, ego_id)
    lm = _lane_map(static_map, interpolate)
    drivable = [_ring(a.xyz) for a in static_map.vector_drivable_areas.values()]
    crossings = [_ring(c.polygon) for c in static_map.vector_pedestrian_crossings.values()]
    rec = Recording(
        id=str(scenario.scenario_id),
        source=SOURCE,
        t=t,
        states=states,
        valid=valid,
        agent_type=types,
        ego=ego,
        lanes=lm["lanes"],
        lane_widths=lm["widths"],
        road_lines=lm["road_lines"],
        crosswalks=Polylines.from_list([c for c in crossings if len(c) >= 3]),
        drivable_extra=Polylines.from_list([p for p in drivable + lm["polygons"] if len(p) >= 3]),
        lane_has_polygon=np.ones(len(lm["lanes"]), dtype=bool),
        tags=("real", SOURCE),
    )
    return rec, lm


def load_av2(
    path: str | os.PathLike, options: ImportOptions | None = None, skipped: list[tuple[str, str]] | None = None
) -> list[Scenario]:
    """Import one Argoverse 2 scenario.

    Args:
        path: ``scenario_<id>.parquet``; its map ``log_map_archive_<id>.json`` is read from the same folder.
        options: windowing, init step and ego (a track id; "" = the AV).
        skipped: see :func:`~scenarios.importers.common.recording_to_scenes`.

    Returns:
        Validated scenarios (one per window), ego at agent 0, lane semantics attached.

    Raises:
        ScenarioError: one line naming the file (av2 missing, unreadable or truncated parquet, malformed map
            JSON, no such ego track).
    """
    path = Path(path)
    options = options or ImportOptions()
    serialization, interpolate, static_map_cls = _av2()
    try:
        mpath = map_path(path)
        try:
            scenario = serialization.load_argoverse_scenario_parquet(path)
        except Exception as e:  # pyarrow / pandas / av2 raise many kinds for a damaged file
            raise ScenarioError(f"unreadable Argoverse 2 scenario parquet ({_first_line(e)})") from None
        try:
            static_map = static_map_cls.from_json(mpath)
        except Exception as e:  # json, KeyError, TypeError from av2's map parser
            why = _first_line(e)
            raise ScenarioError(f"its map {mpath.name} is an unreadable Argoverse 2 map archive ({why})") from None
        try:
            rec, lm = av2_recording(scenario, static_map, options.ego or AV_TRACK)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            if isinstance(e, ScenarioError):
                raise
            raise ScenarioError(f"malformed Argoverse 2 scenario ({_first_line(e)})") from None
        scenes = recording_to_scenes(rec, options, skipped)
        return [_with_semantics(s, lm) for s in scenes]
    except ScenarioError as e:
        msg = str(e)
        raise ScenarioError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
