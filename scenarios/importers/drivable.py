"""Drivable area from a map's kerbs, intersections and outlines, and the area a source mapped at all (shapely; metres).

- :func:`kerb_fill`: the road between each lane and the road edges (kerbs, medians; Waymo
  ``ROAD_EDGE_*``) that perpendicular rays from the lane meet within :data:`EDGE_REACH` (a gap in a kerb
  must not make the pavement behind it road).
- :func:`intersection_fill`: the space inside an intersection that its lanes enclose, less islands.
- :func:`outline_faces`: the even-odd area of closed outlines (ScenarioNet's nuScenes ``boundary_*``
  rings, the outline of nuScenes' drivable area: road segments, intersections included, and lanes).
- :func:`mapped_hull`: where the source mapped at all (ScenarioNet crops the map around the recorded ego).
- :func:`off_map_steps`: per step, whether an agent's box leaves the mapped area ("off the map",
  reported apart from off-road).

Polygons are returned hole-free and counter-clockwise (``RoadMap.drivable`` holds no holes; a
polygon with holes is cut by a vertical line through each hole).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry import LineString, MultiLineString, Polygon
from shapely.geometry.polygon import orient
from shapely.ops import split, unary_union
from shapely.validation import make_valid

from scenarios.importers.mapgeom import densify
from scenarios.scenario import LENGTH, WIDTH, YAW, RoadMap, X, Y

EDGE_REACH = 6.0  # m beyond a lane's half width that a ray from the lane looks for the kerb
RAY_SPACING = 1.0  # m between those rays along a lane
MIN_FACE_AREA = 1e-6  # m^2: degenerate pieces below this are dropped
CLOSED_TOL = 0.01  # m: a polyline whose ends are this close is a closed ring


def _polys_of(geom) -> list[Polygon]:
    if geom is None or geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    return [g for part in getattr(geom, "geoms", []) for g in _polys_of(part)]


def hole_free(geom) -> list[np.ndarray]:
    """Counter-clockwise ``[n, 2]`` exteriors whose union is ``geom`` (a (multi)polygon, holes allowed).

    Holes below :data:`MIN_FACE_AREA` (slivers that unions leave between touching polygons) are
    filled; a polygon with holes is split by a vertical line through the middle of each hole, which
    cuts every hole open; a piece that still has holes after a few rounds (degenerate geometry)
    becomes triangles (``shapely.constrained_delaunay_triangles``), so no area is ever lost.
    """
    out: list[np.ndarray] = []
    todo = [_fill_slivers(p) for p in _polys_of(geom)]
    for _ in range(4):
        nxt = []
        for p in todo:
            if p.area < MIN_FACE_AREA:
                continue
            if not p.interiors:
                out.append(np.asarray(orient(p, 1.0).exterior.coords)[:-1])
                continue
            lo_y, hi_y = p.bounds[1] - 1.0, p.bounds[3] + 1.0
            xs = [(h.bounds[0] + h.bounds[2]) / 2 for h in p.interiors]
            nxt += [_fill_slivers(q) for q in _polys_of(split(p, MultiLineString([[(x, lo_y), (x, hi_y)]
                                                                                  for x in xs])))]
        todo = nxt
        if not todo:
            break
    for p in todo:  # degenerate leftovers: exact triangles
        out += [np.asarray(orient(t, 1.0).exterior.coords)[:-1]
                for t in _polys_of(shapely.constrained_delaunay_triangles(p)) if t.area >= MIN_FACE_AREA]
    return out


def _fill_slivers(p: Polygon) -> Polygon:
    keep = [h for h in p.interiors if Polygon(h).area >= MIN_FACE_AREA]
    return p if len(keep) == len(p.interiors) else Polygon(p.exterior, keep)


def kerb_fill(edges: Sequence[np.ndarray], lanes: Sequence[np.ndarray], half_widths: np.ndarray,
              reach: float = EDGE_REACH, spacing: float = RAY_SPACING) -> list[np.ndarray]:
    """Road from each lane out to the kerb: the span a perpendicular ray crosses before it meets a road edge.

    Every :data:`RAY_SPACING` m along each lane centreline, a ray goes left and one right, each
    ``half width + reach`` long. Where a ray meets a road edge, the road reaches that edge (the
    corner between a kerb and a turn lane, a parking lane, the space a right turn sweeps); where it
    meets none (a gap in the kerb at a driveway, no kerb mapped), the lane's own half width is kept
    and nothing more. A median or a traffic island is bounded by its own edges, which stop the rays.

    Args:
        edges: road-edge polylines ``[n, 2]`` (kerbs and medians), m.
        lanes: lane centrelines ``[n, 2]``, m; half_widths: float ``[L]`` m.
        reach: metres beyond a lane's half width that a ray looks for an edge.
        spacing: metres between rays along a lane.

    Returns:
        Hole-free counter-clockwise polygons (one ribbon per lane, split where it self-intersects).
    """
    lines = [LineString(e) for e in edges if len(e) >= 2]
    if not lines:
        return []
    tree = shapely.STRtree(lines)
    geoms = np.asarray(lines, dtype=object)
    out: list[np.ndarray] = []
    for line, hw in zip(lanes, np.asarray(half_widths, dtype=np.float64)):
        pts = densify(np.asarray(line, dtype=np.float64), spacing)
        if len(pts) < 2:
            continue
        d = np.gradient(pts, axis=0)
        n = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.hypot(d[:, 0], d[:, 1])[:, None]
        extent = []
        for side in (1.0, -1.0):
            rays = shapely.linestrings(np.stack([pts, pts + side * (hw + reach) * n], axis=1))
            ri, ei = tree.query(rays, predicate="intersects")
            dist = np.full(len(pts), np.inf)
            if len(ri):
                hit = shapely.distance(shapely.points(pts[ri]), shapely.intersection(rays[ri], geoms[ei]))
                np.minimum.at(dist, ri, hit)
            extent.append(np.where(np.isfinite(dist), np.maximum(dist, hw), hw))
        ribbon = Polygon(np.vstack([pts - n * extent[1][:, None], (pts + n * extent[0][:, None])[::-1]]))
        out += hole_free(ribbon if ribbon.is_valid else make_valid(ribbon))
    return out


def intersection_fill(lanes: Sequence[np.ndarray], half_widths: np.ndarray,
                      edges: Sequence[np.ndarray] = ()) -> list[np.ndarray]:
    """The space inside an intersection that its lanes enclose: the holes of the union of the intersection lanes'
    surfaces (centreline +- half width), less the islands that closed road-edge rings bound.

    Args:
        lanes: centrelines ``[n, 2]`` of the lanes through intersections (lane connectors), m.
        half_widths: float ``[L]`` m.
        edges: road-edge polylines; the closed ones are islands and stay off the road.

    Returns:
        Hole-free counter-clockwise polygons of the enclosed space (not the lanes' own surfaces).
    """
    surfaces = [LineString(c).buffer(float(hw), cap_style="flat") for c, hw in zip(lanes, half_widths)
                if len(c) >= 2 and hw > 0]
    if not surfaces:
        return []
    holes = [Polygon(h) for p in _polys_of(unary_union(surfaces)) for h in p.interiors]
    if not holes:
        return []
    islands = [Polygon(e).buffer(0) for e in edges if is_closed(np.asarray(e))]
    area = unary_union(holes)
    if islands:
        area = area.difference(unary_union(islands))
    return hole_free(area)


def width_polygon(centre: np.ndarray, width: np.ndarray) -> np.ndarray:
    """``[m, 2]`` counter-clockwise polygon of a lane from its centreline ``[n, 2]`` and ``width [n, 2]``.

    ``width[:, 0]`` is the distance to the left boundary, ``width[:, 1]`` to the right (m). Returns
    ``[0, 2]`` when the widths are missing or not all positive, or the outline degenerates.
    """
    w = np.asarray(width, dtype=np.float64)
    if len(centre) < 2 or w.shape != (len(centre), 2) or not np.all(w > 0):
        return np.zeros((0, 2))
    d = np.gradient(centre, axis=0)
    n = np.hypot(d[:, 0], d[:, 1])
    if np.any(n < 1e-9):
        return np.zeros((0, 2))
    left = np.stack([-d[:, 1], d[:, 0]], axis=1) / n[:, None]
    poly = np.vstack([centre - left * w[:, 1:2], (centre + left * w[:, 0:1])[::-1]])
    shape = Polygon(poly)
    if not shape.is_valid:
        parts = [g for g in getattr(make_valid(shape), "geoms", [make_valid(shape)]) if isinstance(g, Polygon)]
        if not parts:
            return np.zeros((0, 2))
        shape = max(parts, key=lambda g: g.area)
        poly = np.asarray(shape.exterior.coords)[:-1]
    return poly if Polygon(poly).area > 0 else np.zeros((0, 2))


def is_closed(line: np.ndarray) -> bool:
    """Whether a ``[n, 2]`` polyline is a closed ring (ends within :data:`CLOSED_TOL`, at least 4 points)."""
    return len(line) >= 4 and float(np.hypot(*(line[0] - line[-1]))) <= CLOSED_TOL


def outline_faces(rings: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The even-odd area of closed outlines, and the outlines oriented with that area on their left.

    A point is inside when an odd number of rings encloses it (outer outlines and the islands
    inside their holes), as nuScenes' drivable-area outlines are written by ScenarioNet.

    Args:
        rings: closed polylines ``[n, 2]`` (first point repeated or not), m.

    Returns:
        ``(polygons, edges)``: hole-free counter-clockwise polygons of the area, and each ring as a
        road edge (counter-clockwise around area, clockwise around a hole), first point repeated.
    """
    polys = [Polygon(r).buffer(0) for r in rings if len(r) >= 3]
    polys = [p for p in polys if not p.is_empty]
    area = None
    for p in polys:
        area = p if area is None else area.symmetric_difference(p)
    edges = []
    for r in rings:
        if len(r) < 3:
            continue
        pr = Polygon(r)
        inside = area is not None and area.contains(pr.representative_point())
        edges.append(np.asarray(orient(pr, 1.0 if inside else -1.0).exterior.coords))
    return hole_free(area), edges


def mapped_hull(point_sets: Sequence[np.ndarray]) -> np.ndarray:
    """Counter-clockwise convex hull ``[n, 2]`` of every map point (where the source mapped at all), m.

    Returns ``[0, 2]`` when there are fewer than 3 points or they are collinear.
    """
    pts = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in point_sets] + [np.zeros((0, 2))])
    if len(pts) < 3:
        return np.zeros((0, 2))
    hull = shapely.MultiPoint(pts).convex_hull
    if not isinstance(hull, Polygon) or hull.area <= 0:
        return np.zeros((0, 2))
    return np.asarray(orient(hull, 1.0).exterior.coords)[:-1]


