"""Closed-loop metrics on hand-built scenes with known answers (real make_batch, real Rollout)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scenarios.scenario import AgentType, Polylines, RoadMap, Scenario
from sim.batch import make_batch
from sim.config import SimError
from sim.geometry import TTC_NONE
from sim.metrics.registry import REGISTRY, compute_metrics, metric_series
from sim.rollout import Rollout

DT = 0.1
T = 41
INIT = 10
ROAD = np.array([[-50.0, -4.0], [300.0, -4.0], [300.0, 4.0], [-50.0, 4.0]])  # 8 m wide, along x


def _states(x, y, yaw, v, length=4.5, width=2.0) -> np.ndarray:
    """``[T, 7]`` states from per-step arrays (or scalars) of x, y, yaw, speed."""
    x, y, yaw, v = (np.broadcast_to(np.asarray(a, float), (T,)) for a in (x, y, yaw, v))
    return np.stack([x, y, yaw, v * np.cos(yaw), v * np.sin(yaw), np.full(T, length), np.full(T, width)], 1).astype(
        np.float32
    )


def _straight(x0: float, v: float, y: float = 0.0, yaw: float = 0.0) -> np.ndarray:
    t = np.arange(T) * DT
    return _states(x0 + v * t * math.cos(yaw), y + v * t * math.sin(yaw), yaw, v)


def _scene(ego: np.ndarray, others=(), others_valid=None, road=True, route=None, sid="s") -> Scenario:
    agents = np.stack([ego, *others]).astype(np.float32)
    valid = np.ones(agents.shape[:2], bool)
    if others_valid is not None:
        valid[1:] = others_valid
    agents[~valid] = 0.0
    agents[~valid, 5:] = 1.0
    route = np.array([[0.0, 0.0], [100.0, 0.0]]) if route is None else route
    return Scenario(
        id=sid,
        source="test",
        agents=agents,
        valid=valid,
        agent_type=np.full(len(agents), AgentType.VEHICLE, np.int8),
        ego=0,
        map=RoadMap(drivable=Polylines.from_list([ROAD] if road else [])),
        route=np.asarray(route, float),
        dt=DT,
        init_step=INIT,
    ).validate()


def _rollout(scenes, ego_traj=None, agent_model="log"):
    """The batch and a Rollout whose agents replay the log and whose ego follows ``ego_traj`` [B, T, 7]."""
    batch = make_batch(scenes)
    traj = batch.log.clone()
    if ego_traj is not None:
        traj[:, 0, : ego_traj.shape[1]] = torch.as_tensor(np.asarray(ego_traj), dtype=torch.float32)
    ro = Rollout(
        record=traj,
        valid=batch.valid.clone(),
        ego_action=torch.zeros(batch.num_scenes, batch.num_steps, 2),
        obs=None,
        agent_model=agent_model,
        init_step=batch.init_step,
        dt=batch.dt,
    )
    return ro, batch


def _m(scenes, ego_traj=None, agent_model="log"):
    return compute_metrics(*_rollout(scenes, ego_traj, agent_model))


def test_log_replay_is_perfect():
    scene = _scene(_straight(0.0, 10.0), others=[_straight(-30.0, 10.0), _straight(40.0, 10.0, y=-3.0)])
    m = _m([scene])
    assert set(m) == set(REGISTRY)
    assert float(m["ade"][0]) == 0.0 and float(m["fde"][0]) == 0.0
    for k in ("collision", "collision_at_fault", "offroad", "offroad_fraction"):
        assert float(m[k][0]) == 0.0, k
    assert math.isnan(float(m["collision_time"][0]))
    assert float(m["progress"][0]) == pytest.approx(1.0)
    assert float(m["min_ttc"][0]) == pytest.approx(TTC_NONE) and float(m["ttc_ok"][0]) == 1.0
    assert float(m["comfortable"][0]) == 1.0
    assert float(m["score"][0]) == pytest.approx(1.0)
    # route 0..100 m; the logged ego goes from x = 10 m (init_step) to 40 m and so does log replay:
    # an ego that drives its whole log has completed its route (the route runs on past the log)
    assert float(m["route_completion"][0]) == pytest.approx(1.0, abs=1e-4)


def test_head_on_collision_at_known_step():
    # ego x = t m; other from 55.5 m at -10 m/s: centre gap 55.5 - 2 t <= 4.5 first at step 26
    other = _straight(55.5, 10.0, yaw=math.pi)
    other[:, 0] = 55.5 - np.arange(T) * 1.0
    m = _m([_scene(_straight(0.0, 10.0), [other])])
    assert float(m["collision"][0]) == 1.0
    assert float(m["collision_time"][0]) == pytest.approx((26 - INIT) * DT)
    assert float(m["collision_at_fault"][0]) == 1.0
    # at step 25 the gap of 1 m closes at 20 m/s: first projected overlap at 0.1 s; at step 26 the ego is in an
    # at-fault collision, where nuPlan sets TTC to 0 (time_to_collision_within_bound.py)
    ttc = metric_series(*_rollout([_scene(_straight(0.0, 10.0), [other])]))["ttc"][0]
    assert float(ttc[25]) == pytest.approx(0.1) and float(ttc[26]) == 0.0
    assert float(m["min_ttc"][0]) == 0.0
    assert float(m["ttc_ok"][0]) == 0.0
    assert float(m["nuplan_score"][0]) == 0.0
    # the ego is on its log here: NAVSIM's human filter does not hold against it what the recorded driver did
    assert float(m["score"][0]) == 1.0


def test_rear_end_by_log_agent_is_not_at_fault():
    # follower from -14.5 m at 15 m/s: ego x - follower x = 14.5 - 0.5 t <= 4.5 first at step 20
    follower = _straight(-14.5, 15.0)
    scene = _scene(_straight(0.0, 10.0), [follower])
    m = _m([scene], agent_model="log")
    assert float(m["collision"][0]) == 1.0
    assert float(m["collision_time"][0]) == pytest.approx((20 - INIT) * DT)
    assert float(m["collision_at_fault"][0]) == 0.0 and float(m["no_at_fault_collisions"][0]) == 1.0
    # not at fault, and the follower is behind the ego, never a TTC candidate (nuPlan): the full score
    assert float(m["min_ttc"][0]) == pytest.approx(TTC_NONE) and float(m["score"][0]) == pytest.approx(1.0)
    assert float(m["nuplan_score"][0]) == pytest.approx(1.0)  # speed limits unknown: that term dropped
    # a reactive (IDM) agent that hits the ego: counted against the ego
    assert float(_m([scene], agent_model="idm")["collision_at_fault"][0]) == 1.0


def test_ego_rear_ending_a_log_agent_is_at_fault():
    leader = _straight(14.5, 5.0)  # gap 14.5 - 0.5 t <= 4.5 at step 20
    m = _m([_scene(_straight(0.0, 10.0), [leader])])
    assert float(m["collision"][0]) == 1.0 and float(m["collision_at_fault"][0]) == 1.0


def test_invalid_agents_do_not_collide():
    ghost = _straight(0.0, 10.0)  # on top of the ego, but never valid after step 5
    valid = np.zeros((1, T), bool)
    valid[0, :5] = True
    m = _m([_scene(_straight(0.0, 10.0), [ghost], others_valid=valid)])
    assert float(m["collision"][0]) == 0.0 and float(m["min_ttc"][0]) == pytest.approx(TTC_NONE)


def test_offroad_at_known_step():
    log = _straight(0.0, 10.0)
    ego = log.copy()
    t = np.arange(T)
    ego[:, 1] = np.where(t > 20, 0.5 * (t - 20), 0.0)  # drifts left; corner at y + 1 m
    # worst corner y + 1 > 4 + 0.3 from y > 3.3: step 27 on (14 of the 30 controlled steps)
    ro, batch = _rollout([_scene(log)], ego[None])
    m = compute_metrics(ro, batch)
    assert float(m["offroad"][0]) == 1.0
    assert float(m["offroad_fraction"][0]) == pytest.approx(14 / 30)
    assert float(m["score"][0]) == 0.0
    s = metric_series(ro, batch)
    # the grid's cells near the edge hold the distance to boundary samples EDGE_SAMPLE apart: a few mm off a
    # straight edge wherever its cells fall (the lattice follows the scene, not this edge)
    np.testing.assert_allclose(s["offroad_dist"][0, 21:30].numpy(), ego[21:30, 1] + 1.0 - 4.0, atol=6e-3)
    # and without a drivable area the same drive is never offroad
    assert float(_m([_scene(log, road=False)], ego[None])["offroad"][0]) == 0.0


def test_half_progress_ade_fde_route_completion():
    log = _straight(0.0, 10.0)
    ego = log.copy()
    t = np.arange(T)
    ego[:, 0] = np.where(t <= INIT, t * 1.0, INIT + (t - INIT) * 0.5)
    ego[:, 3] = np.where(t <= INIT, 10.0, 5.0)
    m = _m([_scene(log)], ego[None])
    assert float(m["progress"][0]) == pytest.approx(0.5, abs=1e-5)
    gaps = 0.5 * np.arange(1, 31)
    assert float(m["ade"][0]) == pytest.approx(gaps.mean(), abs=1e-4)
    assert float(m["fde"][0]) == pytest.approx(15.0, abs=1e-4)
    assert float(m["route_completion"][0]) == pytest.approx(15.0 / 30.0, abs=1e-4)  # of the log's 30 m
    assert float(m["comfortable"][0]) == 0.0  # the 10 -> 5 m/s step is a hard brake
    # the 2 m floor: an ego that stands still still gets 2 m / 30 m
    still = log.copy()
    still[INIT:, 0] = INIT * 1.0
    still[INIT:, 3] = 0.0
    assert float(_m([_scene(log)], still[None])["progress"][0]) == pytest.approx(2.0 / 30.0, abs=1e-5)


def _savgol_gain(omega: float, window: int) -> float:
    """Gain of the quadratic Savitzky-Golay derivative over ``window`` steps (slope k / sum k^2) at ``omega`` rad/s."""
    half = window // 2
    theta = omega * DT
    return sum(2 * k * math.sin(k * theta) for k in range(1, half + 1)) / (
        theta * 2 * sum(k * k for k in range(1, half + 1))
    )


def test_accel_and_jerk_follow_the_documented_filters():
    # a = sin(pi t): accel seen through the 7-step filter, jerk through the 7- and the 15-step filters
    t = np.arange(T) * DT
    v = 10.0 - np.cos(math.pi * t) / math.pi
    x = 10.0 * t - np.sin(math.pi * t) / math.pi**2
    ro, batch = _rollout([_scene(_states(x, 0.0, 0.0, v))])
    s = metric_series(ro, batch)
    g7, g15 = _savgol_gain(math.pi, 7), _savgol_gain(math.pi, 15)
    ctrl = slice(INIT + 1, T - 4)  # away from the end, where the odd reflection is only approximate
    np.testing.assert_allclose(s["accel"][0, ctrl].numpy(), g7 * np.sin(math.pi * t[ctrl]), atol=1e-3)
    ctrl = slice(INIT + 1, T - 11)  # both filters' half windows
    np.testing.assert_allclose(s["jerk"][0, ctrl].numpy(), g7 * g15 * math.pi * np.cos(math.pi * t[ctrl]), atol=1e-3)
    assert float(compute_metrics(ro, batch)["comfortable"][0]) == 1.0


@pytest.mark.parametrize(("a_before", "a_after", "comfortable"), [(1.0, -2.0, True), (2.0, -3.8, False)])
def test_jerk_outside_bounds(a_before, a_after, comfortable):
    # acceleration switches at step 25; both levels are within [-4.05, 2.40] but a 5.8 m/s^2 switch
    # is a sustained jerk (about 5.8 m/s^3 through the 1.5 s filter), a 3 m/s^2 one is not
    acc = np.where(np.arange(T) < 25, a_before, a_after)
    v = 12.0 + np.concatenate([[0.0], np.cumsum(acc[:-1] * DT)])
    x = np.concatenate([[0.0], np.cumsum((v[:-1] + v[1:]) / 2 * DT)])
    ro, batch = _rollout([_scene(_states(x, 0.0, 0.0, v))])
    s = metric_series(ro, batch)
    ctrl = slice(INIT + 1, T)
    accel, jerk = s["accel"][0, ctrl].numpy(), s["jerk"][0, ctrl].numpy()
    assert accel.min() >= -4.05 and accel.max() <= 2.40
    np.testing.assert_allclose(accel[: 25 - 4 - INIT], a_before, atol=1e-4)  # exact on linear speed
    assert (np.abs(jerk).max() <= 4.13) == comfortable
    assert float(compute_metrics(ro, batch)["comfortable"][0]) == float(comfortable)


@pytest.mark.parametrize(("speed", "comfortable"), [(5.0, True), (12.0, False)])
def test_yaw_rate_and_lateral_accel_on_a_circle(speed, comfortable):
    # circle at 0.5 rad/s through the +-pi wrap: lat accel = 0.5 speed (2.5 ok, 6 > 4.89)
    t = np.arange(T) * DT
    yaw = (np.pi - 1.0 + 0.5 * t + np.pi) % (2 * np.pi) - np.pi
    r = speed / 0.5
    x, y = r * np.sin(yaw), -r * np.cos(yaw)
    ro, batch = _rollout([_scene(_states(x, y, yaw, speed), road=False)])
    s = metric_series(ro, batch)
    np.testing.assert_allclose(s["yaw_rate"][0, INIT + 1 :].numpy(), 0.5, atol=1e-3)
    np.testing.assert_allclose(s["lat_accel"][0, INIT + 1 :].numpy(), 0.5 * speed, atol=1e-2)
    assert float(compute_metrics(ro, batch)["comfortable"][0]) == float(comfortable)


def test_batch_composition_and_padding_do_not_change_results():
    short = _scene(_straight(0.0, 10.0)[:31], [_straight(20.0, 5.0)[:31]], sid="short")
    follower = _scene(_straight(0.0, 10.0), [_straight(-14.5, 15.0), _straight(30.0, 8.0, y=-3.0)], sid="f")
    head_on = _straight(55.5, 10.0, yaw=math.pi)
    head_on[:, 0] = 55.5 - np.arange(T)
    crash = _scene(_straight(0.0, 10.0), [head_on], sid="crash")
    scenes = [short, follower, crash]
    together = _m(scenes)
    for i, s in enumerate(scenes):
        alone = _m([s])
        for k, v in together.items():
            torch.testing.assert_close(v[i : i + 1], alone[k], equal_nan=True, msg=f"{s.id}: {k}")


def test_metric_series_shapes_and_names():
    ro, batch = _rollout([_scene(_straight(0.0, 10.0), [_straight(30.0, 8.0)])])
    s = metric_series(ro, batch)
    for k in ("collision", "offroad_dist", "route_s", "log_dist", "accel", "jerk", "lat_accel", "yaw_rate", "ttc"):
        assert s[k].shape == (1, T), k
    assert s["collision"].dtype == torch.bool
    np.testing.assert_allclose(s["route_s"][0].numpy(), np.arange(T) * 1.0, atol=1e-4)
    assert set(metric_series(ro, batch, names=("log_dist",))) == {"log_dist", "controlled"}
    with pytest.raises(SimError, match="unknown series"):
        metric_series(ro, batch, names=("nope",))


def test_a_rollout_of_another_batch_is_refused():
    ro, _ = _rollout([_scene(_straight(0.0, 10.0), [_straight(30.0, 8.0)])])
    other = make_batch([_scene(_straight(0.0, 10.0)[:31])])  # 31 steps, not 41
    with pytest.raises(SimError, match="does not match the batch"):
        compute_metrics(ro, other)


def _check_log_replay(scenes):
    from sim.rollout import rollout

    batch = make_batch(scenes)
    ro = rollout(batch, None)
    m = compute_metrics(ro, batch)
    ids = np.array(batch.ids)
    for name, want in (("ade", 0.0), ("fde", 0.0), ("collision", 0.0), ("offroad", 0.0), ("progress", 1.0)):
        bad = ~np.isclose(m[name].numpy(), want, atol=1e-5)
        assert not bad.any(), f"{name}: {ids[bad].tolist()} {m[name][torch.from_numpy(bad)].tolist()}"
    assert torch.isnan(m["collision_time"]).all()
    return m


def test_log_replay_on_every_procedural_family():
    from scenarios.procedural import FAMILY_NAMES, generate

    m = _check_log_replay([generate(f, 3) for f in FAMILY_NAMES])
    # the generator's experts drive smoothly and keep their distance
    assert m["comfortable"].min() == 1.0 and m["ttc_ok"].min() == 1.0


@pytest.mark.data
@pytest.mark.slow
def test_log_replay_on_recorded_samples(shared_data):
    from scenarios.formats import load_any

    scenes = [s for sub in ("waymo_json", "scenarionet", "commonroad") for s in load_any(shared_data / sub)]
    by_init: dict[int, list[Scenario]] = {}
    for s in scenes:
        by_init.setdefault(s.init_step, []).append(s)
    for group in by_init.values():
        _check_log_replay(group)


def _moved(scene: Scenario, yaw: float, shift: tuple[float, float]) -> Scenario:
    """The same scene rotated by ``yaw`` about the origin, then shifted."""
    import dataclasses

    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, -s], [s, c]])

    def pts(p):
        return p @ rot.T + np.asarray(shift)

    agents = scene.agents.copy()
    agents[..., :2] = pts(agents[..., :2].astype(np.float64))
    agents[..., 2] = (agents[..., 2] + yaw + math.pi) % (2 * math.pi) - math.pi
    agents[..., 3:5] = agents[..., 3:5] @ rot.T.astype(np.float32)
    agents[~scene.valid] = scene.agents[~scene.valid]
    lines = {
        f: Polylines(pts(getattr(scene.map, f).points), getattr(scene.map, f).offsets) for f in RoadMap.POLYLINE_FIELDS
    }
    return dataclasses.replace(
        scene, agents=agents, route=pts(scene.route), map=dataclasses.replace(scene.map, **lines)
    ).validate()


def _weave(ro: Rollout, batch) -> Rollout:
    """The log replay with the ego weaving sideways (to cross the road edge and touch neighbours)."""
    import dataclasses

    traj = ro.traj.clone()
    t = torch.arange(traj.shape[2], dtype=torch.float32)
    side = torch.where(t > batch.init_step, 3.5 * torch.sin((t - batch.init_step) * 0.08), torch.zeros_like(t))
    yaw = traj[:, 0, :, 2]
    traj[:, 0, :, 0] -= side * torch.sin(yaw)
    traj[:, 0, :, 1] += side * torch.cos(yaw)
    return dataclasses.replace(ro, record=traj, ego_row=None)


@pytest.mark.parametrize("yaw", [0.7, -2.5])
def test_metrics_do_not_depend_on_the_world_frame(yaw):
    from scenarios.procedural import FAMILY_NAMES, generate
    from sim.rollout import rollout

    scenes = [generate(f, 11) for f in FAMILY_NAMES]
    moved = [_moved(s, yaw, (1234.5, -987.6)) for s in scenes]
    out = []
    for group in (scenes, moved):
        batch = make_batch(group)
        ro = _weave(rollout(batch, None), batch)
        out.append((compute_metrics(ro, batch), metric_series(ro, batch)))
    (m0, s0), (m1, s1) = out
    assert m0["offroad"].sum() > 0 and m0["ade"].min() > 0  # the weave does leave the road somewhere
    ctrl = s0["controlled"]
    # the grids are laid out in each scene's own frame (cells fall differently); bilinear interpolation
    # keeps each within res / sqrt(2) of the true distance, and is exact near straight road edges
    d0, d1 = s0["offroad_dist"][ctrl], s1["offroad_dist"][ctrl]
    assert (d1 - d0).abs().max() < 2 * 0.5 / math.sqrt(2)
    edge = d0 > -1.0  # away from the ridge of the distance field along the middle of the road
    assert edge.sum() > 20
    # ridges remain outside concave corners (where the merge lane joins: up to 0.18 m there)
    assert ((d1[edge] - d0[edge]).abs() < 0.02).float().mean() > 0.95
    for k in ("route_s", "log_dist", "accel", "yaw_rate"):
        torch.testing.assert_close(s1[k][ctrl], s0[k][ctrl], atol=0.02, rtol=0, msg=k)
    assert torch.equal(s1["collision"], s0["collision"])
    for k in ("ade", "fde", "progress", "route_completion", "min_ttc", "offroad_fraction"):
        torch.testing.assert_close(m1[k], m0[k], atol=0.02, rtol=0, msg=k)
    for k in ("collision", "collision_at_fault", "offroad", "ttc_ok", "comfortable"):
        assert torch.equal(m1[k], m0[k]), k


def test_agents_behind_are_not_ttc_candidates_and_beside_only_out_of_lane():
    """nuPlan's TTC candidates (time_to_collision_within_bound.py): ahead always, beside only while the ego is in
    several lanes (here: more than LANE_KEEP m off its route), behind never."""
    ego = _straight(0.0, 10.0, y=1.5)
    # a car beside the ego (4 m to its left) drifting towards it at 3 m/s, then holding 2.5 m (no contact)
    t = np.arange(T)
    rel = np.clip(4.0 - 0.3 * np.maximum(t - INIT, 0), 2.5, None)
    side = _states(t * 1.0, 1.5 + rel, 0.0, 10.0)
    side[:, 4] = np.where((t >= INIT) & (rel > 2.5), -3.0, 0.0)
    behind = _straight(-9.0, 12.0, y=1.5)  # closes from behind at 2 m/s, 4.5 m gap at the end: TTC < 0.95 s
    behind[:, 0] = np.minimum(behind[:, 0], ego[:, 0] - 5.0)
    in_lane = [[0.0, 1.5], [100.0, 1.5]]
    out_of_lane = [[0.0, 0.0], [100.0, 0.0]]  # the same drive 1.5 m off its route: in several lanes
    got = {}
    for name, route in (("in", in_lane), ("out", out_of_lane)):
        for who, agent in (("side", side), ("behind", behind)):
            got[name, who] = float(_m([_scene(ego, [agent], route=route)])["min_ttc"][0])
    assert got["in", "side"] == pytest.approx(TTC_NONE) and got["in", "behind"] == pytest.approx(TTC_NONE)
    # beside: the last drifting step leaves 0.8 m (2.8 m - two half widths) closing at 3 m/s: overlap at 0.3 s
    assert got["out", "side"] == pytest.approx(0.3, abs=1e-5)
    assert got["out", "behind"] == pytest.approx(TTC_NONE)
    # the same agents ahead of the ego are always candidates
    ahead = behind.copy()
    ahead[:, 0] = ego[:, 0] + (ego[:, 0] - behind[:, 0])
    ahead[:, 3] = 8.0
    assert float(_m([_scene(ego, [ahead], route=in_lane)])["min_ttc"][0]) < TTC_NONE


def test_a_track_the_ego_collided_with_leaves_ttc():
    """A car that rear-ends the ego (not at fault), passes through it and slows down ahead is not a TTC candidate
    after its first contact (nuPlan drops collided tracks); without the contact the same approach would count."""
    t = np.arange(T)
    ego = _straight(0.0, 10.0)
    offset = np.where(t <= 24, -25.0 + 1.5 * t, 11.0 - 0.5 * (t - 24))
    rel_v = np.where(t < 24, 15.0, -5.0)
    other = _states(ego[:, 0] + offset, 0.0, 0.0, 10.0 + rel_v)
    m = _m([_scene(ego, [other])])
    assert float(m["collision"][0]) == 1.0 and float(m["collision_at_fault"][0]) == 0.0
    assert float(m["min_ttc"][0]) == pytest.approx(TTC_NONE) and float(m["score"][0]) == pytest.approx(1.0)
    # the same agent appearing only once it is ahead (no contact before): TTC counts its approach
    late = (t >= 24)[None]
    assert float(_m([_scene(ego, [other], others_valid=late)])["min_ttc"][0]) < 0.95


def _scene_typed(ego, others, types):
    s = _scene(ego, others)
    import dataclasses

    return dataclasses.replace(s, agent_type=np.array([AgentType.VEHICLE, *types], np.int8)).validate()


@pytest.mark.parametrize(
    ("types", "multiplier", "nuplan"),
    [
        ((AgentType.OTHER,), 0.5, 0.5),
        ((AgentType.VEHICLE,), 0.0, 0.0),
        ((AgentType.PEDESTRIAN,), 0.0, 0.0),
        ((AgentType.CYCLIST,), 0.0, 0.0),
        ((AgentType.OTHER, AgentType.OTHER), 0.5, 0.0),
        ((AgentType.OTHER, AgentType.VEHICLE), 0.0, 0.0),
    ],
)
def test_at_fault_collisions_with_objects_count_half(types, multiplier, nuplan):
    """NAVSIM's NC (pdm_scorer.py): 0 for a vehicle, pedestrian or cyclist, 0.5 for objects only (the minimum over
    hits). nuPlan's (no_ego_at_fault_collisions.py compute_score): max(0, 1 - n / 2) for n objects, 0 for a road
    user: a second object makes it 0."""
    ego = _straight(0.0, 10.0)
    still = [_states(25.0 + 3.0 * i, 0.0, 0.0, 0.0, length=0.5, width=3.0) for i in range(len(types))]
    m = _m([_scene_typed(ego, still, types)])
    assert float(m["collision_at_fault"][0]) == 1.0
    assert float(m["no_at_fault_collisions"][0]) == multiplier
    # nuPlan's score (no human filter; speed limits unknown here: that term is dropped with its weight)
    weighted = (5 * float(m["progress"][0]) + 5 * float(m["ttc_ok"][0]) + 2 * float(m["comfortable"][0])) / 12
    assert float(m["nuplan_score"][0]) == pytest.approx(nuplan * weighted)
    # a collision that is not the ego's fault costs nothing, whatever was hit
    follower = _straight(-14.5, 15.0)
    m = _m([_scene_typed(ego, [follower], (types[0],))])
    assert float(m["collision"][0]) == 1.0 and float(m["no_at_fault_collisions"][0]) == 1.0


def _yaw_weave(amplitude: float, omega: float, speed: float) -> np.ndarray:
    """An ego whose heading swings ``amplitude sin(omega t)`` at constant ``speed``, positions integrated."""
    t = np.arange(T) * DT
    yaw = amplitude * np.sin(omega * t)
    x = np.concatenate([[0.0], np.cumsum(speed * np.cos(yaw[:-1]) * DT)])
    y = np.concatenate([[0.0], np.cumsum(speed * np.sin(yaw[:-1]) * DT)])
    return _states(x, y, yaw, speed)


@pytest.mark.parametrize(("amplitude", "comfortable"), [(0.15, False), (0.05, True)])
def test_yaw_acceleration_bound(amplitude, comfortable):
    """nuPlan's yaw acceleration (ego_yaw_acceleration.py): the cubic 5-step Savitzky-Golay second derivative of
    the unwrapped heading, checked against scipy's savgol_filter; the weave's yaw rate, lateral acceleration and
    jerks stay within their bounds, so the yaw acceleration alone decides."""
    from scipy.signal import savgol_filter

    ego = _yaw_weave(amplitude, 4.0, 2.0)  # yaw rate <= 4 A, yaw accel <= 16 A (2.4 or 0.8 rad/s^2)
    ro, batch = _rollout([_scene(ego, road=False, route=ego[:, :2].astype(float))])
    s = metric_series(ro, batch)
    want = savgol_filter(ego[:, 2].astype(float), 5, 3, deriv=2, delta=DT)
    inner = slice(INIT + 1, T - 2)
    np.testing.assert_allclose(s["yaw_accel"][0, inner].numpy(), want[inner], atol=1e-3)
    ctrl = slice(INIT + 1, T)
    assert s["yaw_rate"][0, ctrl].abs().max() <= 0.95 and s["lat_accel"][0, ctrl].abs().max() <= 4.89
    assert s["jerk"][0, ctrl].abs().max() <= 4.13 and s["jerk_magnitude"][0, ctrl].abs().max() <= 8.37
    assert (float(s["yaw_accel"][0, ctrl].abs().max()) <= 1.93) == comfortable
    assert float(compute_metrics(ro, batch)["comfortable"][0]) == float(comfortable)


def test_jerk_magnitude_is_the_derivative_of_the_acceleration_magnitude():
    """nuPlan's ego_jerk.py (acceleration_coordinate="magnitude"): the 15-step quadratic Savitzky-Golay
    derivative of hypot(long. accel, lat. accel), checked against scipy's savgol_filter away from the ends."""
    from scipy.signal import savgol_filter

    t = np.arange(T) * DT
    ego = _yaw_weave(0.08, 2.0, 12.0)
    ego[:, 3:5] *= (1.0 + 0.1 * np.sin(3.0 * t))[:, None]  # speed varies too
    ro, batch = _rollout([_scene(ego, road=False, route=ego[:, :2].astype(float))])
    s = metric_series(ro, batch)
    mag = np.hypot(s["accel"][0].numpy().astype(float), s["lat_accel"][0].numpy().astype(float))
    want = savgol_filter(mag, 15, 2, deriv=1, delta=DT)
    inner = slice(7, T - 7)
    np.testing.assert_allclose(s["jerk_magnitude"][0, inner].numpy(), want[inner], atol=1e-3)


