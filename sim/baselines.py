"""Simple reference policies (``PolicyFn``s) to compare learned policies against."""

from __future__ import annotations

import torch
from torch import Tensor

from sim.config import NUM_WAYPOINTS, WAYPOINT_STEPS
from sim.observation import SPEED_SCALE


def constant_velocity_policy(dt: float = 0.1):
    """A ``PolicyFn`` that keeps the current heading and speed.

    Waypoint k lies ``speed * WAYPOINT_STEPS * dt * (k + 1)`` m straight ahead; the speed is read
    from the observation (feature 0 = speed / SPEED_SCALE).

    Args:
        dt: s per simulation step (``batch.dt``).

    Returns:
        ``policy_fn(obs [B, OBS_DIM], t) -> (waypoints [B, K, 2], {})``.
    """
    steps = torch.arange(1, NUM_WAYPOINTS + 1, dtype=torch.float32) * (WAYPOINT_STEPS * dt)

    def policy_fn(obs: Tensor, t: int) -> tuple[Tensor, dict[str, Tensor]]:
        speed = obs[:, 0] * SPEED_SCALE
        x = speed.unsqueeze(1) * steps.to(obs.device)
        return torch.stack([x, torch.zeros_like(x)], dim=-1), {}

    return policy_fn
