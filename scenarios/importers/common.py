"""The shared last mile of every importer: a :class:`Recording` becomes one or more scenarios.

Steps (documented in ``docs/importers.md``): resample to 0.1 s where the source's step
differs; repair sizes; keep the span where the ego is valid; cut into windows on request;
put the ego at agent 0 and drop agents never valid in a window; route = the ego's logged
path densified to 1 m and extended 10 m along its lane (or straight ahead); drivable area = generous lane buffers
plus the source's drivable polygons; the map is cropped to what lies near the ego's path.
"""

from __future__ import annotations

import math
import warnings
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
LANE_SNAP = 2.0  # m: the route extension follows a lane whose centreline passes this close to the ego
MAP_MARGIN = 80.0  # m: map elements are kept when their bounding box comes this close to the ego's path box
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
        lane_has_polygon: bool ``[L]``, lanes whose own polygon is in ``drivable_extra``
            (they get no buffer); None = no lane has one.
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
    lane_has_polygon: np.ndarray | None = None
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


def _rectangles(line: np.ndarray, r: float) -> list[np.ndarray]:
    """One rectangle per segment, ``2 r`` wide and extended by ``r`` past both segment ends."""
    a, b = line[:-1], line[1:]
    d = b - a
    n = np.hypot(d[:, 0], d[:, 1])
    u = d / n[:, None]
    v = np.stack([-u[:, 1], u[:, 0]], axis=1)
    a0, b0 = a - r * u, b + r * u
    return list(np.stack([a0 - r * v, b0 - r * v, b0 + r * v, a0 + r * v], axis=1))


def _ribbon(line: np.ndarray, r: float) -> np.ndarray | None:
    """One polygon: the centreline offset by ``r`` on both sides (mitred joints, square caps).

    Returns None where a bend is too sharp for ``r`` (an offset segment would reverse).
    """
    d = np.diff(line, axis=0)
    u = d / np.hypot(d[:, 0], d[:, 1])[:, None]
    nrm = np.stack([-u[:, 1], u[:, 0]], axis=1)  # left normals per segment
    m = np.vstack([nrm[:1], nrm[:-1] + nrm[1:], nrm[-1:]])
    m /= np.hypot(m[:, 0], m[:, 1])[:, None]
    seg_n = np.vstack([nrm[:1], nrm])  # normal of the segment ending at each vertex (first: first segment)
    cos_half = np.einsum("ij,ij->i", m, seg_n)
    if np.any(cos_half < 0.5):  # joints sharper than 120 degrees of turn: mitres get too long
        return None
    off = m * (r / cos_half)[:, None]
    pts = line.copy()
    pts[0] -= r * u[0]
    pts[-1] += r * u[-1]
    left, right = pts + off, pts - off
    for side in (left, right):
        if np.any(np.einsum("ij,ij->i", np.diff(side, axis=0), d) <= 0):
            return None
    return np.vstack([right, left[::-1]])


def lane_buffer_polygons(lanes: Polylines, half_widths: np.ndarray) -> list[np.ndarray]:
    """Polygons whose union contains each lane centreline buffered by its half width.

    A (simplified) centreline becomes one ribbon polygon (offset by ``r`` on both sides,
    mitred joints, ends extended by ``r``); where a bend is too sharp for that, one
    rectangle per segment, ``2 r`` wide and extended by ``r`` past both ends. Either way
    the union contains the round buffer (Minkowski sum with a disc of radius ``r``).

    Args:
        lanes: centrelines.
        half_widths: float ``[L]``, m.

    Returns:
        List of counter-clockwise polygons ``[n, 2]``, m.
    """
    polys: list[np.ndarray] = []
    for line, r in zip(lanes, half_widths):
        line = simplify(line, 0.1)
        keep = np.concatenate([[True], np.hypot(*np.diff(line, axis=0).T) > 1e-6])
        line = line[keep]
        if len(line) == 1:
            line = np.vstack([line, line + [1e-3, 0.0]])
        ribbon = _ribbon(line, float(r))
        polys.extend([ribbon] if ribbon is not None else _rectangles(line, float(r)))
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


def _arc(points: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])