@pytest.mark.parametrize("kind", [AgentType.PEDESTRIAN, AgentType.CYCLIST, AgentType.OTHER, AgentType.VEHICLE])
def test_idm_moves_vehicles_only(kind):
    """nuPlan's reactive agents are vehicles: under --agents idm anything else replays its log exactly."""
    import dataclasses

    from sim.rollout import rollout

    t = np.arange(T) * DT
    v = np.maximum(8.0 - 2.0 * t, 0.0)  # a moving agent 3 m beside the ego's lane that brakes to a stop in its log
    mover = _states(-20.0 + np.concatenate([[0.0], np.cumsum((v[1:] + v[:-1]) / 2 * DT)]), -3.0, 0.0, v)
    scene = dataclasses.replace(
        _scene(_straight(0.0, 10.0), [mover]), agent_type=np.array([AgentType.VEHICLE, kind], np.int8)
    ).validate()
    batch = make_batch([scene])
    ro = rollout(batch, None, agents="idm")
    moved = float((ro.traj[0, 1, :, :2] - batch.log[0, 1, :, :2]).norm(dim=-1).max())
    if kind == AgentType.VEHICLE:
        assert moved > 1.0  # with no leader ahead IDM does not brake as the log does
    else:
        assert moved == 0.0


def test_metrics_leave_no_reference_cycle_holding_the_batch():
    """With the cyclic garbage collector off, a batch and its rollout are freed as soon as the caller drops them:
    no metric context (nor its rule context, which the lane metrics make) refers back to itself. A cycle kept every
    evaluated batch's tensors alive until the collector happened to run (a sweep's memory grew window by window)."""
    import gc
    import weakref

    from scenarios.procedural import generate_suite
    from sim.rollout import rollout

    scenes = generate_suite(range(4))
    assert any(s.map is not None and len(s.map.lanes) for s in scenes)  # the lane (rule) metrics run
    gc.collect()
    gc.disable()
    try:
        batch = make_batch(scenes)
        ro = rollout(batch, None)
        m = compute_metrics(ro, batch)
        assert set(m) >= {"traffic_light_compliance", "driving_direction_compliance", "lane_keeping"}
        refs = weakref.ref(batch), weakref.ref(ro)
        del batch, ro, m
        assert [r() is None for r in refs] == [True, True]
    finally:
        gc.enable()


