"""CommonRoad XML (2020a, read with ``commonroad-io``) -> :class:`~scenarios.scenario.Scenario`.

CommonRoad scenes carry no ego (the recorded one was removed). As Waymax does with the
SDC, the ego is a recorded vehicle valid over the whole horizon: the vehicles recorded for the
longest run of consecutive steps compete (obstacles may appear after step 0, or leave and come
back), the one whose path over that run is longest wins (``--ego ID`` picks one by obstacle id),
and the scene is cut to the ego's run. Driving lanelets give lane centrelines, widths, drivable
polygons, road edges and road lines (:mod:`scenarios.importers.commonroad_lanelets`: sidewalks,
crosswalks, bicycle and bus lanes are not driving lanes). A state's value given as an interval
is its middle, a position given as a shape its centre; a state without a velocity gets the one
its positions imply (central differences). Static obstacles (``staticObstacle``: parked vehicles,
construction zones, pillars...) become agents valid at every step that never move, so they
count for collision and TTC; ``ROAD_BOUNDARY`` obstacles are the road's edge, already in the
map, and are left out. An obstacle's box is its rectangle, the square around its circle, or the
smallest rectangle around its polygon or shape group (:func:`shape_box`).

Map semantics (:mod:`scenarios.importers.commonroad_map`): lanelet polygons, successors, adjacent
lanelets of the same direction, speed-limit signs (m/s), stop signs, traffic lights with their
cycles evaluated per step, their directions and their stop lines, intersection lanelets.
"""

from __future__ import annotations

import os
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from shapely.geometry import MultiPoint
from shapely.geometry import Polygon as ShapelyPolygon

from scenarios.import_options import ImportOptions
from scenarios.importers.common import Recording, content_errors, recording_to_scenes
from scenarios.importers.commonroad_lanelets import lanelet_map
from scenarios.importers.commonroad_map import needs_raw_sign_ids, raw_sign_ids
from scenarios.importers.repair import warn_skipped
from scenarios.importers.resample import longest_farthest_vehicle, longest_runs, velocity_from_positions
from scenarios.scenario import NUM_FIELDS, AgentType, Scenario, ScenarioError

SUPPORTED_VERSIONS = ("2020a",)
TYPES = {
    "CAR": AgentType.VEHICLE,
    "TRUCK": AgentType.VEHICLE,
    "BUS": AgentType.VEHICLE,
    "PRIORITY_VEHICLE": AgentType.VEHICLE,
    "TAXI": AgentType.VEHICLE,
    "MOTORCYCLE": AgentType.CYCLIST,
    "BICYCLE": AgentType.CYCLIST,
    "PEDESTRIAN": AgentType.PEDESTRIAN,
    "PARKED_VEHICLE": AgentType.VEHICLE,
}
NOT_AGENTS = ("ROAD_BOUNDARY",)  # static obstacle types that are map, not agents


def check_version(path: Path) -> float:
    """Read the root element only; check it is a supported CommonRoad file.

    Returns:
        The file's ``timeStepSize`` (s).

    Raises:
        ScenarioError: not XML, not CommonRoad, or another format version.
    """
    try:
        for _event, elem in ET.iterparse(path, events=("start",)):
            if elem.tag != "commonRoad":
                raise ScenarioError(f"not a CommonRoad file (root element <{elem.tag}>)")
            version = elem.get("commonRoadVersion")
            if version not in SUPPORTED_VERSIONS:
                raise ScenarioError(
                    f"CommonRoad version {version!r} is not supported (supported: {', '.join(SUPPORTED_VERSIONS)})"
                )
            return float(elem.get("timeStepSize", "0.1"))
    except ET.ParseError as e:
        raise ScenarioError(f"malformed XML ({e})") from None
    except OSError as e:
        raise ScenarioError(f"cannot read ({e.strerror or e})") from None
    raise ScenarioError("empty XML file")


CIRCLE_CORNERS = 64  # a circle in a shape group: the polygon circumscribing it (box error < 0.2 % of r)


