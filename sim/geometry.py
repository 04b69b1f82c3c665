"""Batched geometry: oriented-box corners and overlap (SAT), and the road signed-distance grid.

Boxes are ``[..., 5]`` tensors ``(x, y, yaw, length, width)`` in metres / radians, world frame.

Road grid: the union of a scene's ``map.drivable`` polygons rasterised at ``resolution`` over
the polygons' bounding box plus :data:`GRID_MARGIN`, cropped to the region the ego can
plausibly reach (its logged path and route plus :data:`CROP_MARGIN`). Cell values are the
signed distance (m, > 0 outside) to the drivable-area boundary:

- outside cells within :data:`EXACT_BAND` of a polygon edge: exact distance to the nearest
  edge (KD-tree over edge points sampled every :data:`EDGE_SAMPLE` m; error <= 5 mm at 0.3 m);
- inside cells within the band: minus the distance to the nearest polygon edge; edges
  shared by adjacent polygons count, so inside values are a lower bound on depth (the sign
  and the zero crossing are exact);
- farther cells: Euclidean distance transform (``scipy.ndimage.distance_transform_edt``)
  to the nearest cell of the other sign, minus half a cell.

:func:`road_distance` interpolates bilinearly. Along straight edges the signed distance is
linear, so interpolation adds nothing; at polygon corners it is off by at most about
``resolution**2 / (8 r)`` at distance ``r``. Measured against shapely on random points (see
``tests/test_geometry.py``): |error| < 0.05 m within 3 m of the road at the default 0.5 m,
which keeps the nuPlan 0.3 m offroad threshold meaningful.

Grids are cached per :class:`~scenarios.scenario.Scenario` object (a weak reference), so a
scene batched many times during training is rasterised once.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from scenarios.scenario import Scenario

GRID_MARGIN = 5.0  # m beyond the drivable polygons' bounding box
CROP_MARGIN = 40.0  # m around the ego's logged path and route; the grid never extends beyond this
EDGE_SAMPLE = 0.1  # m between boundary sample points (distance error <= 5 mm at 0.3 m)
_SIDE_EPS = 0.02  # m; side probes that decide whether an edge point is on the union's boundary
OUTSIDE = 1000.0  # m; road_distance outside a scene's grid (large positive = offroad)
NO_ROAD = -1000.0  # m; road_distance in a scene without drivable polygons (never offroad)

_CACHE: weakref.WeakKeyDictionary[Scenario, dict[float, tuple[np.ndarray, np.ndarray]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True, eq=False)
class RoadGrid:
    """Per-scene signed-distance grids of the drivable area, padded to a common size.

    Attributes:
        sdf: float32 ``[B, H, W]`` signed distance to the drivable-area boundary, m, > 0 outside.
            ``sdf[b, iy, ix]`` is the value at world ``origin[b] + (ix, iy) * resolution``;
            padding cells hold :data:`OUTSIDE`.
        origin: float32 ``[B, 2]`` world x, y of cell ``[0, 0]`` (m).
        resolution: metres per cell.
        has_road: bool ``[B]``; False when the scene has no drivable polygons (offroad never fires).
    """

    sdf: Tensor
    origin: Tensor
    resolution: float
    has_road: Tensor

    def to(self, device: str | torch.device) -> RoadGrid:
        """The same grid on ``device``."""
        return RoadGrid(self.sdf.to(device), self.origin.to(device), self.resolution, self.has_road.to(device))


# ----------------------------------------------------------------------------- boxes


def box_corners(box: Tensor) -> Tensor:
    """Corners of oriented boxes.

    Args:
        box: ``[..., 5]`` (x, y, yaw, length, width), m / rad.

    Returns:
        ``[..., 4, 2]`` world x, y of the corners, counter-clockwise: front-left, rear-left,
        rear-right, front-right.
    """
    x, y, yaw, length, width = box.unbind(-1)
    c, s = torch.cos(yaw), torch.sin(yaw)
    hl, hw = length / 2, width / 2
    sign_l = box.new_tensor([1.0, -1.0, -1.0, 1.0])
    sign_w = box.new_tensor([1.0, 1.0, -1.0, -1.0])
    lx = hl[..., None] * sign_l  # [..., 4] local x
    ly = hw[..., None] * sign_w
    wx = x[..., None] + c[..., None] * lx - s[..., None] * ly
    wy = y[..., None] + s[..., None] * lx + c[..., None] * ly
    return torch.stack([wx, wy], dim=-1)


def boxes_overlap(a: Tensor, b: Tensor) -> Tensor:
    """Separating-axis test between oriented boxes; touching boxes count as overlapping.

    Args:
        a: ``[..., 5]`` (x, y, yaw, length, width), m / rad.
        b: ``[..., 5]``, broadcastable against ``a``.

    Returns:
        bool ``[...]`` (the broadcast shape): True where the boxes intersect.
    """
    dx = b[..., 0] - a[..., 0]
    dy = b[..., 1] - a[..., 1]
    ca, sa = torch.cos(a[..., 2]), torch.sin(a[..., 2])
    cb, sb = torch.cos(b[..., 2]), torch.sin(b[..., 2])
    la, wa = a[..., 3] / 2, a[..., 4] / 2
    lb, wb = b[..., 3] / 2, b[..., 4] / 2
    cr = (ca * cb + sa * sb).abs()  # |cos(yaw_a - yaw_b)|
    sr = (sa * cb - ca * sb).abs()  # |sin(yaw_a - yaw_b)|
    sep = (dx * ca + dy * sa).abs() > la + lb * cr + wb * sr
    sep |= (-dx * sa + dy * ca).abs() > wa + lb * sr + wb * cr
    sep |= (dx * cb + dy * sb).abs() > lb + la * cr + wa * sr
    sep |= (-dx * sb + dy * cb).abs() > wb + la * sr + wa * cr
    return ~sep


# ----------------------------------------------------------------------------- road grid


def _rasterise(polys: Sequence[np.ndarray], origin: np.ndarray, shape: tuple[int, int], res: float) -> np.ndarray:
    """bool ``[H, W]``: cell centres inside the union of polygons (even-odd per polygon)."""
    h, w = shape
    inside = np.zeros(shape, dtype=bool)
    for poly in polys:
        p0 = poly
        p1 = np.roll(poly, -1, axis=0)
        lo = np.floor((poly.min(0) - origin) / res).astype(int)
        hi = np.ceil((poly.max(0) - origin) / res).astype(int) + 1
        r0, r1 = max(lo[1], 0), min(hi[1], h)
        c0, c1 = max(lo[0], 0), min(hi[0], w)
        if r0 >= r1 or c0 >= c1:
            continue
        ys = origin[1] + np.arange(r0, r1) * res  # [h'] row centres
        y0, y1 = p0[None, :, 1], p1[None, :, 1]
        crosses = (y0 > ys[:, None]) != (y1 > ys[:, None])  # [h', E]
        rows, edges = np.nonzero(crosses)
        if rows.size == 0:
            continue
        e0, e1 = p0[edges], p1[edges]
        yr = ys[rows]
        x_int = e0[:, 0] + (yr - e0[:, 1]) * (e1[:, 0] - e0[:, 0]) / (e1[:, 1] - e0[:, 1])
        # crossing with k cells of the window strictly left of it: those cells see it to their right
        k = np.clip(np.ceil((x_int - origin[0]) / res - c0), 0, c1 - c0).astype(np.int64)
        wn = c1 - c0 + 1
        hist = np.bincount(rows * wn + k, minlength=(r1 - r0) * wn).reshape(r1 - r0, wn)
        right = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]  # crossings with k > j
        inside[r0:r1, c0:c1] |= (right % 2) == 1
    return inside


def _inside_any(q: np.ndarray, polys: Sequence[np.ndarray]) -> np.ndarray:
    """bool ``[N]``: points ``q [N, 2]`` inside any polygon (crossing number, bounding-box prefilter)."""
    out = np.zeros(len(q), dtype=bool)
    for poly in polys:
        lo, hi = poly.min(0), poly.max(0)
        cand = np.nonzero(~out & np.all((q >= lo) & (q <= hi), axis=1))[0]
        if cand.size == 0:
            continue
        px, py = q[cand, 0:1], q[cand, 1:2]
        x0, y0 = poly[None, :, 0], poly[None, :, 1]
        p1 = np.roll(poly, -1, axis=0)
        x1, y1 = p1[None, :, 0], p1[None, :, 1]
        crosses = (y0 > py) != (y1 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_int = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        odd = (np.sum(crosses & (x_int > px), axis=1) % 2) == 1
        out[cand[odd]] = True
    return out


def _boundary_samples(polys: Sequence[np.ndarray]) -> np.ndarray:
    """``[N, 2]`` points along the boundary of the polygons' union, at most :data:`EDGE_SAMPLE` apart.

    Edge points with the union on both sides (edges shared by adjacent polygons) are dropped.
    """
    pts, normals = [], []
    for poly in polys:
        d = np.roll(poly, -1, axis=0) - poly
        seg = np.linalg.norm(d, axis=1)
        keep = seg > 1e-9
        p0, d, seg = poly[keep], d[keep], seg[keep]
        n = np.maximum(np.ceil(seg / EDGE_SAMPLE).astype(int), 1)
        idx = np.repeat(np.arange(len(p0)), n)
        frac = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
        pts.append(p0[idx] + frac[:, None] * d[idx])
        normals.append(np.stack([-d[idx, 1], d[idx, 0]], axis=1) / seg[idx, None])
    p = np.concatenate(pts, axis=0)
    nrm = np.concatenate(normals, axis=0) * _SIDE_EPS
    if len(polys) > 1:
        both = _inside_any(p + nrm, polys) & _inside_any(p - nrm, polys)
        p = p[~both]
    return p


def _scene_grid(scene: Scenario, res: float) -> tuple[np.ndarray, np.ndarray] | None:
    """``(sdf float32 [h, w], origin float64 [2])`` for one scene, or None without drivable polygons."""
    polys = [np.asarray(p, dtype=np.float64) for p in scene.map.drivable if len(p) >= 3]
    if not polys:
        return None
    pts = np.concatenate(polys, axis=0)
    lo, hi = pts.min(0) - GRID_MARGIN, pts.max(0) + GRID_MARGIN
    ego = scene.agents[scene.ego][:, :2].astype(np.float64)
    reach = np.concatenate([ego, np.asarray(scene.route, dtype=np.float64)], axis=0)
    lo = np.maximum(lo, reach.min(0) - CROP_MARGIN)
    hi = np.minimum(hi, reach.max(0) + CROP_MARGIN)
    if np.any(hi <= lo):  # road entirely out of the ego's reach: one offroad cell
        hi = lo + res
    shape = (int(math.ceil((hi[1] - lo[1]) / res)) + 1, int(math.ceil((hi[0] - lo[0]) / res)) + 1)
    inside = _rasterise(polys, lo, shape, res)
    boundary = _boundary_samples(polys)
    if not inside.any() or len(boundary) == 0:
        return np.full(shape, OUTSIDE, dtype=np.float32), lo
    iy, ix = np.indices(shape).reshape(2, -1)
    q = np.stack([lo[0] + ix * res, lo[1] + iy * res], axis=1)
    dist, _ = cKDTree(boundary).query(q)
    sdf = np.where(inside.reshape(-1), -dist, dist).reshape(shape)
    return sdf.astype(np.float32), lo


def build_road_grid(
    scenes: Sequence[Scenario], device: str | torch.device = "cpu", resolution: float = 0.5
) -> RoadGrid:
    """Signed-distance grids of the scenes' drivable areas, padded to a common ``[H, W]``.

    Args:
        scenes: B scenes.
        device: torch device of the returned tensors.
        resolution: metres per cell. Memory is ``4 * B * H * W`` bytes; at 0.5 m a scene
            spans at most its ego path and route plus 2 x 40 m in each direction.

    Returns:
        :class:`RoadGrid` with ``sdf [B, H, W]``, ``origin [B, 2]``, ``has_road [B]``.
    """
    if not resolution > 0:
        raise ValueError(f"build_road_grid: resolution must be positive, got {resolution}")
    grids: list[tuple[np.ndarray, np.ndarray] | None] = []
    for s in scenes:
        per = _CACHE.setdefault(s, {})
        key = float(resolution)
        if key not in per:
            per[key] = _scene_grid(s, key)
        grids.append(per[key])
    h = max([g[0].shape[0] for g in grids if g is not None], default=1)
    w = max([g[0].shape[1] for g in grids if g is not None], default=1)
    sdf = np.full((len(scenes), h, w), OUTSIDE, dtype=np.float32)
    origin = np.zeros((len(scenes), 2), dtype=np.float32)
    has_road = np.zeros(len(scenes), dtype=bool)
    for b, g in enumerate(grids):
        if g is None:
            continue
        sdf[b, : g[0].shape[0], : g[0].shape[1]] = g[0]
        origin[b] = g[1]
        has_road[b] = True
    return RoadGrid(
        sdf=torch.from_numpy(sdf).to(device),
        origin=torch.from_numpy(origin).to(device),
        resolution=float(resolution),
        has_road=torch.from_numpy(has_road).to(device),
    )


def road_distance(grid: RoadGrid, xy: Tensor) -> Tensor:
    """Signed distance of world points to the drivable-area boundary, bilinear in the grid.

    Args:
        grid: B scenes' road grids.
        xy: ``[B, N, 2]`` world x, y, m.

    Returns:
        ``[B, N]`` m, > 0 outside the drivable area; :data:`OUTSIDE` beyond a scene's grid;
        :data:`NO_ROAD` (large negative) in scenes without drivable polygons.
    """
    sdf = grid.sdf
    n_b, h, w = sdf.shape
    g = (xy - grid.origin[:, None, :].to(xy.dtype)) / grid.resolution  # [B, N, 2] cell coords
    gx, gy = g[..., 0], g[..., 1]
    in_grid = (gx >= 0) & (gy >= 0) & (gx <= w - 1) & (gy <= h - 1)
    x0 = torch.floor(gx).long().clamp(0, max(w - 2, 0))
    y0 = torch.floor(gy).long().clamp(0, max(h - 2, 0))
    fx = (gx - x0).clamp(0, 1)
    fy = (gy - y0).clamp(0, 1)
    x1 = (x0 + 1).clamp(max=w - 1)
    y1 = (y0 + 1).clamp(max=h - 1)
    flat = sdf.reshape(n_b, h * w)
    v00 = flat.gather(1, y0 * w + x0)
    v01 = flat.gather(1, y0 * w + x1)
    v10 = flat.gather(1, y1 * w + x0)
    v11 = flat.gather(1, y1 * w + x1)
    top = v00 + (v01 - v00) * fx
    bot = v10 + (v11 - v10) * fx
    d = (top + (bot - top) * fy).to(xy.dtype)
    d = torch.where(in_grid, d, torch.full_like(d, OUTSIDE))
    return torch.where(grid.has_road[:, None], d, torch.full_like(d, NO_ROAD))
