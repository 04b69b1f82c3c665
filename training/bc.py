"""Behaviour cloning of the waypoint head on cached expert data (``sim.expert.collect_expert``)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from policy.model import WaypointPolicy
from training.finite import require_finite_loss


class ExpertData(NamedTuple):
    """Flattened expert samples.

    Attributes:
        obs: float32 ``[N, obs_dim]`` observations with the ego on its log.
        waypoints: float32 ``[N, K, 2]`` expert waypoints, metres, ego frame.
    """

    obs: Tensor
    waypoints: Tensor


def flatten_expert(obs: Tensor, waypoints: Tensor, step_valid: Tensor, init_step: int) -> ExpertData:
    """Keep the samples of real steps.

    Args:
        obs: ``[B, S, obs_dim]`` from ``collect_expert`` (steps ``init_step .. T-2``).
        waypoints: ``[B, S, K, 2]``.
        step_valid: bool ``[B, T]`` of the batch; sample ``s`` is kept when step ``init_step + s + 1`` exists.
        init_step: the batch's first controlled step.
    """
    s = obs.shape[1]
    keep = step_valid[:, init_step + 1: init_step + 1 + s].to(obs.device)
    keep = keep & torch.isfinite(obs).all(-1) & torch.isfinite(waypoints).flatten(2).all(-1)
    return ExpertData(obs[keep].float(), waypoints[keep].float())


class BCResult(NamedTuple):
    """Outcome of :func:`behaviour_clone`: final mean loss (normalised units) and the per-epoch losses."""

    final_loss: float
    losses: list[float]


def behaviour_clone(policy: WaypointPolicy, data: ExpertData, *, epochs: int, lr: float, batch: int,
                    generator: torch.Generator, refit_norm: bool = True) -> BCResult:
    """Fit normalisation buffers, encoder and cloned head to the expert waypoints (smooth-L1 in normalised units).

    Args:
        policy: trained in place (only ``encoder`` and ``bc_head``).
        data: expert samples on the policy's device.
        epochs: passes over the data.
        lr: Adam learning rate.
        batch: samples per minibatch.
        generator: CPU generator for the shuffling (reproducible).
        refit_norm: set the normalisation buffers from ``data`` first (False when continuing training).

    Raises:
        training.finite.NonFiniteError: a minibatch loss is NaN or infinite (the policy is then not saved).
    """
    if data.obs.shape[0] == 0:
        raise ValueError("behaviour cloning: no expert samples")
    if refit_norm:
        policy.set_normalization(data.obs, data.waypoints)
    params = list(policy.encoder.parameters()) + list(policy.bc_head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    n = data.obs.shape[0]
    residual = data.waypoints - policy.prior(data.obs)
    target = (residual.reshape(n, -1) - policy.wp_mean) / policy.wp_std
    losses = []
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator).to(data.obs.device)
        total = 0.0
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            pred = (policy.cloned_waypoints(data.obs[idx]) - policy.prior(data.obs[idx])).reshape(len(idx), -1)
            loss = torch.nn.functional.smooth_l1_loss((pred - policy.wp_mean) / policy.wp_std, target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
            require_finite_loss(value, f"behaviour cloning epoch {len(losses) + 1}")
            total += value * len(idx)
        sched.step()
        losses.append(total / n)
    return BCResult(losses[-1], losses)


def log_labels(batch, ro, max_log_dist: float = 5.0) -> tuple[Tensor, Tensor]:
    """The way back to the log from every closed-loop state of ``ro``.

    The label at a visited ego pose is the logged ego's future positions expressed in that pose's frame
    (``sim.expert.expert_waypoints`` with the closed-loop origin and yaw).

    Args:
        batch: the ``ScenarioBatch`` ``ro`` ran on.
        ro: a ``sim.rollout.Rollout`` recorded with ``record_obs=True`` (S controlled steps).
        max_log_dist: states farther than this from the logged position (m) are not labelled.

    Returns:
        ``(labels [B, S, K, 2] m ego frame, ok [B, S] bool)``; ``ok`` is False past a scene's end, far from the
        log, or where the observation or label is not finite.
    """
    from sim.expert import expert_waypoints

    assert ro.obs is not None
    t0, n_t = batch.init_step, batch.num_steps
    ego = ro.ego  # [B, T, 7]
    labels = torch.stack([expert_waypoints(batch, t, origin=ego[:, t, :2], yaw=ego[:, t, 2])
                          for t in range(t0, n_t - 1)], dim=1)  # [B, S, K, 2]
    s = ro.obs.shape[1]
    near = (ego[:, t0:t0 + s, :2] - batch.log[:, 0, t0:t0 + s, :2]).norm(dim=-1) <= max_log_dist
    ok = batch.step_valid[:, t0 + 1:t0 + 1 + s] & near
    ok &= torch.isfinite(ro.obs).all(-1) & torch.isfinite(labels).flatten(2).all(-1)
    return torch.nan_to_num(labels), ok


def relabel_on_policy(batch, policy_fn, max_log_dist: float = 5.0) -> ExpertData:
    """DAgger-style data: roll ``policy_fn`` out in closed loop and label every visited state with the log.

    Args:
        batch: a ``ScenarioBatch``.
        policy_fn: a ``sim.rollout.PolicyFn`` (e.g. the current policy with sampled deltas).
        max_log_dist: states farther than this from the logged position (m) are dropped.

    Returns:
        :class:`ExpertData` of the kept states (labels: :func:`log_labels`).
    """
    from sim.rollout import rollout

    ro = rollout(batch, policy_fn, record_obs=True)
    assert ro.obs is not None
    labels, keep = log_labels(batch, ro, max_log_dist)
    return ExpertData(ro.obs[keep].float(), labels[keep].float())
