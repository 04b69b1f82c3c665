"""Drivable-area metrics (``offroad``, ``offroad_fraction``) and the lane occupancy the at-fault and TTC rules read.

- ``offroad``: the worst ego corner is more than :data:`OFFROAD_THRESHOLD` m outside the
  drivable area at any controlled step; never in scenes without drivable polygons.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sim.geometry import box_corners, road_distance
from sim.metrics.base import Metric, _box
from sim.metrics.rules import RuleContext

if TYPE_CHECKING:  # pragma: no cover
    from sim.metrics.context import MetricContext

OFFROAD_THRESHOLD = 0.3  # m outside the drivable area (nuPlan)
LANE_KEEP = 1.0  # m from the route within which the ego keeps its lane (lateral hits not at fault)


def in_multiple_lanes(ctx: MetricContext) -> tuple[Tensor, Tensor]:
    """Whether the ego is in several lanes, and whether it is in an intersection lane, at each step.

    nuPlan and NAVSIM ask whether the ego's box overlaps more than one lane polygon
    (``no_ego_at_fault_collisions.py`` via ``ego_lane_change.py``; NAVSIM ``pdm_scorer.py``
    ``_calculate_ego_area``): the lane occupancy of :func:`sim.metrics.rules.lane_occupancy` where the scene has
    lanes. A scene without lanes falls back to the ego's distance from its route (the logged path): more than
    :data:`LANE_KEEP` m off it, the ego has left its lane (and no intersection is known). The one place this is
    decided: the at-fault lateral rule and TTC's agents beside and behind the ego both read it.

    Returns:
        ``(several [B, T], intersection [B, T])``, bool.
    """
    proxy = ctx.route_lat > LANE_KEEP
    has = ctx.batch.lanes.has_lanes[:, None]
    occ = RuleContext.of(ctx).ego_occupancy()
    several = torch.where(has, occ.multiple_lanes, proxy)
    return several, has & occ.in_intersection


class DrivableSignals:
    """Mixin of :class:`~sim.metrics.context.MetricContext`: distance outside the drivable area, lanes taken."""

    @cached_property
    def offroad_dist(self) -> Tensor:
        """``[B, T]`` m, worst ego corner's signed distance to the drivable area (> 0 outside)."""
        corners = box_corners(_box(self.ego))  # [B, T, 4, 2]
        n_b, n_t = corners.shape[:2]
        d = road_distance(self.batch.road, corners.reshape(n_b, n_t * 4, 2))
        return d.reshape(n_b, n_t, 4).amax(-1)

    @cached_property
    def lanes_taken(self) -> tuple[Tensor, Tensor]:
        """:func:`in_multiple_lanes` of this rollout, once."""
        return in_multiple_lanes(self)

    @cached_property
    def lateral_exposed(self) -> Tensor:
        """bool ``[B, T]``: the ego is in several lanes (:func:`in_multiple_lanes`) or off the drivable area
        (more than :data:`OFFROAD_THRESHOLD` m): lateral hits are its fault (nuPlan
        ``no_ego_at_fault_collisions.py``)."""
        return self.lanes_taken[0] | (self.offroad_dist > OFFROAD_THRESHOLD)

    @cached_property
    def beside_exposed(self) -> Tensor:
        """bool ``[B, T]``: agents beside the ego are TTC candidates: it is in several lanes, in an intersection
        lane or off the drivable area (nuPlan ``time_to_collision_within_bound.py``, NAVSIM's ego areas)."""
        return self.lateral_exposed | self.lanes_taken[1]


class Offroad(Metric):
    name = "offroad"

    def from_context(self, c):
        return c.masked_any(c.offroad_dist > OFFROAD_THRESHOLD).float()


class OffroadFraction(Metric):
    name = "offroad_fraction"

    def from_context(self, c):
        return c.masked_mean((c.offroad_dist > OFFROAD_THRESHOLD).float())
