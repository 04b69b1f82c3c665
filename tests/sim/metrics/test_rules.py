"""The map-rule metrics (sim/metrics/rules.py) and lane occupancy: analytic cases on synthetic scenes, property tests
against independent oracles (shapely for occupancy, plain loops for the windows), and the field_rules case files."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Polygon

from scenarios.scenario import LightState
from sim.batch import make_batch
from sim.geometry import box_corners
from sim.lane_map import build_lane_map
from sim.metrics.rules import (
    DDC_COMPLY,
    DDC_VIOLATE,
    SPEED_OVER_MAX,
    direction_from_worst,
    lane_occupancy,
    longest_run,
    worst_window_sum,
)
from tests.rules_helpers import DT, INIT, T, ego_states, replay, road_map, scene, straight

EAST = np.array([[-300.0, 0.0], [300.0, 0.0]])
CASES = (Path(__file__).resolve().parents[3] / ".." / "shared" / "cases" / "realdata" / "field_rules").resolve()


def one(metric: str, ego: np.ndarray, road, policy: np.ndarray | None = None) -> float:
    m = replay([scene(ego, road)], None if policy is None else [policy])
    return float(m[metric][0])


# ----------------------------------------------------------------------------- driving direction (nuPlan)
@pytest.mark.parametrize(("speed", "expected"), [(-10.0, 0.0), (-3.0, 0.5), (-1.5, 1.0), (10.0, 1.0)])
def test_driving_direction_against_an_eastbound_lane(speed, expected):
    """10 m the wrong way in 1 s -> 0; 3 m -> 0.5; 1.5 m -> 1; the right way -> 1 (nuPlan's 2 m / 6 m bounds)."""
    yaw = math.pi if speed < 0 else 0.0
    ego = ego_states(straight(0.0, speed), yaw)
    assert one("driving_direction_compliance", ego, road_map([EAST])) == expected


def test_driving_direction_picks_the_lane_the_ego_drives_with():
    """Two overlapping lanes of opposite direction (an intersection): the ego's own direction is compliant."""
    ego = ego_states(straight(0.0, -10.0), math.pi)
    assert one("driving_direction_compliance", ego, road_map([EAST, EAST[::-1].copy()])) == 1.0


def test_driving_direction_off_the_lanes_and_without_lanes():
    ego = ego_states(straight(0.0, -10.0, y=20.0), math.pi)  # 20 m beside the only lane: in no lane
    assert one("driving_direction_compliance", ego, road_map([EAST])) == 1.0
    assert math.isnan(one("driving_direction_compliance", ego, road_map([])))


def _nuplan_worst(xy: np.ndarray, lane_dir: np.ndarray, n_horizon: int) -> float:
    """Plain loop after nuPlan's ``driving_direction_compliance.py``: signed progress along the lane per sample (0 at
    the first, ``init_step``), summed over each sample and the ``n_horizon`` before it; the worst is ``abs(min)``."""
    progress = [0.0] + [float(np.dot(xy[t] - xy[t - 1], lane_dir)) for t in range(INIT + 1, len(xy))]
    sums = [sum(progress[max(0, i - n_horizon) : i + 1]) for i in range(len(progress))]
    return abs(min(sums))


def _numpy_ddc(worst: float) -> float:
    """nuPlan's bounds, strict: below 2 m 1, below 6 m 0.5, else 0."""
    return 1.0 if worst < DDC_COMPLY else 0.5 if worst < DDC_VIOLATE else 0.0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.floats(-12.0, 12.0), min_size=T - 1, max_size=T - 1))
def test_driving_direction_matches_a_numpy_loop(velocities):
    """Any back-and-forth drive along one lane: the worst 1 s window equals a plain loop's."""
    x = np.concatenate([[0.0], np.cumsum(np.asarray(velocities) * DT)])
    xy = np.stack([x, np.zeros(T)], axis=1)
    worst = _nuplan_worst(xy, np.array([1.0, 0.0]), round(1.0 / DT))
    assume(abs(worst - DDC_COMPLY) > 1e-3 and abs(worst - DDC_VIOLATE) > 1e-3)
    got = one("driving_direction_compliance", ego_states(xy, 0.0), road_map([EAST]))
    assert got == _numpy_ddc(worst)


