"""Imitation metrics: ``ade`` (mean over controlled steps of the ego's distance to its logged position, m) and
``fde`` (that distance at the last valid step, m)."""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor

from scenarios.scenario import X, Y
from sim.metrics.base import Metric


class ImitationSignals:
    """Mixin of :class:`~sim.metrics.context.MetricContext`: the distance to the log."""

    @cached_property
    def log_dist(self) -> Tensor:
        """``[B, T]`` m, ego distance to its logged position."""
        return torch.linalg.vector_norm(self.ego[..., X : Y + 1] - self.batch.log[:, 0, :, X : Y + 1], dim=-1)


class ADE(Metric):
    name = "ade"

    def from_context(self, c):
        return c.masked_mean(c.log_dist)


class FDE(Metric):
    name = "fde"

    def from_context(self, c):
        return c.at_last(c.log_dist)
