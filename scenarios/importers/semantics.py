"""The map's semantics through the importers' last mile: recentring, resampling, windows and crops.

A :class:`~scenarios.importers.common.Recording` carries the source's lane graph, limits, stop signs
and traffic lights (``light_states [G, T]`` at its timestamps); this module moves them with the
scene (recentring), holds light states across a resampled time grid, slices them per window, and
keeps the lanes, signs and lights of a window's cropped map with lane indices renumbered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import shapely
from shapely.geometry import Polygon, box
from shapely.ops import unary_union

from scenarios.importers.drivable import hole_free, intersection_fill, kerb_fill, mapped_hull, outline_faces
from scenarios.importers.mapgeom import near_box
from scenarios.scenario import MAP_SEMANTICS, LightState, Polylines

if TYPE_CHECKING:
    from scenarios.importers.common import Recording

AREA_TILE = 50.0  # m: side of the tiles the added drivable area is cut into (see :func:`tiled`)

# Waymo ``TrafficSignalLaneState`` names (also ScenarioNet's ``object_state`` strings) and MetaDrive's
# ``TRAFFIC_LIGHT_*`` names (ScenarioNet's nuPlan converter) -> LightState.
WAYMO_LIGHT_STATES = {
    "LANE_STATE_UNKNOWN": LightState.UNKNOWN,
    "LANE_STATE_ARROW_STOP": LightState.STOP,
    "LANE_STATE_ARROW_CAUTION": LightState.CAUTION,
    "LANE_STATE_ARROW_GO": LightState.GO,
    "LANE_STATE_STOP": LightState.STOP,
    "LANE_STATE_CAUTION": LightState.CAUTION,
    "LANE_STATE_GO": LightState.GO,
    "LANE_STATE_FLASHING_STOP": LightState.FLASHING_STOP,
    "LANE_STATE_FLASHING_CAUTION": LightState.FLASHING_CAUTION,
    "TRAFFIC_LIGHT_UNKNOWN": LightState.UNKNOWN,
    "TRAFFIC_LIGHT_RED": LightState.STOP,
    "TRAFFIC_LIGHT_YELLOW": LightState.CAUTION,
    "TRAFFIC_LIGHT_GREEN": LightState.GO,
}
# The same states by Waymo's enum value (0..8), as Nocturne/GPUDrive JSON may write them.
WAYMO_LIGHT_CODES = dict(enumerate([WAYMO_LIGHT_STATES[k] for k in (
    "LANE_STATE_UNKNOWN", "LANE_STATE_ARROW_STOP", "LANE_STATE_ARROW_CAUTION", "LANE_STATE_ARROW_GO",
    "LANE_STATE_STOP", "LANE_STATE_CAUTION", "LANE_STATE_GO", "LANE_STATE_FLASHING_STOP",
    "LANE_STATE_FLASHING_CAUTION")]))


def light_state(value: object) -> LightState:
    """One recorded signal state (Waymo name, short name such as ``"stop"``, enum value, None) -> LightState."""
    if value is None:
        return LightState.UNKNOWN
    if isinstance(value, (int, np.integer)):
        return WAYMO_LIGHT_CODES.get(int(value), LightState.UNKNOWN)
    name = str(value).upper()
    if name in WAYMO_LIGHT_STATES:
        return WAYMO_LIGHT_STATES[name]
    return WAYMO_LIGHT_STATES.get(f"LANE_STATE_{name}", LightState.UNKNOWN)


def hold_states(t_src: np.ndarray, states: np.ndarray, t_new: np.ndarray) -> np.ndarray:
    """int8 ``[G, len(t_new)]``: each signal's state at ``t_new`` (s), held from the latest sample at or before it.

    Steps before the first sample read UNKNOWN.
    """
    k = np.searchsorted(np.asarray(t_src, np.float64), np.asarray(t_new, np.float64) + 1e-6, side="right") - 1
    out = np.asarray(states, dtype=np.int8)[:, np.clip(k, 0, max(len(t_src) - 1, 0))]
    out[:, k < 0] = LightState.UNKNOWN
    return out


def lane_polygons_of(rec: Recording) -> Polylines:
    """``[L]`` the recording's lane polygons (0 points where the source has none)."""
    if rec.lane_polygons is not None:
        return rec.lane_polygons
    return Polylines(np.zeros((0, 2)), np.zeros(len(rec.lanes) + 1, dtype=np.int64))


