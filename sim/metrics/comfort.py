"""Comfort: ``comfortable``, nuPlan's six bounds on the ego's smoothed motion.

- Comfort: Savitzky-Golay derivatives of the ego's closed-loop state, with nuPlan's windows
  (``ego_is_comfortable.py`` and ``utils/state_extractors.py``): long. accel from the signed speed
  over :data:`ACCEL_WINDOW` steps, long. jerk from that accel over :data:`JERK_WINDOW` steps (nuPlan's
  15), yaw rate from the unwrapped yaw over :data:`YAW_RATE_WINDOW` steps (nuPlan's 5, quadratic),
  yaw acceleration from it over :data:`YAW_RATE_WINDOW` steps with a cubic (nuPlan's
  ``ego_yaw_acceleration.py``: ``deriv_order=2, poly_order=3``); ``lat_accel = speed * yaw_rate``;
  jerk magnitude = derivative over :data:`JERK_WINDOW` steps of ``hypot(accel, lat_accel)`` (nuPlan's
  ``ego_jerk.py``, ``acceleration_coordinate="magnitude"``). Scene ends are extended by odd reflection
  (keeps the local slope). The smoothing passes a sinusoid of period 2 s with gain 0.89 (accel) and
  0.49 (jerk, both filters): brief spikes are forgiven, sustained ones are not. ``comfortable`` =
  every controlled step strictly within all six bounds (nuPlan ``within_bound_metric_base.py``: ``min < v < max``).
"""

from __future__ import annotations

from functools import cache, cached_property

import numpy as np
import torch
from torch import Tensor

from scenarios.scenario import VX, VY, YAW
from sim.metrics.base import Metric

ACCEL_BOUNDS = (-4.05, 2.40)  # m/s^2
LAT_ACCEL_MAX = 4.89  # m/s^2
YAW_RATE_MAX = 0.95  # rad/s
YAW_ACCEL_MAX = 1.93  # rad/s^2 (nuPlan ego_is_comfortable: max_abs_yaw_accel)
JERK_MAX = 4.13  # m/s^3, longitudinal
JERK_MAGNITUDE_MAX = 8.37  # m/s^3, of the acceleration magnitude (nuPlan ego_is_comfortable: max_abs_mag_jerk)
ACCEL_WINDOW = 7  # steps (0.7 s at 10 Hz)
JERK_WINDOW = 15  # steps (nuPlan)
YAW_RATE_WINDOW = 5  # steps (nuPlan approximate_derivatives' default, also for the yaw acceleration)
YAW_ACCEL_ORDER = 3  # polynomial order of the yaw acceleration fit (nuPlan ego_yaw_acceleration.py)


@cache
def _savgol_coeffs(window: int, order: int, deriv: int, dt: float) -> np.ndarray:
    """scipy's Savitzky-Golay coefficients (``use="dot"``), computed once per setting; scipy.signal is imported on
    first use (about 0.8 s), not with the metrics."""
    from scipy.signal import savgol_coeffs

    return savgol_coeffs(window, order, deriv=deriv, delta=dt, use="dot")


def _savgol_deriv(x: Tensor, last: Tensor, dt: float, window: int, deriv: int = 1, order: int = 2) -> Tensor:
    """``deriv``-th derivative of ``x [B, T]`` (valid up to index ``last [B]``), Savitzky-Golay over ``window``
    steps with a polynomial of ``order``, per s^deriv. Ends extended by odd reflection about the end sample."""
    n_b, n_t = x.shape
    half = window // 2
    coef = torch.as_tensor(_savgol_coeffs(window, order, deriv, float(dt)).copy(), dtype=x.dtype, device=x.device)
    t = torch.arange(-half, n_t + half, device=x.device)[None, :].expand(n_b, -1)  # [B, T + 2h]
    lst = last[:, None]
    src = torch.where(t < 0, -t, torch.where(t > lst, 2 * lst - t, t)).clamp(0, n_t - 1)
    val = x.gather(1, src)
    val = torch.where(t < 0, 2 * x[:, :1] - val, val)
    val = torch.where(t > lst, 2 * x.gather(1, lst) - val, val)
    return val.unfold(1, window, 1) @ coef  # [B, T]


