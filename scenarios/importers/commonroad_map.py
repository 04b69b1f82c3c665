"""The map semantics of a CommonRoad lanelet network (commonroad-io 2020a objects).

- lane graph: ``lanelet.successor``; neighbours: ``adj_left`` / ``adj_right`` where
  ``adj_*_same_direction`` is true (side +1 left, -1 right; an adjacent lanelet of the opposite
  direction is oncoming traffic, not a lane to change into).
- speed limits: speed-limit sign elements referenced by a lanelet, ``additional_values[0]`` in m/s (CommonRoad's
  unit for every country: NGSIM's R2-1 25 mph is 11.176); the lowest where several apply. A speed-limit element is
  one commonroad-io names ``MAX_SPEED`` or ``MAX_SPEED_ZONE_START``, or whose ``trafficSignID`` in the file is one
  of :data:`SPEED_LIMIT_IDS` (commonroad-io reads a sign by the country of the benchmark ID and loses the ID of one
  that country's table lacks: ``274`` in a ``USA_`` file, ``R1-1`` everywhere). A value that is not a number is
  left out with a note.
- stop signs: elements named ``STOP`` or with a ``trafficSignID`` of :data:`STOP_IDS` (``R1-1``, ``206``, ``r2``),
  one row per lanelet referencing the sign.
- traffic lights: :mod:`scenarios.importers.commonroad_lights` (cycles, offsets, ``active``, ``direction``).
- intersections: lanelets that an ``intersection``'s incomings lead into (``successors_*``) are
  intersection lanes, the rest not; without intersection elements this is unknown.
"""

from __future__ import annotations

import numpy as np

from scenarios.importers.commonroad_lights import incoming_moves, light_signals, light_states, stop_point
from scenarios.importers.repair import warn_skipped
from scenarios.scenario import MAP_SEMANTICS

SPEED_LIMIT_NAMES = ("MAX_SPEED", "MAX_SPEED_ZONE_START")  # commonroad-io TrafficSignID* member names
SPEED_LIMIT_IDS = frozenset({"274", "274.1", "R2-1", "r301"})  # Germany (and commonroad-io's default), USA, Spain
STOP_IDS = frozenset({"206", "R1-1", "r2"})  # Germany, USA (MUTCD), Spain


def _kind(element, raw: str) -> str:
    """``"limit"``, ``"stop"`` or ``""`` for one sign element (``raw``: its trafficSignID in the file)."""
    eid = element.traffic_sign_element_id
    name, code = str(getattr(eid, "name", "")), str(getattr(eid, "value", "")) or raw
    if name in SPEED_LIMIT_NAMES or code in SPEED_LIMIT_IDS:
        return "limit"
    return "stop" if name == "STOP" or code in STOP_IDS else ""


def sign_kinds(network, raw_signs: dict[int, list[str]] | None, notes: list[str]) -> dict[int, list[tuple]]:
    """``{sign id: [(kind, value m/s or NaN)]}`` for the speed-limit and stop elements of every sign.

    Args:
        network: the lanelet network.
        raw_signs: ``{sign id: [trafficSignID of each element, in order]}`` read from the file, for the elements
            commonroad-io could not name (:func:`raw_sign_ids`); None when it named them all.
        notes: receives one line per speed-limit value that is not a number.
    """
    out: dict[int, list[tuple]] = {}
    for s in network.traffic_signs:
        raw = (raw_signs or {}).get(s.traffic_sign_id, [])
        for k, e in enumerate(s.traffic_sign_elements):
            kind = _kind(e, raw[k] if k < len(raw) else "")
            if not kind:
                continue
            vals = list(getattr(e, "additional_values", []) or [])
            value = np.nan
            if kind == "limit" and vals:
                try:
                    value = float(vals[0])
                except (TypeError, ValueError):
                    notes.append(f"traffic sign {s.traffic_sign_id}: speed limit {vals[0]!r} is not a number")
                    continue
            out.setdefault(s.traffic_sign_id, []).append((kind, value))
    return out


def raw_sign_ids(path) -> dict[int, list[str]]:
    """``{sign id: [trafficSignID of each element]}`` as the XML file writes them."""
    import xml.etree.ElementTree as ET

    return {int(s.get("id")): [(e.findtext("trafficSignID") or "").strip() for e in s.findall("trafficSignElement")]
            for s in ET.parse(path).getroot().iter("trafficSign")}


