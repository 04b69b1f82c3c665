"""Mapping (accel, curvature) -> throttle / brake / steer, and its conversion to ``carla.VehicleControl``."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.backends.carla.control import (
    Command,
    ControlConfig,
    ControlMapper,
    curvature_from_steer,
    steer_from_curvature,
)
from sim.config import CURVATURE_MAX


def test_left_curvature_gives_negative_steer():
    cfg = ControlConfig()
    assert steer_from_curvature(0.1, cfg) < 0 < steer_from_curvature(-0.1, cfg)
    assert steer_from_curvature(0.0, cfg) == 0.0


@settings(max_examples=80, deadline=None)
@given(st.floats(-CURVATURE_MAX, CURVATURE_MAX), st.floats(0.3, 1.4))
def test_steer_curvature_inverse(k, max_angle):
    cfg = ControlConfig(max_steer_angle=max_angle)
    assert curvature_from_steer(steer_from_curvature(k, cfg), cfg) == pytest.approx(k, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-20, 20), st.floats(-5, 5), st.floats(0, 40)), min_size=1, max_size=30),
    st.floats(0.2, 1.0),
    st.floats(0.05, 0.5),
)
def test_outputs_respect_limits(seq, steer_limit, rate):
    cfg = ControlConfig(steer_limit=steer_limit, steer_rate=rate)
    m = ControlMapper(cfg, dt=0.1)
    m.reset(seq[0][2])
    prev = 0.0
    for a, k, v in seq:
        c = m(a, k, v)
        assert abs(c.steer) <= steer_limit + 1e-12
        assert abs(c.steer - prev) <= rate + 1e-12
        assert 0.0 <= c.throttle <= cfg.max_throttle and 0.0 <= c.brake <= cfg.max_brake
        assert c.throttle == 0.0 or c.brake == 0.0
        prev = c.steer


def test_accelerate_and_brake_feed_forward():
    cfg = ControlConfig(speed_gain=0.0)
    m = ControlMapper(cfg)
    m.reset(10.0)
    c = m(2.0, 0.0, 10.0)
    assert c.throttle == pytest.approx(2.0 / cfg.throttle_accel) and c.brake == 0.0
    c = m(-4.0, 0.0, 10.0)
    assert c.brake == pytest.approx(4.0 / cfg.brake_decel) and c.throttle == 0.0


def test_hold_brake_at_standstill():
    cfg = ControlConfig()
    m = ControlMapper(cfg)
    m.reset(0.0)
    c = m(0.0, 0.0, 0.0)
    assert c.throttle == 0.0 and c.brake >= cfg.hold_brake
    assert m(1.0, 0.0, 0.0).throttle > 0.0  # a start is not held back


def test_speed_feedback_closes_the_loop():
    """A plant with half the assumed throttle authority still tracks the commanded speed profile."""
    dt, cfg = 0.1, ControlConfig()
    m = ControlMapper(cfg, dt)
    v, v_cmd = 5.0, 5.0
    m.reset(v)
    for _ in range(100):  # command +1 m/s^2 for 10 s
        c = m(1.0, 0.0, v)
        v += dt * (0.5 * cfg.throttle_accel * c.throttle - cfg.brake_decel * c.brake)
        v_cmd += dt * 1.0
    assert abs(v - v_cmd) < 1.0  # without feedback it would lag by 5 m/s
    m2 = ControlMapper(ControlConfig(speed_gain=0.0), dt)
    v2 = 5.0
    m2.reset(v2)
    for _ in range(100):
        c = m2(1.0, 0.0, v2)
        v2 += dt * (0.5 * cfg.throttle_accel * c.throttle)
    assert v_cmd - v2 > 4.0


def test_steer_tracks_curvature_on_a_bicycle():
    """Feeding the steer into a kinematic bicycle (right-positive steer) reproduces the commanded curvature."""
    cfg = ControlConfig(max_steer_angle=math.radians(70))
    m = ControlMapper(cfg)
    m.reset(8.0)
    for k in (0.05, -0.12, 0.2):
        for _ in range(20):
            c = m(0.0, k, 8.0)
        wheel = -c.steer * cfg.max_steer_angle  # CARLA: positive steer turns right
        assert math.tan(wheel) / cfg.wheelbase == pytest.approx(k, rel=1e-6)


def test_to_vehicle_control():
    carla = pytest.importorskip("carla")
    vc = Command(0.3, -0.25, 0.0).to_vehicle_control()
    assert isinstance(vc, carla.VehicleControl)
    assert (vc.throttle, vc.steer, vc.brake, vc.reverse, vc.hand_brake) == pytest.approx((0.3, -0.25, 0.0, 0, 0))


def test_bad_config():
    with pytest.raises(ValueError, match="steer_limit"):
        ControlConfig(steer_limit=1.5)