def test_driving_direction_window_is_a_step_and_the_second_before_it():
    """Reversing at 1.9 m/s along the lane: nuPlan sums n_horizon + 1 = 11 displacements (2.09 m) -> 0.5; ten of
    them (1.9 m) would read compliant."""
    ego = ego_states(straight(0.0, -1.9), math.pi)
    assert one("driving_direction_compliance", ego, road_map([EAST])) == 0.5


def test_driving_direction_sums_signed_progress():
    """A stopped ego whose log jitters 0.5 m back and forth every step: nuPlan's window sums the signed progress
    (at most 0.5 m against the lane) -> 1; summing only the backward steps would read 2.5-3 m -> 0.5."""
    x = np.where(np.arange(T) % 2 == 0, 0.0, -0.5)
    ego = ego_states(np.stack([x, np.zeros(T)], axis=1), 0.0)
    assert one("driving_direction_compliance", ego, road_map([EAST])) == 1.0


def test_driving_direction_bounds_are_strict():
    """nuPlan (and NAVSIM) compare with ``<``: exactly 2 m against the lane is 0.5, exactly 6 m is 0."""
    worst = torch.tensor([0.0, 1.999, 2.0, 5.999, 6.0, 7.0], dtype=torch.float64)
    assert direction_from_worst(worst).tolist() == [1.0, 1.0, 0.5, 0.5, 0.0, 0.0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 5.0), min_size=1, max_size=40), st.integers(1, 12))
def test_worst_window_sum_matches_a_loop(x, window):
    want = max(sum(x[max(0, t - window + 1) : t + 1]) for t in range(len(x)))
    got = float(worst_window_sum(torch.tensor([x], dtype=torch.float64), window)[0])
    assert got == pytest.approx(want, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=40))
def test_longest_run_matches_a_loop(flags):
    """Runs of ``exceed`` over counted steps; uncounted steps neither extend nor end a run (NAVSIM's ``continue``)."""
    best = run = 0
    for exceed, counted in flags:
        if not counted:
            continue
        run = run + 1 if exceed else 0
        best = max(best, run)
    ex = torch.tensor([[f[0] for f in flags]])
    co = torch.tensor([[f[1] for f in flags]])
    assert int(longest_run(ex, co)[0]) == best


# ----------------------------------------------------------------------------- speed limit (nuPlan)
SAMPLES = T - INIT  # nuPlan sums every sample from init_step to the last (51) over the duration between them (50 dt)


@pytest.mark.parametrize(("over", "expected"), [(SPEED_OVER_MAX, 0.0), (SPEED_OVER_MAX / 2, 1 - 0.5 * SAMPLES / 50),
                                                (SPEED_OVER_MAX / 4, 1 - 0.25 * SAMPLES / 50), (-1.0, 1.0),
                                                (2 * SPEED_OVER_MAX, 0.0)])
def test_speed_limit_compliance(over, expected):
    """Over the limit by 2.23 m/s for the whole scene -> 0; by half of it -> 1 - 0.5 * 51 / 50 = 0.49 (the first
    sample counts too, nuPlan speed_limit_compliance.py); under it -> 1."""
    limit = 10.0
    ego = ego_states(straight(-100.0, limit + over), 0.0)
    road = road_map([EAST], limits=[limit], known=["speed_limits"])
    assert one("speed_limit_compliance", ego, road) == pytest.approx(expected, abs=1e-5)


def test_speed_limit_counts_the_first_sample():
    """Over the limit by 2.23 m/s at init_step only, then at the limit: nuPlan's loss is one sample over the
    duration, 1 / 50 -> 0.98."""
    limit = 10.0
    xy = straight(-100.0, limit)
    ego = ego_states(xy, 0.0)
    ego[: INIT + 1, 3] = limit + SPEED_OVER_MAX  # the states' own speed (the positions need not agree)
    road = road_map([EAST], limits=[limit], known=["speed_limits"])
    assert one("speed_limit_compliance", ego, road) == pytest.approx(1 - 1 / 50, abs=1e-5)


def test_speed_limit_not_applicable_without_limits():
    ego = ego_states(straight(-100.0, 20.0), 0.0)
    assert math.isnan(one("speed_limit_compliance", ego, road_map([EAST])))  # the source has no limits
    assert math.isnan(one("speed_limit_compliance", ego, road_map([EAST], known=["speed_limits"])))  # none known