# ----------------------------------------------------------------------------- edge cases as nuPlan's code has them
def test_agent_ahead_is_within_30_degrees_of_the_rear_axle():
    """nuPlan is_agent_ahead (idm/utils.py, 30 deg since devkit v0.4; NAVSIM the same): a centre 25 deg off the
    heading seen from the rear axle is ahead, 35 deg is beside, beyond 150 deg behind."""
    from sim.metrics.ttc import REAR_AXLE_TO_CENTRE, relative_position

    ego = torch.tensor([[0.0, 0.0, 0.0, 10.0, 0.0, 4.5, 2.0]]).repeat(4, 1)
    other = torch.zeros(4, 7)
    for i, deg in enumerate((25.0, 35.0, 145.0, 155.0)):
        other[i, 0] = -REAR_AXLE_TO_CENTRE + 7.0 * math.cos(math.radians(deg))
        other[i, 1] = 7.0 * math.sin(math.radians(deg))
    ahead, behind = relative_position(ego, other)
    assert ahead.tolist() == [True, False, False, False]
    assert behind.tolist() == [False, False, False, True]


def test_ttc_counts_an_agent_25_degrees_ahead_while_in_lane():
    """A still, wide box appearing at step 20 with its centre 25 deg off the ego's heading (from the rear axle), 7 m
    away: the ego (in its lane) closes the 2.13 m gap at 10 m/s, first projected overlap at 0.3 s (nuPlan: ahead)."""
    ego = _straight(0.0, 10.0)
    x_e = float(ego[20, 0])
    rad = math.radians(25.0)
    box = _states(x_e - 1.461 + 7.0 * math.cos(rad), 7.0 * math.sin(rad), 0.0, 0.0, length=1.0, width=4.5)
    only_at_20 = (np.arange(T) == 20)[None]
    m = _m([_scene(ego, [box], others_valid=only_at_20)])
    assert float(m["min_ttc"][0]) == pytest.approx(0.3, abs=1e-5)
    assert float(m["ttc_ok"][0]) == 0.0