def outside_mapped_area(road: RoadMap, xy: np.ndarray) -> np.ndarray:
    """bool ``[...]``: points ``xy [..., 2]`` (m, the scene's frame) outside ``road.mapped_area``.

    An empty ``mapped_area`` means the whole plane is mapped (nothing is outside).
    """
    xy = np.asarray(xy, dtype=np.float64)
    polys = [Polygon(p) for p in road.mapped_area if len(p) >= 3]
    if not polys:
        return np.zeros(xy.shape[:-1], dtype=bool)
    inside = shapely.contains_xy(unary_union(polys), xy[..., 0], xy[..., 1])
    return ~np.asarray(inside, dtype=bool)


def box_corners(states: np.ndarray) -> np.ndarray:
    """float64 ``[..., 4, 2]`` corners of the boxes of ``states [..., 7]`` (X, Y, YAW, ..., LENGTH, WIDTH), m."""
    s = np.asarray(states, dtype=np.float64)
    c, sn = np.cos(s[..., YAW]), np.sin(s[..., YAW])
    hl, hw = s[..., LENGTH] / 2, s[..., WIDTH] / 2
    signs = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], dtype=np.float64)
    dx = signs[:, 0] * hl[..., None]
    dy = signs[:, 1] * hw[..., None]
    x = s[..., X, None] + dx * c[..., None] - dy * sn[..., None]
    y = s[..., Y, None] + dx * sn[..., None] + dy * c[..., None]
    return np.stack([x, y], axis=-1)


def off_map_steps(road: RoadMap, states: np.ndarray) -> np.ndarray:
    """bool ``[...]``: steps at which an agent's box has a corner outside the mapped area ("off the map").

    Such a step says nothing about the road (the source did not map there), so the on-road check
    leaves it out. Plain numpy + shapely, no ``sim``.

    Args:
        road: the scene's map (``mapped_area`` in the scene's frame; empty: nothing is off the map).
        states: ``[..., 7]`` agent states (e.g. ``[T, 7]`` one agent's log, or ``[B, T, 7]``).

    Returns:
        bool array of ``states.shape[:-1]``.
    """
    return outside_mapped_area(road, box_corners(states)).any(axis=-1)
