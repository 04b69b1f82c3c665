"""Waypoint-following controller: pure pursuit (steering) + speed PID (throttle/brake).

Turns K ego-frame waypoints ``[B, K, 2]`` (spaced ``WAYPOINT_STEPS * dt`` s apart) into the
bicycle model's action (accel m/s^2, curvature 1/m). Batched, no Python loops over scenes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sim.config import WAYPOINT_STEPS
from sim.dynamics import clip_action


@dataclass(frozen=True)
class ControllerConfig:
    """Gains and look-ahead of the waypoint controller.

    Attributes:
        lookahead_min: m, pure-pursuit look-ahead at standstill.
        lookahead_time: s, look-ahead grows by ``speed * lookahead_time``.
        lookahead_max: m.
        kp: 1/s speed gain; None = ``2 / (WAYPOINT_STEPS * dt)``, which reaches the first waypoint at its time
            under constant acceleration.
        ki: 1/s^2 integral gain on the speed error.
        kd: derivative gain (dimensionless) on the speed error.
        integral_limit: m/s, anti-windup bound of the integrated error.
        stop_speed: m/s; targets below this are treated as "stop".
    """

    lookahead_min: float = 3.0
    lookahead_time: float = 0.6
    lookahead_max: float = 20.0
    kp: float | None = None
    ki: float = 0.0
    kd: float = 0.0
    integral_limit: float = 5.0
    stop_speed: float = 0.05


def point_at_arclength(waypoints: Tensor, dist: Tensor) -> Tensor:
    """The point at arc length ``dist`` along the polyline origin -> waypoints.

    Past the end the last segment is extended (a zero-length last segment, a stop, is not).

    Args:
        waypoints: ``[B, K, 2]`` m, ego frame (the polyline starts at the origin).
        dist: ``[B]`` m, >= 0.

    Returns:
        ``[B, 2]`` m.
    """
    pts = torch.cat([torch.zeros_like(waypoints[:, :1]), waypoints], dim=1)  # [B, K+1, 2]
    seg = pts[:, 1:] - pts[:, :-1]  # [B, K, 2]
    seg_len = seg.norm(dim=-1)  # [B, K]
    cum = torch.cumsum(seg_len, dim=1)  # arc length at the end of each segment
    k = seg_len.shape[1]
    idx = torch.searchsorted(cum, dist.unsqueeze(1).contiguous(), right=True).clamp(max=k - 1)  # [B, 1]
    length = seg_len.gather(1, idx)
    frac = ((dist.unsqueeze(1) - (cum.gather(1, idx) - length)) / length.clamp_min(1e-6)).clamp_min(0.0)
    i2 = idx.unsqueeze(-1).expand(-1, -1, 2)
    return (pts.gather(1, i2) + frac.unsqueeze(-1) * seg.gather(1, i2)).squeeze(1)


def pursuit_law(
    waypoints: Tensor, speed: Tensor, kp: float, lookahead: tuple[float, float, float], horizon: float,
    stop_speed: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """The controller's memoryless part: pure-pursuit curvature, the speed error and the P action.

    A pure function of tensors and constants (what ``torch.compile`` compiles, see :mod:`sim.compiled`).

    Args:
        waypoints: float32 ``[B, K, 2]`` ego frame, m (x forward, y left). speed: ``[B]`` m/s.
        kp: 1/s speed gain. lookahead: (min m, time s, max m) of the pure-pursuit look-ahead.
        horizon: s between waypoints. stop_speed: m/s; slower targets mean "stop".

    Returns:
        ``(accel [B], curvature [B], err [B])``: the P action ``kp * err`` and the curvature, both clipped to the
        vehicle limits, and the speed error (target - speed, m/s) for a PID's memory.
    """
    # pure pursuit: circle through the origin, tangent to the heading, through the look-ahead point
    ld = (lookahead[0] + lookahead[1] * speed).clamp(max=lookahead[2])
    p = point_at_arclength(waypoints, ld)
    d2 = p[:, 0] * p[:, 0] + p[:, 1] * p[:, 1]
    curvature = torch.where(d2 > 0.01, 2.0 * p[:, 1] / d2.clamp_min(0.01), 0.0)
    # speed error towards the waypoint-spacing speed
    err = target_speed(waypoints, horizon, stop_speed) - speed
    accel, curvature = clip_action(kp * err, curvature)
    return accel, curvature, err


def target_speed(waypoints: Tensor, horizon: float, stop_speed: float) -> Tensor:
    """``[B]`` m/s: mean speed needed to reach the first waypoint ``[B, K, 2]`` in ``horizon`` s.

    0 where the waypoint is behind the ego or the speed is below ``stop_speed``.
    """
    w0 = waypoints[:, 0]
    v = w0.norm(dim=-1) / horizon
    return torch.where((w0[:, 0] > 0) & (v >= stop_speed), v, 0.0)


PursuitLaw = Callable[..., tuple[Tensor, Tensor, Tensor]]
""":func:`pursuit_law` or a compiled version of it."""


class WaypointController:
    """Pure pursuit + speed PID. Holds the PID memory (``[B]`` per scene) between calls.

    Args:
        dt: s per simulation step.
        config: gains and look-ahead.
        law: :func:`pursuit_law` (default) or a compiled version of it.
    """

    def __init__(self, dt: float, config: ControllerConfig | None = None, law: PursuitLaw | None = None) -> None:
        self.cfg = config or ControllerConfig()
        self.dt = float(dt)
        self.horizon = WAYPOINT_STEPS * self.dt  # s between waypoints
        self.kp = self.cfg.kp if self.cfg.kp is not None else 2.0 / self.horizon
        self.law = pursuit_law if law is None else law
        self._integral: Tensor | None = None
        self._prev_err: Tensor | None = None

    def reset(self) -> None:
        """Forget the PID memory (call at the start of each rollout)."""
        self._integral = None
        self._prev_err = None

    def __call__(self, waypoints: Tensor, speed: Tensor) -> tuple[Tensor, Tensor]:
        """Action for the ego.

        Args:
            waypoints: float32 ``[B, K, 2]`` ego frame, m (x forward, y left).
            speed: ``[B]`` m/s, current ego speed.

        Returns:
            accel ``[B]`` m/s^2 and curvature ``[B]`` 1/m, clipped to the vehicle limits.
        """
        cfg = self.cfg
        lookahead = (cfg.lookahead_min, cfg.lookahead_time, cfg.lookahead_max)
        accel, curvature, err = self.law(waypoints, speed, self.kp, lookahead, self.horizon, cfg.stop_speed)
        if cfg.ki == 0.0 and cfg.kd == 0.0:  # a P controller (the default): no memory to keep
            return accel, curvature
        err = err.clone()  # kept between calls: a CUDA-graph law reuses its output memory on the next call
        if self._integral is None:
            self._integral = torch.zeros_like(err)
            self._prev_err = err
        self._integral = (self._integral + err * self.dt).clamp(-cfg.integral_limit, cfg.integral_limit)
        deriv = (err - self._prev_err) / self.dt
        self._prev_err = err
        accel = self.kp * err + cfg.ki * self._integral + cfg.kd * deriv
        return clip_action(accel, curvature)
