"""Kinematic bicycle: analytic trajectories, limits, no reversing, inverse model round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.config import ACCEL_MAX, CURVATURE_MAX, SimError
from sim.dynamics import KinematicUpdate, apply_updates, bicycle_step, inverse_bicycle, wrap
from sim.state import SimState

DT = 0.1


def simulate(speed0: float, accels, curvs, yaw0: float = 0.0) -> torch.Tensor:
    """[n + 1, 6] states from (0, 0, yaw0, speed0) under the given action sequences."""
    s = torch.tensor([0.0, 0.0, yaw0, speed0 * math.cos(yaw0), speed0 * math.sin(yaw0), speed0], dtype=torch.float64)
    out = [s]
    for a, k in zip(accels, curvs):
        s = bicycle_step(s[0], s[1], s[2], s[5], torch.tensor(float(a), dtype=torch.float64),
                         torch.tensor(float(k), dtype=torch.float64), DT)
        out.append(s)
    return torch.stack(out)


def test_straight_line_constant_acceleration_is_exact():
    n, v0, a = 30, 5.0, 1.5
    traj = simulate(v0, [a] * n, [0.0] * n, yaw0=0.3)
    t = torch.arange(n + 1, dtype=torch.float64) * DT
    dist = v0 * t + 0.5 * a * t**2
    assert torch.allclose(traj[:, 0], dist * math.cos(0.3), atol=1e-9)
    assert torch.allclose(traj[:, 1], dist * math.sin(0.3), atol=1e-9)
    assert torch.allclose(traj[:, 2], torch.full_like(t, 0.3))
    assert torch.allclose(traj[:, 5], v0 + a * t)
    assert torch.allclose(torch.hypot(traj[:, 3], traj[:, 4]), traj[:, 5])


def test_constant_turn_traces_a_circle_of_radius_one_over_k():
    n, v, k = 200, 8.0, 0.1
    traj = simulate(v, [0.0] * n, [k] * n).numpy()
    # heading grows by k * v * dt per step
    assert np.allclose(np.diff(np.unwrap(traj[:, 2])), k * v * DT, atol=1e-9)
    # the visited points lie on one circle (least-squares fit, independent of the model)
    x, y = traj[:, 0], traj[:, 1]
    a_mat = np.stack([2 * x, 2 * y, np.ones_like(x)], axis=1)
    cx, cy, c = np.linalg.lstsq(a_mat, x**2 + y**2, rcond=None)[0]
    r = math.sqrt(c + cx**2 + cy**2)
    radii = np.hypot(x - cx, y - cy)
    assert radii.std() < 1e-6
    # equal chords v*dt turning k*v*dt each: the circumradius, within 0.1 % of 1 / k
    chord = v * DT
    assert r == pytest.approx(chord / (2 * math.sin(k * v * DT / 2)), rel=1e-6)
    assert r == pytest.approx(1 / k, rel=1e-3)


def test_braking_stops_without_reversing():
    n, v0, a = 40, 10.0, -5.0
    traj = simulate(v0, [a] * n, [0.05] * n)
    speed = traj[:, 5]
    assert torch.all(speed >= 0)
    stop = int(round(v0 / -a / DT))
    assert speed[stop] == pytest.approx(0.0, abs=1e-9)
    # stopping distance v0^2 / (2|a|) along the path, then standing still
    seg = torch.hypot(traj[1:, 0] - traj[:-1, 0], traj[1:, 1] - traj[:-1, 1])
    assert seg[:stop].sum().item() == pytest.approx(v0**2 / (2 * -a), rel=1e-9)
    assert torch.all(seg[stop:] == 0)
    assert torch.all(traj[stop:, 2] == traj[stop, 2])


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0.0, 25.0),
    st.lists(st.tuples(st.floats(-20, 20), st.floats(-1, 1)), min_size=1, max_size=30),
)
def test_never_reverses_and_actions_are_clipped(v0, actions):
    traj = simulate(v0, [a for a, _ in actions], [k for _, k in actions])
    assert torch.all(traj[:, 5] >= 0)
    # each step moves forward along the old heading, never backwards, never faster than the limits allow
    d = traj[1:, :2] - traj[:-1, :2]
    along = d[:, 0] * torch.cos(traj[:-1, 2]) + d[:, 1] * torch.sin(traj[:-1, 2])
    assert torch.all(along >= -1e-9)
    assert torch.all(traj[1:, 5] - traj[:-1, 5] <= ACCEL_MAX * DT + 1e-9)
    dyaw = wrap(traj[1:, 2] - traj[:-1, 2]).abs()
    assert torch.all(dyaw <= CURVATURE_MAX * along + 1e-9)


@settings(max_examples=40, deadline=None)
@given(st.floats(1.0, 20.0), st.lists(st.tuples(st.floats(-3, 3), st.floats(-0.25, 0.25)), min_size=2, max_size=20))
def test_inverse_recovers_actions(v0, actions):
    acc = [a for a, _ in actions]
    cur = [k for _, k in actions]
    traj = simulate(v0, acc, cur)
    speed = traj[:, 5]
    if speed.min() < 0.7:  # the inverse reports curvature 0 below 0.6 m/s; keep well above it
        return
    a_inv, k_inv, infeasible = inverse_bicycle(traj[:, :5], DT)
    assert torch.allclose(a_inv, torch.tensor(acc, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(k_inv, torch.tensor(cur, dtype=torch.float64), atol=1e-6)
    assert not infeasible.any()


def test_inverse_flags_infeasible_steps_and_clips():
    t = torch.zeros(3, 5)
    t[:, 3] = torch.tensor([5.0, 7.0, 7.0])  # +20 m/s^2 then a 1 rad turn over 0.7 m
    t[2, 2] = 1.0
    t[1, 0] = 0.6
    t[2, 0] = 1.3
    a, k, bad = inverse_bicycle(t, DT)
    assert bad.tolist() == [True, True]
    assert a[0].item() == ACCEL_MAX
    assert k[1].item() == pytest.approx(CURVATURE_MAX)


def test_wrap_range():
    a = torch.tensor([-math.pi, math.pi, 3 * math.pi, -3 * math.pi + 0.1, 0.0])
    w = wrap(a)
    assert torch.all(w > -math.pi) and torch.all(w <= math.pi)
    assert torch.allclose(torch.cos(w), torch.cos(a), atol=1e-6)


def _state(b: int, a: int) -> SimState:
    return SimState(kin=torch.zeros(b, a, 8), valid=torch.ones(b, a, dtype=torch.bool), t=0,
                    last_action=torch.zeros(b, 2))


def test_apply_updates_writes_kinematics_and_sizes():
    s = _state(2, 3)
    ego = KinematicUpdate(torch.full((2, 1, 6), 1.0), first=0)
    oth = KinematicUpdate(torch.full((2, 2, 6), 2.0), first=1)
    sizes = torch.tensor([4.0, 2.0]).expand(2, 3, 2)
    n = apply_updates(s, [ego, oth], sizes, torch.zeros(2, 3, dtype=torch.bool), t=1)
    assert n.t == 1 and not n.valid.any()
    assert torch.all(n.agents[:, 0, :5] == 1) and torch.all(n.speed[:, 0] == 1)
    assert torch.all(n.agents[:, 1:, :5] == 2) and torch.all(n.length == 4) and torch.all(n.width == 2)


def test_apply_updates_over_a_base_overwrites_only_the_updated_rows():
    s = _state(2, 3)
    base = torch.arange(2 * 3 * 8, dtype=torch.float32).view(2, 3, 8)  # the log's next state, sizes included
    ego = KinematicUpdate(torch.full((2, 1, 6), -1.0), first=0)
    n = apply_updates(s, [ego], torch.zeros(2, 3, 2), s.valid, base=base, t=1)
    assert torch.all(n.agents[:, 0, :5] == -1) and torch.all(n.speed[:, 0] == -1)
    assert torch.equal(n.kin[:, 0, 5:7], base[:, 0, 5:7])  # the ego's sizes come from the base
    assert torch.equal(n.kin[:, 1:], base[:, 1:])  # the other agents are the base's
    assert base[0, 0, 0] == 0  # the base itself is not written


def test_apply_updates_rejects_gaps():
    s = _state(1, 3)
    with pytest.raises(SimError, match="starts at agent 2"):
        apply_updates(s, [KinematicUpdate(torch.zeros(1, 1, 6)), KinematicUpdate(torch.zeros(1, 1, 6), first=2)],
                      torch.ones(1, 3, 2), s.valid)
    with pytest.raises(SimError, match="cover 1 agents"):
        apply_updates(s, [KinematicUpdate(torch.zeros(1, 1, 6))], torch.ones(1, 3, 2), s.valid)
