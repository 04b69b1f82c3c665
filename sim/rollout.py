"""`rollout()`: the one closed-loop loop shared by training and evaluation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

PolicyFn = Callable[[Tensor, int], tuple[Tensor, dict[str, Tensor]]]
"""(obs float32 [B, OBS_DIM], step t) -> (waypoints float32 [B, K, 2] ego frame m, aux {name: [B, ...]})."""


@dataclass(frozen=True, eq=False)
class Rollout:
    """The record of one batched closed-loop run.

    Attributes:
        traj: float32 ``[B, A, T, 7]`` every agent's state at every step (ego closed-loop from init_step).
        valid: bool ``[B, A, T]``.
        ego_action: float32 ``[B, T, 2]`` (accel m/s^2, curvature 1/m) applied at step t -> t+1; 0 outside control.
        obs: float32 ``[B, S, OBS_DIM]`` when recorded (obs at steps init_step..T-2, S = T - 1 - init_step).
        aux: each ``[B, S, ...]`` stacked from the policy's aux outputs.
        agent_model: ``"log"`` or ``"idm"``.
        init_step: first controlled step.
        dt: seconds per step.
    """

    traj: Tensor
    valid: Tensor
    ego_action: Tensor
    obs: Tensor | None
    aux: dict[str, Tensor] = field(default_factory=dict)
    agent_model: str = "log"
    init_step: int = 0
    dt: float = 0.1


def rollout(batch, policy_fn: PolicyFn | None, *, agents: str = "log", record_obs: bool = False, backend=None):
    """Not finished yet (placeholder so other modules can import the types)."""
    raise NotImplementedError("rollout() is being written")