# ----------------------------------------------------------------------------- lane keeping (NAVSIM v2)
@pytest.mark.parametrize(("offset", "expected"), [(1.0, 0.0), (0.3, 1.0)])
def test_lane_keeping(offset, expected):
    """1 m from the centreline for 5 s -> 0 (NAVSIM: 0.5 m for 2 s); 0.3 m -> 1."""
    ego = ego_states(straight(-100.0, 10.0, y=offset), 0.0)
    road = road_map([EAST], intersection=[0], known=["intersections"])
    assert one("lane_keeping", ego, road) == expected


def test_lane_keeping_forgives_short_deviations_and_intersections():
    xy = straight(-100.0, 10.0)
    xy[INIT + 5 : INIT + 5 + 15, 1] = 1.0  # 1.5 s off the centreline, then back
    road = road_map([EAST], intersection=[0], known=["intersections"])
    assert one("lane_keeping", ego_states(xy, 0.0), road) == 1.0
    far = ego_states(straight(-100.0, 10.0, y=1.0), 0.0)
    inter = road_map([EAST], intersection=[1], known=["intersections"])
    assert one("lane_keeping", far, inter) == 1.0  # every step in an intersection lane: skipped
    assert math.isnan(one("lane_keeping", far, road_map([EAST])))  # intersections unknown: not applicable


# ----------------------------------------------------------------------------- traffic lights (NAVSIM v2)
APPROACH = np.array([[-200.0, 0.0], [0.0, 0.0]])
JUNCTION = np.array([[0.0, 0.0], [40.0, 0.0]])


def _light_road(state: LightState, convention: str = "junction"):
    states = np.full(T, int(state))
    if convention == "junction":  # the signal controls the intersection lane, stop point at its start
        light = (1, (0.0, 0.0), states)
    else:  # the signal controls the approach lane, stop point at its end: the lanes it leads into count
        light = (0, (0.0, 0.0), states)
    return road_map([APPROACH, JUNCTION], intersection=[0, 1], successors=[(0, 1)], lights=[light],
                    known=["traffic_lights", "intersections", "lane_graph"])


@pytest.mark.parametrize("convention", ["junction", "approach"])
@pytest.mark.parametrize(("state", "expected"), [(LightState.STOP, 0.0), (LightState.GO, 1.0),
                                                 (LightState.CAUTION, 1.0), (LightState.FLASHING_STOP, 1.0)])
def test_running_the_light(convention, state, expected):
    """Driving through at 10 m/s: red -> 0; green, yellow, flashing red (a stop sign) -> 1."""
    ego = ego_states(straight(-30.0, 10.0), 0.0)
    assert one("traffic_light_compliance", ego, _light_road(state, convention)) == expected


def test_stopping_before_the_stop_line_on_red():
    x = np.minimum(-30.0 + 10.0 * DT * np.arange(T), -2.5)  # front bumper stops 0.25 m before the line
    ego = ego_states(np.stack([x, np.zeros(T)], axis=1), 0.0)
    assert one("traffic_light_compliance", ego, _light_road(LightState.STOP)) == 1.0


def test_already_past_the_line_when_it_turns_red():
    ego = ego_states(straight(1.0, 3.0), 0.0)  # inside the intersection lane from the first step
    assert one("traffic_light_compliance", ego, _light_road(LightState.STOP)) == 1.0


def test_no_lights_is_not_applicable():
    ego = ego_states(straight(-30.0, 10.0), 0.0)
    assert math.isnan(one("traffic_light_compliance", ego, road_map([APPROACH, JUNCTION])))  # lights unknown
    known = road_map([APPROACH, JUNCTION], known=["traffic_lights"])  # recorded: none in this scene
    assert math.isnan(one("traffic_light_compliance", ego, known))


# ----------------------------------------------------------------------------- lane occupancy vs shapely
def _box_polygon(box: np.ndarray) -> Polygon:
    return Polygon(box_corners(torch.tensor(box, dtype=torch.float64)).numpy())


