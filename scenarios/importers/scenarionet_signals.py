"""Stop signs and traffic lights of a ScenarioNet scenario dict, as its converters write them.

- ``STOP_SIGN`` features (Waymo): ``position`` (2 or 3 values) and ``lane``, the controlled lanes (a list of ids;
  a single id or none are read too): one row per controlled lane, lane -1 when none is named or imported.
- ``dynamic_map_states[id]`` of type ``TRAFFIC_LIGHT``: ``state.object_state [T]`` (Waymo ``LANE_STATE_*`` names,
  None where unrecorded; nuPlan and MetaDrive ``TRAFFIC_LIGHT_*``), ``stop_point`` (Waymo 3 values, nuPlan 2) and
  ``lane`` (Waymo an int, nuPlan and MetaDrive a str). MetaDrive's older layout keeps a stop point and a lane per step
  in ``state`` (lane 0: not in effect); the first step in effect places the signal, as MetaDrive does. A signal
  without a usable stop point cannot be placed: left out with a note.
"""

from __future__ import annotations

import numpy as np

from scenarios.importers.scenarionet_kinds import STOP_SIGN, TRAFFIC_LIGHT
from scenarios.importers.semantics import light_state
from scenarios.scenario import LightState

NO_LANE = ("", "0", "None")  # a per-step ``lane`` of MetaDrive's older layout: the signal is not in effect


def ref(value: object) -> str:
    """A feature id as the map's keys spell it (``str``): ints, integral floats and numpy scalars alike."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bytes):
        value = value.decode()
    return str(value)


def refs(value: object) -> list[str]:
    """The ids in a ``lane`` field: a list or array of ids, one id, or none (None)."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or np.ndim(value) == 0:
        return [ref(value)]
    return [ref(v) for v in np.asarray(value, dtype=object).reshape(-1)]


def _point(value: object) -> np.ndarray | None:
    """``[2]`` of a 2- or 3-value position with finite x, y; None otherwise."""
    if value is None:
        return None
    p = np.asarray(value, dtype=np.float64).reshape(-1)
    return p[:2] if p.size in (2, 3) and np.all(np.isfinite(p[:2])) else None


def stop_signs(features: dict, index: dict[str, int], notes: list[str]) -> tuple[list, list, bool]:
    """``(positions [2] m, controlled lane indices, whether the file has stop signs)`` of the ``STOP_SIGN`` features.

    Args:
        features: ``map_features``; index: lane feature id -> imported lane index; notes: see ``map_geometry``.
    """
    signs, lanes, any_sign = [], [], False
    for fid, mf in features.items():
        if str(mf.get("type", "")) != STOP_SIGN:
            continue
        any_sign = True
        pos = _point(mf.get("position"))
        if pos is None:
            notes.append(f"{fid} ({STOP_SIGN}): no usable position")
            continue
        for j in [index.get(r, -1) for r in refs(mf.get("lane"))] or [-1]:
            signs.append(pos)
            lanes.append(j)
    return signs, lanes, any_sign


def _placement(sid: object, sig: dict) -> tuple[np.ndarray | None, str | None]:
    """``(stop point [2] or None, controlled lane id or None)`` of one signal, in either layout (module docstring)."""
    state = sig.get("state") or {}
    per_step = np.asarray(state.get("stop_point", []), dtype=np.float64)
    if sig.get("stop_point") is None and per_step.ndim == 2:
        steps = refs(state.get("lane"))
        on = [k for k, r in enumerate(steps[: len(per_step)]) if r not in NO_LANE]
        return (_point(per_step[on[0]]), steps[on[0]]) if on else (None, None)
    ids = refs(sig.get("lane", sid))
    return _point(sig.get("stop_point")), (ids[0] if len(ids) == 1 else None)


def traffic_lights(dms: dict, index: dict[str, int], n_t: int, notes: list[str]
                   ) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    """``(controlled lane index per signal (-1 unknown), stop points [2] m, int8 states [n_t])``.

    Args:
        dms: ``dynamic_map_states``; index: lane feature id -> imported lane index; n_t: steps of the scene
            (states past the recorded ones read UNKNOWN); notes: see ``map_geometry``.
    """
    lanes, points, states = [], [], []
    for sid, sig in dms.items():
        if not isinstance(sig, dict) or str(sig.get("type", TRAFFIC_LIGHT)) != TRAFFIC_LIGHT:
            notes.append(f"dynamic map state {sid}: not a traffic light")
            continue
        stop, lane = _placement(sid, sig)
        if stop is None:
            notes.append(f"traffic light {sid}: no usable stop point")
            continue
        raw = np.asarray((sig.get("state") or {}).get("object_state", []), dtype=object).reshape(-1)
        st = np.full(n_t, LightState.UNKNOWN, dtype=np.int8)
        vals = np.array([light_state(v) for v in raw[:n_t]], dtype=np.int8)
        st[: len(vals)] = vals
        lanes.append(index.get(lane, -1) if lane is not None else -1)
        points.append(stop)
        states.append(st)
    return lanes, points, states
