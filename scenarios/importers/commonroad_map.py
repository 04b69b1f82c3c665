"""The map semantics of a CommonRoad lanelet network (commonroad-io 2020a objects).

- lane graph: ``lanelet.successor``; neighbours: ``adj_left`` / ``adj_right`` where
  ``adj_*_same_direction`` is true (side +1 left, -1 right; an adjacent lanelet of the opposite
  direction is oncoming traffic, not a lane to change into).
- speed limits: ``MAX_SPEED`` traffic-sign elements (``R2-1`` in the USA, ``274`` in Germany) referenced
  by a lanelet, ``additional_values[0]`` in m/s (CommonRoad's unit); the lowest where several apply.
- stop signs: ``STOP`` sign elements (``R1-1``, ``206``), one row per lanelet referencing the sign.
- traffic lights: one signal per (lanelet, referenced light); its state per step from the light's
  cycle (``TrafficLight.get_state_at_time_step``; RED and RED_YELLOW -> STOP, YELLOW -> CAUTION,
  GREEN -> GO, INACTIVE or an inactive light -> UNKNOWN); its stop point is the lanelet's stop line
  (middle) where it has one, else the lanelet's end.
- intersections: lanelets that an ``intersection``'s incomings lead into (``successors_*``) are
  intersection lanes, the rest not; without intersection elements this is unknown.
"""

from __future__ import annotations

import numpy as np

from scenarios.scenario import MAP_SEMANTICS, LightState

CR_LIGHT_STATES = {"RED": LightState.STOP, "RED_YELLOW": LightState.STOP, "YELLOW": LightState.CAUTION,
                   "GREEN": LightState.GO, "INACTIVE": LightState.UNKNOWN}


def _sign_values(sign, name: str) -> list[float]:
    out = []
    for e in sign.traffic_sign_elements:
        if getattr(e.traffic_sign_element_id, "name", "") == name:
            vals = list(getattr(e, "additional_values", []) or [])
            out.append(float(vals[0]) if vals else np.nan)
    return out


def _stop_point(ll, light_id: int | None = None) -> np.ndarray:
    sl = getattr(ll, "stop_line", None)
    if sl is not None and sl.start is not None and sl.end is not None:
        refs = getattr(sl, "traffic_light_ref", None)
        if light_id is None or not refs or light_id in refs:
            return (np.asarray(sl.start, float)[:2] + np.asarray(sl.end, float)[:2]) / 2
    return np.asarray(ll.center_vertices, float)[-1, :2]


def _light_states(light, n_t: int) -> np.ndarray:
    st = np.full(n_t, LightState.UNKNOWN, dtype=np.int8)
    if not getattr(light, "active", True) or not getattr(light, "cycle", None):
        return st
    for k in range(n_t):
        st[k] = CR_LIGHT_STATES.get(light.get_state_at_time_step(k).name, LightState.UNKNOWN)
    return st


def lanelet_semantics(network, lanelet_ids: list[int], n_t: int) -> dict:
    """:class:`~scenarios.importers.common.Recording` semantic fields of a lanelet network.

    Args:
        network: ``commonroad.scenario.lanelet.LaneletNetwork``.
        lanelet_ids: the lanelet id of each imported lane, in order.
        n_t: steps of the scene (time steps 0..n_t-1 at the file's ``timeStepSize``).

    Returns:
        ``lane_speed_limits`` (m/s, NaN unknown), ``lane_intersection``, ``lane_successors``,
        ``lane_neighbours``, ``stop_signs``, ``stop_sign_lanes``, ``light_lanes``, ``light_stop_points``,
        ``light_states`` (int8 ``[G, n_t]``) and ``unknown``.
    """
    index = {lid: i for i, lid in enumerate(lanelet_ids)}
    n = len(lanelet_ids)
    signs = {s.traffic_sign_id: s for s in network.traffic_signs}
    lights = {tl.traffic_light_id: tl for tl in network.traffic_lights}
    limits = np.full(n, np.nan)
    succ, nbrs, stop_xy, stop_lane, g_lane, g_xy, g_states = [], [], [], [], [], [], []
    for lid, i in index.items():
        ll = network.find_lanelet_by_id(lid)
        succ += [(i, index[s]) for s in (ll.successor or []) if s in index]
        for adj, same, side in ((ll.adj_left, ll.adj_left_same_direction, 1),
                                (ll.adj_right, ll.adj_right_same_direction, -1)):
            if adj is not None and same and adj in index:
                nbrs.append((i, index[adj], side))
        vmax = [v for ref in (ll.traffic_signs or []) if ref in signs for v in _sign_values(signs[ref], "MAX_SPEED")]
        vmax = [v for v in vmax if np.isfinite(v) and v > 0]
        if vmax:
            limits[i] = min(vmax)
        for ref in ll.traffic_signs or []:
            if ref in signs and _sign_values(signs[ref], "STOP"):
                pos = getattr(signs[ref], "position", None)
                stop_xy.append(np.asarray(pos, float)[:2] if pos is not None else _stop_point(ll))
                stop_lane.append(i)
        for ref in sorted(ll.traffic_lights or []):
            if ref in lights:
                g_lane.append(i)
                g_xy.append(_stop_point(ll, ref))
                g_states.append(_light_states(lights[ref], n_t))
    inter = np.full(n, -1, dtype=np.int8)
    if network.intersections:
        inter[:] = 0
        for x in network.intersections:
            for inc in x.incomings:
                for lid in set(inc.successors_right) | set(inc.successors_straight) | set(inc.successors_left):
                    if lid in index:
                        inter[index[lid]] = 1
    known = {"lane_polygons": n > 0, "lane_graph": n > 0, "road_edges": n > 0,
             "speed_limits": bool(np.isfinite(limits).any()), "intersections": bool(network.intersections),
             "stop_signs": bool(signs), "traffic_lights": bool(lights)}
    return {
        "lane_speed_limits": limits,
        "lane_intersection": inter,
        "lane_successors": np.asarray(succ, dtype=np.int64).reshape(-1, 2),
        "lane_neighbours": np.asarray(nbrs, dtype=np.int64).reshape(-1, 3),
        "stop_signs": np.asarray(stop_xy, dtype=np.float64).reshape(-1, 2),
        "stop_sign_lanes": np.asarray(stop_lane, dtype=np.int64),
        "light_lanes": np.asarray(g_lane, dtype=np.int64),
        "light_stop_points": np.asarray(g_xy, dtype=np.float64).reshape(-1, 2),
        "light_states": np.asarray(g_states, dtype=np.int8).reshape(len(g_lane), n_t),
        "unknown": tuple(s for s in MAP_SEMANTICS if s != "mapped_area" and not known.get(s, False)),
    }
