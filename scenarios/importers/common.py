"""The shared last mile of every importer: a :class:`Recording` becomes one or more scenarios.

Steps (documented in ``docs/importers.md``): resample to 0.1 s where the source's step
differs; repair sizes; keep the span where the ego is valid; cut into windows on request;
put the ego at agent 0 and drop agents never valid in a window; route = the ego's logged
path densified to 1 m and extended straight ahead; drivable area = generous lane buffers
plus the source's drivable polygons.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scenarios.formats import ImportOptions
from scenarios.importers.resample import DT, needs_resampling, resample_tracks, window_starts
from scenarios.scenario import (
    LENGTH,
    NUM_FIELDS,
    WIDTH,
    YAW,
    AgentType,
    Polylines,
    RoadMap,
    Scenario,
    ScenarioError,
    X,
    Y,
    wrap_angle,
)

DEFAULT_LANE_WIDTH = 4.0  # m, used where a source gives no lane width
LANE_MARGIN = 0.5  # m added to every lane's half width when building the drivable area
ROUTE_SPACING = 1.0  # m between route points
ROUTE_EXTENSION = 10.0  # m the route continues straight ahead past the ego's last logged pose
DEFAULT_SIZE = {  # (length, width) m where a source gives none
    AgentType.VEHICLE: (4.5, 2.0),
    AgentType.PEDESTRIAN: (0.6, 0.6),
    AgentType.CYCLIST: (1.8, 0.7),
    AgentType.OTHER: (1.0, 1.0),
}


@dataclass(frozen=True, eq=False)
class Recording:
    """One source scene before windowing, in the project's units and frame.

    Attributes:
        id: scene id in the source.
        source: source name (``"scenarionet/nuscenes"``, ``"waymo_json"``, ``"commonroad"``...).
        t: float64 ``[T]`` timestamps, seconds.
        states: float64 ``[A, T, 7]`` (X, Y, YAW, VX, VY, LENGTH, WIDTH); 0 where invalid.
        valid: bool ``[A, T]``.
        agent_type: int8 ``[A]``.
        ego: index of the ego agent.
        lanes: lane centrelines; ``lane_widths`` float ``[L]`` full widths, m (NaN = unknown).
        road_edges, road_lines, crosswalks: map polylines.
        drivable_extra: polygons that are drivable in their own right (lane polygons,
            lanelets, driveways), unioned with the lane buffers.
        tags: labels copied to every scenario.
    """

    id: str
    source: str
    t: np.ndarray
    states: np.ndarray
    valid: np.ndarray
    agent_type: np.ndarray
    ego: int
    lanes: Polylines = field(default_factory=Polylines.empty)
    lane_widths: np.ndarray = field(default_factory=lambda: np.zeros(0))
    road_edges: Polylines = field(default_factory=Polylines.empty)
    road_lines: Polylines = field(default_factory=Polylines.empty)
    crosswalks: Polylines = field(default_factory=Polylines.empty)
    drivable_extra: Polylines = field(default_factory=Polylines.empty)
    tags: tuple[str, ...] = ()


def simplify(line: np.ndarray, tol: float = 0.05) -> np.ndarray:
    """Ramer-Douglas-Peucker simplification of a ``[n, 2]`` polyline (keeps the ends), m."""
    line = np.asarray(line, dtype=np.float64)
    if len(line) <= 2:
        return line
    keep = np.zeros(len(line), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(line) - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        a, b = line[i], line[j]
        ab = b - a
        n = np.hypot(*ab)
        seg = line[i + 1 : j] - a
        d = np.abs(ab[0] * seg[:, 1] - ab[1] * seg[:, 0]) / n if n > 1e-9 else np.hypot(seg[:, 0], seg[:, 1])
        k = int(np.argmax(d))
        if d[k] > tol:
            m = i + 1 + k
            keep[m] = True
            stack += [(i, m), (m, j)]
    return line[keep]


def lane_buffer_polygons(lanes: Polylines, half_widths: np.ndarray) -> list[np.ndarray]:
    """Rectangles covering each lane centreline buffered by its half width.

    Each segment of a (simplified) centreline becomes a rectangle ``2 r`` wide, extended by
    ``r`` past both segment ends, so the union contains the round buffer (Minkowski sum
    with a disc of radius ``r``) of the whole centreline, joints included.

    Args:
        lanes: centrelines.
        half_widths: float ``[L]``, m.

    Returns:
        List of ``[4, 2]`` counter-clockwise rectangles, m.
    """
    polys = []
    for line, r in zip(lanes, half_widths):
        line = simplify(line)
        if len(line) == 1:
            line = np.vstack([line, line + [1e-3, 0.0]])
        a, b = line[:-1], line[1:]
        d = b - a
        n = np.hypot(d[:, 0], d[:, 1])
        ok = n > 1e-6
        if not ok.any():
            a, b, d, n = a[:1], a[:1] + [1.0, 0.0], np.array([[1.0, 0.0]]), np.array([1.0])
            ok = np.array([True])
        u = d[ok] / n[ok, None]
        v = np.stack([-u[:, 1], u[:, 0]], axis=1)
        a0, b0 = a[ok] - r * u, b[ok] + r * u
        rect = np.stack([a0 - r * v, b0 - r * v, b0 + r * v, a0 + r * v], axis=1)
        polys.extend(rect)
    return polys


def densify(path: np.ndarray, spacing: float = ROUTE_SPACING) -> np.ndarray:
    """Resample a ``[n, 2]`` path at ``spacing`` metres along its arc length (ends kept)."""
    seg = np.hypot(*np.diff(path, axis=0).T)
    keep = np.concatenate([[True], seg > 1e-6])
    path = path[keep]
    if len(path) < 2:
        return path
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(path, axis=0).T))])
    n = max(int(np.ceil(s[-1] / spacing)), 1)
    q = np.linspace(0.0, s[-1], n + 1)
    return np.stack([np.interp(q, s, path[:, 0]), np.interp(q, s, path[:, 1])], axis=1)


def ego_route(ego: np.ndarray) -> np.ndarray:
    """Route from the ego's logged states ``[T, 7]``: its path every metre, then straight ahead.

    Returns:
        float64 ``[R >= 2, 2]``, m.
    """
    path = densify(ego[:, [X, Y]].astype(np.float64))
    yaw = float(ego[-1, YAW])
    if len(path) >= 2 and np.hypot(*(path[-1] - path[-2])) > 1e-6:
        u = (path[-1] - path[-2]) / np.hypot(*(path[-1] - path[-2]))
    else:
        u = np.array([np.cos(yaw), np.sin(yaw)])
    steps = np.arange(1, int(ROUTE_EXTENSION / ROUTE_SPACING) + 1) * ROUTE_SPACING
    return np.vstack([path, path[-1] + steps[:, None] * u])


def _repair_sizes(states: np.ndarray, valid: np.ndarray, agent_type: np.ndarray) -> None:
    """In place: vehicle boxes wider than long are swapped; non-positive sizes filled."""
    for i in range(states.shape[0]):
        v = valid[i]
        if not v.any():
            continue
        ln, wd = states[i, v, LENGTH], states[i, v, WIDTH]
        if agent_type[i] == AgentType.VEHICLE and np.median(wd) > np.median(ln):
            states[i, :, [LENGTH, WIDTH]] = states[i, :, [WIDTH, LENGTH]]
        for c, k in ((LENGTH, 0), (WIDTH, 1)):
            col = states[i, :, c]
            bad = v & ~(col > 0)
            if bad.any():
                good = col[v & (col > 0)]
                col[bad] = np.median(good) if len(good) else DEFAULT_SIZE[AgentType(int(agent_type[i]))][k]


def _ego_span(valid_ego: np.ndarray) -> tuple[int, int]:
    """Longest run ``[a, b)`` of consecutive valid steps."""
    best, start = (0, 0), None
    for k, v in enumerate(np.append(valid_ego, False)):
        if v and start is None:
            start = k
        elif not v and start is not None:
            if k - start > best[1] - best[0]:
                best = (start, k)
            start = None
    return best


def _road_map(rec: Recording) -> RoadMap:
    widths = np.asarray(rec.lane_widths, dtype=np.float64)
    widths = np.where(np.isfinite(widths) & (widths > 0), widths, DEFAULT_LANE_WIDTH)
    polys = lane_buffer_polygons(rec.lanes, widths / 2 + LANE_MARGIN)
    polys += [p for p in rec.drivable_extra if len(p) >= 3]
    return RoadMap(
        lanes=rec.lanes,
        lane_widths=widths,
        road_edges=rec.road_edges,
        road_lines=rec.road_lines,
        drivable=Polylines.from_list(polys),
        crosswalks=rec.crosswalks,
    )


def recording_to_scenes(rec: Recording, options: ImportOptions) -> list[Scenario]:
    """Turn one recording into validated scenarios (one per window).

    Args:
        rec: the source scene.
        options: ``window``/``stride`` (steps at 0.1 s) and ``init_step``.

    Returns:
        Scenarios with the ego at agent 0, ids ``<id>`` (whole scene) or ``<id>@<start>``.

    Raises:
        ScenarioError: the ego is never valid long enough for ``init_step``.
    """
    states = np.array(rec.states, dtype=np.float64)
    valid = np.asarray(rec.valid, dtype=bool).copy()
    t = np.asarray(rec.t, dtype=np.float64)
    tags = rec.tags
    if needs_resampling(t):
        t, states, valid = resample_tracks(t, states, valid, DT)
        tags = (*tags, "resampled")
    states[..., YAW] = wrap_angle(states[..., YAW])
    _repair_sizes(states, valid, rec.agent_type)
    states[~valid] = 0.0
    a, b = _ego_span(valid[rec.ego])
    if b - a < options.init_step + 2:
        raise ScenarioError(
            f"scene {rec.id}: the ego is valid for {b - a} consecutive steps, fewer than init_step + 2 = "
            f"{options.init_step + 2}"
        )
    if options.window and options.window < options.init_step + 2:
        raise ScenarioError(f"--window {options.window} must be at least init_step + 2 = {options.init_step + 2}")
    order = np.array([rec.ego] + [i for i in range(len(states)) if i != rec.ego])
    states, valid, types = states[order, a:b], valid[order, a:b], np.asarray(rec.agent_type, np.int8)[order]
    road = _road_map(rec)
    starts = window_starts(b - a, options.window, options.stride)
    whole = options.window <= 0 or options.window >= b - a
    scenes = []
    for s in starts:
        e = b - a if whole else s + options.window
        v = valid[:, s:e]
        keep = v.any(axis=1)
        keep[0] = True
        agents = states[keep, s:e].astype(np.float32)
        sid = rec.id if whole and a == 0 else f"{rec.id}@{a + s}"
        scenes.append(
            Scenario(
                id=sid,
                source=rec.source,
                agents=agents,
                valid=v[keep].copy(),
                agent_type=types[keep].copy(),
                ego=0,
                map=road,
                route=ego_route(agents[0]),
                dt=DT,
                init_step=options.init_step,
                family=rec.source,
                tags=tags,
            ).validate()
        )
    return scenes


def check_agents_shape(states: np.ndarray) -> None:
    """Raise :class:`ScenarioError` unless ``states`` is ``[A, T, 7]``."""
    if states.ndim != 3 or states.shape[2] != NUM_FIELDS:
        raise ScenarioError(f"agent states must be [A, T, {NUM_FIELDS}], got {list(states.shape)}")
