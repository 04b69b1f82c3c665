"""The map semantics of a ScenarioNet scenario dict (lane graph, polygons, limits, stop signs, lights).

Read from ``map_features`` and ``dynamic_map_states`` as ScenarioNet's converters write them
(``scenarionet/converter/{waymo,nuscenes,nuplan,argoverse2,pg}/utils.py``; MetaDrive's ``ScenarioDescription``);
the converters' constants are read as absent (:data:`~scenarios.importers.scenarionet_kinds.CONVERTER_CONSTANTS`):

- lane polygons: the lane's own ``polygon`` (nuScenes lanes, nuPlan lanes and connectors, PG); else the centreline
  offset by the per-point ``width [n, 2]`` (left, right distances to the lane's boundaries; Waymo), where every
  width is positive; else none.
- speed limits: ``speed_limit_mph`` (Waymo; 0 = unset), ``speed_limit_kmh`` (PG), ``speed_limit_mps`` (nuPlan,
  None = unset), converted to m/s. nuScenes' ``speed_limit_kmh`` (100 on every lane connector) and Argoverse 2's
  ``speed_limit_mph`` (85 on every lane) are converter constants: unknown.
- lane graph: ``exit_lanes`` (successors), ``entry_lanes`` (predecessors), ``left_neighbor`` / ``right_neighbor``
  (side +1 / -1). Waymo lists the adjacent lanes as dicts (``feature_id``); nuPlan and PG list every lane of the
  road on that side as plain ids, of which the nearest one on that side (by geometry) is the neighbour.
- intersections: Waymo ``interpolating``; ``LANE_SURFACE_UNSTRUCTURE`` lanes (lane connectors: nuScenes, nuPlan,
  PG), and nuScenes lanes without a polygon (older conversions); nuScenes' and nuPlan's other lanes are not in one.
  Argoverse 2's ``interpolating`` is True on every lane (a constant): unknown.
- stop signs and traffic lights: :mod:`scenarios.importers.scenarionet_signals`; a nuPlan signal stops traffic at
  the start of its lane connector (:data:`~scenarios.importers.scenarionet_kinds.LIGHTS_AT_LANE_START`).
"""

from __future__ import annotations

import numpy as np

from scenarios.importers.drivable import width_polygon
from scenarios.importers.scenarionet_kinds import (
    CONNECTOR_DATASETS,
    CONVERTER_CONSTANTS,
    LANE_CONNECTOR,
    LIGHTS_ALWAYS_RECORDED,
    LIGHTS_AT_LANE_START,
    POLYGONLESS_CONNECTORS,
    SPEED_KEYS,
    STOP_SIGNS_ALWAYS_RECORDED,
)
from scenarios.importers.scenarionet_signals import ref, refs, stop_signs, traffic_lights
from scenarios.scenario import MAP_SEMANTICS, Polylines


def _limit(value: object, scale: float) -> float:
    """m/s of one recorded limit (NaN when unset: None, 0 or negative)."""
    v = np.nan if value is None else float(np.asarray(value, dtype=np.float64).reshape(-1)[0]) * scale
    return v if v > 0 else np.nan


def _intersection(mf: dict, own_polygon: bool, dataset: str, ignored: tuple[str, ...]) -> int | None:
    """1 / 0 whether a lane runs through an intersection; None when the source does not say."""
    if "interpolating" in mf and "interpolating" not in ignored:
        return int(bool(mf["interpolating"]))
    if str(mf.get("type", "")) == LANE_CONNECTOR:
        return 1
    if dataset in CONNECTOR_DATASETS:
        return int(dataset in POLYGONLESS_CONNECTORS and not own_polygon)
    return None


def _neighbours(i: int, mf: dict, index: dict[str, int], lanes: list[np.ndarray]) -> list[tuple[int, int, int]]:
    """``(lane, neighbour, side)`` rows of lane ``i``: Waymo's adjacency dicts as listed; of plain ids (every lane of
    the road on that side), the nearest lane whose middle lies on that side of lane ``i``."""
    rows = []
    for key, side in (("left_neighbor", 1), ("right_neighbor", -1)):
        listed = mf.get(key)
        listed = [] if listed is None else list(np.asarray(listed, dtype=object).reshape(-1))
        if any(isinstance(nb, dict) for nb in listed):
            js = [ref(nb.get("feature_id", "")) for nb in listed if isinstance(nb, dict)]
            rows += [(i, index[j], side) for j in js if j in index]
            continue
        best, best_d = None, np.inf
        for j in (index[r] for r in map(ref, listed) if r in index and index[r] != i):
            d, s = _offset(lanes[i], lanes[j])
            if s == side and d < best_d:
                best, best_d = j, d
        if best is not None:
            rows.append((i, best, side))
    return rows


