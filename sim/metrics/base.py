"""The metrics' shared core: the :class:`Metric` base class and the context every family's signals build on.

A family module (``collisions``, ``drivable``, ``progress``, ``ttc``, ``comfort``, ``imitation``, ``rules``,
``scores``) holds its constants, its per-step signals (a mixin of :class:`sim.metrics.context.MetricContext`, each
signal a lazily computed ``cached_property``) and its :class:`Metric` classes; :mod:`sim.metrics.registry` gathers
the metrics. Controlled steps are ``init_step + 1 .. last valid step`` of each scene (``batch.step_valid``);
every per-scenario metric is computed over them.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from scenarios.scenario import LENGTH, WIDTH, YAW, X, Y
from sim.batch import ScenarioBatch
from sim.compiled import StepCompile, maybe_compile
from sim.config import SimError
from sim.geometry import nearest_vertex, nearest_vertex_fused
from sim.metrics.catalogue import SPECS
from sim.metrics.pairs import broad_phase_candidates, pair_candidate_indices, pair_candidates
from sim.rollout import Rollout

if TYPE_CHECKING:  # pragma: no cover
    from sim.metrics.context import MetricContext

TTC_MIN_SPEED = 0.005  # m/s; no TTC while the ego stands still, at or below this (nuPlan: speed <= 5e-3)
_BOX = [X, Y, YAW, LENGTH, WIDTH]
assert _BOX == [0, 1, 2, 5, 6]  # _box() slices these columns


def _box(x: Tensor) -> Tensor:
    """``[..., 7]`` states -> ``[..., 5]`` boxes (x, y, yaw, length, width): ``x[..., _BOX]``, sliced (fast on CPU)."""
    return torch.cat([x[..., X : YAW + 1], x[..., LENGTH : WIDTH + 1]], dim=-1)


class ContextCore:
    """The rollout, the batch and the controlled steps of one (rollout, batch) pair; the pair candidates."""

    def __init__(self, ro: Rollout, batch: ScenarioBatch, compile: StepCompile | None = None):
        if tuple(ro.record.shape[:3]) != tuple(batch.log.shape[:3]) or ro.record.shape[-1] != batch.log.shape[-1]:
            raise SimError(
                f"metrics: rollout trajectory {list(ro.record.shape)} does not match "
                f"the batch log {list(batch.log.shape)}"
            )
        if ro.init_step != batch.init_step:
            raise SimError(f"metrics: rollout init_step {ro.init_step} differs from the batch's {batch.init_step}")
        self.ro = ro
        self.batch = batch
        self.dt = float(ro.dt)
        self.init = int(ro.init_step)
        n_t = ro.record.shape[2]
        steps = torch.arange(n_t, device=ro.record.device)
        self.step_valid = batch.step_valid
        self.last = (batch.step_valid * steps).amax(dim=1)  # [B] last valid step
        self.controlled = batch.step_valid & (steps > self.init)[None, :]  # [B, T]
        self.n_controlled = self.controlled.sum(1).clamp_min(1)
        self.ego = ro.ego  # [B, T, 7]
        dev = ro.record.device
        self._compiled_filters = compile is not None and compile.compiles("metric_filters")
        self._pair_candidates = maybe_compile(pair_candidates, compile, dev, part="metric_filters")
        # compiled: the fused nearest route vertex; eager (or a failed compile): cdist, faster uncompiled
        self._nearest = maybe_compile(nearest_vertex_fused, compile, dev, part="route_projection", eager=nearest_vertex)

    @cached_property
    def candidates(self) -> tuple[Tensor, Tensor]:
        """``(overlap, ttc)`` int64 ascending flat indices ``b * (A-1) * T + a * T + t`` of the (scene, agent, step)
        pairs that :func:`~sim.metrics.pairs.pair_candidates` keeps (TTC rows: controlled steps where the ego
        moves). The same pairs three ways: compiled, one pass over every pair; eager on a record shared by a
        batch's later rollouts, the broad phase with the record's kept bounds
        (:func:`~sim.metrics.pairs.broad_phase_candidates`); eager otherwise, one pass in chunks of scenes."""
        args = (self.ego, self.ro.record, self.ro.valid, self.controlled & (self.speed.abs() > TTC_MIN_SPEED))
        if self._compiled_filters:
            return tuple(x.reshape(-1).nonzero().squeeze(1) for x in self._pair_candidates(*args))
        if self.ro.ego_row is not None:
            return broad_phase_candidates(*args, shared=True)
        return pair_candidate_indices(*args)

    @cached_property
    def ego_rows(self) -> Tensor:
        """float32 ``[B * T, 7]`` the ego's states, one row per (scene, step) (:func:`~sim.metrics.pairs.pair_rows`)."""
        return self.ego.reshape(-1, self.ego.shape[-1])

    @cached_property
    def record_rows(self) -> Tensor:
        """float32 ``[B * A * T, 7]`` the rollout's record, one row per (scene, agent, step)
        (:func:`~sim.metrics.pairs.pair_rows`; the ego's rows are read from :attr:`ego_rows`)."""
        return self.ro.record.reshape(-1, self.ro.record.shape[-1])

    def masked_any(self, x: Tensor) -> Tensor:
        """``[B]`` whether bool ``x [B, T]`` holds at any controlled step."""
        return (x & self.controlled).any(1)

    def masked_mean(self, x: Tensor) -> Tensor:
        """``[B]`` mean of ``x [B, T]`` over controlled steps."""
        return (x * self.controlled).sum(1) / self.n_controlled

    def at_last(self, x: Tensor) -> Tensor:
        """``[B]`` value of ``x [B, T]`` at the last valid step."""
        return x.gather(1, self.last[:, None])[:, 0]



class Metric:
    """A per-scenario closed-loop metric; subclasses implement :meth:`from_context`."""

    name: str = ""

    @property
    def unit(self) -> str:
        """Unit, from :data:`sim.metrics.catalogue.CATALOGUE`."""
        return SPECS[self.name].unit

    @property
    def higher_is_better(self) -> bool:
        """Direction, from :data:`sim.metrics.catalogue.CATALOGUE`."""
        return SPECS[self.name].higher_is_better

    def compute(self, ro: Rollout, batch: ScenarioBatch) -> Tensor:
        """float ``[B]`` value per scenario."""
        from sim.metrics.context import MetricContext

        return self.from_context(MetricContext(ro, batch))

    def from_context(self, c: MetricContext) -> Tensor:
        """float ``[B]`` from shared intermediate results."""
        raise NotImplementedError