def shift_semantics(rec: Recording, offset: np.ndarray) -> dict:
    """The semantic fields of ``rec`` that hold positions, moved by ``-offset`` (m)."""
    lp = lane_polygons_of(rec)
    return {
        "lane_polygons": Polylines(lp.points - offset, lp.offsets),
        "drivable_outlines": Polylines(rec.drivable_outlines.points - offset, rec.drivable_outlines.offsets),
        "stop_signs": np.asarray(rec.stop_signs, np.float64).reshape(-1, 2) - offset,
        "light_stop_points": np.asarray(rec.light_stop_points, np.float64).reshape(-1, 2) - offset,
    }


def area_polygons(rec: Recording, half_widths: np.ndarray, lo: np.ndarray, hi: np.ndarray
                  ) -> tuple[list[np.ndarray], np.ndarray, Polylines | None]:
    """Drivable polygons from the source's outlines and road edges, the mapped hull, and outline edges.

    Args:
        rec: the recentred recording.
        half_widths: float ``[L]`` each lane's half width, m.
        lo, hi: ``[2]`` the box (m) the scene can reach; the area is clipped to it.

    Returns:
        ``(polygons, hull [n, 2], edges)``: hole-free polygons to add to the drivable area; the
        convex hull of every map point (``[0, 2]`` when none); the outlines as road edges (drivable on
        their left) or None when the recording has no outlines.
    """
    hull = mapped_hull([rec.lanes.points, rec.road_edges.points, rec.road_lines.points, rec.crosswalks.points,
                        rec.drivable_extra.points, lane_polygons_of(rec).points, rec.drivable_outlines.points])
    clip = box(*lo, *hi)
    polys: list[np.ndarray] = []
    edges = None
    if len(rec.drivable_outlines):
        area, oriented = outline_faces(list(rec.drivable_outlines))
        polys += hole_free(unary_union([_poly(p) for p in area]).intersection(clip)) if area else []
        edges = Polylines.from_list(oriented)
    elif len(rec.road_edges) and "road_edges" not in rec.unknown:
        near = near_box(rec.lanes, lo, hi)
        edges_near = [p for p, k in zip(rec.road_edges, near_box(rec.road_edges, lo, hi)) if k]
        polys += kerb_fill(edges_near, [p for p, k in zip(rec.lanes, near) if k], np.asarray(half_widths)[near])
    if edges is None and rec.lane_intersection is not None and "intersections" not in rec.unknown:
        # (with outlines, the source already bounds its intersections, islands included)
        inter = near_box(rec.lanes, lo, hi) & (np.asarray(rec.lane_intersection) == 1)
        edges_near = [p for p, k in zip(rec.road_edges, near_box(rec.road_edges, lo, hi)) if k]
        polys += intersection_fill([p for p, k in zip(rec.lanes, inter) if k], np.asarray(half_widths)[inter],
                                   edges_near)
    return polys, hull, edges


def tiled(polys: list[np.ndarray], tile: float = AREA_TILE) -> list[np.ndarray]:
    """The union of ``polys`` cut into hole-free pieces no larger than ``tile`` x ``tile`` m.

    Fewer, non-overlapping polygons keep the road grid's boundary sampling cheap (its cost grows with
    polygons x boundary points), and pieces of bounded size can still be cropped per window.
    """
    if not polys:
        return []
    area = unary_union([_poly(p) for p in polys])
    x0, y0, x1, y1 = area.bounds
    out: list[np.ndarray] = []
    for x in np.arange(np.floor(x0 / tile) * tile, x1, tile):
        for y in np.arange(np.floor(y0 / tile) * tile, y1, tile):
            out += hole_free(area.intersection(box(x, y, x + tile, y + tile)))
    return out