def _occupancy(lanes, widths, box, polygons=None, intersection=None):
    ego = ego_states(np.repeat(np.asarray(box[:2])[None], T, axis=0), box[2], box[3], box[4])
    ego[:, 3:5] = 0.0
    road = road_map(lanes, widths, polygons=polygons, intersection=intersection,
                    known=["intersections"] if intersection is not None else ())
    s = scene(ego, road)
    lm = build_lane_map([s], T, torch.device("cpu"))
    boxes = torch.tensor(box, dtype=torch.float32).reshape(1, 1, 5)
    return lane_occupancy(boxes, lm, torch.ones(1, 1, dtype=torch.bool))


lane_st = st.tuples(st.floats(-20, 20), st.floats(-20, 20), st.floats(-math.pi, math.pi), st.floats(3.0, 40.0),
                    st.floats(2.5, 4.5))
box_st = st.tuples(st.floats(-25, 25), st.floats(-25, 25), st.floats(-math.pi, math.pi), st.floats(1.0, 6.0),
                   st.floats(0.5, 2.5))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lane_st, min_size=1, max_size=3), box_st)
def test_occupancy_counts_the_lanes_shapely_sees(lanes, box):
    """Straight lanes (centreline +- width / 2) and any box: the count of lanes the box overlaps equals shapely's."""
    lines, widths, polys = [], [], []
    for x, y, yaw, length, width in lanes:
        d = np.array([math.cos(yaw), math.sin(yaw)]) * length / 2
        line = np.array([[x, y] - d, [x, y] + d])
        lines.append(line)
        widths.append(width)
        polys.append(LineString(line).buffer(width / 2, cap_style="flat"))
    ego = _box_polygon(np.array(box))
    for p in polys:  # clear of every lane's boundary (float32 boxes): a decided case
        assume(ego.distance(p.exterior) > 1e-3 or ego.intersection(p).area > 1e-3)
    want = sum(ego.intersects(p) for p in polys)
    assert int(_occupancy(lines, widths, box).count[0, 0]) == want


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.floats(-5, 45), st.floats(-6, 6), st.floats(-math.pi, math.pi))
def test_occupancy_of_a_source_polygon(x, y, yaw):
    """A lane whose source polygon widens from 3 m to 6 m: overlap decided as shapely decides it, away from the
    boundary (the rectangles follow the polygon's width at each piece's middle)."""
    poly = np.array([[0.0, -1.5], [40.0, -3.0], [40.0, 3.0], [0.0, 1.5]])
    box = np.array([x, y, yaw, 4.5, 1.9])
    ego = _box_polygon(box)
    assume(ego.distance(Polygon(poly).exterior) > 0.1 or ego.intersection(Polygon(poly)).area > 0.5)
    got = int(_occupancy([np.array([[0.0, 0.0], [40.0, 0.0]])], [3.0], box, polygons=[poly]).count[0, 0])
    assert got == int(ego.intersects(Polygon(poly)))


def test_multiple_lanes_and_intersection():
    """Two adjacent 3.5 m lanes: a box on the line between them is in multiple lanes, one inside a lane is not."""
    left = np.array([[-50.0, 3.5], [50.0, 3.5]])
    straddle = _occupancy([EAST, left], 3.5, [0.0, 1.75, 0.0, 4.5, 1.9], intersection=[0, 1])
    inside = _occupancy([EAST, left], 3.5, [0.0, 0.0, 0.0, 4.5, 1.9], intersection=[0, 1])
    assert int(straddle.count[0, 0]) == 2 and bool(straddle.multiple_lanes[0, 0])
    assert bool(straddle.in_intersection[0, 0])
    assert int(inside.count[0, 0]) == 1 and not bool(inside.multiple_lanes[0, 0])
    assert not bool(inside.in_intersection[0, 0])


def test_bent_lane_has_no_gap_on_the_outside_of_the_bend():
    """A 90 degree bend: a point just inside the outer corner of the lane is in the lane."""
    bend = np.array([[-20.0, 0.0], [0.0, 0.0], [0.0, 20.0]])
    occ = _occupancy([bend], 4.0, [1.8, -1.8, 0.0, 0.2, 0.2])
    assert int(occ.count[0, 0]) == 1


