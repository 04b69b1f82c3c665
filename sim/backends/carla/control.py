"""Map the waypoint controller's output (accel m/s^2, curvature 1/m) to ``carla.VehicleControl``.

The project's controller (pure pursuit + speed PID, :mod:`sim.controller`) turns waypoints into
``(accel, curvature)`` for the kinematic bicycle. CARLA's vehicles take throttle, brake and a
normalised steer instead. This module is that last step:

- steer: road-wheel angle ``delta = atan(wheelbase * curvature)``; CARLA's positive steer turns
  RIGHT while positive curvature turns LEFT, so ``steer = -delta / max_steer_angle``, clipped to
  ``[-steer_limit, steer_limit]`` and rate limited per step.
- throttle / brake: the commanded acceleration plus a proportional correction towards the
  speed the command would have produced (so a sluggish vehicle catches up), split into
  ``throttle = a / throttle_accel`` (clipped to ``max_throttle``) or ``brake = -a / brake_decel``;
  a hold brake keeps a stopped vehicle still when the command is not to accelerate.

Stateful (previous steer, reference speed): one :class:`ControlMapper` per ego, :meth:`reset` at
the start of each scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.backends.carla import require_carla
from sim.config import WHEELBASE


@dataclass(frozen=True)
class ControlConfig:
    """Settings of the accel/curvature -> throttle/brake/steer mapping.

    Attributes:
        wheelbase: m, the bicycle model's wheelbase (the project's :data:`sim.config.WHEELBASE`).
        max_steer_angle: rad, road-wheel angle at ``|steer| = 1`` (take it from the vehicle's
            physics control: ``max(w.max_steer_angle for front wheels)`` in degrees, converted).
        steer_limit: largest ``|steer|`` sent (CARLA accepts [-1, 1]).
        steer_rate: largest change of ``steer`` per step.
        throttle_accel: m/s^2 of acceleration per unit throttle (feed-forward gain).
        brake_decel: m/s^2 of deceleration per unit brake.
        max_throttle: largest throttle sent.
        max_brake: largest brake sent.
        speed_gain: 1/s, proportional correction of acceleration per m/s of speed error.
        max_speed_error: m/s, the reference speed is kept within this of the measured speed.
        hold_speed: m/s, below this a non-positive command applies ``hold_brake``.
        hold_brake: brake used to hold a stopped vehicle.
    """

    wheelbase: float = WHEELBASE
    max_steer_angle: float = math.radians(70.0)
    steer_limit: float = 1.0
    steer_rate: float = 0.2
    throttle_accel: float = 4.0
    brake_decel: float = 8.0
    max_throttle: float = 0.75
    max_brake: float = 1.0
    speed_gain: float = 1.0
    max_speed_error: float = 2.0
    hold_speed: float = 0.3
    hold_brake: float = 0.5

    def __post_init__(self) -> None:
        for name in ("wheelbase", "max_steer_angle", "steer_limit", "steer_rate", "throttle_accel", "brake_decel"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ControlConfig.{name} must be positive, got {getattr(self, name)}")
        if not (0 < self.steer_limit <= 1 and 0 < self.max_throttle <= 1 and 0 < self.max_brake <= 1):
            raise ValueError("ControlConfig: steer_limit, max_throttle and max_brake must lie in (0, 1]")


@dataclass(frozen=True)
class Command:
    """One control command in CARLA's units: throttle [0, 1], steer [-1, 1] (positive = right), brake [0, 1]."""

    throttle: float
    steer: float
    brake: float

    def to_vehicle_control(self):
        """The equivalent ``carla.VehicleControl`` (forward gear, no hand brake)."""
        carla = require_carla()
        return carla.VehicleControl(
            throttle=self.throttle, steer=self.steer, brake=self.brake, hand_brake=False, reverse=False
        )


def steer_from_curvature(curvature: float, cfg: ControlConfig) -> float:
    """Unclipped CARLA steer for a path curvature (1/m, positive = left): ``-atan(L k) / max_steer_angle``."""
    return -math.atan(cfg.wheelbase * curvature) / cfg.max_steer_angle


def curvature_from_steer(steer: float, cfg: ControlConfig) -> float:
    """Inverse of :func:`steer_from_curvature` (1/m) for ``|steer * max_steer_angle| < pi / 2``."""
    return math.tan(-steer * cfg.max_steer_angle) / cfg.wheelbase


class ControlMapper:
    """Stateful accel/curvature -> :class:`Command` mapping for one vehicle (see the module docstring)."""

    def __init__(self, cfg: ControlConfig | None = None, dt: float = 0.1) -> None:
        if not dt > 0:
            raise ValueError(f"dt must be positive, got {dt}")
        self.cfg = cfg or ControlConfig()
        self.dt = dt
        self._steer = 0.0
        self._v_ref = 0.0

    def reset(self, speed: float, steer: float = 0.0) -> None:
        """Start a new scene at measured ``speed`` (m/s) with the wheels at ``steer``."""
        self._v_ref = max(0.0, float(speed))
        self._steer = float(steer)

    def __call__(self, accel: float, curvature: float, speed: float) -> Command:
        """Map one step's command.

        Args:
            accel: commanded longitudinal acceleration, m/s^2.
            curvature: commanded path curvature, 1/m (positive turns left).
            speed: the vehicle's measured forward speed, m/s.

        Returns:
            The :class:`Command` to apply for this step.
        """
        c = self.cfg
        target = max(-c.steer_limit, min(c.steer_limit, steer_from_curvature(curvature, c)))
        steer = max(self._steer - c.steer_rate, min(self._steer + c.steer_rate, target))
        self._steer = steer

        v = max(0.0, float(speed))
        self._v_ref = max(v - c.max_speed_error, min(v + c.max_speed_error, self._v_ref))
        a = float(accel) + c.speed_gain * (self._v_ref - v)
        self._v_ref = max(0.0, self._v_ref + float(accel) * self.dt)

        if v < c.hold_speed and accel <= 0.0:
            return Command(0.0, steer, min(c.max_brake, max(c.hold_brake, -a / c.brake_decel)))
        if a >= 0.0:
            return Command(min(c.max_throttle, a / c.throttle_accel), steer, 0.0)
        return Command(0.0, steer, min(c.max_brake, -a / c.brake_decel))
