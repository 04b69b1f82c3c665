"""Progress metrics along the route: ``progress`` (nuPlan's ego progress) and ``route_completion``.

- ``progress``: nuPlan EP (``ego_progress_along_expert_route.py``), ``min(1, max(ego, 2 m) / max(expert, 2 m))``
  where each is the arc-length advance along the route between ``init_step`` and the last valid step; 0 when the
  ego went back more than 2 m (nuPlan: "ego is not allowed to fully drive backwards"), 1 when neither moved 2 m.
  ``route_completion``: ``(max controlled route position - start position) /
  (logged ego's final route position - start position)``, clipped to [0, 1] (1 when the log
  does not advance): an ego that drives its whole log has completed its route (the importers'
  route runs on past the last logged pose so that a policy has somewhere to go).
"""

from __future__ import annotations

import weakref
from functools import cached_property

import torch
from torch import Tensor

from scenarios.scenario import X, Y
from sim.batch import ScenarioBatch
from sim.geometry import project_to_dense_polyline
from sim.metrics.base import Metric

PROGRESS_FLOOR = 2.0  # m (nuPlan EP score_progress_threshold: the floor, and the backwards limit)
_LOG_PROGRESS: weakref.WeakKeyDictionary[ScenarioBatch, Tensor] = weakref.WeakKeyDictionary()


class ProgressSignals:
    """Mixin of :class:`~sim.metrics.context.MetricContext`: the ego's projection onto its route."""

    @cached_property
    def route_projection(self) -> tuple[Tensor, Tensor]:
        """``(s [B, T], lateral [B, T])`` m: the ego's projection onto its route, computed once for both."""
        b = self.batch
        return project_to_dense_polyline(b.route, b.route_valid, self.ego[..., X : Y + 1], self._nearest)

    @cached_property
    def route_s(self) -> Tensor:
        """``[B, T]`` m, ego arc-length position along the route."""
        return self.route_projection[0]

    @cached_property
    def route_lat(self) -> Tensor:
        """``[B, T]`` m, ego distance from its route (the logged path): how far it left its lane."""
        return self.route_projection[1]

    @cached_property
    def log_progress(self) -> Tensor:
        """``[B]`` m, the logged ego's advance along the route from init_step to the last valid step (a property
        of the batch alone: computed once per batch and kept while it lives)."""
        got = _LOG_PROGRESS.get(self.batch)
        if got is None:
            steps = torch.stack([torch.full_like(self.last, self.init), self.last], dim=1)  # [B, 2]
            xy = self.batch.log[:, 0, :, :2].gather(1, steps[..., None].expand(-1, -1, 2))
            s = project_to_dense_polyline(self.batch.route, self.batch.route_valid, xy)[0]
            got = _LOG_PROGRESS[self.batch] = s[:, 1] - s[:, 0]
        return got


class Progress(Metric):
    name = "progress"

    def from_context(self, c):
        ego = c.at_last(c.route_s) - c.route_s[:, c.init]
        ratio = (ego.clamp_min(PROGRESS_FLOOR) / c.log_progress.clamp_min(PROGRESS_FLOOR)).clamp(max=1.0)
        return torch.where(ego < -PROGRESS_FLOOR, torch.zeros_like(ratio), ratio)  # nuPlan: driving backwards -> 0


class RouteCompletion(Metric):
    name = "route_completion"

    def from_context(self, c):
        start = c.route_s[:, c.init]
        reached = c.route_s.masked_fill(~c.controlled, -float("inf")).amax(1)
        left = c.log_progress
        frac = (reached - start) / left.clamp_min(1e-6)
        return torch.where(left > 1e-3, frac, torch.ones_like(frac)).clamp(0.0, 1.0)