def _shape_points(shape) -> np.ndarray:
    """``[n, 2]`` outline points of a commonroad-io shape in the obstacle's own frame (m); a circle as the corners of
    a regular polygon around it (:data:`CIRCLE_CORNERS`: any box around them holds the circle), a shape group as all
    of its members' points.

    Raises:
        ScenarioError: a shape of an unknown kind, or one without points.
    """
    if hasattr(shape, "radius"):
        r, c = float(shape.radius), np.asarray(getattr(shape, "center", (0.0, 0.0)), float)[:2]
        a = np.arange(CIRCLE_CORNERS) * (2 * np.pi / CIRCLE_CORNERS)
        return c + r / np.cos(np.pi / CIRCLE_CORNERS) * np.stack([np.cos(a), np.sin(a)], axis=1)
    if hasattr(shape, "shapes"):  # ShapeGroup
        parts = [_shape_points(s) for s in shape.shapes]
        if not parts:
            raise ScenarioError("empty obstacle shape group")
        return np.concatenate(parts)
    if hasattr(shape, "vertices"):  # Rectangle (centre and orientation included) and Polygon
        pts = np.asarray(shape.vertices, float).reshape(-1, 2)
        if len(pts) and np.all(np.isfinite(pts)):
            return pts
    raise ScenarioError(f"unsupported obstacle shape {type(shape).__name__}")


def shape_box(shape) -> tuple[float, float, float, float, float]:
    """The oriented box of an obstacle's shape, in the obstacle's own frame.

    A rectangle is itself (its optional centre and orientation kept); a circle is its bounding square;
    a polygon or a shape group (CommonRoad allows both for dynamic and static obstacles) is the
    minimum-area rectangle around its points, turned by the multiple of 90 degrees that leaves its
    angle in [-45, 45] degrees, so that the box's length runs along the obstacle's heading when it can.

    Args:
        shape: a commonroad-io ``Rectangle``, ``Circle``, ``Polygon`` or ``ShapeGroup``.

    Returns:
        ``(cx, cy, angle, length, width)``: centre (m) and angle (rad) relative to the obstacle's
        position and orientation; length and width in m.

    Raises:
        ScenarioError: an unknown or degenerate shape (no area).
    """
    if hasattr(shape, "length") and hasattr(shape, "width"):
        c = np.asarray(getattr(shape, "center", (0.0, 0.0)), float)[:2]
        return (float(c[0]), float(c[1]), float(getattr(shape, "orientation", 0.0) or 0.0),
                float(shape.length), float(shape.width))
    if hasattr(shape, "radius") and not hasattr(shape, "shapes"):
        c = np.asarray(getattr(shape, "center", (0.0, 0.0)), float)[:2]
        return float(c[0]), float(c[1]), 0.0, 2 * float(shape.radius), 2 * float(shape.radius)
    rect = MultiPoint(_shape_points(shape)).minimum_rotated_rectangle
    if not isinstance(rect, ShapelyPolygon) or rect.area <= 0:
        raise ScenarioError(f"degenerate obstacle shape {type(shape).__name__} (no area)")
    corners = np.asarray(rect.exterior.coords, float)[:4]
    sides = np.diff(np.vstack([corners, corners[:1]]), axis=0)[:2]  # two adjacent sides
    angle = float(np.arctan2(sides[0, 1], sides[0, 0]))
    length, width = (float(np.hypot(*sides[0])), float(np.hypot(*sides[1])))
    quarter = int(np.round(angle / (np.pi / 2)))  # turn by quarter turns into [-45, 45] degrees
    angle -= quarter * np.pi / 2
    if quarter % 2:
        length, width = width, length
    centre = corners.mean(axis=0)
    return float(centre[0]), float(centre[1]), angle, length, width


def _placed(box: tuple[float, float, float, float, float], x: float, y: float, yaw: float
            ) -> tuple[float, float, float]:
    """World ``(x, y, yaw)`` of a :func:`shape_box` box for an obstacle at ``(x, y)`` heading ``yaw``."""
    cx, cy, angle = box[:3]
    c, s = np.cos(yaw), np.sin(yaw)
    return x + c * cx - s * cy, y + s * cx + c * cy, yaw + angle


