"""`LaneMap`: the map semantics the rule metrics need, precomputed once per batch (padded torch tensors).

Built by :func:`sim.batch.make_batch` (:func:`build_lane_map`) from each scene's :class:`~scenarios.scenario.RoadMap`;
read by :mod:`sim.metrics.rules`. Each lane is cut into straight pieces (at most :data:`LANE_SEGMENT` m along its
centreline, cut again at every traffic light's stop point on it) and each piece is an oriented rectangle (a box
``x, y, yaw, length, width``, yaw = the lane's direction of travel): the lane's surface is the union of its
rectangles. The rectangle's width is the lane's own width (centreline +- width / 2), or, where the source gives the
lane's polygon (nuScenes, CommonRoad, Argoverse 2), the polygon's extent across the centreline at the piece's middle.
At a bend each rectangle is lengthened by ``half_width * tan(turn / 2)`` so that neighbouring rectangles meet on the
outside of the bend. Only pieces within :data:`LANE_REACH` m of the ego's logged path or route are kept: beyond
that the ego is in no lane (and far off its route).

Shape contract (B scenes, R lane pieces, L lanes, G traffic-light signals, T steps; padding is invalid):

- ``seg_box`` float32 ``[B, R, 5]`` (x, y, yaw, length, width) m / rad, local frame; ``seg_lane`` int64 ``[B, R]``
  (compact lane index, -1 padding); ``seg_s0`` float32 ``[B, R]`` m, arc length of the piece's start along its lane;
  ``seg_valid`` bool ``[B, R]``. ``R`` is a multiple of :data:`CHUNK`; ``chunk_circle`` float32 ``[B, R / CHUNK, 3]``
  (x, y, radius) m bounds pieces ``c * CHUNK .. (c + 1) * CHUNK - 1`` (a coarse filter before the piece test).
- ``lane_speed_limit`` float32 ``[B, L]`` m/s, NaN unknown; ``lane_intersection`` int8 ``[B, L]`` (1 through an
  intersection, 0 not, -1 unknown or padding).
- ``light_seg`` bool ``[B, G, R]``: piece ``r`` lies past signal ``g``'s stop line (its controlled lane beyond the
  stop point, and that lane's successors when the stop point is at the lane's end); ``light_red`` bool ``[B, G, T]``
  (:attr:`LightState.STOP`; flashing red is a stop sign, not a red light); ``light_valid`` bool ``[B, G]``.
- Per scene bool ``[B]``: ``has_lanes``, ``knows_speed_limits`` (and some lane within reach has one),
  ``knows_intersections``, ``has_lights`` (the source records lights and at least one controls a lane of the scene).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from scenarios.scenario import LightState, RoadMap, Scenario, X, Y

LANE_SEGMENT = 2.0  # m, longest straight piece of a lane's centreline
LANE_REACH = 60.0  # m from the ego's logged path / route within which lane pieces are kept
CHUNK = 8  # consecutive lane pieces per bounding circle of the coarse filter (sim.metrics.rules)
_ACROSS = 15.0  # m, half length of the probe line across a lane polygon (its width measurement)


@dataclass(frozen=True, eq=False)
class LaneMap:
    """Lane pieces, per-lane semantics and traffic-light signals of B scenes (module docstring: shapes)."""

    seg_box: Tensor
    seg_lane: Tensor
    seg_s0: Tensor
    seg_valid: Tensor
    chunk_circle: Tensor
    lane_speed_limit: Tensor
    lane_intersection: Tensor
    light_seg: Tensor
    light_red: Tensor
    light_valid: Tensor
    has_lanes: Tensor
    knows_speed_limits: Tensor
    knows_intersections: Tensor
    has_lights: Tensor

    @property
    def num_lanes(self) -> int:
        """L, lanes per scene after padding."""
        return int(self.lane_speed_limit.shape[1])


@dataclass(frozen=True)
class ScenePieces:
    """One scene's part of a :class:`LaneMap` before padding (r pieces, l lanes, g signals, T steps)."""

    box: np.ndarray  # [r, 5]
    lane: np.ndarray  # [r] compact lane index
    s0: np.ndarray  # [r]
    limit: np.ndarray  # [l]
    inter: np.ndarray  # [l]
    light_seg: np.ndarray  # [g, r]
    red: np.ndarray  # [g, T]


def _arc(pts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])


def _clean(pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(pts, axis=0), axis=1) > 1e-6])
    return pts[keep]


