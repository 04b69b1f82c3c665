"""Scenario types mined from a scene's log and map, named like nuPlan's scenario types.

nuPlan tags each scenario with types such as ``following_lane_with_lead``, ``stopping_with_lead``,
``starting_left_turn``, ``changing_lane``, ``traversing_intersection``, ``on_traffic_light_intersection``,
``near_multiple_pedestrians``, ``high_magnitude_speed`` or ``stationary_in_traffic`` (nuplan-devkit,
``nuplan/planning/scenario_builder/scenario_filter`` and the nuPlan dataset's ``scenario_tag`` table). This
module derives the same names from any :class:`scenarios.scenario.Scenario`, real or procedural, with
thresholds of this project written once in :data:`THRESHOLDS` (nuPlan mines its tags from the map database
and perception; the rules below are this project's, documented in ``docs/metrics.md``, "Scenario types").
A scene may carry several types; :func:`primary_type` picks one (the first in :data:`TYPE_ORDER`) as the
stratum of a stratified bootstrap.

Every rule reads the ego's log from ``init_step`` on (the part a policy drives) and the map's lane
centrelines; a scene without lanes gets no lane-based type. Traffic lights: the :class:`Scenario` format
carries no light states yet, so ``on_traffic_light_intersection`` comes only from :func:`has_traffic_lights`,
the one hook to extend when the map gains lights.

Example:
    >>> from scenarios.procedural import generate
    >>> "starting_left_turn" in scenario_types(generate("left_turn", 5))
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scenarios.scenario import VX, VY, YAW, AgentType, Scenario, X, Y

TYPE_ORDER: tuple[str, ...] = (
    "starting_left_turn",
    "starting_right_turn",
    "changing_lane",
    "stopping_with_lead",
    "starting_from_stop",
    "on_traffic_light_intersection",
    "traversing_intersection",
    "near_multiple_pedestrians",
    "near_pedestrian",
    "following_lane_with_lead",
    "following_lane_without_lead",
    "high_magnitude_speed",
    "stationary_in_traffic",
    "stationary",
    "unclassified",
)
"""Every type this module assigns, most specific first (the order of :func:`primary_type` and of tables)."""


@dataclass(frozen=True)
class TypeThresholds:
    """The thresholds of the type rules (metres, seconds, m/s, radians); the one place they are written.

    Attributes:
        moving_speed: the ego moves when its speed exceeds this (m/s).
        stationary_speed: the ego is stationary when it never exceeds this speed (m/s).
        stop_speed: the ego is stopped below this speed (m/s) (``starting_from_stop``).
        start_speed: after a stop the ego has started once it reaches this speed (m/s).
        stopping_fraction: ``stopping_with_lead``: the speed falls to at most this fraction of its earlier
            maximum, with a lead vehicle ahead at that step.
        turn_heading: a turn changes the heading by at least this much (rad) ...
        turn_window: ... within this much travelled path (m), so a long highway curve is no turn.
        lead_gap: a lead vehicle is ahead by at most this gap (m, from the ego's front) ...
        lead_lateral: ... within this lateral offset in the ego frame (m) ...
        lead_heading: ... heading within this angle of the ego's (rad).
        lead_fraction: ``following_lane_with_lead``: a lead at this fraction of the ego's moving steps.
        lane_heading: a lane is aligned with the ego when their headings differ by less than this (rad).
        lane_change_separation: a switch of the nearest aligned lane is a lane change when the two lanes'
            centrelines lie at least this far apart across the ego's heading (m) (successor segments: ~0).
        lane_reach: the ego is on a lane when within this distance of its centreline (m).
        crossing_low, crossing_high: a lane crosses the ego's heading when they differ by an angle in this
            range (rad): the ego is in an intersection when such a lane passes within ``lane_reach``.
        pedestrian_reach: ``near_pedestrian``: a pedestrian within this distance of the ego (m) ...
        multiple_pedestrians: ... ``near_multiple_pedestrians``: at least this many at one step.
        high_speed: ``high_magnitude_speed``: the ego's top speed reaches this (m/s; 50 km/h).
        traffic_reach: ``stationary_in_traffic``: vehicles within this distance of the ego (m) ...
        traffic_count: ... at least this many at the first controlled step.
    """

    moving_speed: float = 1.0
    stationary_speed: float = 1.0
    stop_speed: float = 0.5
    start_speed: float = 3.0
    stopping_fraction: float = 0.4
    turn_heading: float = math.radians(45.0)
    turn_window: float = 50.0
    lead_gap: float = 30.0
    lead_lateral: float = 1.75
    lead_heading: float = math.radians(45.0)
    lead_fraction: float = 0.5
    lane_heading: float = math.radians(30.0)
    lane_change_separation: float = 2.5
    lane_reach: float = 2.0
    crossing_low: float = math.radians(45.0)
    crossing_high: float = math.radians(135.0)
    pedestrian_reach: float = 10.0
    multiple_pedestrians: int = 3
    high_speed: float = 13.9
    traffic_reach: float = 20.0
    traffic_count: int = 3


THRESHOLDS = TypeThresholds()

# What each procedural family (scenarios/procedural) is built to be, in these names: the generator's own
# ground truth. tests/scenarios/test_scenario_types.py checks that the miner finds them on generated scenes; they
# are added to the mined types of a procedural scene (a family is what it was built to be).
FAMILY_TYPES: dict[str, tuple[str, ...]] = {
    "lane_follow_straight": (),
    "lane_follow_curved": (),
    "lead_brake": ("stopping_with_lead",),
    "cut_in": (),
    "stopped_vehicle": ("changing_lane",),
    "left_turn": ("starting_left_turn", "traversing_intersection"),
    "merge": (),
    "pedestrian_crossing": ("near_pedestrian",),
}


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


def has_traffic_lights(scene: Any) -> bool:
    """Whether the scene's map carries traffic-light states (the hook for ``on_traffic_light_intersection``).

    The :class:`scenarios.scenario.RoadMap` format has no lights yet: this reads an optional
    ``map.traffic_lights`` (any sized collection) and is False without it.
    """
    lights = getattr(scene.map, "traffic_lights", None)
    return lights is not None and len(lights) > 0


def _lane_segments(scene: Scenario) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lane centreline segments: start ``[M, 2]``, end ``[M, 2]``, lane index ``[M]`` (zero-length dropped)."""
    lanes = scene.map.lanes
    starts, ends, ids = [], [], []
    for i, pts in enumerate(lanes):
        if len(pts) >= 2:
            starts.append(pts[:-1])
            ends.append(pts[1:])
            ids.append(np.full(len(pts) - 1, i))
    if not starts:
        return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    p0, p1, lid = np.concatenate(starts), np.concatenate(ends), np.concatenate(ids)
    keep = np.hypot(*(p1 - p0).T) > 1e-6
    return p0[keep], p1[keep], lid[keep]


def _lane_relations(scene: Scenario, xy: np.ndarray, yaw: np.ndarray, th: TypeThresholds) -> tuple[bool, bool]:
    """(changes lane, crosses an intersection) from the ego poses ``xy [S, 2]``, ``yaw [S]`` and the lanes."""
    p0, p1, lid = _lane_segments(scene)
    pad = th.lane_reach + th.lane_change_separation  # segments farther from the path's box cannot matter
    lo, hi = xy.min(axis=0) - pad, xy.max(axis=0) + pad
    keep = ((np.minimum(p0, p1) <= hi) & (np.maximum(p0, p1) >= lo)).all(axis=1)
    p0, p1, lid = p0[keep], p1[keep], lid[keep]
    if len(p0) == 0:
        return False, False
    d = p1 - p0
    seg_len = np.hypot(d[:, 0], d[:, 1])
    u = d / seg_len[:, None]
    rel = xy[:, None, :] - p0[None]  # [S, M, 2]
    along = np.clip((rel * u).sum(-1), 0.0, seg_len)  # [S, M]
    dist = np.hypot(*(rel - along[..., None] * u).transpose(2, 0, 1))
    lateral = rel[..., 1] * u[:, 0] - rel[..., 0] * u[:, 1]  # signed, left of the lane positive
    dhead = np.abs(_wrap(np.arctan2(u[:, 1], u[:, 0])[None] - yaw[:, None]))  # [S, M]
    near = dist <= th.lane_reach
    crossing = bool((near & (dhead >= th.crossing_low) & (dhead <= th.crossing_high)).any())
    aligned = dhead < th.lane_heading
    cost = np.where(aligned, dist, np.inf)
    best = np.argmin(cost, axis=1)  # nearest aligned segment per pose
    ok = np.isfinite(cost[np.arange(len(xy)), best])
    changes = False
    for t in range(1, len(xy)):
        a, b = best[t - 1], best[t]
        if not (ok[t - 1] and ok[t]) or lid[a] == lid[b]:
            continue
        # both lanes measured at the same pose: parallel neighbours differ by a lane width, a successor by ~0
        if abs(lateral[t, a] - lateral[t, b]) >= th.lane_change_separation:
            changes = True
            break
    return changes, crossing


def _max_turn(xy: np.ndarray, yaw: np.ndarray, window: float) -> float:
    """Signed heading change (rad) of largest magnitude over any stretch of at most ``window`` metres of path."""
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
    h = np.unwrap(yaw)
    j = np.searchsorted(s, s + window, side="right") - 1  # farthest pose within the window
    # the extreme change starts at some i and ends anywhere in [i, j[i]]: one row per start, as wide as the widest
    if len(s) == 0:
        return 0.0
    start = np.arange(len(s))
    end = start[:, None] + np.arange(int((j - start).max()) + 1)[None, :]  # [S, W]
    change = np.where(end <= j[:, None], h[np.minimum(end, len(s) - 1)] - h[:, None], 0.0)
    row = change[start, np.argmax(np.abs(change), axis=1)]  # each start's extreme (the first of equal ones)
    return float(row[np.argmax(np.abs(row))])  # the first start with the largest


def _leads(scene: Scenario, t0: int, th: TypeThresholds) -> np.ndarray:
    """bool ``[S]``: a vehicle ahead of the ego in its lane at each controlled step (thresholds in ``th``)."""
    a = scene.agents[:, t0:].astype(np.float64)
    ego = a[scene.ego]
    others = np.flatnonzero((np.asarray(scene.agent_type) == int(AgentType.VEHICLE))
                            & (np.arange(scene.num_agents) != scene.ego)).astype(np.int64)
    if others.size == 0:
        return np.zeros(a.shape[1], dtype=bool)
    o = a[others]  # [N, S, 7]
    dx, dy = o[..., X] - ego[None, :, X], o[..., Y] - ego[None, :, Y]
    c, s = np.cos(ego[:, YAW]), np.sin(ego[:, YAW])
    lon, lat = dx * c + dy * s, -dx * s + dy * c
    half = 0.5 * ego[:, 5]  # ego length column
    ahead = (lon > half) & (lon - half <= th.lead_gap) & (np.abs(lat) <= th.lead_lateral)
    same_way = np.abs(_wrap(o[..., YAW] - ego[None, :, YAW])) < th.lead_heading
    return (ahead & same_way & scene.valid[others, t0:]).any(axis=0)


def mined_types(scene: Scenario, th: TypeThresholds = THRESHOLDS) -> tuple[str, ...]:
    """Types mined from the log and map alone (no family knowledge), in :data:`TYPE_ORDER`.

    Args:
        scene: a validated scene; the ego's log from ``init_step`` to the last step is read.
        th: the thresholds (default :data:`THRESHOLDS`).
    """
    t0 = scene.init_step
    ego = scene.ego_log[t0:].astype(np.float64)  # [S, 7]
    xy, yaw = ego[:, [X, Y]], ego[:, YAW]
    speed = np.hypot(ego[:, VX], ego[:, VY])
    out: set[str] = set()
    moving = speed > th.moving_speed

    if speed.max() <= th.stationary_speed:
        out.add("stationary")
        veh = (scene.agent_type == AgentType.VEHICLE) & scene.valid[:, t0]
        veh[scene.ego] = False
        dist = np.hypot(*(scene.agents[veh, t0][:, [X, Y]].astype(np.float64) - xy[0]).T)
        if int((dist <= th.traffic_reach).sum()) >= th.traffic_count:
            out.add("stationary_in_traffic")
    if speed.max() >= th.high_speed:
        out.add("high_magnitude_speed")

    turn = _max_turn(xy, yaw, th.turn_window)
    if turn >= th.turn_heading:
        out.add("starting_left_turn")
    elif turn <= -th.turn_heading:
        out.add("starting_right_turn")

    stopped = np.flatnonzero(speed < th.stop_speed)
    if stopped.size and (speed[stopped[0]:] >= th.start_speed).any():
        out.add("starting_from_stop")

    lead = _leads(scene, t0, th)
    run_max = np.maximum.accumulate(speed)
    slow = (speed <= th.stopping_fraction * run_max) & (run_max > th.moving_speed) & lead
    if slow.any():
        out.add("stopping_with_lead")
    if moving.any() and lead[moving].mean() >= th.lead_fraction:
        out.add("following_lane_with_lead")

    changes, crossing = _lane_relations(scene, xy, yaw, th)
    if changes and "starting_left_turn" not in out and "starting_right_turn" not in out:
        out.add("changing_lane")
    if crossing and moving.any():
        out.add("traversing_intersection")
        if has_traffic_lights(scene):
            out.add("on_traffic_light_intersection")

    peds = np.flatnonzero(scene.agent_type == AgentType.PEDESTRIAN)
    if peds.size:
        p = scene.agents[peds, t0:][..., [X, Y]].astype(np.float64)
        near = (np.hypot(*(p - xy[None]).transpose(2, 0, 1)) <= th.pedestrian_reach) & scene.valid[peds, t0:]
        if near.any():
            out.add("near_pedestrian")
        if near.sum(axis=0).max() >= th.multiple_pedestrians:
            out.add("near_multiple_pedestrians")

    if moving.any() and not out & {"following_lane_with_lead", "starting_left_turn", "starting_right_turn",
                                   "changing_lane"}:
        out.add("following_lane_without_lead")
    if not out:
        out.add("unclassified")
    return tuple(t for t in TYPE_ORDER if t in out)


def scenario_types(scene: Scenario, th: TypeThresholds = THRESHOLDS) -> tuple[str, ...]:
    """The scene's types: :func:`mined_types`, plus its procedural family's :data:`FAMILY_TYPES`.

    Args:
        scene: any validated :class:`Scenario` (real or procedural).
        th: the thresholds.

    Returns:
        Non-empty tuple of names from :data:`TYPE_ORDER`, in that order (``unclassified`` when nothing fits).
    """
    found = set(mined_types(scene, th)) | set(FAMILY_TYPES.get(scene.family, ()))
    if len(found) > 1:
        found.discard("unclassified")
    return tuple(t for t in TYPE_ORDER if t in found)


def primary_type(types: tuple[str, ...] | list[str]) -> str:
    """The one type of a scene used as its stratum: the first of ``types`` in :data:`TYPE_ORDER`.

    Unknown names (a newer file) come after the known ones, alphabetically; no type gives ``unclassified``.
    """
    known = [t for t in TYPE_ORDER if t in types]
    if known:
        return known[0]
    return sorted(types)[0] if types else "unclassified"


def parse_types(spec: str) -> tuple[str, ...]:
    """Parse ``--scenario-types A,B`` into names; raises ``ValueError`` naming an unknown type."""
    names = tuple(dict.fromkeys(s.strip() for s in spec.split(",") if s.strip()))
    bad = [n for n in names if n not in TYPE_ORDER]
    if bad:
        raise ValueError(f"--scenario-types: unknown type(s) {', '.join(bad)}; known: {', '.join(TYPE_ORDER)}")
    return names