def _exact(value: object) -> object:
    """A state value as one number or point: an interval's middle, a shape's centre, else the value itself."""
    if hasattr(value, "start") and hasattr(value, "end"):  # Interval, AngleInterval
        return (float(value.start) + float(value.end)) / 2
    if hasattr(value, "center"):  # a position given as a shape (uncertain position)
        return np.asarray(value.center, float)
    return value


def _fill_velocities(states: np.ndarray, valid: np.ndarray, missing: np.ndarray, dt: float) -> None:
    """In place: (VX, VY) where ``missing`` (bool ``[A, T]``) from the positions (:func:`velocity_from_positions`:
    central differences within each run of valid steps)."""
    t = np.arange(states.shape[1]) * dt
    for i in np.flatnonzero(missing.any(axis=1)):
        states[i, missing[i], 3:5] = velocity_from_positions(states[i, :, :2], valid[i], t)[missing[i]]


def _obstacle_tracks(scenario) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    obs = list(scenario.dynamic_obstacles)
    if not obs:
        raise ScenarioError("no dynamic obstacles")
    all_states = []
    for o in obs:
        sts = [o.initial_state]
        if o.prediction is not None and hasattr(o.prediction, "trajectory"):
            sts += list(o.prediction.trajectory.state_list)
        all_states.append(sts)
    n_t = max(int(s.time_step) for sts in all_states for s in sts) + 1
    states = np.zeros((len(obs), n_t, NUM_FIELDS), dtype=np.float64)
    valid = np.zeros((len(obs), n_t), dtype=bool)
    no_speed = np.zeros((len(obs), n_t), dtype=bool)
    types = np.zeros(len(obs), dtype=np.int8)
    for i, (o, sts) in enumerate(zip(obs, all_states)):
        try:
            box = shape_box(o.obstacle_shape)
        except ScenarioError as e:
            raise ScenarioError(f"dynamic obstacle {o.obstacle_id}: {e}") from None
        types[i] = TYPES.get(o.obstacle_type.name, AgentType.OTHER)
        for s in sts:
            k = int(s.time_step)
            if getattr(s, "orientation", None) is None or getattr(s, "position", None) is None:
                raise ScenarioError(f"dynamic obstacle {o.obstacle_id}: the state at time step {k} has no "
                                    "position or no orientation")
            yaw = float(_exact(s.orientation))
            speed = _exact(getattr(s, "velocity", None))
            no_speed[i, k] = speed is None
            v = 0.0 if speed is None else float(speed)
            vy_body = float(_exact(getattr(s, "velocity_y", None)) or 0.0)
            c, sn = np.cos(yaw), np.sin(yaw)
            x, y, box_yaw = _placed(box, *np.asarray(_exact(s.position), float)[:2], yaw)
            states[i, k] = (x, y, box_yaw, v * c - vy_body * sn, v * sn + vy_body * c, box[3], box[4])
            valid[i, k] = True
    _fill_velocities(states, valid, no_speed, float(scenario.dt))
    return obs, states, valid, types


def _static_tracks(scenario, n_t: int) -> tuple[np.ndarray, np.ndarray]:
    """Static obstacles as agents that never move: ``(states float [S, n_t, 7], types int8 [S])``.

    A polygon or shape group is its :func:`shape_box`, turned to run along its long side (a static obstacle has no
    heading to keep); a degenerate shape (no area) is left out with a warning.
    """
    rows, types, notes = [], [], []
    for o in getattr(scenario, "static_obstacles", []):
        if o.obstacle_type.name in NOT_AGENTS:
            continue
        try:
            box = shape_box(o.obstacle_shape)
        except ScenarioError as e:
            notes.append(f"static obstacle {o.obstacle_id}: {e}")
            continue
        if box[4] > box[3]:  # the same box along its long side (a vehicle box wider than long reads as swapped)
            box = (*box[:2], box[2] + np.pi / 2, box[4], box[3])
        st = o.initial_state
        xy, yaw = np.asarray(_exact(st.position), float)[:2], float(_exact(getattr(st, "orientation", None)) or 0.0)
        rows.append((*_placed(box, *xy, yaw), 0.0, 0.0, *box[3:]))
        types.append(TYPES.get(o.obstacle_type.name, AgentType.OTHER))
    warn_skipped(notes)
    states = np.zeros((len(rows), n_t, NUM_FIELDS), dtype=np.float64)
    if rows:
        states[:] = np.asarray(rows, dtype=np.float64)[:, None, :]
    return states, np.asarray(types, dtype=np.int8)


