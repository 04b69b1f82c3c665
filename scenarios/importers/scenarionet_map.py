"""The map semantics of a ScenarioNet scenario dict (lane graph, polygons, limits, stop signs, lights).

Read from ``map_features`` and ``dynamic_map_states`` as ScenarioNet's converters write them
(``scenarionet/converter/{waymo,nuscenes}/utils.py``; MetaDrive's ``ScenarioDescription``):

- lane polygons: the lane's own ``polygon`` (nuScenes lanes); else the centreline offset by the
  per-point ``width [n, 2]`` (left, right distances to the lane's boundaries; Waymo), where every
  width is positive; else none.
- speed limits: ``speed_limit_mph`` (Waymo; 0 = unset), converted to m/s. ``speed_limit_kmh`` is used
  for other datasets; nuScenes' is the converter's constant 100 on lane connectors and is ignored.
- lane graph: ``exit_lanes`` (successors), ``left_neighbor`` / ``right_neighbor`` (side +1 / -1).
- intersections: Waymo ``interpolating``; nuScenes lane connectors (its lanes without a polygon).
- stop signs: ``STOP_SIGN`` features, one row per controlled ``lane`` (-1 when none is named).
- traffic lights: ``dynamic_map_states[*]`` of type ``TRAFFIC_LIGHT`` with ``state.object_state [T]``
  (Waymo ``LANE_STATE_*``), ``stop_point`` and the controlled ``lane``.
"""

from __future__ import annotations

import numpy as np

from scenarios.importers.drivable import width_polygon
from scenarios.importers.semantics import light_state
from scenarios.scenario import MAP_SEMANTICS, LightState, Polylines

MPH = 0.44704  # m/s per mile per hour
KMH = 1.0 / 3.6  # m/s per km/h


def _lights(dms: dict, index: dict[str, int], n_t: int) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    lanes, points, states = [], [], []
    for sid, sig in dms.items():
        if str(sig.get("type", "TRAFFIC_LIGHT")) != "TRAFFIC_LIGHT":
            continue
        raw = list(np.asarray((sig.get("state") or {}).get("object_state", []), dtype=object).reshape(-1))
        st = np.full(n_t, LightState.UNKNOWN, dtype=np.int8)
        vals = np.array([light_state(v) for v in raw[:n_t]], dtype=np.int8)
        st[: len(vals)] = vals
        stop = np.asarray(sig.get("stop_point", [np.nan, np.nan]), dtype=np.float64).reshape(-1)
        if stop.size < 2 or not np.all(np.isfinite(stop[:2])):
            continue  # a signal without a stop point cannot be placed
        lane = sig.get("lane", sid)
        lanes.append(index.get(str(lane), -1))
        points.append(stop[:2])
        states.append(st)
    return lanes, points, states


def map_semantics(features: dict, lane_fids: list[str], lanes: list[np.ndarray], dms: dict, n_t: int,
                  dataset: str) -> dict:
    """:class:`~scenarios.importers.common.Recording` semantic fields of a ScenarioNet map.

    Args:
        features: ``map_features``; lane_fids: the feature id of each imported lane, in order;
        lanes: their centrelines ``[n, 2]`` (m); dms: ``dynamic_map_states``; n_t: steps of the scene;
        dataset: ``metadata.dataset`` (``"waymo"``, ``"nuscenes"``...).

    Returns:
        ``lane_polygons``, ``lane_speed_limits`` (m/s, NaN unknown), ``lane_intersection``,
        ``lane_successors``, ``lane_neighbours``, ``stop_signs``, ``stop_sign_lanes``, ``light_lanes``,
        ``light_stop_points``, ``light_states`` (int8 ``[G, n_t]``) and ``unknown``.
    """
    index = {fid: i for i, fid in enumerate(lane_fids)}
    n = len(lane_fids)
    polys, limits, inter = [], np.full(n, np.nan), np.full(n, -1, dtype=np.int8)
    succ, nbrs = [], []
    has = dict.fromkeys(("graph", "inter", "limit"), False)
    for i, (fid, centre) in enumerate(zip(lane_fids, lanes)):
        mf = features[fid]
        own = mf.get("polygon")
        if own is not None and len(own) >= 3:
            polys.append(np.asarray(own, dtype=np.float64)[:, :2])
        else:
            polys.append(width_polygon(centre, np.asarray(mf.get("width", np.zeros((0, 2))), dtype=np.float64)))
        mph = mf.get("speed_limit_mph")
        kmh = mf.get("speed_limit_kmh") if dataset != "nuscenes" else None
        if mph is not None or kmh is not None:
            has["limit"] = True
            v = float(mph) * MPH if mph is not None else float(kmh) * KMH
            limits[i] = v if v > 0 else np.nan
        if "interpolating" in mf:
            has["inter"] = True
            inter[i] = 1 if bool(mf["interpolating"]) else 0
        elif dataset == "nuscenes":  # lane connectors (through intersections) carry no polygon
            has["inter"] = True
            inter[i] = 0 if own is not None and len(own) >= 3 else 1
        if "exit_lanes" in mf or "entry_lanes" in mf:
            has["graph"] = True
        succ += [(i, index[str(j)]) for j in mf.get("exit_lanes", []) if str(j) in index]
        succ += [(index[str(j)], i) for j in mf.get("entry_lanes", []) if str(j) in index]
        for key, side in (("left_neighbor", 1), ("right_neighbor", -1)):
            for nb in mf.get(key, []) or []:
                j = str(nb.get("feature_id", "")) if isinstance(nb, dict) else str(nb)
                if j in index:
                    nbrs.append((i, index[j], side))
    signs, sign_lanes, any_sign = [], [], False
    for mf in features.values():
        if str(mf.get("type", "")) != "STOP_SIGN":
            continue
        any_sign = True
        pos = np.asarray(mf.get("position", [np.nan, np.nan]), dtype=np.float64).reshape(-1)
        if pos.size < 2 or not np.all(np.isfinite(pos[:2])):
            continue
        controlled = [index.get(str(j), -1) for j in (mf.get("lane") or [])] or [-1]
        for j in controlled:
            signs.append(pos[:2])
            sign_lanes.append(j)
    g_lanes, g_points, g_states = _lights(dms, index, n_t)
    known = {"lane_polygons": any(len(p) for p in polys), "speed_limits": has["limit"], "lane_graph": has["graph"],
             "intersections": has["inter"], "stop_signs": any_sign or dataset == "waymo",
             "traffic_lights": bool(g_lanes) or dataset == "waymo",
             "road_edges": any(str(mf.get("type", "")).startswith("ROAD_EDGE") for mf in features.values())}
    return {
        "lane_polygons": Polylines.from_list(polys),
        "lane_speed_limits": limits,
        "lane_intersection": inter,
        "lane_successors": np.unique(np.asarray(succ, dtype=np.int64).reshape(-1, 2), axis=0),
        "lane_neighbours": np.unique(np.asarray(nbrs, dtype=np.int64).reshape(-1, 3), axis=0),
        "stop_signs": np.asarray(signs, dtype=np.float64).reshape(-1, 2),
        "stop_sign_lanes": np.asarray(sign_lanes, dtype=np.int64),
        "light_lanes": np.asarray(g_lanes, dtype=np.int64),
        "light_stop_points": np.asarray(g_points, dtype=np.float64).reshape(-1, 2),
        "light_states": np.asarray(g_states, dtype=np.int8).reshape(len(g_lanes), n_t),
        "unknown": tuple(s for s in MAP_SEMANTICS if s != "mapped_area" and not known.get(s, False)),
    }
