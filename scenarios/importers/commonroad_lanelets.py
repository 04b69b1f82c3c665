"""The lanelets of a CommonRoad network (commonroad-io 2020a objects) -> the map fields of a
:class:`~scenarios.importers.common.Recording`.

Which lanelets are driving lanes: a lanelet typed (``laneletType``) ``sidewalk``, ``crosswalk``,
``bicycleLane``, ``busLane`` or ``busStop`` (:data:`NOT_DRIVING`) is not, nor is one whose users
(``userOneWay`` / ``userBidirectional``) name neither ``vehicle`` nor ``car``; they give no centreline, no
drivable polygon and no lane semantics, and a ``crosswalk`` lanelet is a crosswalk. A driving lanelet gives its
centreline, its width (mean distance between its boundaries) and its polygon (right boundary forward, left
boundary back). Its right boundary is a road line where a driving lanelet adjoins it on that side and a road edge
where none does (a sidewalk or a bicycle lane beside it lies past the kerb); its left boundary likewise, a road
line once for two lanelets of the same direction, and the centre line beside an adjacent lanelet of the opposite
direction (oncoming traffic, never a neighbour to change into).
"""

from __future__ import annotations

import numpy as np

from scenarios.importers.commonroad_map import lanelet_semantics
from scenarios.importers.repair import usable_line, warn_skipped
from scenarios.scenario import Polylines

NOT_DRIVING = frozenset({"sidewalk", "crosswalk", "bicycleLane", "busLane", "busStop"})  # LaneletType values
DRIVING_USERS = frozenset({"vehicle", "car"})  # RoadUser values that make a lanelet a car's lane


def _values(items) -> set[str]:
    return {str(getattr(x, "value", x)) for x in (items or ())}


def is_driving(ll) -> bool:
    """Whether a lanelet is a lane for cars (its types and users; module docstring)."""
    if _values(ll.lanelet_type) & NOT_DRIVING:
        return False
    users = _values(getattr(ll, "user_one_way", None)) | _values(getattr(ll, "user_bidirectional", None))
    return not users or bool(users & DRIVING_USERS)


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
    driving = [ll for ll in network.lanelets if is_driving(ll) and _usable(ll, notes)]
    crossings = [ll for ll in network.lanelets if "crosswalk" in _values(ll.lanelet_type) and _usable(ll, notes)]
    kept = {ll.lanelet_id for ll in driving}
    lanes, widths, edges, lines, polys, ids = [], [], [], [], [], []
    for ll in driving:
        left, right = np.asarray(ll.left_vertices, float), np.asarray(ll.right_vertices, float)
        lanes.append(np.asarray(ll.center_vertices, float))
        ids.append(ll.lanelet_id)
        widths.append(float(np.mean(np.hypot(*(left - right).T))) if len(left) == len(right) else np.nan)
        polys.append(np.vstack([right, left[::-1]]))  # counter-clockwise: right boundary forward, left back
        (lines if ll.adj_right in kept else edges).append(right)  # drivable on the left of the right boundary
        if ll.adj_left not in kept:
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
        "lane_polygons": Polylines.from_list(polys),
        **lanelet_semantics(network, ids, n_t, raw_signs),
    }