def needs_raw_sign_ids(network) -> bool:
    """Whether commonroad-io left a sign element unnamed (its country's table lacks the ID)."""
    return any(str(getattr(e.traffic_sign_element_id, "name", "")) == "UNKNOWN"
               for s in network.traffic_signs for e in s.traffic_sign_elements)


def lanelet_semantics(network, lanelet_ids: list[int], n_t: int, raw_signs: dict[int, list[str]] | None = None
                      ) -> dict:
    """:class:`~scenarios.importers.common.Recording` semantic fields of a lanelet network.

    Args:
        network: ``commonroad.scenario.lanelet.LaneletNetwork``.
        lanelet_ids: the lanelet id of each imported lane, in order.
        n_t: steps of the scene (time steps 0..n_t-1 at the file's ``timeStepSize``).
        raw_signs: the file's sign IDs (:func:`raw_sign_ids`) where commonroad-io left an element unnamed.

    Returns:
        ``lane_speed_limits`` (m/s, NaN unknown), ``lane_intersection``, ``lane_successors``,
        ``lane_neighbours``, ``stop_signs``, ``stop_sign_lanes``, ``light_lanes``, ``light_stop_points``,
        ``light_states`` (int8 ``[G, n_t]``) and ``unknown``.
    """
    index = {lid: i for i, lid in enumerate(lanelet_ids)}
    n = len(lanelet_ids)
    notes: list[str] = []
    kinds = sign_kinds(network, raw_signs, notes)
    warn_skipped(notes)
    signs = {s.traffic_sign_id: s for s in network.traffic_signs}
    lights = {tl.traffic_light_id: tl for tl in network.traffic_lights}
    states = {r: light_states(tl, n_t) for r, tl in lights.items()}
    moves = incoming_moves(network)
    limits = np.full(n, np.nan)
    succ, nbrs, stop_xy, stop_lane, signals = [], [], [], [], []
    for lid, i in index.items():
        ll = network.find_lanelet_by_id(lid)
        succ += [(i, index[s]) for s in (ll.successor or []) if s in index]
        for adj, same, side in ((ll.adj_left, ll.adj_left_same_direction, 1),
                                (ll.adj_right, ll.adj_right_same_direction, -1)):
            if adj is not None and same and adj in index:
                nbrs.append((i, index[adj], side))
        refs = [r for r in (ll.traffic_signs or []) if r in kinds]
        vmax = [v for r in refs for kind, v in kinds[r] if kind == "limit" and np.isfinite(v) and v > 0]
        if vmax:
            limits[i] = min(vmax)
        for r in refs:
            if any(kind == "stop" for kind, _ in kinds[r]):
                pos = getattr(signs[r], "position", None)
                stop_xy.append(np.asarray(pos, float)[:2] if pos is not None else stop_point(ll))
                stop_lane.append(i)
        signals += light_signals(network, ll, index, moves, lights, states)
    inter = np.full(n, -1, dtype=np.int8)
    if network.intersections:
        inter[:] = 0
        for x in network.intersections:
            for inc in x.incomings:
                for lid in set(inc.successors_right) | set(inc.successors_straight) | set(inc.successors_left):
                    if lid in index:
                        inter[index[lid]] = 1
    has_stop = any(kind == "stop" for v in kinds.values() for kind, _ in v)
    known = {"lane_polygons": n > 0, "lane_graph": n > 0, "road_edges": n > 0,
             "speed_limits": bool(np.isfinite(limits).any()), "intersections": bool(network.intersections),
             "stop_signs": bool(signs) and (has_stop or not needs_raw_sign_ids(network) or raw_signs is not None),
             "traffic_lights": bool(lights)}
    return {
        "lane_speed_limits": limits,
        "lane_intersection": inter,
        "lane_successors": np.asarray(succ, dtype=np.int64).reshape(-1, 2),
        "lane_neighbours": np.asarray(nbrs, dtype=np.int64).reshape(-1, 3),
        "stop_signs": np.asarray(stop_xy, dtype=np.float64).reshape(-1, 2),
        "stop_sign_lanes": np.asarray(stop_lane, dtype=np.int64),
        "light_lanes": np.asarray([g[0] for g in signals], dtype=np.int64),
        "light_stop_points": np.asarray([g[1] for g in signals], dtype=np.float64).reshape(-1, 2),
        "light_states": np.asarray([g[2] for g in signals], dtype=np.int8).reshape(len(signals), n_t),
        "unknown": tuple(s for s in MAP_SEMANTICS if s != "mapped_area" and not known.get(s, False)),
    }
