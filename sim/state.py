"""`SimState`: the batched simulator state at one step (torch, on the batch's device)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor

from scenarios.scenario import LENGTH, VX, VY, WIDTH, YAW, X, Y

SPEED = 7  # column of the speed in SimState.kin


@dataclass(frozen=True, eq=False)
class SimState:
    """State of every agent of B scenes at step ``t``. Ego is agent 0.

    Attributes:
        kin: float32 ``[B, A, 8]`` (X, Y, YAW, VX, VY, LENGTH, WIDTH, SPEED), world frame, m, rad, m/s.
            ``agents`` and ``speed`` are views of it.
        valid: bool ``[B, A]``.
        t: step index.
        last_action: float32 ``[B, 2]`` the ego's last applied (accel m/s^2, curvature 1/m).
        path_s: float32 ``[B, A]`` arc length (m) of each agent along its logged path (IDM), or None.
    """

    kin: Tensor
    valid: Tensor
    t: int
    last_action: Tensor
    path_s: Tensor | None = None

    @property
    def agents(self) -> Tensor:
        """``[B, A, 7]`` (X, Y, YAW, VX, VY, LENGTH, WIDTH) view."""
        return self.kin[..., :SPEED]

    @property
    def speed(self) -> Tensor:
        """``[B, A]`` m/s (>= 0 for the ego's bicycle model) view."""
        return self.kin[..., SPEED]

    @property
    def x(self) -> Tensor:
        return self.agents[..., X]

    @property
    def y(self) -> Tensor:
        return self.agents[..., Y]

    @property
    def xy(self) -> Tensor:
        """``[B, A, 2]`` positions, m."""
        return self.agents[..., X : Y + 1]

    @property
    def yaw(self) -> Tensor:
        return self.agents[..., YAW]

    @property
    def vx(self) -> Tensor:
        return self.agents[..., VX]

    @property
    def vy(self) -> Tensor:
        return self.agents[..., VY]

    @property
    def length(self) -> Tensor:
        return self.agents[..., LENGTH]

    @property
    def width(self) -> Tensor:
        return self.agents[..., WIDTH]

    def replace(self, **changes) -> SimState:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)
