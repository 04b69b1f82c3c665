"""Time-to-collision metrics: ``min_ttc`` and ``ttc_ok``.

- ``min_ttc``: :func:`sim.geometry.time_to_collision` at every controlled step at which the
  ego moves (speed > 0.005 m/s: nuPlan skips TTC at <= 5e-3), minimum over steps; :data:`TTC_NONE` (3.1 s)
  means no conflict within 3 s. ``ttc_ok = min_ttc > 0.95 s``. Candidates as nuPlan's
  ``time_to_collision_within_bound.py`` (``extract_tracks_info_excluding_collided_tracks``): agents
  ahead of the ego (within :data:`AHEAD_ANGLE` of its heading, seen from its rear axle); agents
  beside it only while it is in several lanes, in an intersection lane or off the drivable area, agents behind
  (beyond :data:`BEHIND_ANGLE`) never; tracks the ego has collided with are dropped from their
  first contact on; TTC is 0 at the step of an at-fault collision.
"""

from __future__ import annotations

import math
from functools import cached_property

import torch
from torch import Tensor

from scenarios.scenario import LENGTH, YAW, X, Y
from sim.geometry import TTC_NONE, pair_time_to_collision
from sim.metrics.base import TTC_MIN_SPEED, Metric
from sim.metrics.pairs import pair_rows

TTC_OK = 0.95  # s
AHEAD_ANGLE = math.radians(30.0)  # agent ahead of the ego (nuPlan idm/utils.py is_agent_ahead, 30 deg since v0.4)
BEHIND_ANGLE = math.radians(150.0)  # agent behind the ego (nuPlan idm/utils.py is_agent_behind)
REAR_AXLE_TO_CENTRE = 1.461  # m; the ego's rear axle behind its box centre (nuPlan's Pacifica parameters)
__all__ = ["TTC_MIN_SPEED", "TTC_OK", "MinTTC", "TTCOk", "TTCSignals", "relative_position"]


def relative_position(ego: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
    """``(ahead, behind)`` bool ``[M]``: where ``other [M, 7]``'s centre lies seen from the rear axle of ``ego [M, 7]``
    (:data:`REAR_AXLE_TO_CENTRE` m behind its box centre, at most half its length): within :data:`AHEAD_ANGLE` of
    the ego's heading, or beyond :data:`BEHIND_ANGLE` (nuPlan ``idm/utils.py`` ``is_agent_ahead``,
    ``is_agent_behind``; also the rear test of the at-fault categories). A centre on the rear axle itself is neither."""
    c, s = torch.cos(ego[:, YAW]), torch.sin(ego[:, YAW])
    back = torch.clamp(ego[:, LENGTH] / 2, max=REAR_AXLE_TO_CENTRE)
    dx = other[:, X] - (ego[:, X] - back * c)
    dy = other[:, Y] - (ego[:, Y] - back * s)
    along = dx * c + dy * s
    dist = torch.hypot(dx, dy)
    return along > dist * math.cos(AHEAD_ANGLE), along < dist * math.cos(BEHIND_ANGLE)


class TTCSignals:
    """Mixin of :class:`~sim.metrics.context.MetricContext`: TTC per step, nuPlan's candidate agents."""

    @cached_property
    def ttc(self) -> Tensor:
        """``[B, T]`` s, time to collision at each controlled step (:data:`TTC_NONE` elsewhere)."""
        n_b, n_a, n_t = self.ro.valid.shape
        out = torch.full((n_b * n_t,), TTC_NONE, dtype=self.ego.dtype, device=self.ego.device)
        if n_a < 2:
            return out.reshape(n_b, n_t)
        # Candidate (scene, agent, step) pairs in the rollout's own [B, A-1, T] layout: a pair can
        # only collide within the horizon if its bounding circles meet at the relative motion's
        # closest approach in [0, TTC_HORIZON] (1 mm slack against rounding). Each kept candidate goes
        # through the exact test alone and the per-step minimum is taken: the same values as
        # time_to_collision once per step with every agent.
        idx = self.candidates[1]  # b * (A-1) * T + a * T + t
        if idx.numel() == 0:
            return out.reshape(n_b, n_t)
        ego_row, other_rows = pair_rows(idx, n_a, n_t)  # into [B * T] and [B * A * T]
        pair = self.record_rows.index_select(0, other_rows)
        e = self.ego_rows.index_select(0, ego_row)
        # nuPlan's candidates: not yet collided with, and ahead (or beside while the ego is exposed, below)
        ahead, behind = relative_position(e, pair)
        keep = (~self.collided_at(idx) & ~behind).nonzero().squeeze(1)
        e, pair, ahead, ego_row = e.index_select(0, keep), pair.index_select(0, keep), ahead[keep], ego_row[keep]
        ttc = pair_time_to_collision(e, pair)
        # an agent beside the ego counts only while the ego is exposed (several lanes, an intersection lane, off
        # the drivable area): the lane test runs only at the steps where such an agent would collide
        beside = ~ahead & (ttc < TTC_NONE)
        need = torch.zeros(n_b * n_t, dtype=torch.bool, device=out.device).index_fill_(0, ego_row[beside], True)
        exposed = self.beside_exposed_at(need.reshape(n_b, n_t)).reshape(-1).index_select(0, ego_row)
        ttc = torch.where(ahead | exposed, ttc, torch.full_like(ttc, TTC_NONE))
        out = out.scatter_reduce(0, ego_row, ttc, reduce="amin").reshape(n_b, n_t)
        return out.masked_fill(self.at_fault_steps, 0.0)  # nuPlan: TTC 0 at an at-fault collision


class MinTTC(Metric):
    name = "min_ttc"

    def from_context(self, c):
        return c.ttc.masked_fill(~c.controlled, TTC_NONE).amin(1)


class TTCOk(Metric):
    name = "ttc_ok"

    def from_context(self, c):
        return (MinTTC().from_context(c) > TTC_OK).float()
