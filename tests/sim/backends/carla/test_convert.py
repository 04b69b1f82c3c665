"""Frame conversions checked against real ``carla.Transform`` objects (offline client maths)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

carla = pytest.importorskip("carla")

from sim.backends.carla import convert  # noqa: E402

coord = st.floats(-1e4, 1e4, allow_nan=False)
angle = st.floats(-math.pi, math.pi, allow_nan=False)


def _ang_close(a: float, b: float, tol: float = 1e-5) -> bool:
    return abs(math.remainder(a - b, 2 * math.pi)) < tol


@settings(max_examples=60, deadline=None)
@given(coord, coord, angle)
def test_round_trip(x, y, yaw):
    tf = convert.to_transform(x, y, yaw, z=0.5)
    assert isinstance(tf, carla.Transform)
    x2, y2, yaw2 = convert.from_transform(tf)
    assert abs(x2 - x) < 1e-3 + 1e-6 * abs(x) and abs(y2 - y) < 1e-3 + 1e-6 * abs(y)
    assert _ang_close(yaw2, yaw, 1e-5) and -math.pi < yaw2 <= math.pi


@settings(max_examples=60, deadline=None)
@given(coord, coord, angle)
def test_carla_forward_and_right_vectors(x, y, yaw):
    """CARLA's own forward vector, read back in our frame, points along yaw; its right vector to our right."""
    tf = convert.to_transform(x, y, yaw)
    fx, fy = convert.from_vector(tf.get_forward_vector())
    assert math.hypot(fx - math.cos(yaw), fy - math.sin(yaw)) < 1e-5
    rx, ry = convert.from_vector(tf.get_right_vector())
    assert math.hypot(rx - math.sin(yaw), ry + math.cos(yaw)) < 1e-5


@settings(max_examples=40, deadline=None)
@given(st.floats(-100, 100), st.floats(-100, 100), angle, st.floats(-3, 3), st.floats(-3, 3))
def test_local_points_through_carla_transform(x, y, yaw, fwd, right):
    """A point ``fwd`` ahead and ``right`` to the right, placed by CARLA's transform, matches our geometry."""
    tf = convert.to_transform(x, y, yaw)
    px, py, _ = convert.from_location(tf.transform(carla.Location(fwd, right, 0.0)))
    ex = x + fwd * math.cos(yaw) + right * math.sin(yaw)
    ey = y + fwd * math.sin(yaw) - right * math.cos(yaw)
    assert math.hypot(px - ex, py - ey) < 1e-3


def test_left_turn_is_clockwise_in_carla():
    """Yaw +90 deg (north, CCW) is -90 deg in CARLA; CARLA y is flipped."""
    tf = convert.to_transform(1.0, 2.0, math.pi / 2)
    assert tf.rotation.yaw == pytest.approx(-90.0)
    assert tf.location.y == pytest.approx(-2.0)
    assert convert.yaw_from_carla(270.0) == pytest.approx(math.pi / 2)
    assert convert.yaw_from_carla(-180.0) == pytest.approx(math.pi)


@settings(max_examples=40, deadline=None)
@given(st.floats(-50, 50), st.floats(-50, 50))
def test_velocity_round_trip(vx, vy):
    v = convert.to_vector(vx, vy)
    assert isinstance(v, carla.Vector3D) and v.y == pytest.approx(-vy)
    assert convert.from_vector(v) == pytest.approx((vx, vy), abs=1e-4)


def test_box_centre_uses_bbox_offset_and_size():
    tf = convert.to_transform(10.0, 5.0, math.pi / 2)
    bbox = carla.BoundingBox(carla.Location(1.5, 0.0, 0.7), carla.Vector3D(2.4, 1.0, 0.8))
    x, y, yaw = convert.box_centre(tf, bbox)
    assert convert.box_centre(tf, bbox) == (x, y, yaw)  # carla's transform() works in place: bbox untouched
    assert (x, y) == pytest.approx((10.0, 6.5), abs=1e-4)  # 1.5 m ahead of the origin, heading north
    assert yaw == pytest.approx(math.pi / 2)
    assert convert.box_size(bbox) == pytest.approx((4.8, 2.0))