def _poly(p: np.ndarray) -> Polygon:
    return Polygon(p).buffer(0)


def _remap(ids: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Lane indices after keeping ``keep`` (bool ``[L]``); -1 for dropped or unknown lanes."""
    new = np.cumsum(keep) - 1
    ids = np.asarray(ids, dtype=np.int64)
    ok = (ids >= 0) & (ids < len(keep))
    out = np.full(ids.shape, -1, dtype=np.int64)
    out[ok] = np.where(keep[ids[ok]], new[ids[ok]], -1)
    return out


def _in_zone(pts: np.ndarray, zone) -> np.ndarray:
    return shapely.intersects(zone, shapely.points(pts)) if len(pts) else np.zeros(0, dtype=bool)


def crop_semantics(rec: Recording, keep_lane: np.ndarray, zone, light_states: np.ndarray) -> dict:
    """The :class:`~scenarios.scenario.RoadMap` semantic fields of a window's cropped map.

    Lanes are those of ``keep_lane`` (renumbered); graph rows need both lanes kept; stop signs and
    lights are kept when their lane is kept or their position lies in ``zone``.

    Args:
        rec: the recentred recording; keep_lane: bool ``[L]``.
        zone: the shapely area the window keeps (:func:`~scenarios.importers.mapgeom.path_zone`).
        light_states: int8 ``[G, T]`` the window's light states (already sliced in time).
    """
    n = len(rec.lanes)
    lp = lane_polygons_of(rec)
    limits = np.full(n, np.nan) if rec.lane_speed_limits is None else np.asarray(rec.lane_speed_limits, np.float64)
    inter = np.full(n, -1, np.int8) if rec.lane_intersection is None else np.asarray(rec.lane_intersection, np.int8)
    succ = _remap(np.asarray(rec.lane_successors, np.int64).reshape(-1, 2), keep_lane)
    succ = succ[np.all(succ >= 0, axis=1)]
    nb = np.asarray(rec.lane_neighbours, np.int64).reshape(-1, 3)
    nb_ids = _remap(nb[:, :2], keep_lane)
    ok = np.all(nb_ids >= 0, axis=1)
    nb = np.concatenate([nb_ids[ok], nb[ok, 2:]], axis=1)
    ss, ss_lane = np.asarray(rec.stop_signs, np.float64).reshape(-1, 2), np.asarray(rec.stop_sign_lanes, np.int64)
    ss_new = _remap(ss_lane, keep_lane)
    keep_ss = (ss_new >= 0) | _in_zone(ss, zone)
    gl, gp = np.asarray(rec.light_lanes, np.int64), np.asarray(rec.light_stop_points, np.float64).reshape(-1, 2)
    gl_new = _remap(gl, keep_lane)
    keep_g = (gl_new >= 0) | _in_zone(gp, zone)
    return {
        "lane_polygons": Polylines.from_list([p for p, k in zip(lp, keep_lane) if k]),
        "lane_speed_limits": limits[keep_lane],
        "lane_intersection": inter[keep_lane],
        "lane_successors": succ,
        "lane_neighbours": nb,
        "stop_signs": ss[keep_ss],
        "stop_sign_lanes": ss_new[keep_ss],
        "light_lanes": gl_new[keep_g],
        "light_stop_points": gp[keep_g],
        "light_states": np.asarray(light_states, np.int8)[keep_g],
    }


def scene_unknown(rec: Recording, mapped_area: Polylines) -> tuple[str, ...]:
    """The semantics a scene lacks: the source's ``unknown``, plus ``mapped_area`` when none could be built."""
    unknown = set(rec.unknown)
    if len(mapped_area) == 0:
        unknown.add("mapped_area")
    else:
        unknown.discard("mapped_area")
    return tuple(s for s in MAP_SEMANTICS if s in unknown)
