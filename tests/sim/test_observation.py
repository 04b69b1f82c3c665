"""Observation layout and frame (rigid-motion invariance, known geometry, no leak) and expert waypoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks.sim_throughput import scene_from_tracks, track
from sim import observation as O
from sim.backends.kinematic import KinematicBackend
from sim.batch import make_batch
from sim.config import NUM_WAYPOINTS, WAYPOINT_STEPS
from sim.expert import collect_expert, expert_waypoints
from sim.road_grid import road_distance

DT = 0.1
ROAD = np.array([[-50.0, -5.0], [150.0, -5.0], [150.0, 8.0], [-50.0, 8.0]])


def _tracks(n_t: int = 41):
    t = np.arange(n_t) * DT
    ego = track(10 * t, 0.0, 0.0, 10.0)
    ahead = track(30 + 5 * t, 3.0, 0.3, 5.0, length=5.0, width=2.0)
    behind = track(-12 + 10 * t, 0.0, 0.0, 10.0)
    far = track(500 + t, 0.0, 0.0, 1.0)
    return [ego, ahead, behind, far]


def _obs(scene) -> torch.Tensor:
    b = make_batch([scene])
    return O.observe(KinematicBackend().reset(b), b)[0], b


def _moved(tracks, road, dx, dy, rot):
    c, s = math.cos(rot), math.sin(rot)
    out = []
    for tr in tracks:
        tr = tr.copy()
        x, y = tr[:, 0].copy(), tr[:, 1].copy()
        tr[:, 0], tr[:, 1] = c * x - s * y + dx, s * x + c * y + dy
        tr[:, 2] = np.remainder(tr[:, 2] + rot + math.pi, 2 * math.pi) - math.pi
        vx, vy = tr[:, 3].copy(), tr[:, 4].copy()
        tr[:, 3], tr[:, 4] = c * vx - s * vy, s * vx + c * vy
        out.append(tr)
    r = np.stack([c * road[:, 0] - s * road[:, 1] + dx, s * road[:, 0] + c * road[:, 1] + dy], 1)
    return out, r


def test_layout_and_known_values():
    obs, b = _obs(scene_from_tracks(_tracks(), drivable=[ROAD]))
    assert obs.shape == (O.OBS_DIM,) and obs.dtype == torch.float32 and torch.isfinite(obs).all()
    assert O.OBS_DIM == 131 and isinstance(O.OBS_VERSION, int)
    assert obs[0].item() == pytest.approx(1.0)  # 10 m/s / 10
    route = obs[O.EGO_DIM : O.EGO_DIM + O.ROUTE_DIM].view(-1, 2) * O.POS_SCALE
    assert route[:, 0].tolist() == pytest.approx([3.0 * (k + 1) for k in range(O.NUM_ROUTE_POINTS)], abs=1e-3)
    assert route[:, 1].abs().max().item() < 1e-4
    ag = obs[O.EGO_DIM + O.ROUTE_DIM : O.EGO_DIM + O.ROUTE_DIM + O.AGENTS_DIM].view(O.NUM_NEAREST, -1)
    # nearest first: "behind" (12 m), then "ahead" (25 m ahead, 3 m left), then "far"
    assert ag[0, :2].tolist() == pytest.approx([-12 / 30, 0.0], abs=1e-5)
    assert ag[1].tolist() == pytest.approx(
        [25 / 30, 3 / 30, math.cos(0.3), math.sin(0.3), (5 * math.cos(0.3) - 10) / 10, 5 * math.sin(0.3) / 10,
         1.0, 0.8, 1.0], abs=1e-5)
    assert ag[2, 8].item() == 1.0 and ag[3:].abs().sum().item() == 0.0  # absent slots are zeros
    road = obs[-O.ROAD_DIM : -1]
    probes = torch.tensor([[x, y] for x in O.PROBE_X for y in O.PROBE_Y])[None] + b.log[:, 0, 10, None, :2]
    ref = road_distance(b.road, probes, exact=False)[0].clamp(-5, 5) / 5  # probes in world = ego frame here (yaw 0)
    assert torch.allclose(road, ref, atol=1e-4)
    assert obs[-1].item() == 1.0
    assert road[O.PROBE_X.index(0.0) * len(O.PROBE_Y) + O.PROBE_Y.index(0.0)].item() == pytest.approx(-1.0)


@pytest.mark.parametrize("dx, dy, rot", [(100.0, -40.0, 1.0), (-7.0, 3.0, -2.5), (0.0, 0.0, math.pi)])
def test_observation_is_invariant_to_rigid_motion(dx, dy, rot):
    base, _ = _obs(scene_from_tracks(_tracks(), drivable=[ROAD]))
    tracks, road = _moved(_tracks(), ROAD, dx, dy, rot)
    moved, _ = _obs(scene_from_tracks(tracks, drivable=[road]))
    n = O.OBS_DIM - O.ROAD_DIM
    assert torch.allclose(moved[:n], base[:n], atol=2e-4)
    assert torch.allclose(moved[n:], base[n:], atol=0.03)  # road grid is re-rasterised in the new pose


def test_future_of_the_log_does_not_leak():
    a = _tracks()
    b = [tr.copy() for tr in a]
    b[0][11:, 1] += np.linspace(0, 8, len(b[0]) - 11)  # the ego's logged future swerves left
    route = a[0][:, :2].astype(np.float64)
    oa, _ = _obs(scene_from_tracks(a, drivable=[ROAD], route=route))
    ob, _ = _obs(scene_from_tracks(b, drivable=[ROAD], route=route))
    n = O.OBS_DIM - O.ROAD_DIM
    assert torch.equal(oa[:n], ob[:n])
    # the road grid's extent follows the logged path (sim.road_grid): same road, rasterised apart
    assert torch.allclose(oa[n:], ob[n:], atol=0.1)  # within one 0.5 m cell deep inside the road


@pytest.mark.parametrize("rot", [0.0, 0.6, -2.0])
def test_road_probe_matches_geometry_road_distance(rot):
    tracks, road = _moved(_tracks(), ROAD, 3.0, -2.0, rot)
    b = make_batch([scene_from_tracks(tracks, drivable=[road])])
    gen = torch.Generator().manual_seed(0)
    pts = b.log[:, 0, 10, None, :2] + (torch.rand(1, 400, 2, generator=gen) - 0.5) * 300  # in and beyond the grid
    ref = road_distance(b.road, pts, exact=False).clamp(-O.ROAD_CLIP, O.ROAD_CLIP)
    assert torch.allclose(O.road_probe(b.road, pts), ref, atol=1e-4)


@pytest.mark.parametrize("rot", [0.0, 0.6, -2.0])
def test_ego_frame_road_probes_equal_the_world_point_lookup(rot):
    # the step's one-affine-map probe lookup against the plain one: ego frame -> world -> road_probe
    tracks, road = _moved(_tracks(), ROAD, 3.0, -2.0, rot)
    b = make_batch([scene_from_tracks(tracks, drivable=[road])] * 64)
    gen = torch.Generator().manual_seed(1)
    exy = b.log[:, 0, 10, :2] + (torch.rand(64, 2, generator=gen) - 0.5) * 400  # on, off and beyond the grid
    eyaw = (torch.rand(64, generator=gen) - 0.5) * 2 * math.pi
    probes = O._probes(exy.device).unsqueeze(0).expand(64, -1, -1)
    ref = O.road_probe(b.road, O.to_world_frame(probes, exy, eyaw))
    got = O.road_probe_ego(b.road, exy, eyaw)
    assert got.shape == (64, len(O.PROBE_X) * len(O.PROBE_Y))
    assert torch.allclose(got, ref, atol=1e-3)
    assert (ref < O.ROAD_CLIP).any() and (ref == O.ROAD_CLIP).any()  # probes both near the road and beyond it


def test_scene_without_road_has_zero_road_features():
    obs, _ = _obs(scene_from_tracks(_tracks()))
    assert obs[-O.ROAD_DIM :].abs().sum().item() == 0.0


def test_expert_waypoints_straight_and_past_the_end():
    n_t = 41
    t = np.arange(n_t) * DT
    yaw = 0.7
    ego = track(3 + 8 * t * math.cos(yaw), -2 + 8 * t * math.sin(yaw), yaw, 8.0)
    b = make_batch([scene_from_tracks([ego])])
    expect = [[8.0 * WAYPOINT_STEPS * DT * (k + 1), 0.0] for k in range(NUM_WAYPOINTS)]
    for t0 in (10, 30, 39):  # 30 and 39 run past the last step (40): extrapolated with the last velocity
        w = expert_waypoints(b, t0)
        assert w.shape == (1, NUM_WAYPOINTS, 2)
        assert torch.allclose(w[0], torch.tensor(expect), atol=1e-3)


def test_expert_waypoints_after_a_scene_ended_continue_from_its_last_pose():
    long = scene_from_tracks([track(np.arange(61) * 1.0, 0.0, 0.0, 10.0)], scene_id="long")
    short = scene_from_tracks([track(np.arange(31) * 1.0, 5.0, 0.0, 10.0)], scene_id="short")
    b = make_batch([long, short])
    w = expert_waypoints(b, 45)[1]  # the short scene ended at step 30: frame at its last pose
    assert torch.allclose(w[:, 0], 15.0 + 5.0 * torch.arange(1, NUM_WAYPOINTS + 1), atol=1e-4)
    assert torch.allclose(w[:, 1], torch.zeros(NUM_WAYPOINTS), atol=1e-4)


def test_expert_waypoints_on_a_turn_are_the_logged_positions():
    n_t = 61
    t = np.arange(n_t) * DT
    r, v = 20.0, 6.0
    th = v * t / r
    b = make_batch([scene_from_tracks([track(r * np.sin(th), r * (1 - np.cos(th)), th, v)])])
    w = expert_waypoints(b, 10)[0]
    th0 = th[10]
    ths = th[10 + WAYPOINT_STEPS * np.arange(1, NUM_WAYPOINTS + 1)] - th0
    ref = np.stack([r * np.sin(ths), r * (1 - np.cos(ths))], 1)  # the arc seen from the pose at step 10
    assert np.allclose(w.numpy(), ref, atol=1e-3)


def test_collect_expert_shapes_and_consistency():
    b = make_batch([scene_from_tracks(_tracks(), drivable=[ROAD])])
    obs, wps = collect_expert(b)
    s = b.num_steps - 1 - b.init_step
    assert obs.shape == (1, s, O.OBS_DIM) and wps.shape == (1, s, NUM_WAYPOINTS, 2)
    assert torch.allclose(wps[:, 5], expert_waypoints(b, b.init_step + 5))
    # the observation at each step is the log's state: ego speed stays 10 m/s, last accel 0
    assert torch.allclose(obs[0, :, 0], torch.ones(s)) and obs[0, :, 1].abs().max() < 1e-4