class ComfortSignals:
    """Mixin of :class:`~sim.metrics.context.MetricContext`: speed, accelerations, jerks and yaw rates."""

    @cached_property
    def speed(self) -> Tensor:
        """``[B, T]`` m/s, signed longitudinal speed."""
        e = self.ego
        return e[..., VX] * torch.cos(e[..., YAW]) + e[..., VY] * torch.sin(e[..., YAW])

    @cached_property
    def accel(self) -> Tensor:
        """``[B, T]`` m/s^2, longitudinal acceleration."""
        return _savgol_deriv(self.speed, self.last, self.dt, ACCEL_WINDOW)

    @cached_property
    def jerk(self) -> Tensor:
        """``[B, T]`` m/s^3, longitudinal jerk."""
        return _savgol_deriv(self.accel, self.last, self.dt, JERK_WINDOW)

    @cached_property
    def unwrapped_yaw(self) -> Tensor:
        """``[B, T]`` rad, the ego's heading without the 2 pi jumps."""
        yaw = self.ego[..., YAW]
        dyaw = torch.remainder(yaw[:, 1:] - yaw[:, :-1] + torch.pi, 2 * torch.pi) - torch.pi
        return torch.cat([yaw[:, :1], yaw[:, :1] + torch.cumsum(dyaw, dim=1)], dim=1)

    @cached_property
    def yaw_rate(self) -> Tensor:
        """``[B, T]`` rad/s."""
        return _savgol_deriv(self.unwrapped_yaw, self.last, self.dt, YAW_RATE_WINDOW)

    @cached_property
    def yaw_accel(self) -> Tensor:
        """``[B, T]`` rad/s^2 (nuPlan ``ego_yaw_acceleration.py``: cubic, second derivative, 5 steps)."""
        return _savgol_deriv(self.unwrapped_yaw, self.last, self.dt, YAW_RATE_WINDOW, deriv=2, order=YAW_ACCEL_ORDER)

    @cached_property
    def lat_accel(self) -> Tensor:
        """``[B, T]`` m/s^2."""
        return self.speed * self.yaw_rate

    @cached_property
    def jerk_magnitude(self) -> Tensor:
        """``[B, T]`` m/s^3, rate of change of the acceleration magnitude ``hypot(accel, lat_accel)`` (nuPlan
        ``ego_jerk.py`` with ``acceleration_coordinate="magnitude"``, :data:`JERK_WINDOW` steps)."""
        return _savgol_deriv(torch.hypot(self.accel, self.lat_accel), self.last, self.dt, JERK_WINDOW)


def within_comfort_bounds(accel: Tensor, lat_accel: Tensor, yaw_rate: Tensor, yaw_accel: Tensor, jerk: Tensor,
                          jerk_magnitude: Tensor) -> Tensor:
    """bool, elementwise: every signal strictly inside nuPlan's bound (``within_bound_metric_base.py``:
    ``min < value < max``, so a value on a bound fails).

    Args:
        accel: long. acceleration, m/s^2 (any shape; the others the same).
        lat_accel: lateral acceleration, m/s^2.
        yaw_rate: rad/s.
        yaw_accel: rad/s^2.
        jerk: long. jerk, m/s^3.
        jerk_magnitude: rate of change of the acceleration magnitude, m/s^3.

    Returns:
        bool, the shape of the inputs.
    """
    ok = (accel > ACCEL_BOUNDS[0]) & (accel < ACCEL_BOUNDS[1])
    ok &= lat_accel.abs() < LAT_ACCEL_MAX
    ok &= yaw_rate.abs() < YAW_RATE_MAX
    ok &= yaw_accel.abs() < YAW_ACCEL_MAX
    ok &= jerk.abs() < JERK_MAX
    return ok & (jerk_magnitude.abs() < JERK_MAGNITUDE_MAX)


class Comfortable(Metric):
    name = "comfortable"

    def from_context(self, c):
        ok = within_comfort_bounds(c.accel, c.lat_accel, c.yaw_rate, c.yaw_accel, c.jerk, c.jerk_magnitude)
        return (~c.masked_any(~ok)).float()
