"""Expert (logged) waypoints: behaviour-cloning targets from the ego's log."""

from __future__ import annotations

import torch
from torch import Tensor

from sim.batch import ScenarioBatch
from sim.config import NUM_WAYPOINTS, WAYPOINT_STEPS
from sim.observation import to_ego_frame
from sim.rollout import rollout


def expert_waypoints(batch: ScenarioBatch, t: int, origin: Tensor | None = None, yaw: Tensor | None = None) -> Tensor:
    """The logged ego's future positions as waypoints.

    Waypoint k is the logged ego position at step ``t + WAYPOINT_STEPS * (k + 1)``; past a scene's
    last step it is extrapolated with the last logged velocity.

    Args:
        batch: the scenes.
        t: current step.
        origin: ``[B, 2]`` frame origin (m); default the logged ego position at ``t``.
        yaw: ``[B]`` frame heading (rad); default the logged ego yaw at ``t``.

    Returns:
        float32 ``[B, NUM_WAYPOINTS, 2]`` m in the frame (x forward, y left).
    """
    ego = batch.log[:, 0]  # [B, T, 7]
    dev = ego.device
    last = (batch.step_valid.sum(dim=1) - 1).clamp_min(0)  # [B]
    want = t + WAYPOINT_STEPS * torch.arange(1, NUM_WAYPOINTS + 1, device=dev)  # [K]
    idx = torch.minimum(want.unsqueeze(0), last.unsqueeze(1))  # [B, K]
    pos = ego[..., :2].gather(1, idx.unsqueeze(-1).expand(-1, -1, 2))  # [B, K, 2]
    last_state = ego.gather(1, last.view(-1, 1, 1).expand(-1, 1, ego.shape[-1])).squeeze(1)  # [B, 7]
    extra = ((want.unsqueeze(0) - idx) * batch.dt).unsqueeze(-1)  # [B, K, 1] s past the end
    pos = pos + extra * last_state[:, None, 3:5]
    if origin is None or yaw is None:  # the logged pose at t (at its last step for a scene already over)
        now = ego.gather(1, last.clamp(max=t).view(-1, 1, 1).expand(-1, 1, ego.shape[-1])).squeeze(1)
        origin = now[:, :2] if origin is None else origin
        yaw = now[:, 2] if yaw is None else yaw
    return to_ego_frame(pos, origin, yaw)


def collect_expert(batch: ScenarioBatch) -> tuple[Tensor, Tensor]:
    """Behaviour-cloning data with the ego on its log (other agents replay their log too).

    Returns:
        obs float32 ``[B, S, OBS_DIM]`` at steps init_step..T-2 (S = T - 1 - init_step) and waypoints
        float32 ``[B, S, NUM_WAYPOINTS, 2]`` (ego frame at each step). Steps past a scene's end
        (``batch.step_valid[:, t]`` False) hold frozen observations: mask them out.
    """
    ro = rollout(batch, None, record_obs=True)
    steps = range(batch.init_step, batch.num_steps - 1)
    wps = torch.stack([expert_waypoints(batch, t) for t in steps], dim=1)
    return ro.obs, wps