@pytest.mark.parametrize(("speed", "ttc"), [(0.005, 3.1), (0.0051, None)])
def test_no_ttc_at_the_stopped_speed(speed, ttc):
    """nuPlan time_to_collision_within_bound.py: no TTC while ego_speed <= 5e-3 m/s (the stopped threshold, <=); an
    oncoming car 10 m ahead at 10 m/s gives a TTC below the bound to an ego moving faster than that."""
    ego = _straight(0.0, speed)
    oncoming = _straight(float(ego[20, 0]) + 10.0 + 1.0 * 10.0 * 2.0, 10.0, yaw=math.pi)
    m = _m([_scene(ego, [oncoming])])
    if ttc is None:
        assert float(m["min_ttc"][0]) < 3.0
    else:
        assert float(m["min_ttc"][0]) == pytest.approx(ttc)


def _alongside(dx: float, dy: float) -> np.ndarray:
    """An agent driving with the ego (10 m/s along x at y = 1.5), its centre ``(dx, dy)`` m from the ego's."""
    return _straight(dx, 10.0, y=1.5 + dy)


@pytest.mark.parametrize(("route_y", "dx", "dy", "at_fault"), [
    (0.0, -3.0, 1.9, 1.0),  # side contact on the rear half, 129 deg from the rear axle: lateral, ego off its lane
    (1.5, -3.0, 1.9, 0.0),  # the same contact with the ego in its lane: lateral, not at fault
    (0.0, -4.4, 0.0, 0.0),  # rear-ended (centre behind the rear axle) while off its lane: rear, never at fault
])
def test_at_fault_rear_is_an_agent_behind_the_rear_axle(route_y, dx, dy, at_fault):
    """nuPlan's _get_collision_type: rear = the agent's centre beyond 150 deg of the ego's heading from its rear axle
    (is_agent_behind), not "touches only the rear half"; any other side contact is lateral, at fault while the ego
    is in several lanes (here more than LANE_KEEP m off its route) or off the drivable area."""
    ego = _straight(0.0, 10.0, y=1.5)
    route = [[0.0, route_y], [100.0, route_y]]
    m = _m([_scene(ego, [_alongside(dx, dy)], route=route)])
    assert float(m["collision"][0]) == 1.0
    assert float(m["collision_at_fault"][0]) == at_fault


