"""Per-step training reward from the closed-loop signals of ``sim.metrics.registry.metric_series``.

Transition ``s`` is the control at step ``t = init_step + s`` and is scored on the state at ``t + 1``:

    r = w_progress * (route_s[t+1] - route_s[t])          progress along the route (m)
      - w_collision * [a collision starts at t+1]         (the episode goes on: ending it would spare the
                                                           collider the later penalties); times
                                                           ``not_at_fault`` when the scene's collisions are
                                                           not the ego's fault (when ``at_fault`` is given)
      - w_offroad * clamp(offroad_dist[t+1], 0, 2)         m outside the drivable area
      - w_comfort * (# nuPlan comfort bounds broken at t+1)
      - w_log_dist * log_dist[t+1]                         m from the logged position
      - w_ttc * [time to collision at t+1 below 0.95 s]   nuPlan's TTC bound (when ``ttc`` is given)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from sim.batch import ScenarioBatch
from sim.metrics.comfort import ACCEL_BOUNDS, JERK_MAX, LAT_ACCEL_MAX, YAW_RATE_MAX
from sim.metrics.registry import MetricContext
from sim.metrics.ttc import TTC_OK
from sim.rollout import Rollout

# nuPlan's comfort bounds and TTC threshold: the metrics' own constants (sim.metrics.comfort, sim.metrics.ttc)
LON_ACCEL_MIN, LON_ACCEL_MAX = ACCEL_BOUNDS
TTC_MIN = TTC_OK


REWARD_SERIES = ("collision", "offroad_dist", "route_s", "log_dist", "accel", "jerk", "lat_accel", "yaw_rate")
"""Per-step ``[B, T]`` signals every reward needs (``MetricContext`` attributes of the same names).

