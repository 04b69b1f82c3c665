"""The traffic lights of a CommonRoad lanelet network (commonroad-io 2020a objects) -> signals: the lane each
controls, where to stop, and its state per step.

A lanelet references its lights (``trafficLightRef``). A light's state at a step comes from its cycle
(``TrafficLight.get_state_at_time_step``, its ``timeOffset`` included): RED and RED_YELLOW -> STOP, YELLOW ->
CAUTION, GREEN -> GO, INACTIVE (a dark arrow) -> UNKNOWN; a light that is not ``active``, or whose cycle is empty,
is UNKNOWN throughout. A light's ``direction`` (``left``, ``straight``, ``right``, ``leftStraight``,
``straightRight``, ``leftRight``, ``all``) names the movements it governs:

- where every light of a lanelet governs ``all``, one signal per light controls the lanelet itself from its stop
  point (the middle of its stop line, else its end) and, through the lane graph, what it leads into;
- otherwise the signals go to the lanelet's successors: a successor's movement is the one an intersection
  incoming names it for (``successorsLeft`` / ``Straight`` / ``Right``), else the turn between the ends of the two
  lanelets (beyond :data:`TURN_ANGLE` left or right, straight within). One signal per successor that some light
  governs controls it from the lanelet's stop point, its state at each step the most specific governing light's
  that shows one (a right-turn arrow over the general light; a dark arrow hands over to the general light). A
  movement no light governs gets no signal: a left-turn arrow says nothing about going straight.
"""

from __future__ import annotations

import numpy as np

from scenarios.scenario import LightState, wrap_angle

CR_LIGHT_STATES = {"RED": LightState.STOP, "RED_YELLOW": LightState.STOP, "YELLOW": LightState.CAUTION,
                   "GREEN": LightState.GO, "INACTIVE": LightState.UNKNOWN}
ALL_MOVES = frozenset({"left", "straight", "right"})
DIRECTIONS = {"left": {"left"}, "straight": {"straight"}, "right": {"right"}, "leftStraight": {"left", "straight"},
              "straightRight": {"straight", "right"}, "leftRight": {"left", "right"}, "all": set(ALL_MOVES)}
TURN_ANGLE = np.pi / 4  # rad: a successor turned further than this from its predecessor's end is a turn


def light_states(light, n_t: int) -> np.ndarray:
    """int8 ``[n_t]`` a light's :class:`~scenarios.scenario.LightState` at time steps ``0..n_t-1``."""
    st = np.full(n_t, LightState.UNKNOWN, dtype=np.int8)
    cycle = getattr(light, "cycle", None) or []
    if not getattr(light, "active", True) or sum(int(c.duration) for c in cycle) <= 0:
        return st
    for k in range(n_t):
        st[k] = CR_LIGHT_STATES.get(light.get_state_at_time_step(k).name, LightState.UNKNOWN)
    return st


def stop_point(ll, light_id: int | None = None) -> np.ndarray:
    """Where traffic on lanelet ``ll`` stops (for ``light_id``): its stop line's middle, else its end."""
    sl = getattr(ll, "stop_line", None)
    if sl is not None and sl.start is not None and sl.end is not None:
        refs = getattr(sl, "traffic_light_ref", None)
        if light_id is None or not refs or light_id in refs:
            return (np.asarray(sl.start, float)[:2] + np.asarray(sl.end, float)[:2]) / 2
    return np.asarray(ll.center_vertices, float)[-1, :2]


def _moves(light) -> set[str]:
    return DIRECTIONS.get(str(getattr(getattr(light, "direction", None), "value", "all")), set(ALL_MOVES))


def _heading_at_end(pts: np.ndarray) -> float:
    d = np.asarray(pts, float)[-1, :2] - np.asarray(pts, float)[-2, :2]
    return float(np.arctan2(d[1], d[0]))


def incoming_moves(network) -> dict[int, dict[int, str]]:
    """``{incoming lanelet id: {successor lanelet id: "left" | "straight" | "right"}}`` from the intersections."""
    out: dict[int, dict[int, str]] = {}
    for x in network.intersections or []:
        for inc in x.incomings:
            moves = {s: m for m, ids in (("left", inc.successors_left), ("straight", inc.successors_straight),
                                         ("right", inc.successors_right)) for s in (ids or ())}
            for lid in inc.incoming_lanelets or ():
                out.setdefault(lid, {}).update(moves)
    return out


def _move(network, ll, succ_id: int, named: dict[int, str]) -> str:
    if succ_id in named:
        return named[succ_id]
    turn = wrap_angle(_heading_at_end(network.find_lanelet_by_id(succ_id).center_vertices)
                      - _heading_at_end(ll.center_vertices))
    return "left" if turn > TURN_ANGLE else "right" if turn < -TURN_ANGLE else "straight"


def light_signals(network, ll, index: dict[int, int], moves: dict[int, dict[int, str]], lights: dict,
                  states: dict[int, np.ndarray]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """The signals of lanelet ``ll``'s lights (module docstring): ``[(lane index, stop point [2], states [T])]``.

    Args:
        network: the lanelet network; ll: a driving lanelet (its index is ``index[ll.lanelet_id]``).
        index: lanelet id -> lane index of every imported lane.
        moves: :func:`incoming_moves` of the network.
        lights: the network's lights by id; states: :func:`light_states` of each, by id.
    """
    refs = [r for r in sorted(ll.traffic_lights or []) if r in lights]
    succ = [s for s in (ll.successor or []) if s in index]
    if not refs:
        return []
    if all(_moves(lights[r]) == ALL_MOVES for r in refs) or not succ:
        return [(index[ll.lanelet_id], stop_point(ll, r), states[r]) for r in refs]
    out = []
    named = moves.get(ll.lanelet_id, {})
    for s in succ:
        move = _move(network, ll, s, named)
        governing = sorted((r for r in refs if move in _moves(lights[r])), key=lambda r: -len(_moves(lights[r])))
        if not governing:
            continue
        st = np.full_like(states[governing[0]], LightState.UNKNOWN)
        for r in governing:  # general first, the most specific last: it wins wherever it shows a state
            st = np.where(states[r] != LightState.UNKNOWN, states[r], st).astype(np.int8)
        out.append((index[s], stop_point(ll, governing[-1]), st))
    return out
