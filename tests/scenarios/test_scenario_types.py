"""Scenario types (scenarios/types.py) on synthetic logs, procedural families and the real samples."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.procedural import FAMILY_NAMES, generate
from scenarios.scenario import AgentType, Polylines, RoadMap, Scenario
from scenarios.types import (
    FAMILY_TYPES,
    THRESHOLDS,
    TYPE_ORDER,
    has_traffic_lights,
    mined_types,
    parse_types,
    primary_type,
    scenario_types,
)

T, DT, INIT = 91, 0.1, 10


def _track(xy: np.ndarray, length: float = 4.5, width: float = 2.0) -> np.ndarray:
    """``[T, 7]`` states along positions ``xy [T, 2]`` (yaw and velocity from finite differences)."""
    d = np.gradient(xy, axis=0)
    moving = np.hypot(d[:, 0], d[:, 1]) > 1e-9
    yaw = np.arctan2(d[:, 1], d[:, 0])
    if moving.any():  # a stopped stretch keeps the last heading
        idx = np.maximum.accumulate(np.where(moving, np.arange(len(xy)), 0))
        yaw = yaw[idx]
        yaw[: int(np.argmax(moving))] = yaw[int(np.argmax(moving))]
    else:
        yaw[:] = 0.0
    out = np.zeros((len(xy), 7), np.float32)
    out[:, 0:2], out[:, 2] = xy, yaw
    out[:, 3:5] = d / DT
    out[:, 5], out[:, 6] = length, width
    return out


def _scene(ego_xy: np.ndarray, others: list[tuple[np.ndarray, int]] = (), lanes: list[np.ndarray] = ()) -> Scenario:
    tracks = [_track(ego_xy)] + [_track(xy) for xy, _ in others]
    types = [AgentType.VEHICLE] + [k for _, k in others]
    lane_list = list(lanes)
    return Scenario(
        id="synthetic", source="test", agents=np.stack(tracks), valid=np.ones((len(tracks), T), bool),
        agent_type=np.array(types, np.int8), ego=0,
        map=RoadMap(lanes=Polylines.from_list(lane_list), lane_widths=np.full(len(lane_list), 3.5)),
        route=ego_xy.astype(np.float64), dt=DT, init_step=INIT,
    ).validate()


def _straight(speed: float, y: float = 0.0, x0: float = 0.0) -> np.ndarray:
    x = x0 + speed * DT * np.arange(T)
    return np.stack([x, np.full(T, y)], axis=1)


def _arc(radius: float, angle: float, speed: float) -> np.ndarray:
    """A constant-speed drive: 2 s straight, an arc of ``angle`` rad (left if positive), then straight."""
    s = speed * DT * np.arange(T)
    s_arc = radius * abs(angle)
    pts = []
    for si in s:
        if si < 20.0:
            pts.append((si, 0.0))
        elif si < 20.0 + s_arc:
            a = (si - 20.0) / radius * math.copysign(1, angle)
            pts.append((20.0 + radius * math.sin(abs(a)), math.copysign(radius * (1 - math.cos(a)), angle)))
        else:
            rest = si - 20.0 - s_arc
            ex, ey = 20.0 + radius * math.sin(abs(angle)), math.copysign(radius * (1 - math.cos(angle)), angle)
            pts.append((ex + rest * math.cos(angle), ey + rest * math.sin(angle)))
    return np.asarray(pts)


STRAIGHT_LANES = [np.array([[-50.0, 0.0], [300.0, 0.0]]), np.array([[-50.0, 3.5], [300.0, 3.5]])]


def test_a_straight_drive_is_no_turn_and_follows_its_lane():
    types = scenario_types(_scene(_straight(10.0), lanes=STRAIGHT_LANES))
    assert types == ("following_lane_without_lead",)


@pytest.mark.parametrize("angle", [math.pi / 2, -math.pi / 2])
def test_a_90_degree_turn_is_a_turn_of_its_side(angle):
    types = scenario_types(_scene(_arc(12.0, angle, 7.0)))
    assert ("starting_left_turn" in types) == (angle > 0)
    assert ("starting_right_turn" in types) == (angle < 0)


def test_a_long_highway_curve_is_no_turn():
    # 60 degrees of heading over a 400 m radius: 420 m of arc, never 45 degrees within 50 m
    types = scenario_types(_scene(_arc(400.0, math.radians(60), 30.0)))
    assert not {"starting_left_turn", "starting_right_turn"} & set(types)
    assert "high_magnitude_speed" in types


@settings(max_examples=25, deadline=None)
@given(st.floats(-math.pi, math.pi), st.floats(-1e4, 1e4), st.floats(-1e4, 1e4),
       st.sampled_from(["turn", "lane_change", "lead"]))
def test_types_do_not_depend_on_the_world_frame(rot, tx, ty, kind):
    """Rotating and translating a scene (log and lanes) changes no type."""
    if kind == "turn":
        scene = _scene(_arc(12.0, math.pi / 2, 7.0))
    elif kind == "lane_change":
        scene = _scene(_lane_change_xy(), lanes=STRAIGHT_LANES)
    else:
        scene = _scene(_straight(10.0), others=[(_straight(10.0, x0=15.0), AgentType.VEHICLE)], lanes=STRAIGHT_LANES)
    c, s = math.cos(rot), math.sin(rot)
    r = np.array([[c, -s], [s, c]])

    def move(p):
        return p @ r.T + [tx, ty]

    a = scene.agents.copy()
    a[..., 0:2] = move(a[..., 0:2].astype(np.float64))
    a[..., 3:5] = a[..., 3:5] @ r.T
    a[..., 2] = (a[..., 2] + rot + np.pi) % (2 * np.pi) - np.pi
    lanes = Polylines(move(scene.map.lanes.points), scene.map.lanes.offsets)
    moved = Scenario(id="moved", source="test", agents=a, valid=scene.valid, agent_type=scene.agent_type, ego=0,
                     map=RoadMap(lanes=lanes, lane_widths=scene.map.lane_widths), route=move(scene.route),
                     dt=DT, init_step=INIT)
    assert scenario_types(moved) == scenario_types(scene)


def _lane_change_xy() -> np.ndarray:
    xy = _straight(10.0)
    ramp = np.clip((xy[:, 0] - 30.0) / 40.0, 0.0, 1.0)  # from y = 0 to y = 3.5 over 40 m
    xy[:, 1] = 3.5 * (3 * ramp**2 - 2 * ramp**3)
    return xy


def test_a_lane_change_between_parallel_lanes_is_changing_lane():
    assert "changing_lane" in scenario_types(_scene(_lane_change_xy(), lanes=STRAIGHT_LANES))
    # the same sideways move on a road with one lane is no lane change (nothing to change to)
    assert "changing_lane" not in scenario_types(_scene(_lane_change_xy(), lanes=STRAIGHT_LANES[:1]))


def test_successive_lane_segments_are_not_a_lane_change():
    pieces = [np.array([[-50.0 + 40 * i, 0.0], [-10.0 + 40 * i, 0.0]]) for i in range(10)]
    assert "changing_lane" not in scenario_types(_scene(_straight(10.0), lanes=pieces))


def test_lead_in_the_lane_versus_the_next_lane():
    lead = [(_straight(10.0, x0=15.0), AgentType.VEHICLE)]
    beside = [(_straight(10.0, y=3.5, x0=15.0), AgentType.VEHICLE)]
    assert "following_lane_with_lead" in scenario_types(_scene(_straight(10.0), lead, STRAIGHT_LANES))
    types = scenario_types(_scene(_straight(10.0), beside, STRAIGHT_LANES))
    assert "following_lane_with_lead" not in types and "following_lane_without_lead" in types


def _stop_and_go(stop_from: int, stop_to: int, v: float = 8.0) -> np.ndarray:
    speed = np.full(T, v)
    speed[stop_from:stop_to] = 0.0
    x = np.concatenate([[0.0], np.cumsum(speed[:-1] * DT)])
    return np.stack([x, np.zeros(T)], axis=1)


def test_stopping_behind_a_lead_and_starting_from_stop():
    ego = _stop_and_go(40, 70)
    stopped_at = ego[40, 0]
    lead_xy = np.stack([np.minimum(np.arange(T) * 0.8 + 20.0, stopped_at + 8.0), np.zeros(T)], axis=1)
    types = scenario_types(_scene(ego, [(lead_xy, AgentType.VEHICLE)], STRAIGHT_LANES))
    assert "stopping_with_lead" in types
    assert "starting_from_stop" in types
    # the same stop with nobody ahead is no stopping_with_lead (a stop for nothing in this scene)
    assert "stopping_with_lead" not in scenario_types(_scene(ego, (), STRAIGHT_LANES))


@pytest.mark.parametrize("n_near", [2, 3])
def test_stationary_and_stationary_in_traffic(n_near):
    ego = np.zeros((T, 2))
    cars = [(np.tile([5.5 * (i + 1), 0.0], (T, 1)), AgentType.VEHICLE) for i in range(n_near)]
    types = scenario_types(_scene(ego, cars, STRAIGHT_LANES))
    assert "stationary" in types
    assert ("stationary_in_traffic" in types) == (n_near >= THRESHOLDS.traffic_count)
    assert "following_lane_without_lead" not in types


@pytest.mark.parametrize("n_peds", [1, 3])
def test_near_pedestrians(n_peds):
    peds = [(np.tile([40.0, 4.0 + i], (T, 1)), AgentType.PEDESTRIAN) for i in range(n_peds)]
    types = scenario_types(_scene(_straight(10.0), peds, STRAIGHT_LANES))
    assert "near_pedestrian" in types
    assert ("near_multiple_pedestrians" in types) == (n_peds >= THRESHOLDS.multiple_pedestrians)
    far = [(np.tile([40.0, 40.0], (T, 1)), AgentType.PEDESTRIAN)]
    assert "near_pedestrian" not in scenario_types(_scene(_straight(10.0), far, STRAIGHT_LANES))


@pytest.mark.parametrize("speed", [THRESHOLDS.high_speed - 0.5, THRESHOLDS.high_speed + 0.5])
def test_high_magnitude_speed_threshold(speed):
    assert ("high_magnitude_speed" in scenario_types(_scene(_straight(speed)))) == (speed >= THRESHOLDS.high_speed)


def test_crossing_lane_is_an_intersection_and_lights_are_a_hook():
    cross = np.array([[60.0, -50.0], [60.0, 50.0]])
    scene = _scene(_straight(10.0), lanes=[*STRAIGHT_LANES, cross])
    assert "traversing_intersection" in scenario_types(scene)
    assert "traversing_intersection" not in scenario_types(_scene(_straight(10.0), lanes=STRAIGHT_LANES))
    assert "on_traffic_light_intersection" not in scenario_types(scene)  # the format has no lights yet
    assert not has_traffic_lights(scene)
    assert has_traffic_lights(SimpleNamespace(map=SimpleNamespace(traffic_lights=[("lane", "red")])))


def test_every_family_mostly_mines_what_it_was_built_to_be():
    """The generator's own ground truth (FAMILY_TYPES) is found by the log-and-map miner on >= 80 % of draws."""
    assert set(FAMILY_TYPES) == set(FAMILY_NAMES)
    for fam in FAMILY_NAMES:
        scenes = [generate(fam, seed) for seed in range(10)]
        for t in FAMILY_TYPES[fam]:
            hits = sum(t in mined_types(s) for s in scenes)
            assert hits >= 8, (fam, t, hits)
        for s in scenes:
            types = scenario_types(s)
            assert types and set(FAMILY_TYPES[fam]) <= set(types)
            assert list(types) == sorted(types, key=TYPE_ORDER.index)


