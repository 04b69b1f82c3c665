"""Frame and unit conversions at the CARLA boundary (the only place they happen).

Project frame: right-handed, x east, y north, yaw counter-clockwise from +x in radians,
wrapped to (-pi, pi]. CARLA: left-handed, ``y_carla = -y``, ``yaw_carla = -degrees(yaw)``
(clockwise, degrees), z up in both. Velocities flip y the same way.
"""

from __future__ import annotations

import math

from sim.backends.carla import require_carla


def wrap(a: float) -> float:
    """Wrap an angle (rad) to (-pi, pi]."""
    w = math.remainder(a, 2 * math.pi)
    return math.pi if w == -math.pi else w


def yaw_to_carla(yaw: float) -> float:
    """Project yaw (rad, CCW) -> CARLA yaw (degrees, CW)."""
    return -math.degrees(yaw)


def yaw_from_carla(yaw_deg: float) -> float:
    """CARLA yaw (degrees, CW) -> project yaw (rad, CCW, wrapped to (-pi, pi])."""
    return wrap(-math.radians(yaw_deg))


def to_location(x: float, y: float, z: float = 0.0):
    """Project point (m) -> ``carla.Location``."""
    carla = require_carla()
    return carla.Location(x=float(x), y=-float(y), z=float(z))


def to_transform(x: float, y: float, yaw: float, z: float = 0.0):
    """Project pose (m, m, rad) -> ``carla.Transform`` (pitch = roll = 0)."""
    carla = require_carla()
    return carla.Transform(to_location(x, y, z), carla.Rotation(pitch=0.0, yaw=yaw_to_carla(yaw), roll=0.0))


def from_location(loc) -> tuple[float, float, float]:
    """``carla.Location`` -> project ``(x, y, z)`` in m."""
    return float(loc.x), -float(loc.y), float(loc.z)


def from_transform(tf) -> tuple[float, float, float]:
    """``carla.Transform`` -> project ``(x, y, yaw)`` (m, m, rad)."""
    return float(tf.location.x), -float(tf.location.y), yaw_from_carla(float(tf.rotation.yaw))


def to_vector(vx: float, vy: float, vz: float = 0.0):
    """Project velocity (m/s) -> ``carla.Vector3D``."""
    carla = require_carla()
    return carla.Vector3D(x=float(vx), y=-float(vy), z=float(vz))


def from_vector(v) -> tuple[float, float]:
    """``carla.Vector3D`` velocity -> project ``(vx, vy)`` in m/s (z dropped)."""
    return float(v.x), -float(v.y)


def box_centre(tf, bbox) -> tuple[float, float, float]:
    """Centre of an actor's bounding box in the project frame.

    Args:
        tf: the actor's ``carla.Transform`` (its origin, which need not be the box centre).
        bbox: the actor's ``carla.BoundingBox`` (``location`` relative to the actor).

    Returns:
        ``(x, y, yaw)`` of the box centre (m, m, rad).
    """
    carla = require_carla()
    off = bbox.location
    c = tf.transform(carla.Location(off.x, off.y, off.z))  # transform() modifies its argument in place
    return float(c.x), -float(c.y), yaw_from_carla(float(tf.rotation.yaw))


def box_size(bbox) -> tuple[float, float]:
    """``carla.BoundingBox`` -> ``(length, width)`` in m (extents are half sizes)."""
    return 2.0 * float(bbox.extent.x), 2.0 * float(bbox.extent.y)
