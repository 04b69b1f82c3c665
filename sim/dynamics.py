"""Kinematic bicycle model (Waymax's invertible bicycle), batched in torch.

Dynamics return an update (:class:`KinematicUpdate`); one function (:func:`apply_updates`)
turns updates into the next :class:`~sim.state.SimState`. Any leading shape ``[...]`` works.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sim.config import ACCEL_MAX, ACCEL_MIN, CURVATURE_MAX, SimError
from sim.state import SimState

MIN_SPEED_FOR_CURVATURE = 0.6  # m/s; below this the inverse model reports curvature 0


def wrap(a: Tensor) -> Tensor:
    """Wrap angles (rad) to (-pi, pi]."""
    w = torch.remainder(a + math.pi, 2 * math.pi) - math.pi
    return torch.where(w <= -math.pi, w + 2 * math.pi, w)


@dataclass(frozen=True, eq=False)
class KinematicUpdate:
    """New kinematic values for some agents.

    Attributes:
        kin: float32 ``[B, n, 6]`` (x, y, yaw, vx, vy, speed) for agents ``first .. first + n - 1``.
        first: index of the first agent updated (0 = ego).
    """

    kin: Tensor
    first: int = 0


def clip_action(accel: Tensor, curvature: Tensor) -> tuple[Tensor, Tensor]:
    """Clip (accel m/s^2, curvature 1/m) to the vehicle limits of :mod:`sim.config`."""
    return accel.clamp(ACCEL_MIN, ACCEL_MAX), curvature.clamp(-CURVATURE_MAX, CURVATURE_MAX)


def bicycle_step(
    x: Tensor, y: Tensor, yaw: Tensor, speed: Tensor, accel: Tensor, curvature: Tensor, dt: float
) -> Tensor:
    """One step of the kinematic bicycle (Waymax formulas), actions clipped, speed floored at 0.

    x' = x + v cos(yaw) dt + a cos(yaw) dt^2/2, y' likewise, yaw' = wrap(yaw + k (v dt + a dt^2/2)),
    v' = v + a dt. When braking would reverse, the acceleration is reduced so that v' = 0 exactly.

    Args:
        x, y: ``[...]`` m. yaw: ``[...]`` rad. speed: ``[...]`` m/s (>= 0).
        accel: ``[...]`` m/s^2. curvature: ``[...]`` 1/m. dt: s.

    Returns:
        ``[..., 6]`` (x, y, yaw, vx, vy, speed) at the next step.
    """
    a, k = clip_action(accel, curvature)
    a = torch.maximum(a, -speed / dt)  # no reversing: stop exactly at 0
    d = speed * dt + 0.5 * a * dt * dt  # distance travelled, m
    c, s = torch.cos(yaw), torch.sin(yaw)
    nyaw = wrap(yaw + k * d)
    nv = (speed + a * dt).clamp_min(0.0)
    return torch.stack([x + d * c, y + d * s, nyaw, nv * torch.cos(nyaw), nv * torch.sin(nyaw), nv], dim=-1)


def ego_update(state: SimState, accel: Tensor, curvature: Tensor, dt: float) -> KinematicUpdate:
    """The ego's bicycle update from (accel ``[B]`` m/s^2, curvature ``[B]`` 1/m)."""
    e = state.kin[:, 0]
    kin = bicycle_step(e[:, 0], e[:, 1], e[:, 2], e[:, 7], accel, curvature, dt)
    return KinematicUpdate(kin.unsqueeze(1), first=0)


def apply_updates(
    state: SimState, updates: Sequence[KinematicUpdate], sizes: Tensor, valid: Tensor, base: Tensor | None = None,
    **changes,
) -> SimState:
    """Build the next state from updates (the one place that does it).

    Args:
        state: the current state (its other fields are kept unless given in ``changes``).
        updates: consecutive :class:`KinematicUpdate` s, the first starting at agent 0; without ``base`` they
            must cover agents ``0..A-1``.
        sizes: ``[B, A, 2]`` (length, width) m at the next step (ignored with ``base``).
        valid: bool ``[B, A]`` at the next step.
        base: float32 ``[B, A, 8]`` the next state in :attr:`SimState.kin` layout for the agents no update covers
            (log replay: :attr:`sim.traffic.LogTables.kin8`), sizes included; the updates overwrite their rows.
        **changes: other :class:`SimState` fields to replace (``t``, ``last_action``, ``path_s``).

    Raises:
        SimError: the updates leave a gap, or (without ``base``) do not cover every agent.
    """
    first = 0
    for u in updates:
        if u.first != first:
            raise SimError(f"apply_updates: update starts at agent {u.first}, expected {first}")
        first += u.kin.shape[1]
    if base is not None:
        new = base.clone()
        for u in updates:
            rows = new[:, u.first : u.first + u.kin.shape[1]]
            rows[..., :5] = u.kin[..., :5]
            rows[..., 7] = u.kin[..., 5]
        return state.replace(kin=new, valid=valid, **changes)
    if first != state.kin.shape[1]:
        raise SimError(f"apply_updates: updates cover {first} agents, the state has {state.kin.shape[1]}")
    kin = updates[0].kin if len(updates) == 1 else torch.cat([u.kin for u in updates], dim=1)
    new = torch.cat([kin[..., :5], sizes, kin[..., 5:6]], dim=-1)
    return state.replace(kin=new, valid=valid, **changes)


def inverse_bicycle(traj: Tensor, dt: float) -> tuple[Tensor, Tensor, Tensor]:
    """Closed-form inverse of :func:`bicycle_step` on a logged trajectory.

    Args:
        traj: ``[..., T, >=5]`` states (X, Y, YAW, VX, VY, ...).
        dt: s.

    Returns:
        accel ``[..., T-1]`` m/s^2 and curvature ``[..., T-1]`` 1/m (both clipped; curvature 0 below
        0.6 m/s), and infeasible ``[..., T-1]`` bool where the unclipped values exceed the limits.
    """
    v = torch.hypot(traj[..., 3], traj[..., 4])
    a = (v[..., 1:] - v[..., :-1]) / dt
    d = v[..., :-1] * dt + 0.5 * a * dt * dt
    dyaw = wrap(traj[..., 1:, 2] - traj[..., :-1, 2])
    moving = v[..., :-1] >= MIN_SPEED_FOR_CURVATURE
    k = torch.where(moving, dyaw / torch.where(moving, d.clamp_min(1e-6), torch.ones_like(d)), torch.zeros_like(d))
    infeasible = (a < ACCEL_MIN) | (a > ACCEL_MAX) | (k.abs() > CURVATURE_MAX)
    ac, kc = clip_action(a, k)
    return ac, kc, infeasible