def _project_s(pts: np.ndarray, s: np.ndarray, q: np.ndarray) -> float:
    """Arc length of the point of polyline ``pts`` nearest to ``q``."""
    a, d = pts[:-1], np.diff(pts, axis=0)
    t = np.clip(((q - a) * d).sum(1) / np.maximum((d * d).sum(1), 1e-12), 0.0, 1.0)
    dist = np.linalg.norm(a + t[:, None] * d - q, axis=1)
    k = int(np.argmin(dist))
    return float(s[k] + t[k] * (s[k + 1] - s[k]))


def _polygon_extent(poly: np.ndarray, mids: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Across each piece's middle, the polygon's extent: ``(offset of its middle along the normal, half width)``.

    The extent is the stretch of the probe line ``mid + u * normal``, ``|u| <= 15 m``, that lies inside the polygon
    and contains the middle (shapely's ``polygon.intersection(probe)`` part through the middle); NaN where the middle
    is outside the polygon. Batched over pieces: the probe's crossings with the polygon edges whose bounding boxes it
    meets (an STRtree query; a crossing where the edge's ends lie strictly on opposite sides of the probe line, the
    ray-casting rule) bound the interval around ``u = 0``; ``shapely.contains_xy`` says whether the middle is inside.
    An invalid polygon (self-intersecting) is repaired with ``buffer(0)`` first and probed one piece at a time.

    Args:
        poly: ``[V, 2]`` polygon vertices, m. mids, normals: ``[P, 2]`` piece middles (m) and unit normals.
    """
    import shapely
    from shapely.geometry import Polygon

    shape = Polygon(poly)
    if not shape.is_valid:
        return _polygon_extent_repaired(shape.buffer(0), mids, normals)
    rings = [shape.exterior, *shape.interiors]
    a = np.concatenate([np.asarray(r.coords, np.float64)[:-1] for r in rings])  # [E, 2] edge starts
    b = np.concatenate([np.asarray(r.coords, np.float64)[1:] for r in rings])  # [E, 2] edge ends
    lo, hi = np.full(len(mids), -_ACROSS), np.full(len(mids), _ACROSS)
    if len(mids):
        probes = shapely.linestrings(np.stack([mids - _ACROSS * normals, mids + _ACROSS * normals], axis=1))
        piece, edge = shapely.STRtree(shapely.linestrings(np.stack([a, b], axis=1))).query(probes)  # boxes overlap
        tang = np.stack([normals[piece, 1], -normals[piece, 0]], axis=1)
        rel_a, rel_b = a[edge] - mids[piece], b[edge] - mids[piece]
        side_a, side_b = (rel_a * tang).sum(1), (rel_b * tang).sum(1)  # signed distances to the probe line
        cross = (side_a > 0) != (side_b > 0)
        w = side_a[cross] / (side_a[cross] - side_b[cross])
        u = ((rel_a[cross] + w[:, None] * (rel_b[cross] - rel_a[cross])) * normals[piece[cross]]).sum(1)
        at = piece[cross]
        np.maximum.at(lo, at[u < 0], u[u < 0])
        np.minimum.at(hi, at[u >= 0], u[u >= 0])
    inside = shapely.contains_xy(shape, mids[:, 0], mids[:, 1]) if len(mids) else np.zeros(0, bool)
    lo, hi = np.maximum(lo, -_ACROSS), np.minimum(hi, _ACROSS)
    ok = inside & (hi - lo > 1e-3)
    return np.where(ok, (lo + hi) / 2, np.nan), np.where(ok, (hi - lo) / 2, np.nan)


def _polygon_extent_repaired(shape, mids: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_polygon_extent` on a repaired (possibly multi-part) shapely geometry, one probe at a time."""
    from shapely.geometry import LineString, Point

    out_off = np.full(len(mids), np.nan)
    out_hw = np.full(len(mids), np.nan)
    for k, (m, n) in enumerate(zip(mids, normals, strict=True)):
        cut = shape.intersection(LineString([m - _ACROSS * n, m + _ACROSS * n]))
        for part in getattr(cut, "geoms", [cut]):
            if part.is_empty or part.geom_type != "LineString" or part.distance(Point(m)) > 1e-6:
                continue
            ends = np.asarray(part.coords)[[0, -1]]
            along = (ends - m) @ n
            lo, hi = float(along.min()), float(along.max())
            if hi - lo > 1e-3:
                out_off[k], out_hw[k] = (lo + hi) / 2, (hi - lo) / 2
            break
    return out_off, out_hw


def _lane_pieces(pts: np.ndarray, half_width: float, cuts: Sequence[float], poly: np.ndarray) -> tuple[np.ndarray, ...]:
    """One lane -> ``(boxes [r, 5], s0 [r], length)``."""
    s = _arc(pts)
    length = float(s[-1])
    n = max(1, int(math.ceil(length / LANE_SEGMENT - 1e-9)))
    q = np.unique(np.concatenate([np.linspace(0.0, length, n + 1), [c for c in cuts if 0.0 < c < length]]))
    xy = np.stack([np.interp(q, s, pts[:, 0]), np.interp(q, s, pts[:, 1])], axis=1)
    d = np.diff(xy, axis=0)
    seg_len = np.linalg.norm(d, axis=1)
    yaw = np.arctan2(d[:, 1], d[:, 0])
    mids = (xy[:-1] + xy[1:]) / 2
    normals = np.stack([-np.sin(yaw), np.cos(yaw)], axis=1)
    hw = np.full(len(mids), half_width)
    if len(poly) >= 3:
        off, phw = _polygon_extent(poly, mids, normals)
        ok = np.isfinite(phw)
        mids = mids + np.where(ok, np.nan_to_num(off), 0.0)[:, None] * normals
        hw = np.where(ok, phw, hw)
    turn = np.abs(np.remainder(np.diff(yaw) + np.pi, 2 * np.pi) - np.pi)  # [r - 1]
    ext = np.zeros(len(mids))
    if len(turn):
        bend = np.tan(np.minimum(turn, 2.0) / 2)
        ext[:-1] = np.maximum(ext[:-1], bend)
        ext[1:] = np.maximum(ext[1:], bend)
    half_len = seg_len / 2 + np.minimum(hw * ext, hw)
    boxes = np.stack([mids[:, 0], mids[:, 1], yaw, 2 * half_len, 2 * hw], axis=1)
    return boxes, q[:-1], length


def scene_pieces(scene: Scenario) -> ScenePieces:
    """One scene's lane pieces within reach of its ego, their lanes' semantics and its traffic-light signals."""
    m: RoadMap = scene.map
    n_t = scene.num_steps
    path = np.concatenate([scene.agents[scene.ego][:, [X, Y]].astype(np.float64), np.asarray(scene.route, np.float64)])
    tree = cKDTree(path)
    lights = [g for g in range(m.num_lights) if 0 <= int(m.light_lanes[g]) < len(m.lanes)]
    cuts: dict[int, list[float]] = {}
    lanes = {i: _clean(p) for i, p in enumerate(m.lanes)}
    stop_s: dict[int, float] = {}
    for g in lights:
        lane = int(m.light_lanes[g])
        if len(lanes[lane]) >= 2:
            stop_s[g] = _project_s(lanes[lane], _arc(lanes[lane]), np.asarray(m.light_stop_points[g], np.float64))
            cuts.setdefault(lane, []).append(stop_s[g])
    boxes, lane_of, s0, lengths = [], [], [], {}
    for i, pts in lanes.items():
        if len(pts) < 2:
            continue
        b, s, lengths[i] = _lane_pieces(pts, float(m.lane_widths[i]) / 2, cuts.get(i, []), m.lane_polygons[i])
        reach = LANE_REACH + b[:, 3] / 2
        near = tree.query(b[:, :2], distance_upper_bound=float(reach.max(initial=0.0)))[0] <= reach
        boxes.append(b[near])
        lane_of.append(np.full(int(near.sum()), i))
        s0.append(s[near])
    box = np.concatenate(boxes) if boxes else np.zeros((0, 5))
    orig = np.concatenate(lane_of).astype(np.int64) if lane_of else np.zeros(0, np.int64)
    kept, lane = np.unique(orig, return_inverse=True)
    seg_s0 = np.concatenate(s0) if s0 else np.zeros(0)
    succ: dict[int, list[int]] = {}
    for a, b in np.asarray(m.lane_successors, np.int64).reshape(-1, 2):
        succ.setdefault(int(a), []).append(int(b))
    light_seg = np.zeros((len(lights), len(box)), dtype=bool)
    red = np.zeros((len(lights), n_t), dtype=bool)
    for k, g in enumerate(lights):
        if g not in stop_s:
            continue
        lane_g = int(m.light_lanes[g])
        light_seg[k] = (orig == lane_g) & (seg_s0 >= stop_s[g] - 1e-6)
        if stop_s[g] >= lengths[lane_g] - LANE_SEGMENT:  # stop line at the lane's end: the lanes it leads into
            light_seg[k] |= np.isin(orig, succ.get(lane_g, []))
        red[k] = np.asarray(m.light_states[g]) == int(LightState.STOP)
    return ScenePieces(
        box=box, lane=lane.astype(np.int64), s0=seg_s0,
        limit=np.asarray(m.lane_speed_limits, np.float64)[kept] if m.knows("speed_limits") else np.full(len(kept),
                                                                                                          np.nan),
        inter=np.asarray(m.lane_intersection, np.int8)[kept] if m.knows("intersections") else np.full(len(kept), -1,
                                                                                                       np.int8),
        light_seg=light_seg, red=red,
    )


def build_lane_map(scenes: Sequence[Scenario], num_steps: int, device: torch.device,
                   pieces: Sequence[ScenePieces] | None = None) -> LaneMap:
    """Precompute the :class:`LaneMap` of ``scenes`` (padded to the batch's ``num_steps``) on ``device``.

    ``pieces``: each scene's :func:`scene_pieces`, when already prepared (``sim.scene_cache``).
    """
    parts = [scene_pieces(s) for s in scenes] if pieces is None else list(pieces)
    b = len(scenes)
    n_r = max(1, max(len(p.box) for p in parts))
    n_r = -(-n_r // CHUNK) * CHUNK
    n_l = max(1, max(len(p.limit) for p in parts))
    n_g = max(len(p.red) for p in parts)
    box = np.zeros((b, n_r, 5), np.float32)
    box[..., 3:] = 1.0
    box[..., :2] = 1e6  # padding pieces far from everything
    lane = np.full((b, n_r), -1, np.int64)
    s0 = np.zeros((b, n_r), np.float32)
    limit = np.full((b, n_l), np.nan, np.float32)
    inter = np.full((b, n_l), -1, np.int8)
    light_seg = np.zeros((b, n_g, n_r), bool)
    red = np.zeros((b, n_g, num_steps), bool)
    light_valid = np.zeros((b, n_g), bool)
    for i, p in enumerate(parts):
        r, nl, g = len(p.box), len(p.limit), len(p.red)
        box[i, :r], lane[i, :r], s0[i, :r] = p.box, p.lane, p.s0
        limit[i, :nl], inter[i, :nl] = p.limit, p.inter
        light_seg[i, :g, :r] = p.light_seg
        red[i, :g, : p.red.shape[1]] = p.red
        light_valid[i, :g] = True

    reach = np.hypot(box[..., 3], box[..., 4]) / 2  # [B, R] each piece's bounding radius
    valid = (lane >= 0).reshape(b, -1, CHUNK)
    xy = box[..., :2].astype(np.float64).reshape(b, -1, CHUNK, 2)
    w = valid[..., None].astype(np.float64)
    centre = (xy * w).sum(2) / np.maximum(w.sum(2), 1.0)  # [B, C, 2]
    far = np.linalg.norm(xy - centre[:, :, None], axis=-1) + reach.reshape(b, -1, CHUNK)
    radius = np.where(valid, far, 0.0).max(2)
    centre = np.where(valid.any(2)[..., None], centre, 1e6)  # empty chunks far from everything
    circle = np.concatenate([centre, radius[..., None]], axis=-1).astype(np.float32)

    def flags(fn) -> Tensor:
        return torch.tensor([bool(fn(s, p)) for s, p in zip(scenes, parts, strict=True)], device=device)

    def t(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a).to(device)

    return LaneMap(
        seg_box=t(box), seg_lane=t(lane), seg_s0=t(s0), seg_valid=t(lane >= 0), chunk_circle=t(circle),
        lane_speed_limit=t(limit), lane_intersection=t(inter),
        light_seg=t(light_seg), light_red=t(red), light_valid=t(light_valid),
        has_lanes=flags(lambda s, p: len(p.box) > 0),
        knows_speed_limits=flags(lambda s, p: s.map.knows("speed_limits") and np.isfinite(p.limit).any()),
        knows_intersections=flags(lambda s, p: s.map.knows("intersections")),
        has_lights=flags(lambda s, p: s.map.knows("traffic_lights") and len(p.red) > 0),
    )