def test_an_ego_at_the_stopped_speed_is_stopped():
    """nuPlan: ego speed <= 0.05 m/s is a stopped ego (never at fault), even against a stopped track."""
    ego = _straight(0.0, 0.05)
    box = _states(3.0, 0.0, 0.0, 0.0)  # overlapping the ego's front from step 20 on, when it appears
    late = (np.arange(T) >= 20)[None]
    m = _m([_scene(ego, [box], others_valid=late)])
    assert float(m["collision"][0]) == 1.0 and float(m["collision_at_fault"][0]) == 0.0


@pytest.mark.parametrize(("expert_v", "ego_v", "progress"), [
    (8.0 / 3.0, -1.0, 0.0),  # 3 m backwards against the expert's 8 m: 0 (max(-3, 2) / 8 would be 0.25)
    (0.0, -5.0 / 3.0, 0.0),  # 5 m backwards, the expert stood still: 0, not 2 / 2
    (0.0, 0.0, 1.0),  # neither moved 2 m: 1
    (8.0 / 3.0, -0.5, 0.25),  # 1.5 m backwards (within nuPlan's 2 m of noise): the 2 m floor, 2 / 8
])
def test_progress_backwards_is_zero(expert_v, ego_v, progress):
    """nuPlan ego_progress_along_expert_route.py: ego progress below -2 m -> 0, else min(1, max(ego, 2) / max(expert,
    2)); with EP 0 nuPlan's ego_is_making_progress (EP >= 0.2) zeroes nuplan_score."""
    t = np.arange(T) * DT
    log = _states(expert_v * t, 0.0, 0.0, expert_v)
    x0 = expert_v * INIT * DT
    x = np.where(t <= INIT * DT, expert_v * t, x0 + ego_v * (t - INIT * DT))
    policy = _states(x, 0.0, 0.0, np.where(t <= INIT * DT, expert_v, ego_v))
    m = _m([_scene(log, route=[[-50.0, 0.0], [100.0, 0.0]])], policy[None])
    assert float(m["progress"][0]) == pytest.approx(progress, abs=1e-4)
    if progress < 0.2:
        assert float(m["nuplan_score"][0]) == 0.0


def test_comfort_bounds_are_strict():
    """nuPlan within_bound_metric_base.py: min < value < max; a signal on its bound is not comfortable."""
    from sim.metrics.comfort import (
        ACCEL_BOUNDS,
        JERK_MAGNITUDE_MAX,
        JERK_MAX,
        LAT_ACCEL_MAX,
        YAW_ACCEL_MAX,
        YAW_RATE_MAX,
        within_comfort_bounds,
    )

    inside = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    on = [ACCEL_BOUNDS[1], LAT_ACCEL_MAX, YAW_RATE_MAX, YAW_ACCEL_MAX, JERK_MAX, JERK_MAGNITUDE_MAX]
    assert bool(within_comfort_bounds(*(torch.tensor(v, dtype=torch.float64) for v in inside)))
    for i, bound in enumerate(on):
        for value in (bound, -bound if i else ACCEL_BOUNDS[0]):
            x = list(inside)
            x[i] = value
            assert not bool(within_comfort_bounds(*(torch.tensor(v, dtype=torch.float64) for v in x))), (i, value)
            x[i] = value * 0.999
            assert bool(within_comfort_bounds(*(torch.tensor(v, dtype=torch.float64) for v in x))), (i, value)
