"""Differential entropy of the delta Gaussian, in nats (docs/metrics.md "Policy entropy").

H = sum_i (0.5 ln(2 pi e) + ln sigma_i) for a diagonal Gaussian; it is negative per dimension when
sigma < 0.242. The policy's entropy is this sum averaged over a FIXED set of evaluation states.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from policy.gaussian import HALF_LOG_2PI_E
from policy.model import WaypointPolicy


class EntropyStats(NamedTuple):
    """Entropy of a policy over a set of states.

    Attributes:
        total: nats, summed over the D delta dimensions, averaged over states.
        per_dim: ``D`` floats, nats, each averaged over states (they sum to ``total``).
        state_dependent: whether the log-std depends on the state (if not, ``total`` is
            ``sum(log_std) + D * 0.5 ln(2 pi e)`` whatever the states).
    """

    total: float
    per_dim: list[float]
    state_dependent: bool


def gaussian_entropy_per_dim(log_std: Tensor) -> Tensor:
    """Per-dimension entropy ``[..., D]`` (nats) of a diagonal Gaussian with log-std ``[..., D]``."""
    return HALF_LOG_2PI_E + log_std


def gaussian_entropy(log_std: Tensor) -> Tensor:
    """Entropy ``[...]`` (nats) of a diagonal Gaussian, summed over the last dim of ``log_std [..., D]``."""
    return gaussian_entropy_per_dim(log_std).sum(-1)


@torch.no_grad()
def policy_entropy(policy: WaypointPolicy, eval_obs: Tensor, chunk: int = 4096) -> EntropyStats:
    """Entropy of the policy's delta Gaussian averaged over ``eval_obs``.

    Args:
        policy: the policy (its device is used).
        eval_obs: float32 ``[N, obs_dim]`` fixed evaluation observations (N >= 1).
        chunk: states per forward pass.

    Returns:
        :class:`EntropyStats` in nats.
    """
    if eval_obs.ndim != 2 or eval_obs.shape[0] == 0:
        raise ValueError(f"eval_obs must be a non-empty [N, obs_dim] tensor, got shape {tuple(eval_obs.shape)}")
    device = next(policy.parameters()).device
    acc = torch.zeros(policy.config.action_dim, dtype=torch.float64, device=device)
    for start in range(0, eval_obs.shape[0], chunk):
        out = policy(eval_obs[start:start + chunk].to(device))
        acc += gaussian_entropy_per_dim(out.log_std).double().sum(0)
    per_dim = (acc / eval_obs.shape[0]).cpu()
    return EntropyStats(float(per_dim.sum()), [float(v) for v in per_dim], policy.config.state_dependent_std)