def _offset(centre: np.ndarray, other: np.ndarray) -> tuple[float, int]:
    """Distance (m) from ``centre`` to the middle point of ``other`` and its side (+1 left, -1 right, 0 on it)."""
    mid = other[len(other) // 2]
    k = int(np.argmin(np.hypot(*(centre - mid).T)))
    tangent = centre[min(k + 1, len(centre) - 1)] - centre[max(k - 1, 0)]
    d = mid - centre[k]
    return float(np.hypot(*d)), int(np.sign(tangent[0] * d[1] - tangent[1] * d[0]))


def map_semantics(features: dict, lane_fids: list[str], lanes: list[np.ndarray], dms: dict, n_t: int,
                  dataset: str, notes: list[str] | None = None) -> dict:
    """:class:`~scenarios.importers.common.Recording` semantic fields of a ScenarioNet map.

    Args:
        features: ``map_features``; lane_fids: the feature id of each imported lane, in order (keys of
            ``features`` as str); lanes: their centrelines ``[n, 2]`` (m); dms: ``dynamic_map_states``;
            n_t: steps of the scene; dataset: ``metadata.dataset`` (``"waymo"``, ``"nuscenes"``...).
        notes: appended with the signals and signs left out (see ``map_geometry``).

    Returns:
        ``lane_polygons``, ``lane_speed_limits`` (m/s, NaN unknown), ``lane_intersection``,
        ``lane_successors``, ``lane_neighbours``, ``stop_signs``, ``stop_sign_lanes``, ``light_lanes``,
        ``light_stop_points``, ``light_states`` (int8 ``[G, n_t]``) and ``unknown`` (without ``road_edges`` and
        ``mapped_area``, which the geometry decides).
    """
    notes = [] if notes is None else notes
    by_id = {str(k): v for k, v in features.items()}
    index = {fid: i for i, fid in enumerate(lane_fids)}
    ignored = CONVERTER_CONSTANTS.get(dataset, ())
    n = len(lane_fids)
    polys, limits, inter = [], np.full(n, np.nan), np.full(n, -1, dtype=np.int8)
    succ, nbrs = [], []
    has = dict.fromkeys(("graph", "inter", "limit"), False)
    for i, (fid, centre) in enumerate(zip(lane_fids, lanes)):
        mf = by_id[fid]
        own = mf.get("polygon")
        own_polygon = own is not None and len(own) >= 3
        if own_polygon:
            polys.append(np.asarray(own, dtype=np.float64)[:, :2])
        else:
            polys.append(width_polygon(centre, np.asarray(mf.get("width", np.zeros((0, 2))), dtype=np.float64)))
        key = next((k for k, _ in SPEED_KEYS if k in mf and k not in ignored), None)
        if key is not None:
            has["limit"] = True
            limits[i] = _limit(mf[key], dict(SPEED_KEYS)[key])
        flag = _intersection(mf, own_polygon, dataset, ignored)
        if flag is not None:
            has["inter"] = True
            inter[i] = flag
        if "exit_lanes" in mf or "entry_lanes" in mf:
            has["graph"] = True
        succ += [(i, index[r]) for r in refs(mf.get("exit_lanes")) if r in index]
        succ += [(index[r], i) for r in refs(mf.get("entry_lanes")) if r in index]
        nbrs += _neighbours(i, mf, index, lanes)
    signs, sign_lanes, any_sign = stop_signs(features, index, notes)
    g_lanes, g_points, g_states = traffic_lights(dms, index, n_t, notes)
    if dataset in LIGHTS_AT_LANE_START:
        g_points = [lanes[j][0] if j >= 0 else p for j, p in zip(g_lanes, g_points)]
    known = {"lane_polygons": any(len(p) for p in polys), "speed_limits": has["limit"], "lane_graph": has["graph"],
             "intersections": has["inter"], "stop_signs": any_sign or dataset in STOP_SIGNS_ALWAYS_RECORDED,
             "traffic_lights": bool(g_lanes) or dataset in LIGHTS_ALWAYS_RECORDED,
             "road_edges": True, "mapped_area": True}
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
        "unknown": tuple(s for s in MAP_SEMANTICS if not known.get(s, False)),
    }
