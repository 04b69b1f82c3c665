"""Waypoint controller: look-ahead point (shapely oracle), pure pursuit on circles, speed PID, log tracking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString

from benchmarks.sim_throughput import scene_from_tracks, track
from sim.backends.kinematic import KinematicBackend
from sim.batch import make_batch
from sim.config import NUM_WAYPOINTS, WAYPOINT_STEPS
from sim.controller import WaypointController, point_at_arclength
from sim.expert import expert_waypoints

DT = 0.1
coord = st.floats(-20, 20, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(coord, coord), min_size=NUM_WAYPOINTS, max_size=NUM_WAYPOINTS), st.floats(0, 1))
def test_point_at_arclength_matches_shapely(points, frac):
    pts = np.array([(0.0, 0.0), *points])
    line = LineString(pts)
    if line.length < 1e-3 or np.any(np.linalg.norm(np.diff(pts, axis=0), axis=1) < 1e-3):
        return
    d = frac * line.length
    got = point_at_arclength(torch.tensor(pts[1:], dtype=torch.float64)[None], torch.tensor([d], dtype=torch.float64))
    ref = line.interpolate(d)
    assert got[0].tolist() == pytest.approx([ref.x, ref.y], abs=1e-6)


def test_point_past_the_end_extends_the_last_segment():
    wps = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0], [5.0, 0.0], [5.0, 1.0], [5.0, 2.0],
                         [5.0, 3.0]]])
    p = point_at_arclength(wps, torch.tensor([12.0]))
    assert p[0].tolist() == pytest.approx([5.0, 7.0])
    stop = torch.zeros(1, NUM_WAYPOINTS, 2)
    assert point_at_arclength(stop, torch.tensor([3.0]))[0].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("radius", [8.0, 25.0, -40.0])
def test_pure_pursuit_on_a_circle_returns_its_curvature(radius):
    # waypoints on the circle through the origin tangent to +x, centre (0, radius)
    s = torch.arange(1, NUM_WAYPOINTS + 1, dtype=torch.float32) * 4.0
    th = s / radius
    wps = torch.stack([radius * torch.sin(th), radius * (1 - torch.cos(th))], dim=-1)[None]
    ctrl = WaypointController(DT)
    # look-ahead landing exactly on the 2nd waypoint (on the circle): exact curvature
    chord = abs(2 * radius * math.sin(2.0 / radius))
    cfg = ctrl.cfg
    speed = (2 * chord - cfg.lookahead_min) / cfg.lookahead_time
    _, k = ctrl(wps, torch.tensor([speed]))
    assert k.item() == pytest.approx(1.0 / radius, rel=1e-4)
    # elsewhere: the circle through the look-ahead point on the chords (shapely as the oracle)
    _, k = ctrl(wps, torch.tensor([3.0]))
    p = LineString([(0.0, 0.0), *wps[0].tolist()]).interpolate(cfg.lookahead_min + cfg.lookahead_time * 3.0)
    assert k.item() == pytest.approx(2 * p.y / (p.x**2 + p.y**2), rel=1e-4)


def test_speed_pid_reaches_the_waypoint_speed_and_stops():
    ctrl = WaypointController(DT)
    horizon = WAYPOINT_STEPS * DT
    v = torch.tensor([0.0])
    for target in (12.0, 3.0, 0.0):
        xs = torch.arange(1, NUM_WAYPOINTS + 1, dtype=torch.float32) * target * horizon
        wps = torch.stack([xs, torch.zeros_like(xs)], dim=-1)[None]
        for _ in range(60):
            a, _ = ctrl(wps, v)
            v = (v + a * DT).clamp_min(0)
        assert v.item() == pytest.approx(target, abs=0.05)


def _log_scene(kind: str):
    n_t = 91
    t = np.arange(n_t) * DT
    if kind == "straight":  # accelerate, cruise, brake
        v = np.clip(4 + 1.5 * t, 0, 12) - np.clip(1.5 * (t - 6), 0, None)
        s = np.concatenate([[0], np.cumsum(v[:-1] * DT)])
        return scene_from_tracks([track(s, 0.0, 0.0, v)])
    v, r = 9.0, 25.0 if kind == "left" else -30.0  # constant-radius turn
    th = v * t / r
    return scene_from_tracks([track(r * np.sin(th), r * (1 - np.cos(th)), th, v)])


@pytest.mark.parametrize("kind", ["straight", "left", "right"])
def test_following_the_logs_waypoints_tracks_the_log(kind):
    batch = make_batch([_log_scene(kind)])
    backend = KinematicBackend()
    state = backend.reset(batch)
    ctrl = WaypointController(batch.dt)
    errs = []
    for t in range(batch.init_step, batch.num_steps - 1):
        wps = expert_waypoints(batch, t, origin=state.xy[:, 0], yaw=state.yaw[:, 0])
        a, k = ctrl(wps, state.speed[:, 0])
        state = backend.step(state, a, k, t)
        errs.append((state.xy[:, 0] - batch.log[:, 0, t + 1, :2]).norm(dim=-1).item())
    errs = np.array(errs)
    assert errs.mean() < 0.15, errs.mean()
    assert errs.max() < 0.4, errs.max()
    # heading follows the log too
    assert abs(math.remainder(state.yaw[0, 0].item() - batch.log[0, 0, -1, 2].item(), 2 * math.pi)) < 0.1
