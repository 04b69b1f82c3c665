"""The lanelets of a CommonRoad network (commonroad-io 2020a objects) -> the map fields of a
:class:`~scenarios.importers.common.Recording`.

Three kinds of lanelet, by type (``laneletType``) and users (``userOneWay`` / ``userBidirectional``):

- driving lanes: the others. Each gives its centreline, its width (mean distance between its boundaries), its
  polygon (right boundary forward, left boundary back) and its lane semantics.
- road surface that is not a car's lane (:data:`ROAD_NOT_LANE`: ``bicycleLane``, ``busLane``, ``busStop``, and
  lanelets whose users name no car but a vehicle that drives on the road, such as ``bicycle`` or ``bus``): its
  polygon is drivable area (a car that swerves into a bicycle lane is on the road, as on Waymo's maps, whose kerbs
  lie beyond the bicycle lanes), but it gives no lane.
- off the road (:data:`OFF_ROAD`: ``sidewalk``, ``crosswalk``, lanelets for pedestrians only): nothing but a
  ``crosswalk`` lanelet's crosswalk (the road lanelets under it are the road).

A boundary of the road surface is a road line where another lanelet of the surface adjoins it on that side and a
road edge (kerb) where none does (a sidewalk beside it lies past the kerb); a shared boundary is one road line
(once for two lanelets of the same direction; the centre line beside an adjacent lanelet of the opposite direction:
oncoming traffic, never a neighbour to change into).
"""

from __future__ import annotations

import numpy as np

from scenarios.importers.commonroad_map import lanelet_semantics
from scenarios.importers.repair import usable_line, warn_skipped
from scenarios.scenario import Polylines

OFF_ROAD = frozenset({"sidewalk", "crosswalk"})  # LaneletType values: not road surface
ROAD_NOT_LANE = frozenset({"bicycleLane", "busLane", "busStop"})  # LaneletType values: road surface, not a car lane
DRIVING_USERS = frozenset({"vehicle", "car"})  # RoadUser values that make a lanelet a car's lane
WALKING_USERS = frozenset({"pedestrian"})  # RoadUser values of a lanelet that is not road surface


def _values(items) -> set[str]:
    return {str(getattr(x, "value", x)) for x in (items or ())}


def _users(ll) -> set[str]:
    return _values(getattr(ll, "user_one_way", None)) | _values(getattr(ll, "user_bidirectional", None))


def is_road(ll) -> bool:
    """Whether a lanelet is road surface (a car's lane or not; module docstring)."""
    users = _users(ll)
    return not (_values(ll.lanelet_type) & OFF_ROAD) and not (users and users <= WALKING_USERS)


def is_driving(ll) -> bool:
    """Whether a lanelet is a lane for cars (its types and users; module docstring)."""
    users = _users(ll)
    return is_road(ll) and not (_values(ll.lanelet_type) & ROAD_NOT_LANE) and (not users or bool(users & DRIVING_USERS))


def _usable(ll, notes: list[str]) -> bool:
    what = f"lanelet {ll.lanelet_id}"
    return all(usable_line(np.asarray(v, float), what, 2, notes)
               for v in (ll.left_vertices, ll.right_vertices, ll.center_vertices))


def lanelet_map(network, n_t: int, raw_signs: dict[int, list[str]] | None = None) -> dict:
    """The :class:`~scenarios.importers.common.Recording` map fields of a lanelet network.

    Args:
        network: ``commonroad.scenario.lanelet.LaneletNetwork``.
        n_t: steps of the scene (for the traffic lights' states).
        raw_signs: see :func:`~scenarios.importers.commonroad_map.lanelet_semantics`.
    """
    notes: list[str] = []
    road = [ll for ll in network.lanelets if is_road(ll) and _usable(ll, notes)]
    crossings = [ll for ll in network.lanelets if "crosswalk" in _values(ll.lanelet_type) and _usable(ll, notes)]
    surface = {ll.lanelet_id for ll in road}
    lanes, widths, edges, lines, polys, lane_polys, ids = [], [], [], [], [], [], []
    for ll in road:
        left, right = np.asarray(ll.left_vertices, float), np.asarray(ll.right_vertices, float)
        polys.append(np.vstack([right, left[::-1]]))  # counter-clockwise: right boundary forward, left back
        if is_driving(ll):
            lanes.append(np.asarray(ll.center_vertices, float))
            ids.append(ll.lanelet_id)
            widths.append(float(np.mean(np.hypot(*(left - right).T))) if len(left) == len(right) else np.nan)
            lane_polys.append(polys[-1])
        (lines if ll.adj_right in surface else edges).append(right)  # drivable on the left of the right boundary
        if ll.adj_left not in surface:
            edges.append(left[::-1])
        elif ll.adj_left_same_direction is False or ll.lanelet_id < ll.adj_left:
            lines.append(left)
    warn_skipped(notes)
    crosswalks = [np.vstack([np.asarray(ll.right_vertices, float), np.asarray(ll.left_vertices, float)[::-1]])
                  for ll in crossings]
    return {
        "lanes": Polylines.from_list(lanes),
        "lane_widths": np.asarray(widths, dtype=np.float64),
        "road_edges": Polylines.from_list(edges),
        "road_lines": Polylines.from_list(lines),
        "crosswalks": Polylines.from_list(crosswalks),
        "drivable_extra": Polylines.from_list(polys),
        "lane_has_polygon": np.ones(len(lanes), dtype=bool),
        "lane_polygons": Polylines.from_list(lane_polys),
        **lanelet_semantics(network, ids, n_t, raw_signs),
    }