# ----------------------------------------------------------------------------- the field_rules case files
def _case(name: str):
    from scenarios.formats import load_file

    path = CASES / name
    if not path.is_file():
        pytest.skip(f"field_rules case {name} not found at {CASES} (only present in the team's checkout)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (s,) = load_file(path)
    return s


def _log_replay(s) -> dict[str, float]:
    from sim.metrics.registry import compute_metrics
    from sim.rollout import rollout

    batch = make_batch([s])
    return {k: float(v[0]) for k, v in compute_metrics(rollout(batch, None), batch).items()}


@pytest.mark.data
def test_c10_red_light_log_replay_violates():
    s = _case("c10_red_light.pkl")
    if not s.map.knows("traffic_lights") or s.map.num_lights == 0:
        pytest.skip("c10: the importer does not read traffic lights yet (map.knows('traffic_lights') is False)")
    m = _log_replay(s)
    assert m["traffic_light_compliance"] == 0.0
    assert m["score"] == 1.0  # NAVSIM's human filter: the recorded driver ran it too


@pytest.mark.data
def test_c11_wrong_way_log_replay_violates():
    s = _case("c11_wrong_way.pkl")
    if len(s.map.lanes) == 0:
        pytest.skip("c11: the scene's map has no lanes")
    m = _log_replay(s)
    assert m["driving_direction_compliance"] == 0.0 and m["nuplan_score"] == 0.0


@pytest.mark.data
def test_c12_speeding_log_replay():
    s = _case("c12_speeding.pkl")
    if not s.map.knows("speed_limits"):
        pytest.skip("c12: the importer does not read speed limits yet (map.knows('speed_limits') is False)")
    m = _log_replay(s)
    assert m["speed_limit_compliance"] < 1.0 and m["nuplan_score"] < 1.0


# ----------------------------------------------------------------------------- the coarse filter of the lane tests
def _brute_candidates(boxes, reach, lm, rows):
    """Every (step, piece) pair whose circles meet, by one dense test over all of them."""
    from sim.metrics.rules import _near

    sb = lm.seg_box  # [B, R, 5]
    rad = torch.hypot(sb[..., 3], sb[..., 4]) / 2
    near = _near(boxes[:, :, None, 0], boxes[:, :, None, 1], reach[:, :, None], sb[:, None, :, 0], sb[:, None, :, 1],
                 rad[:, None, :]) & rows[:, :, None] & lm.seg_valid[:, None, :]
    b, t, r = near.nonzero(as_tuple=True)
    return set(zip((b * boxes.shape[1] + t).tolist(), (b * sb.shape[1] + r).tolist()))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(lane_st, min_size=1, max_size=4), min_size=1, max_size=3), st.integers(0, 2**31 - 1),
       st.floats(0.0, 6.0))
def test_lane_candidates_equal_a_dense_test(scenes_lanes, seed, reach_max):
    """The three-stage filter (windows of steps against chunks, steps against chunks, steps against pieces) finds
    exactly the pairs a dense test of every step against every piece finds: every stage is conservative."""
    from sim.metrics.rules import _candidates

    rng = np.random.default_rng(seed)
    scenes = []
    for lanes in scenes_lanes:
        lines, widths = [], []
        for x, y, yaw, length, width in lanes:
            d = np.array([math.cos(yaw), math.sin(yaw)]) * length / 2
            lines.append(np.array([[x, y] - d, [x, y] + d]))
            widths.append(width)
        xy = np.cumsum(rng.normal(0.0, 1.5, (T, 2)), axis=0) + rng.uniform(-20, 20, 2)
        scenes.append(scene(ego_states(xy, 0.0), road_map(lines, widths)))
    lm = build_lane_map(scenes, T, torch.device("cpu"))
    boxes = torch.tensor(np.stack([np.c_[s.agents[0, :, :3], s.agents[0, :, 5:7]] for s in scenes]),
                         dtype=torch.float32)
    reach = torch.tensor(rng.uniform(0.0, reach_max, boxes.shape[:2]), dtype=torch.float32)
    rows = torch.tensor(rng.random(boxes.shape[:2]) < 0.8)
    bt, seg = _candidates(boxes, reach, lm, rows)
    got = list(zip(bt.tolist(), seg.tolist()))
    assert len(got) == len(set(got))
    assert set(got) == _brute_candidates(boxes, reach, lm, rows)