def test_primary_type_and_parse():
    assert primary_type(("high_magnitude_speed", "starting_left_turn")) == "starting_left_turn"
    assert primary_type(()) == "unclassified"
    assert primary_type(("zz_new", "aa_new")) == "aa_new"
    assert parse_types(" stationary, changing_lane,stationary") == ("stationary", "changing_lane")
    with pytest.raises(ValueError, match="--scenario-types: unknown type.*left_turn"):
        parse_types("left_turn")


@pytest.mark.data
def test_real_samples_get_types_consistent_with_their_logs(shared_data):
    from scenarios.loading import load_scenes

    scenes = load_scenes(str(shared_data)).scenes
    assert scenes
    turns = 0
    for s in scenes:
        types = scenario_types(s)
        assert types and set(types) <= set(TYPE_ORDER), s.id
        ego = s.ego_log[s.init_step:].astype(np.float64)
        speed = np.hypot(ego[:, 3], ego[:, 4])
        heading = np.unwrap(ego[:, 2].astype(np.float64))
        net = float(heading[-1] - heading[0])
        path = float(np.hypot(*np.diff(ego[:, :2], axis=0).T).sum())
        # an independent reading of the same log: a net turn over a path no longer than the window is a turn of
        # that side; a heading that never spans the turn angle is no turn at all
        if abs(net) >= THRESHOLDS.turn_heading and path <= THRESHOLDS.turn_window:
            assert ("starting_left_turn" if net > 0 else "starting_right_turn") in types, s.id
            turns += 1
        if np.ptp(heading) < THRESHOLDS.turn_heading:
            assert not {"starting_left_turn", "starting_right_turn"} & set(types), s.id
        assert ("stationary" in types) == (speed.max() <= THRESHOLDS.stationary_speed), s.id
        assert ("high_magnitude_speed" in types) == (speed.max() >= THRESHOLDS.high_speed), s.id
    assert turns >= 1  # the Waymo samples hold short sharp turns: the check above did run


def _max_turn_loop(xy, yaw, window):
    """Oracle: the definition, one start at a time."""
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
    h = np.unwrap(yaw)
    best = 0.0
    for i in range(len(s)):
        seg = np.array([h[k] - h[i] for k in range(i, len(s)) if s[k] <= s[i] + window])
        k = int(np.argmax(np.abs(seg)))
        if abs(seg[k]) > abs(best):
            best = float(seg[k])
    return best


@settings(max_examples=80, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(0.0, 3.0), st.floats(-0.4, 0.4)), min_size=1, max_size=60),
       window=st.floats(0.5, 40.0))
def test_max_turn_equals_the_definition_one_start_at_a_time(steps, window):
    from scenarios.types import _max_turn

    d = np.array([a for a, _ in steps])
    yaw = np.cumsum([b for _, b in steps])
    xy = np.stack([np.cumsum(d * np.cos(yaw)), np.cumsum(d * np.sin(yaw))], axis=1)
    assert _max_turn(xy, yaw, window) == pytest.approx(_max_turn_loop(xy, yaw, window), abs=1e-12)
