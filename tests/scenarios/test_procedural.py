"""Procedural generator: validity, determinism and physical plausibility against independent oracles.

Oracles: shapely polygons for box overlap and the drivable area, finite differences of logged
positions for headings, velocities, accelerations, jerks and curvature.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from scenarios.io import load_scenarios, save_scenarios
from scenarios.procedural import FAMILY_NAMES, generate
from scenarios.procedural.geometry import Path, box_corners, corners_overlap, hermite5, smoothstep5
from scenarios.scenario import AgentType, ScenarioError

FAST_SEEDS = range(8)
SLOW_SEEDS = range(8, 60)
DT = 0.1


@pytest.fixture(scope="module")
def scenes():
    return [generate(f, s) for f in FAMILY_NAMES for s in FAST_SEEDS]


def boxes(states: np.ndarray) -> np.ndarray:
    """shapely polygons of ``[..., 7]`` states -> array ``[...]``."""
    c = box_corners(states[..., 0], states[..., 1], states[..., 2], states[..., 5], states[..., 6])
    return shapely.polygons(c.astype(np.float64))


def overlapping_pairs(s) -> list[tuple[int, int, int]]:
    """(i, j, t) of every overlapping pair of valid agents, decided by shapely."""
    a = s.agents.astype(np.float64)
    half = 0.5 * np.hypot(a[..., 5], a[..., 6])
    d = np.hypot(a[:, None, :, 0] - a[None, :, :, 0], a[:, None, :, 1] - a[None, :, :, 1])
    # circumcircles that do not meet cannot hold overlapping boxes: only the rest go to shapely
    near = (d <= half[:, None] + half[None]) & s.valid[:, None] & s.valid[None]
    near &= np.triu(np.ones((s.num_agents,) * 2, dtype=bool), 1)[..., None]
    i, j, t = np.nonzero(near)
    hit = shapely.intersects(boxes(a[i, t]), boxes(a[j, t]))
    return list(zip(i[hit], j[hit], t[hit]))


def check_scene(s) -> None:
    s.validate()
    fam = s.family
    assert s.id.startswith(f"procedural/{fam}/") and s.source == "procedural"
    assert s.agents.shape[1:] == (91, 7) and s.init_step == 10 and s.dt == pytest.approx(DT)
    assert s.ego == 0 and s.agent_type[0] == AgentType.VEHICLE
    assert 8 <= s.num_agents <= 32, f"{s.id}: {s.num_agents} agents"
    # no overlaps at all, ego or not
    assert overlapping_pairs(s) == [], s.id
    ego = s.agents[0].astype(np.float64)
    # on road: every ego corner within 0.3 m of the drivable union
    road = shapely.union_all([shapely.Polygon(p) for p in s.map.drivable])
    corners = box_corners(ego[:, 0], ego[:, 1], ego[:, 2], ego[:, 5], ego[:, 6]).reshape(-1, 2)
    assert shapely.distance(road, shapely.points(corners)).max() <= 0.3, s.id
    # every lane lies inside the drivable area
    for lane in s.map.lanes:
        assert shapely.distance(road, shapely.points(lane)).max() < 0.05, s.id
        step = np.hypot(*np.diff(lane, axis=0).T)
        assert step.min() > 0.3 and step.max() < 1.5
    # the route covers the logged ego path
    route = shapely.linestrings(s.route)
    assert shapely.distance(route, shapely.points(ego[:, :2])).max() < 0.5, s.id
    # kinematic limits of the expert (finite differences of the log)
    v = np.hypot(ego[:, 3], ego[:, 4])
    acc = np.diff(v) / DT
    assert np.abs(acc).max() <= 4.0, s.id
    assert np.abs(np.diff(acc) / DT).max() <= 4.13, s.id
    step = np.hypot(*np.diff(ego[:, :2], axis=0).T)
    dyaw = np.angle(np.exp(1j * np.diff(ego[:, 2])))
    moving = step > 0.05
    assert np.all(np.abs(dyaw[moving] / step[moving]) <= 0.3), s.id
    assert np.all(np.abs(dyaw) <= 0.95 * DT + 1e-6), s.id  # nuPlan yaw-rate bound
    # every agent: headings and velocities agree with central differences of positions
    for i in range(s.num_agents):
        a = s.agents[i].astype(np.float64)
        ok = s.valid[i, :-2] & s.valid[i, 1:-1] & s.valid[i, 2:]
        fd = (a[2:, :2] - a[:-2, :2]) / (2 * DT)
        fast = ok & (np.hypot(*fd.T) > 1.0)
        err = np.abs(np.angle(np.exp(1j * (np.arctan2(fd[:, 1], fd[:, 0]) - a[1:-1, 2]))))
        assert np.all(err[fast] < 0.02), f"{s.id} agent {i}"
        # central difference = v + (a_t - a_{t-1}) dt / 4: within 0.2 m/s even for a hard brake ending at a stop
        assert np.all(np.abs(fd - a[1:-1, 3:5])[ok] < 0.2), f"{s.id} agent {i}"
        # no teleporting: displacement per step bounded by a plausible speed
        jump = np.hypot(*np.diff(a[:, :2], axis=0).T)[s.valid[i, :-1] & s.valid[i, 1:]]
        assert np.all(jump < 4.0), f"{s.id} agent {i}"
        # validity is one contiguous interval (tracks appear or leave once)
        idx = np.flatnonzero(s.valid[i])
        assert len(idx) and idx[-1] - idx[0] + 1 == len(idx)


def test_every_family_is_valid_and_plausible(scenes):
    assert {s.family for s in scenes} == set(FAMILY_NAMES)
    for s in scenes:
        check_scene(s)


@pytest.mark.slow
def test_sweep_many_seeds():
    for f in FAMILY_NAMES:
        for seed in SLOW_SEEDS:
            check_scene(generate(f, seed))


def test_determinism_and_seed_variation():
    for f in FAMILY_NAMES:
        a, b, c = generate(f, 3), generate(f, 3), generate(f, 4)
        assert np.array_equal(a.agents, b.agents) and np.array_equal(a.valid, b.valid)
        assert np.array_equal(a.map.lanes.points, b.map.lanes.points) and np.array_equal(a.route, b.route)
        assert a.tags == b.tags
        assert a.agents.shape != c.agents.shape or not np.array_equal(a.agents, c.agents)


def test_family_behaviour(scenes):
    by = {f: [s for s in scenes if s.family == f] for f in FAMILY_NAMES}
    for s in by["lead_brake"]:
        speeds = np.hypot(s.agents[1:, :, 3], s.agents[1:, :, 4])
        decel = -np.diff(speeds, axis=1) / DT
        assert decel.max() >= 4.0, s.id  # somebody (the lead) brakes hard
    for s in by["pedestrian_crossing"]:
        assert (s.agent_type == AgentType.PEDESTRIAN).sum() >= 1 and len(s.map.crosswalks) == 1
        v = np.hypot(s.agents[0, :, 3], s.agents[0, :, 4])
        if "yielded" in s.tags:
            assert v[10:].min() < 0.5 * v[0]
    for s in by["stopped_vehicle"]:
        speeds = np.hypot(s.agents[1:, :, 3], s.agents[1:, :, 4])
        assert (speeds.max(axis=1) == 0).any()
        # the ego leaves its lane sideways and comes back: lateral excursion of about a lane width
        e = s.agents[0].astype(np.float64)
        h = e[0, 2]
        lat = -(e[:, 0] - e[0, 0]) * np.sin(h) + (e[:, 1] - e[0, 1]) * np.cos(h)
        assert np.abs(lat).max() > 2.5, s.id
    for s in by["left_turn"]:
        if "turned" in s.tags:
            turn = np.angle(np.exp(1j * (s.agents[0, -1, 2] - s.agents[0, 0, 2])))
            assert turn == pytest.approx(np.pi / 2, abs=0.35), s.id
    for s in by["cut_in"]:
        assert any(t in s.tags for t in ("from_left", "from_right"))


def test_round_trip_through_project_format(scenes, tmp_path):
    subset = scenes[:: len(FAST_SEEDS)]
    back = load_scenarios(save_scenarios(tmp_path / "p.npz", subset))
    for a, b in zip(subset, back):
        assert a.id == b.id and a.family == b.family and a.tags == b.tags
        assert np.array_equal(a.agents, b.agents) and np.array_equal(a.valid, b.valid)
        assert np.array_equal(a.map.drivable.points, b.map.drivable.points)
        assert np.array_equal(a.map.lane_widths, b.map.lane_widths)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ScenarioError, match="unknown scenario family 'nope'; known: lane_follow_straight"):
        generate("nope", 1)
    with pytest.raises(ScenarioError, match="non-negative"):
        generate("cut_in", -1)


def test_sat_helper_matches_shapely():
    rng = np.random.default_rng(0)
    st = np.zeros((2000, 2, 7))
    st[..., :2] = rng.uniform(-4, 4, (2000, 2, 2))
    st[..., 2] = rng.uniform(-np.pi, np.pi, (2000, 2))
    st[..., 5] = rng.uniform(0.5, 6, (2000, 2))
    st[..., 6] = rng.uniform(0.5, 2.5, (2000, 2))
    c = box_corners(st[..., 0], st[..., 1], st[..., 2], st[..., 5], st[..., 6])
    ours = corners_overlap(c[:, 0], c[:, 1])
    ref = shapely.intersects(boxes(st[:, 0]), boxes(st[:, 1]))
    assert 0 < ours.sum() < len(ours) and np.array_equal(ours, ref)


def test_path_projection_and_connector_curvature():
    p = Path(hermite5((0.0, 0.0), 0.0, (12.0, 12.0), np.pi / 2))
    assert np.abs(p.kappa).max() < 0.3 and abs(p.kappa[0]) < 0.02 and abs(p.kappa[-1]) < 0.02
    rng = np.random.default_rng(1)
    xy = rng.uniform(-3, 15, (300, 2))
    s, lat = p.project(xy)
    ref = shapely.distance(shapely.linestrings(p.pts), shapely.points(xy))
    assert np.allclose(np.abs(lat), ref, atol=1e-9)
    assert np.allclose(shapely.line_locate_point(shapely.linestrings(p.pts), shapely.points(xy)), s, atol=1e-6)


def test_log_replay_is_perfect_under_sim_metrics(scenes):
    """Replaying the expert log scores ade = fde = 0, no collision, no offroad, full progress (sim.metrics.registry)."""
    torch = pytest.importorskip("torch")
    batch_mod = pytest.importorskip("sim.batch")
    rollout_mod = pytest.importorskip("sim.rollout")
    metrics = pytest.importorskip("sim.metrics.registry")
    batch = batch_mod.make_batch(scenes[::3])
    m = metrics.compute_metrics(rollout_mod.rollout(batch, None), batch)
    ids = np.array(batch.ids)
    assert torch.all(m["ade"].abs() < 1e-4) and torch.all(m["fde"].abs() < 1e-4)
    for name, want in (("collision", 0.0), ("offroad", 0.0), ("progress", 1.0)):
        bad = (m[name] != want).numpy()
        assert not bad.any(), f"{name}: {ids[bad].tolist()} {m[name][torch.from_numpy(bad)].tolist()}"


def test_projection_on_road_paths_matches_shapely():
    x = np.arange(0.0, 200.0, 0.5)
    p = Path(np.stack([x, 3.5 * smoothstep5((x - 60.0) / 30.0)], axis=1))
    assert p.monotone
    rng = np.random.default_rng(2)
    u = rng.uniform(0.0, p.length, 400)
    xy = p.xy(u) + rng.uniform(-4.0, 4.0, (400, 1)) * np.stack([-np.sin(p.heading(u)), np.cos(p.heading(u))], 1)
    s, lat = p.project(xy)
    line = shapely.linestrings(p.pts)
    assert np.allclose(np.abs(lat), shapely.distance(line, shapely.points(xy)), atol=1e-9)
    assert np.allclose(s, shapely.line_locate_point(line, shapely.points(xy)), atol=1e-6)


def test_road_edges_have_the_road_on_their_left(scenes):
    for s in scenes:
        road = shapely.union_all([shapely.Polygon(p) for p in s.map.drivable])
        left, right = [], []
        for e in s.map.road_edges:
            d = np.diff(e, axis=0)
            mid = (e[1:] + e[:-1]) / 2
            n = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.hypot(d[:, 0], d[:, 1])[:, None]
            left.append(shapely.contains_xy(road, *(mid + 0.3 * n).T))
            right.append(~shapely.contains_xy(road, *(mid - 0.3 * n).T))
        assert np.concatenate(left).all(), s.id
        assert np.concatenate(right).mean() > 0.98, s.id  # the on-ramp's gore point is the only exception
        assert len(s.map.road_lines) >= 1
        assert (len(s.map.crosswalks) > 0) == (s.family == "pedestrian_crossing")


def test_a_draw_needing_more_than_a_dozen_redraws_still_generates():
    """pedestrian_crossing seed 6591 draws overlapping agents 12 times in a row (a 20 x 10,000 benchmark suite
    stopped on it): it generates (its 13th draw passes the generator's overlap check), the same on every call."""
    from scenarios.procedural import MAX_ATTEMPTS, generate

    assert MAX_ATTEMPTS > 12
    s = generate("pedestrian_crossing", 6591)
    assert s.id == "procedural/pedestrian_crossing/6591"
    assert generate("pedestrian_crossing", 6591).agents.tobytes() == s.agents.tobytes()  # same seed, same scene
