"""Map geometry for importers: lane buffers (drivable area), bounding-box crops, the ego's route.

Pure numpy; distances in metres. See ``docs/importers.md`` for the rules.
"""

from __future__ import annotations

import math

import numpy as np
import shapely

from scenarios.scenario import YAW, Polylines, X, Y

ROUTE_SPACING = 1.0  # m between route points
ROUTE_EXTENSION = 10.0  # m the route continues past the ego's last logged pose
LANE_SNAP = 2.0  # m: the route extension follows a lane whose centreline passes this close to the ego


def near_box(lines: Polylines | list[np.ndarray], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
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


ZONE_SIMPLIFY = 0.5  # m: a path is simplified this much before its zone is built (the zone's edge moves at most this)


def path_zone(paths: list[np.ndarray], margin: float):
    """The shapely area within ``margin`` m of the polylines ``paths`` (each ``[n, 2]``, m): what a scene keeps of
    its map. It turns with the scene: unlike a box, it does not depend on the frame's axes."""
    geoms = [shapely.linestrings(np.asarray(p, np.float64)).simplify(ZONE_SIMPLIFY) if len(p) > 1
             else shapely.points(np.asarray(p[0], np.float64)) for p in paths if len(p)]
    return shapely.union_all([g.buffer(margin) for g in geoms])  # (the buffer of a union of a jittery recorded
    # path's nearly collinear pieces can take GEOS minutes; simplified pieces buffered apart take milliseconds)


def near_zone(lines: Polylines | list[np.ndarray], zone, closed: bool = False) -> np.ndarray:
    """bool ``[L]``: polylines (``closed``: polygons) that meet ``zone`` (:func:`path_zone`)."""
    if not isinstance(lines, Polylines):
        lines = Polylines.from_list(lines)
    out = np.zeros(len(lines), dtype=bool)
    if len(out) == 0 or zone.is_empty:
        return out
    lo, hi = np.asarray(zone.bounds[:2]), np.asarray(zone.bounds[2:])
    idx = np.flatnonzero(near_box(lines, lo, hi))  # the box test first: most of a large map is far away
    geoms = [shapely.polygons(p).buffer(0) if closed and len(p) >= 3
             else shapely.linestrings(p) if len(p) > 1 else shapely.points(p[0]) for p in (lines[i] for i in idx)]
    if geoms:
        shapely.prepare(zone)
        out[idx] = shapely.intersects(zone, np.asarray(geoms, dtype=object))
    return out


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
        k = int(np.argmax(d >= d.max() - 1e-9))  # first of (near-)equal maxima, not round-off's pick
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
    near = near_box(lanes, p - LANE_SNAP, p + LANE_SNAP)
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
        for j in np.flatnonzero(near_box(lanes, end - 1.0, end + 1.0)):
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
