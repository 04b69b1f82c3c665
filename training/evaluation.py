"""Evaluation at intervals: delta statistics and entropy on the fixed evaluation states, closed-loop val metrics."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from policy.entropy import EntropyStats, policy_entropy
from policy.model import WaypointPolicy
from sim.batch import ScenarioBatch
from sim.metrics.registry import compute_metrics
from sim.rollout import rollout
from training.ppo import make_deterministic_policy_fn

VAL_METRICS = ("score", "collision", "offroad", "ade", "fde", "progress", "comfortable")


class Evaluation(NamedTuple):
    """One evaluation.

    Attributes:
        entropy: entropy over the fixed evaluation states (nats).
        eval_info: plain floats: ``mean_delta_norm``, ``max_delta_norm``, ``std_delta_norm`` (m, L2 norm of
            the delta mean over the 2K dims, statistics over the evaluation states), ``policy_entropy``
            (nats), ``mean_return`` (when given), ``val_<metric>`` closed-loop means over the val scenes.
    """

    entropy: EntropyStats
    eval_info: dict[str, float]


@torch.no_grad()
def delta_norms(policy: WaypointPolicy, eval_obs: Tensor) -> Tensor:
    """L2 norm ``[N]`` (m) of the delta mean at each evaluation state ``[N, obs_dim]``."""
    return policy(eval_obs).delta_mean.norm(dim=-1)


def val_metrics(policy: WaypointPolicy, batch: ScenarioBatch) -> dict[str, float]:
    """Closed-loop means over ``batch`` with the deterministic policy (cloned + delta mean)."""
    ro = rollout(batch, make_deterministic_policy_fn(policy))
    m = compute_metrics(ro, batch)
    return {f"val_{k}": float(torch.nan_to_num(m[k].float()).mean()) for k in VAL_METRICS if k in m}


def evaluate(policy: WaypointPolicy, eval_obs: Tensor, val_batch: ScenarioBatch,
             mean_return: float | None) -> Evaluation:
    """Entropy, delta statistics and val metrics of ``policy`` (left in eval mode)."""
    policy.eval()
    ent = policy_entropy(policy, eval_obs)
    norms = delta_norms(policy, eval_obs)
    info = {
        "mean_delta_norm": float(norms.mean()),
        "max_delta_norm": float(norms.max()),
        "std_delta_norm": float(norms.std(unbiased=False)),
        "policy_entropy": ent.total,
    }
    if mean_return is not None:
        info["mean_return"] = float(mean_return)
    info.update(val_metrics(policy, val_batch))
    return Evaluation(ent, info)