def lane_extension(p: np.ndarray, u: np.ndarray, lanes: Polylines, length: float) -> np.ndarray | None:
    """Points following the lane under pose ``(p, u)`` for ``length`` metres, or None.

    The lane is the nearest one within :data:`LANE_SNAP` m of ``p`` whose direction is within
    30 degrees of ``u``; where it ends, the lane that starts within 1 m of its end in a similar
    direction continues it (up to 4 lanes). The lateral offset between ``p`` and the lane fades
    out linearly along the extension, so the result starts at ``p`` without a jump.

    Args:
        p: float ``[2]`` last position, m; u: float ``[2]`` unit direction of travel.
        lanes: lane centrelines.
        length: metres of extension.

    Returns:
        float ``[n, 2]`` points (``p`` excluded) about every metre, or None (no lane fits).
    """
    cos30 = math.cos(math.radians(30))
    near = _near(lanes, p - LANE_SNAP, p + LANE_SNAP)
    best = None
    for i in np.flatnonzero(near):
        line = lanes[i]
        if len(line) < 2:
            continue
        a, d = line[:-1], np.diff(line, axis=0)
        n2 = np.einsum("ij,ij->i", d, d)
        ok = n2 > 1e-12
        t = np.clip(np.einsum("ij,ij->i", p - a, d) / np.where(ok, n2, 1.0), 0.0, 1.0)
        proj = a + t[:, None] * d
        dist = np.hypot(*(proj - p).T)
        aligned = ok & (np.einsum("ij,j->i", d, u) >= cos30 * np.sqrt(np.where(ok, n2, 1.0)))
        dist = np.where(aligned, dist, np.inf)
        k = int(np.argmin(dist))
        if dist[k] <= LANE_SNAP and (best is None or dist[k] < best[0]):
            best = (float(dist[k]), int(i), k, proj[k])
    if best is None:
        return None
    _, i, k, start = best
    pts = np.vstack([start, lanes[i][k + 1 :]])
    used = {i}
    for _ in range(3):
        if _arc(pts)[-1] >= length:
            break
        end, d_end = pts[-1], pts[-1] - pts[-2] if len(pts) >= 2 else u
        d_end = d_end / max(np.hypot(*d_end), 1e-9)
        nxt = None
        for j in np.flatnonzero(_near(lanes, end - 1.0, end + 1.0)):
            line = lanes[j]
            if j in used or len(line) < 2 or np.hypot(*(line[0] - end)) > 1.0:
                continue
            d0 = line[1] - line[0]
            c = float(np.dot(d0, d_end) / max(np.hypot(*d0), 1e-9))
            if c >= cos30 and (nxt is None or c > nxt[0]):
                nxt = (c, j)
        if nxt is None:
            break
        used.add(nxt[1])
        pts = np.vstack([pts, lanes[nxt[1]][1:]])
    s = _arc(pts)
    if s[-1] < 0.5 * length:
        return None
    q = np.arange(1, int(min(length, s[-1]) / ROUTE_SPACING) + 1) * ROUTE_SPACING
    ext = np.stack([np.interp(q, s, pts[:, 0]), np.interp(q, s, pts[:, 1])], axis=1)
    return ext + (p - start)[None] * (1.0 - q / q[-1])[:, None]


def ego_route(ego: np.ndarray, lanes: Polylines | None = None) -> np.ndarray:
    """Route from the ego's logged states ``[T, 7]``: its path every metre, then onwards.

    Past the last logged pose the route follows the ego's lane for :data:`ROUTE_EXTENSION`
    metres (:func:`lane_extension`); where no lane fits, it goes straight ahead along the last
    direction of travel (the last heading if the ego moved less than 2 m).

    Returns:
        float64 ``[R >= 2, 2]``, m.
    """
    path = densify(ego[:, [X, Y]].astype(np.float64))
    yaw = float(ego[-1, YAW])
    if len(path) >= 3 and _arc(path)[-1] >= 2.0:
        u = (path[-1] - path[-2]) / np.hypot(*(path[-1] - path[-2]))
    else:  # (nearly) stationary: the logged heading says more than a creep of centimetres
        u = np.array([np.cos(yaw), np.sin(yaw)])
    ext = lane_extension(path[-1], u, lanes, ROUTE_EXTENSION) if lanes is not None and len(lanes) else None
    if ext is None:
        steps = np.arange(1, int(ROUTE_EXTENSION / ROUTE_SPACING) + 1) * ROUTE_SPACING
        ext = path[-1] + steps[:, None] * u
    return np.vstack([path, ext])


