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

from scenarios.scenario import LENGTH, VX, VY, WIDTH, YAW, X, Y
from sim.batch import ScenarioBatch
from sim.compiled import StepCompile, maybe_compile
from sim.config import SimError
from sim.geometry import TTC_HORIZON, nearest_vertex, nearest_vertex_fused
from sim.metrics.catalogue import SPECS
from sim.rollout import Rollout

if TYPE_CHECKING:  # pragma: no cover
    from sim.metrics.context import MetricContext

TTC_MIN_SPEED = 0.005  # m/s; no TTC while the ego stands still (nuPlan)
FILTER_CHUNK = 1 << 18  # (scene, agent, step) pairs per eager chunk of the candidate filters (1 MB temporaries)
_BOX = [X, Y, YAW, LENGTH, WIDTH]
assert _BOX == [0, 1, 2, 5, 6] and VX == 3 and VY == 4  # _box() and the TTC slice these columns


def _box(x: Tensor) -> Tensor:
    """``[..., 7]`` states -> ``[..., 5]`` boxes (x, y, yaw, length, width): ``x[..., _BOX]``, sliced (fast on CPU)."""
    return torch.cat([x[..., X : YAW + 1], x[..., LENGTH : WIDTH + 1]], dim=-1)


def pair_candidates(traj: Tensor, valid: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Conservative (ego, agent, step) filters of the box-overlap and TTC tests, in one pass.

    A pair can overlap only if both are valid and their bounding circles meet; it can collide within
    the TTC horizon only if its circles meet at the relative motion's closest approach in
    ``[0, TTC_HORIZON]`` s (constant velocities). Both use 1 mm of slack against rounding. Pure
    elementwise work on the whole rollout, so it can be compiled (:class:`StepCompile`) without changing
    any metric: the exact box and TTC tests run eager on the candidates alone.

    Args:
        traj: float32 ``[B, A, T, 7]`` the rollout's states (ego at agent 0). valid: bool ``[B, A, T]``.
        rows: bool ``[B, T]`` steps at which TTC is measured.

    Returns:
        ``(overlap, ttc)`` bool ``[B, A-1, T]`` candidates for :func:`~sim.geometry.boxes_overlap` and
        :func:`~sim.geometry.time_to_collision`.
    """
    ego, oth = traj[:, 0], traj[:, 1:]
    dx, dy = oth[..., X] - ego[:, None, :, X], oth[..., Y] - ego[:, None, :, Y]
    ego_diag = torch.hypot(ego[..., LENGTH], ego[..., WIDTH])[:, None]
    reach = (ego_diag + torch.hypot(oth[..., LENGTH], oth[..., WIDTH])) / 2 + 1e-3
    reach2 = reach * reach
    overlap = valid[:, 1:] & valid[:, :1] & (dx * dx + dy * dy <= reach2)
    wx, wy = oth[..., VX] - ego[:, None, :, VX], oth[..., VY] - ego[:, None, :, VY]
    tau = (-(dx * wx + dy * wy) / (wx * wx + wy * wy).clamp_min(1e-12)).clamp(0.0, TTC_HORIZON)
    cx, cy = dx + wx * tau, dy + wy * tau
    return overlap, valid[:, 1:] & rows[:, None] & (cx * cx + cy * cy <= reach2)


def _pair_rows(idx: Tensor, n_a: int, n_t: int) -> tuple[Tensor, Tensor]:
    """Flat pair indices ``b * (A-1) * T + a * T + t`` into a ``[B, A-1, T]`` table -> rows of
    ``traj.reshape(-1, 7)`` (agent ``a`` of scene ``b`` at step ``t`` is row ``(b * A + a) * T + t``):
    ``(ego rows, other agent a + 1 rows)``."""
    b = idx // ((n_a - 1) * n_t)
    return b * (n_a * n_t) + idx % n_t, idx + (b + 1) * n_t


class ContextCore:
    """The rollout, the batch and the controlled steps of one (rollout, batch) pair; the pair candidates."""

    def __init__(self, ro: Rollout, batch: ScenarioBatch, compile: StepCompile | None = None):
        if tuple(ro.traj.shape[:3]) != tuple(batch.log.shape[:3]) or ro.traj.shape[-1] != batch.log.shape[-1]:
            raise SimError(
                f"metrics: rollout trajectory {list(ro.traj.shape)} does not match "
                f"the batch log {list(batch.log.shape)}"
            )
        if ro.init_step != batch.init_step:
            raise SimError(f"metrics: rollout init_step {ro.init_step} differs from the batch's {batch.init_step}")
        self.ro = ro
        self.batch = batch
        self.dt = float(ro.dt)
        self.init = int(ro.init_step)
        n_t = ro.traj.shape[2]
        steps = torch.arange(n_t, device=ro.traj.device)
        self.step_valid = batch.step_valid
        self.last = (batch.step_valid * steps).amax(dim=1)  # [B] last valid step
        self.controlled = batch.step_valid & (steps > self.init)[None, :]  # [B, T]
        self.n_controlled = self.controlled.sum(1).clamp_min(1)
        self.ego = ro.traj[:, 0]  # [B, T, 7]
        dev = ro.traj.device
        self._compiled_filters = compile is not None and compile.compiles("metric_filters")
        self._pair_candidates = maybe_compile(pair_candidates, compile, dev, part="metric_filters")
        # compiled: the fused nearest route vertex; eager (or a failed compile): cdist, faster uncompiled
        self._nearest = maybe_compile(nearest_vertex_fused, compile, dev, part="route_projection", eager=nearest_vertex)

    @cached_property
    def candidates(self) -> tuple[Tensor, Tensor]:
        """``(overlap, ttc)`` bool ``[B, A-1, T]``: :func:`pair_candidates` of the rollout, TTC rows at controlled
        steps where the ego moves; eager in chunks of scenes whose ``[b, A-1, T]`` temporaries stay about
        :data:`FILTER_CHUNK` elements (same values; compiled filters build none)."""
        n_b, n_a, n_t = self.ro.valid.shape
        args = (self.ro.traj, self.ro.valid, self.controlled & (self.speed.abs() >= TTC_MIN_SPEED))
        chunk = max(1, FILTER_CHUNK // max(1, (n_a - 1) * n_t))
        if self._compiled_filters or n_b <= chunk:
            return self._pair_candidates(*args)
        parts = [self._pair_candidates(*(x[i : i + chunk] for x in args)) for i in range(0, n_b, chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

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
