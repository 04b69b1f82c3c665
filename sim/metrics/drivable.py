"""Drivable-area metrics (``offroad``, ``offroad_fraction``) and the lane occupancy the at-fault and TTC rules read.

- ``offroad``: the worst ego corner is more than :data:`OFFROAD_THRESHOLD` m outside the
  drivable area at any controlled step; never in scenes without drivable polygons.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sim.geometry import box_corners
from sim.metrics.base import Metric, _box
from sim.metrics.rules import RuleContext
from sim.road_grid import road_distance

if TYPE_CHECKING:  # pragma: no cover
    from sim.metrics.context import MetricContext

OFFROAD_THRESHOLD = 0.3  # m outside the drivable area (nuPlan)
LANE_KEEP = 1.0  # m from the route within which the ego keeps its lane (lateral hits not at fault)


def in_multiple_lanes(ctx: MetricContext, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Whether the ego is in several lanes, and whether it is in an intersection lane, at each step.

    nuPlan and NAVSIM ask whether the ego's box overlaps more than one lane polygon
    (``no_ego_at_fault_collisions.py`` via ``ego_lane_change.py``; NAVSIM ``pdm_scorer.py``
    ``_calculate_ego_area``): the lane occupancy of :func:`sim.metrics.rules.lane_occupancy` where the scene has
    lanes. A scene without lanes falls back to the ego's distance from its route (the logged path): more than
    :data:`LANE_KEEP` m off it, the ego has left its lane (and no intersection is known). The one place this is
    decided: the at-fault lateral rule and TTC's agents beside and behind the ego both read it.

    Args:
        ctx: the metric context.
        rows: bool ``[B, T]`` steps to decide (None: all); the lane test runs on those steps alone, and a step's
            answer does not depend on which other steps are asked (the lane occupancy is exact per step).

    Returns:
        ``(several [B, T], intersection [B, T])``, bool; False outside ``rows``.
    """
    proxy = ctx.route_lat > LANE_KEEP
    has = ctx.batch.lanes.has_lanes[:, None]
    occ = RuleContext.of(ctx).occupancy(rows)
    several = torch.where(has, occ.multiple_lanes, proxy)
    if rows is not None:
        several = several & rows
    return several, has & occ.in_intersection


class DrivableSignals:
    """Mixin of :class:`~sim.metrics.context.MetricContext`: distance outside the drivable area, lanes taken.

    The lane occupancy is the costly part; the at-fault rule needs it at first-contact steps and TTC at the steps
    with an agent beside the ego, so both ask for those steps alone (:meth:`lanes_taken_at`); each step is decided
    at most once per context.
    """

    @cached_property
    def offroad_dist(self) -> Tensor:
        """``[B, T]`` m, worst ego corner's signed distance to the drivable area (> 0 outside)."""
        corners = box_corners(_box(self.ego))  # [B, T, 4, 2]
        n_b, n_t = corners.shape[:2]
        d = road_distance(self.batch.road, corners.reshape(n_b, n_t * 4, 2))
        return d.reshape(n_b, n_t, 4).amax(-1)

    def lanes_taken_at(self, need: Tensor) -> tuple[Tensor, Tensor]:
        """:func:`in_multiple_lanes` at the steps ``need`` (bool ``[B, T]``): ``(several, intersection)`` bool
        ``[B, T]``, exact at every step asked so far on this context, False at the others. Steps already decided
        are not computed again."""
        got = self.__dict__.get("_lanes_at")
        if got is None:
            z = torch.zeros_like(need)
            got = (z, z, z)  # (decided, several, intersection)
        done, several, inter = got
        todo = need & ~done
        if bool(todo.any()):
            s, i = in_multiple_lanes(self, todo)
            got = (done | todo, several | (s & todo), inter | (i & todo))
            self.__dict__["_lanes_at"] = got
        return got[1], got[2]

    @cached_property
    def lanes_taken(self) -> tuple[Tensor, Tensor]:
        """:func:`in_multiple_lanes` of this rollout at every step, once."""
        return self.lanes_taken_at(torch.ones_like(self.controlled))

    def lateral_exposed_at(self, need: Tensor) -> Tensor:
        """bool ``[B, T]``: :attr:`lateral_exposed` at the steps ``need`` (False elsewhere)."""
        return need & (self.lanes_taken_at(need)[0] | (self.offroad_dist > OFFROAD_THRESHOLD))

    def beside_exposed_at(self, need: Tensor) -> Tensor:
        """bool ``[B, T]``: :attr:`beside_exposed` at the steps ``need`` (False elsewhere)."""
        several, inter = self.lanes_taken_at(need)
        return need & (several | inter | (self.offroad_dist > OFFROAD_THRESHOLD))

    @cached_property
    def lateral_exposed(self) -> Tensor:
        """bool ``[B, T]``: the ego is in several lanes (:func:`in_multiple_lanes`) or off the drivable area
        (more than :data:`OFFROAD_THRESHOLD` m): lateral hits are its fault (nuPlan
        ``no_ego_at_fault_collisions.py``)."""
        return self.lateral_exposed_at(torch.ones_like(self.controlled))

    @cached_property
    def beside_exposed(self) -> Tensor:
        """bool ``[B, T]``: agents beside the ego are TTC candidates: it is in several lanes, in an intersection
        lane or off the drivable area (nuPlan ``time_to_collision_within_bound.py``, NAVSIM's ego areas)."""
        return self.beside_exposed_at(torch.ones_like(self.controlled))


class Offroad(Metric):
    name = "offroad"

    def from_context(self, c):
        return c.masked_any(c.offroad_dist > OFFROAD_THRESHOLD).float()


class OffroadFraction(Metric):
    name = "offroad_fraction"

    def from_context(self, c):
        return c.masked_mean((c.offroad_dist > OFFROAD_THRESHOLD).float())
