"""PPO on the Gaussian delta head (CleanRL style): sampled rollouts, GAE, clipped objective, value head.

One action per simulation step: the waypoint delta ``[D = 2K]`` (metres) added to the cloned waypoints.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from policy.gaussian import HALF_LOG_2PI_E
from policy.model import WaypointPolicy, gaussian_log_prob


class Transitions(NamedTuple):
    """Flattened valid transitions of one iteration (N of them), on the policy's device.

    Attributes:
        obs: float32 ``[N, obs_dim]``.
        delta: float32 ``[N, D]`` sampled deltas (metres).
        logp: float32 ``[N]`` log-probability of ``delta`` when sampled (nats).
        advantage: float32 ``[N]`` GAE advantages.
        ret: float32 ``[N]`` value targets (advantage + value).
        target: float32 ``[N, D]`` the way back to the log from each state (``training.bc.log_labels``,
            metres, flattened like ``delta``), or None.
        target_ok: bool ``[N]`` the state has a label, or None.
    """

    obs: Tensor
    delta: Tensor
    logp: Tensor
    advantage: Tensor
    ret: Tensor
    target: Tensor | None = None
    target_ok: Tensor | None = None


class UpdateStats(NamedTuple):
    """Statistics of one :func:`ppo_update`: means over the minibatches of its last epoch (CleanRL's names).

    Attributes:
        policy_loss: clipped surrogate loss (advantages normalised per minibatch).
        value_loss: ``0.5 * mean((value - return)^2)``.
        approx_kl: ``mean((ratio - 1) - log ratio)``, the k3 estimate of KL(old || new) (nats).
        clip_fraction: share of samples whose ratio left ``[1 - clip, 1 + clip]``.
    """

    policy_loss: float
    value_loss: float
    approx_kl: float
    clip_fraction: float


def explained_variance(value: Tensor, ret: Tensor) -> float | None:
    """Explained variance ``1 - Var(ret - value) / Var(ret)`` of the value head over transitions ``[N]``.

    1: the value head predicts the returns; 0: no better than their mean; negative: worse.
    Returns None when the returns do not vary (undefined).
    """
    var = ret.var(unbiased=False)
    if ret.numel() == 0 or not bool(var > 0):
        return None
    return float(1.0 - (ret - value).var(unbiased=False) / var)


def make_sampling_policy_fn(policy: WaypointPolicy, generator: torch.Generator, hold: int = 1):
    """``PolicyFn`` that samples deltas; aux holds ``delta [B, D]``, ``logp [B]``, ``value [B]``.

    ``hold > 1`` keeps the standard-normal noise ``eps`` for ``hold`` consecutive steps (delta = mean(s_t) +
    sigma * eps): temporally correlated exploration, so a perturbation lasts long enough to change the outcome
    (as in coloured-noise exploration; PPO still scores every step's delta under its own Gaussian).
    """
    state: dict[str, Tensor] = {}

    @torch.no_grad()
    def fn(obs: Tensor, t: int) -> tuple[Tensor, dict[str, Tensor]]:
        out = policy(obs)
        eps = state.get("eps")
        if eps is None or eps.shape != out.delta_mean.shape or t % max(1, hold) == 0:
            eps = torch.randn(out.delta_mean.shape, generator=generator, device=out.delta_mean.device,
                              dtype=out.delta_mean.dtype)
            state["eps"] = eps
        delta = out.delta_mean + eps * out.log_std.exp()
        logp = gaussian_log_prob(out.delta_mean, out.log_std, delta)
        return policy.executed(out, delta), {"delta": delta, "logp": logp, "value": out.value}

    return fn


def make_deterministic_policy_fn(policy: WaypointPolicy):
    """``PolicyFn`` executing cloned + delta mean; aux holds ``delta_norm [B]`` (m)."""

    @torch.no_grad()
    def fn(obs: Tensor, t: int) -> tuple[Tensor, dict[str, Tensor]]:
        out = policy(obs)
        return policy.executed(out, out.delta_mean), {"delta_norm": out.delta_mean.norm(dim=-1)}

    return fn


def gae(reward: Tensor, value: Tensor, mask: Tensor, done: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over ``[B, S]`` (episode ends at ``done``; masked steps are ignored).

    Returns:
        ``(advantage [B, S], returns [B, S])``; zero where ``mask`` is False.
    """
    b, s = reward.shape
    adv = torch.zeros_like(reward)
    last = torch.zeros(b, dtype=reward.dtype, device=reward.device)
    next_value = torch.zeros(b, dtype=reward.dtype, device=reward.device)
    for i in range(s - 1, -1, -1):
        nonterminal = (~done[:, i]).to(reward.dtype)
        delta = reward[:, i] + gamma * next_value * nonterminal - value[:, i]
        last = delta + gamma * lam * nonterminal * last
        last = torch.where(mask[:, i], last, torch.zeros_like(last))
        adv[:, i] = last
        next_value = torch.where(mask[:, i], value[:, i], torch.zeros_like(next_value))
    return adv, torch.where(mask, adv + value, torch.zeros_like(adv))


def rl_parameters(policy: WaypointPolicy) -> list[torch.nn.Parameter]:
    """Parameters PPO trains: delta mean net, log-std (vector or head) and value net (the cloned head stays)."""
    params = list(policy.delta_net.parameters()) + list(policy.value_net.parameters())
    if policy.log_std_head is not None:
        params += list(policy.log_std_head.parameters())
    else:
        assert policy.log_std is not None
        params.append(policy.log_std)
    return params


def rl_param_groups(policy: WaypointPolicy, lr: float, log_std_lr: float) -> list[dict]:
    """Optimizer groups: a state-independent log-std learns at ``log_std_lr`` (entropy moves), the rest at ``lr``."""
    if policy.log_std is None:
        return [{"params": rl_parameters(policy), "lr": lr}]
    rest = [p for p in rl_parameters(policy) if p is not policy.log_std]
    return [{"params": rest, "lr": lr}, {"params": [policy.log_std], "lr": log_std_lr}]


def ppo_update(policy: WaypointPolicy, opt: torch.optim.Optimizer, data: Transitions, *, epochs: int,
               minibatch: int, clip: float, vf_coef: float, ent_coef: float, max_grad_norm: float,
               generator: torch.Generator, pg_coef: float = 1.0, delta_l2: float = 0.0,
               imitation: float = 0.0) -> UpdateStats:
    """Clipped-objective PPO epochs over ``data`` (advantages normalised per minibatch).

    ``pg_coef = 0`` trains the value head only (warm-up while its estimates are still meaningless);
    ``delta_l2`` pulls the delta mean towards 0 (the cloned plan) so noise alone does not make it drift.
    ``imitation`` weighs a smooth-L1 loss (waypoint-normalised units) pulling the executed mean plan
    (cloned + delta mean) towards ``data.target``, the way back to the log from the states the policy visited:
    RL with an on-policy imitation term (DAgger-like relabelling, as in BC-SAC "Imitation is not enough").
    """
    n = data.obs.shape[0]
    params = rl_parameters(policy)
    stats: list[tuple[float, float, float, float]] = []
    for _ in range(epochs):
        stats = []
        perm = torch.randperm(n, generator=generator).to(data.obs.device)
        for start in range(0, n, minibatch):
            idx = perm[start:start + minibatch]
            out = policy(data.obs[idx])
            logp = gaussian_log_prob(out.delta_mean, out.log_std, data.delta[idx])
            log_ratio = logp - data.logp[idx]
            ratio = log_ratio.exp()
            adv = data.advantage[idx]
            if len(idx) > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
            v_loss = 0.5 * (out.value - data.ret[idx]).pow(2).mean()
            entropy = (out.log_std + HALF_LOG_2PI_E).sum(-1).mean()
            loss = pg_coef * (pg - ent_coef * entropy + delta_l2 * out.delta_mean.pow(2).sum(-1).mean())
            if imitation > 0 and data.target is not None and data.target_ok is not None:
                ok = data.target_ok[idx]
                if bool(ok.any()):
                    plan = out.cloned.detach().reshape(len(idx), -1) + out.delta_mean
                    err = (plan[ok] - data.target[idx][ok]) / policy.wp_std
                    loss = loss + imitation * torch.nn.functional.smooth_l1_loss(err, torch.zeros_like(err))
            loss = loss + vf_coef * v_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            with torch.no_grad():
                kl = ((ratio - 1) - log_ratio).mean()
                cf = ((ratio - 1).abs() > clip).float().mean()
            stats.append((float(pg.detach()), float(v_loss.detach()), float(kl), float(cf)))
    m = torch.tensor(stats).mean(0).tolist() if stats else [0.0] * 4
    return UpdateStats(*m)