def _repair_sizes(states: np.ndarray, valid: np.ndarray, agent_type: np.ndarray) -> None:
    """In place: vehicle boxes wider than long are swapped; non-positive sizes at valid steps filled.

    A size is filled with the agent's median valid positive size, else a default per type.
    """
    sizes = np.where(valid[..., None], states[..., [LENGTH, WIDTH]], np.nan)  # [A, T, 2]
    sizes = np.where(sizes > 0, sizes, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN agents
        med = np.nanmedian(sizes, axis=1)  # [A, 2]
    swap = (np.asarray(agent_type) == AgentType.VEHICLE) & (med[:, 1] > med[:, 0])
    if swap.any():
        lw = states[swap][:, :, [WIDTH, LENGTH]]
        sub = states[swap]
        sub[:, :, [LENGTH, WIDTH]] = lw
        states[swap] = sub
        med[swap] = med[swap][:, ::-1]
    default = np.array([DEFAULT_SIZE[AgentType(int(t))] for t in agent_type]).reshape(-1, 2)
    fill = np.where(np.isfinite(med), med, default)  # [A, 2]
    for k, c in enumerate((LENGTH, WIDTH)):
        bad = valid & ~(states[..., c] > 0)
        if bad.any():
            states[..., c] = np.where(bad, fill[:, k : k + 1], states[..., c])


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


def _near(lines: Polylines | list[np.ndarray], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """bool ``[L]``: polylines whose bounding box intersects the box ``[lo, hi]``."""
    if not isinstance(lines, Polylines):
        lines = Polylines.from_list(lines)
    n = len(lines)
    if n == 0 or len(lines.points) == 0:
        return np.zeros(n, dtype=bool)
    starts = lines.offsets[:-1]
    nonempty = np.diff(lines.offsets) > 0
    idx = np.minimum(starts, len(lines.points) - 1)
    p_lo = np.minimum.reduceat(lines.points, idx, axis=0)
    p_hi = np.maximum.reduceat(lines.points, idx, axis=0)
    return nonempty & np.all(p_lo <= hi, axis=1) & np.all(p_hi >= lo, axis=1)


def _crop(lines: Polylines, keep: np.ndarray) -> Polylines:
    return Polylines.from_list([p for p, k in zip(lines, keep) if k])


def _road_map(rec: Recording, widths: np.ndarray, lane_polys: list[np.ndarray], reach: np.ndarray) -> RoadMap:
    """The map cropped to elements within :data:`MAP_MARGIN` of the box around ``reach [N, 2]``."""
    lo, hi = reach.min(0) - MAP_MARGIN, reach.max(0) + MAP_MARGIN
    keep_lane = _near(rec.lanes, lo, hi)
    polys = [p for p, k in zip(lane_polys, _near(lane_polys, lo, hi)) if k]
    polys += [p for p, k in zip(rec.drivable_extra, _near(rec.drivable_extra, lo, hi)) if k and len(p) >= 3]
    return RoadMap(
        lanes=_crop(rec.lanes, keep_lane),
        lane_widths=widths[keep_lane],
        road_edges=_crop(rec.road_edges, _near(rec.road_edges, lo, hi)),
        road_lines=_crop(rec.road_lines, _near(rec.road_lines, lo, hi)),
        drivable=Polylines.from_list(polys),
        crosswalks=_crop(rec.crosswalks, _near(rec.crosswalks, lo, hi)),
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
    widths = np.asarray(rec.lane_widths, dtype=np.float64)
    widths = np.where(np.isfinite(widths) & (widths > 0), widths, DEFAULT_LANE_WIDTH)
    to_buffer = np.ones(len(widths), bool) if rec.lane_has_polygon is None else ~np.asarray(rec.lane_has_polygon)
    # only lanes that can reach the (cropped) map of some window: the box around the whole ego path
    ego_xy, reach = states[0, :, :2], MAP_MARGIN + ROUTE_EXTENSION
    to_buffer &= _near(rec.lanes, ego_xy.min(0) - reach, ego_xy.max(0) + reach)
    lane_polys = lane_buffer_polygons(_crop(rec.lanes, to_buffer), widths[to_buffer] / 2 + LANE_MARGIN)
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
        route = ego_route(agents[0], rec.lanes)
        road = _road_map(rec, widths, lane_polys, np.vstack([agents[0, :, :2], route]))
        scenes.append(
            Scenario(
                id=sid,
                source=rec.source,
                agents=agents,
                valid=v[keep].copy(),
                agent_type=types[keep].copy(),
                ego=0,
                map=road,
                route=route,
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