``ttc`` is added when its weight is not 0 (:func:`reward_series`)."""


class RewardWeights(NamedTuple):
    """Weights of the reward terms (per step): the one set of defaults, used by the trainer (its ``--w-*`` flags
    default to these) and by the Gymnasium environment.

    Attributes:
        progress: reward per metre of route progress (0 by default: the term is off). collision: penalty per
            collision onset. offroad: penalty per metre outside the drivable area (clamped at 2 m). comfort: penalty
            per nuPlan comfort bound broken. log_dist: penalty per metre from the logged position. ttc: penalty per
            step with time to collision below 0.95 s (0 skips the TTC series). not_at_fault: factor on the collision
            penalty when the scene's collision is not the ego's fault (1 skips the at-fault judgement).
    """

    progress: float = 0.0
    collision: float = 20.0
    offroad: float = 0.5
    comfort: float = 1.0
    log_dist: float = 0.05
    ttc: float = 2.0
    not_at_fault: float = 0.1


def reward_series(w: RewardWeights) -> tuple[str, ...]:
    """Names of the per-step series the reward with weights ``w`` reads: :data:`REWARD_SERIES`, and ``ttc`` when
    ``w.ttc > 0`` (the costly series). The trainer and the Gymnasium env read this one list."""
    return (*REWARD_SERIES, "ttc") if w.ttc > 0 else REWARD_SERIES


def uses_at_fault(w: RewardWeights) -> bool:
    """Whether the reward with weights ``w`` needs the at-fault judgement (``w.not_at_fault != 1``)."""
    return w.not_at_fault != 1.0


class RewardSignals(NamedTuple):
    """What :func:`step_rewards` reads from one closed-loop rollout.

    Attributes:
        series: per-step ``[B, T]`` signals named by :func:`reward_series` (see :func:`step_rewards`).
        at_fault: bool ``[B]`` the scene has an at-fault collision, or None when the weights do not need it.
    """

    series: dict[str, Tensor]
    at_fault: Tensor | None


def reward_signals(ro: Rollout, batch: ScenarioBatch, w: RewardWeights) -> RewardSignals:
    """The closed-loop signals of the reward with weights ``w``, from one shared
    ``sim.metrics.registry.MetricContext``.

    Args:
        ro: the rollout (B scenes).
        batch: the batch it ran on.
        w: the weights: they decide whether ``ttc`` (:func:`reward_series`) and the per-scene at-fault flag
            (:func:`uses_at_fault`) are computed.
    """
    c = MetricContext(ro, batch)
    series = {n: getattr(c, n) for n in reward_series(w)}
    return RewardSignals(series, c.first_collision_at_fault if uses_at_fault(w) else None)


class StepRewards(NamedTuple):
    """Per-transition rewards.

    Attributes:
        reward: float32 ``[B, S]``.
        mask: bool ``[B, S]``: the transition happened (the scene has step t+1).
        done: bool ``[B, S]``: the episode ends after this transition (last step of the scene).
        episode_return: float32 ``[B]`` undiscounted sum of the rewards of each scene.
    """

    reward: Tensor
    mask: Tensor
    done: Tensor
    episode_return: Tensor


def _nan0(x: Tensor) -> Tensor:
    return torch.nan_to_num(x.float(), nan=0.0, posinf=0.0, neginf=0.0)


def step_rewards(series: dict[str, Tensor], step_valid: Tensor, init_step: int, w: RewardWeights,
                 has_road: Tensor | None = None, at_fault: Tensor | None = None) -> StepRewards:
    """Rewards for the ``S = T - 1 - init_step`` controlled transitions.

    Args:
        series: per-step ``[B, T]`` signals: ``collision`` (bool), ``offroad_dist`` (m), ``route_s`` (m),
            ``log_dist`` (m), ``accel`` (m/s^2), ``jerk`` (m/s^3), ``lat_accel`` (m/s^2), ``yaw_rate`` (rad/s),
            optionally ``ttc`` (s).
        step_valid: bool ``[B, T]``.
        init_step: first controlled step.
        w: weights.
        has_road: bool ``[B]``; scenes without road polygons get no offroad term.
        at_fault: bool ``[B]``: the scene has an at-fault collision (``sim.metrics.registry`` nuPlan rule); where False
            a collision onset costs ``w.collision * w.not_at_fault``. None: every onset costs ``w.collision``.
    """
    t0 = init_step
    nxt = slice(t0 + 1, None)
    exists = step_valid[:, nxt]
    coll_all = series["collision"].bool()
    coll = coll_all[:, nxt] & exists
    onset = coll & ~coll_all[:, t0:-1]  # a collision starts at t+1
    mask = exists
    done = exists & ~torch.cat([exists[:, 1:], torch.zeros_like(exists[:, :1])], dim=1)

    route_s = _nan0(series["route_s"])
    progress = (route_s[:, t0 + 1:] - route_s[:, t0:-1]).clamp(-3.0, 3.0)
    offroad = _nan0(series["offroad_dist"][:, nxt]).clamp(0.0, 2.0)
    if has_road is not None:
        offroad = offroad * has_road[:, None].float()
    accel = _nan0(series["accel"][:, nxt])
    comfort = ((accel < LON_ACCEL_MIN) | (accel > LON_ACCEL_MAX)).float()
    comfort += (_nan0(series["lat_accel"][:, nxt]).abs() > LAT_ACCEL_MAX).float()
    comfort += (_nan0(series["yaw_rate"][:, nxt]).abs() > YAW_RATE_MAX).float()
    comfort += (_nan0(series["jerk"][:, nxt]).abs() > JERK_MAX).float()
    log_dist = _nan0(series["log_dist"][:, nxt])

    coll_w = torch.full_like(progress, w.collision)
    if at_fault is not None:
        coll_w = torch.where(at_fault.to(coll_w.device)[:, None], coll_w, coll_w * w.not_at_fault)
    r = (w.progress * progress - coll_w * onset.float() - w.offroad * offroad
         - w.comfort * comfort - w.log_dist * log_dist)
    if w.ttc > 0 and "ttc" in series:
        r = r - w.ttc * (series["ttc"][:, nxt].float() < TTC_MIN).float()
    r = torch.where(mask, r, torch.zeros_like(r))
    return StepRewards(r, mask, done, r.sum(1))
