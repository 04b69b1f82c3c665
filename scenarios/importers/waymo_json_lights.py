"""Traffic lights of a Waymo JSON scene's ``tl_states`` -> the light fields of a
:class:`~scenarios.importers.common.Recording`.

Layouts read:

- by lane (Nocturne's and GPUDrive's converters: ``{lane id: {"state": [...], "x": [...], "y": [...],
  "time_index": [...]}}``, one entry per step at which Waymo recorded the lane; ``time_index`` is the step, entry
  ``k`` is step ``k`` without it; ScenarioMax adds ``z`` and ``lane_id`` lists);
- by step (a list, entry ``k`` for step ``k``): each entry maps lane ids to ``{"state", "x", "y"}`` (the per-step
  dict those converters build before collecting it by lane), or is Waymo's ``lane_states`` list
  (``{"lane", "state", "stop_point": {x, y}}``), bare or as ``{"lane_states": [...]}``.

States are Waymo's names (``"stop"``, ``"arrow_go"``, ``"LANE_STATE_CAUTION"``, any case) or enum values
(:func:`~scenarios.importers.semantics.light_state`); a step a lane was not recorded at is UNKNOWN. A record that
cannot be read (lengths differ, no finite stop point) is left out and noted; Nocturne writes ``tl_states`` empty,
so an empty one means unknown, not "no lights".
"""

from __future__ import annotations

import numpy as np

from scenarios.importers.semantics import light_state
from scenarios.scenario import LightState


def _xy(point: object) -> tuple[float, float]:
    if isinstance(point, dict):
        return float(point.get("x", np.nan)), float(point.get("y", np.nan))
    if isinstance(point, (list, tuple)) and len(point) >= 2:
        return float(point[0]), float(point[1])
    return np.nan, np.nan


def _by_lane(tl: dict, n_t: int, notes: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for lane_id, rec in tl.items():
        raw = rec.get("state") if isinstance(rec, dict) else None
        if not isinstance(raw, list) or not raw:
            notes.append(f"tl_states[{lane_id!r}]: no list of states")
            continue
        xs = np.asarray(rec.get("x", []), float).reshape(-1)
        ys = np.asarray(rec.get("y", []), float).reshape(-1)
        steps = np.asarray(rec.get("time_index", range(len(raw))), dtype=np.int64).reshape(-1)
        if not (len(raw) == len(steps) == len(xs) == len(ys)):
            notes.append(f"tl_states[{lane_id!r}]: state, x, y and time_index differ in length")
            continue
        st = np.full(n_t, LightState.UNKNOWN, dtype=np.int8)
        ok = (steps >= 0) & (steps < n_t)
        st[steps[ok]] = [light_state(v) for v, k in zip(raw, ok) if k]
        out[str(lane_id)] = (st, np.stack([xs, ys], axis=1))
    return out


def _entries(step: object) -> list[tuple[object, dict]]:
    """``(lane id, record)`` of one step of the by-step layout."""
    if isinstance(step, dict) and isinstance(step.get("lane_states"), list):
        step = step["lane_states"]
    if isinstance(step, dict):
        return [(k, v) for k, v in step.items() if isinstance(v, dict)]
    if isinstance(step, list):
        return [(r.get("lane", r.get("lane_id")), r) for r in step if isinstance(r, dict)]
    return []


def _by_step(tl: list, n_t: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    acc: dict[str, tuple[np.ndarray, list]] = {}
    for k, step in enumerate(tl[:n_t]):
        for lane_id, rec in _entries(step):
            st, pts = acc.setdefault(str(lane_id), (np.full(n_t, LightState.UNKNOWN, dtype=np.int8), []))
            st[k] = light_state(rec.get("state"))
            pts.append(_xy(rec["stop_point"]) if "stop_point" in rec else _xy(rec))
    return {lid: (st, np.asarray(pts, float).reshape(-1, 2)) for lid, (st, pts) in acc.items()}


def lights_of(tl: object, lane_ids: list[str], n_t: int, notes: list[str]) -> dict:
    """The :class:`~scenarios.importers.common.Recording` light fields of ``tl_states`` ({} when it holds none).

    Args:
        tl: the scene's ``tl_states``.
        lane_ids: the ``id`` of each imported lane, in order (a light on another lane gets lane -1).
        n_t: steps of the scene.
        notes: receives one line per record left out.

    Returns:
        ``light_lanes`` int64 ``[G]``, ``light_stop_points`` float ``[G, 2]`` (median of the recorded stop points),
        ``light_states`` int8 ``[G, n_t]``; or {}.
    """
    if isinstance(tl, dict) and tl:
        by_lane = _by_lane(tl, n_t, notes)
    elif isinstance(tl, list) and tl:
        by_lane = _by_step(tl, n_t)
    else:
        return {}
    index = {lid: i for i, lid in enumerate(lane_ids)}
    lanes, stops, states = [], [], []
    for lane_id, (st, pts) in by_lane.items():
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        if not len(pts):
            notes.append(f"tl_states[{lane_id!r}]: no finite stop point")
            continue
        lanes.append(index.get(lane_id, -1))
        stops.append(np.median(pts, axis=0))
        states.append(st)
    if not lanes:
        return {}
    return {"light_lanes": np.asarray(lanes, np.int64), "light_stop_points": np.asarray(stops, float).reshape(-1, 2),
            "light_states": np.asarray(states, np.int8).reshape(len(lanes), n_t)}
