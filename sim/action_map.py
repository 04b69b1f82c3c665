"""The env's action -> waypoints mapping, shared by ``sim.rl.gym_env`` and the ``sb3`` agent plug-in (torch only)."""

from __future__ import annotations

import torch
from torch import Tensor

from sim.config import NUM_WAYPOINTS, WAYPOINT_STEPS
from sim.observation import SPEED_SCALE

DELTA_BOUND = 5.0  # m, default action bound per delta coordinate
ACTION_DIM = 2 * NUM_WAYPOINTS


def waypoints_from_action(obs: Tensor, action: Tensor, delta_bound: float = DELTA_BOUND, dt: float = 0.1) -> Tensor:
    """Waypoints the env executes for an action.

    Args:
        obs: float32 ``[B, OBS_DIM]`` observations (``obs[:, 0]`` = speed / 10 m/s).
        action: float ``[B, 2K]`` waypoint deltas, metres, ego frame; clipped to ``+-delta_bound``.
        delta_bound: metres.
        dt: simulation step, s (waypoints are ``WAYPOINT_STEPS * dt`` apart).

    Returns:
        float32 ``[B, K, 2]`` waypoints, metres, ego frame: constant-velocity base plan + delta.
    """
    act = action.to(obs.dtype).clamp(-delta_bound, delta_bound).view(-1, NUM_WAYPOINTS, 2)
    steps = torch.arange(1, NUM_WAYPOINTS + 1, dtype=obs.dtype, device=obs.device) * (WAYPOINT_STEPS * dt)
    base = torch.zeros_like(act)
    base[..., 0] = (obs[:, 0] * SPEED_SCALE).unsqueeze(1) * steps
    return base + act