def choose_ego(obs: list, states: np.ndarray, valid: np.ndarray, types: np.ndarray, ego_id: str = "") -> int:
    """Pick the ego: the vehicle recorded for the longest run of consecutive steps, the farthest-travelling over it.

    Args:
        obs: the dynamic obstacles (for their ids).
        states: float ``[A, T, 7]``; valid: bool ``[A, T]``; types: ``[A]``.
        ego_id: obstacle id to use, or ``""`` for the choice above.

    Returns:
        The ego's index; the scene keeps its longest run of valid steps
        (:func:`~scenarios.importers.common.recording_to_scenes`).

    Raises:
        ScenarioError: unknown id, or no vehicle recorded for 2 consecutive steps.
    """
    ids = [str(o.obstacle_id) for o in obs]
    if ego_id:
        if ego_id not in ids:
            raise ScenarioError(f"--ego {ego_id}: no dynamic obstacle with that id (there are {len(ids)})")
        i = ids.index(ego_id)
        start, stop = longest_runs(valid[i][None])
        if stop[0] - start[0] < 2:
            raise ScenarioError(f"--ego {ego_id}: not recorded for 2 consecutive steps")
        return i
    ego, _ = longest_farthest_vehicle(states[..., :2], valid, types)
    if ego < 0:
        raise ScenarioError("no vehicle recorded for 2 consecutive steps to serve as ego")
    return ego


def commonroad_recording(path: str | os.PathLike, options: ImportOptions | None = None) -> Recording:
    """Read one CommonRoad XML scenario into a :class:`Recording` (ego chosen, horizon cut).

    Raises:
        ScenarioError: malformed XML, another version, unreadable content or no usable ego (without the path).
    """
    path = Path(path)
    options = options or ImportOptions()
    dt = check_version(path)
    from commonroad.common.file_reader import CommonRoadFileReader

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scenario, _problems = CommonRoadFileReader(str(path)).open()
    except Exception as e:  # commonroad-io raises many kinds on bad content
        bad_xml = type(e).__name__ in ("ParseError", "XMLSyntaxError")
        what = "malformed XML" if bad_xml else "commonroad-io cannot read it"
        raise ScenarioError(f"{what} ({type(e).__name__}: {e})") from None
    with content_errors("CommonRoad scenario"):
        obs, states, valid, types = _obstacle_tracks(scenario)
        ego = choose_ego(obs, states, valid, types, options.ego)
        n_t = states.shape[1]
        s_states, s_types = _static_tracks(scenario, n_t)
        network = scenario.lanelet_network
        raw = raw_sign_ids(path) if needs_raw_sign_ids(network) else None
        return Recording(
            id=str(scenario.scenario_id),
            source="commonroad",
            t=np.arange(n_t) * dt,
            states=np.concatenate([states, s_states]),
            valid=np.concatenate([valid, np.ones(s_states.shape[:2], dtype=bool)]),
            agent_type=np.concatenate([types, s_types]),
            ego=ego,
            tags=("real", "commonroad", f"ego={obs[ego].obstacle_id}"),
            **lanelet_map(network, n_t, raw),
        )


def load_commonroad(
    path: str | os.PathLike, options: ImportOptions | None = None, skipped: list[tuple[str, str]] | None = None
) -> list[Scenario]:
    """Import one CommonRoad XML scenario.

    Args:
        path: a CommonRoad 2020a ``.xml`` file.
        options: windowing, init step and ``ego`` (obstacle id; ``""`` = farthest-travelling vehicle).
        skipped: see :func:`~scenarios.importers.common.recording_to_scenes`.

    Returns:
        Validated scenarios (one per window), ego at agent 0.

    Raises:
        ScenarioError: one line naming the file (malformed XML, other version, no usable ego...).
    """
    path = Path(path)
    options = options or ImportOptions()
    try:
        return recording_to_scenes(commonroad_recording(path, options), options, skipped)
    except ScenarioError as e:
        msg = str(e)
        raise ScenarioError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
