"""Closed-loop metrics (docs/metrics.md), batched in torch: the registry.

One module per family, each with its constants, its per-step signals and its :class:`~sim.metrics.base.Metric`
classes: :mod:`~sim.metrics.imitation` (ADE, FDE), :mod:`~sim.metrics.collisions` (collisions, at-fault, NC),
:mod:`~sim.metrics.drivable` (drivable area, lane occupancy), :mod:`~sim.metrics.progress` (ego progress, route
completion), :mod:`~sim.metrics.ttc` (time to collision), :mod:`~sim.metrics.comfort`, :mod:`~sim.metrics.rules`
(traffic lights, driving direction, speed limits, lane keeping) and :mod:`~sim.metrics.scores` (EPDMS, nuPlan's
score). Names, units and directions come from the one catalogue, :mod:`sim.metrics.catalogue`.
:func:`compute_metrics` gives every metric in :data:`REGISTRY` from one shared
:class:`~sim.metrics.context.MetricContext`; :func:`metric_series` gives the per-step signals shared with the
training reward.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from sim.batch import ScenarioBatch
from sim.compiled import StepCompile
from sim.config import SimError
from sim.metrics.base import Metric
from sim.metrics.collisions import Collision, CollisionAtFault, CollisionTime, NoAtFaultCollisions
from sim.metrics.comfort import Comfortable
from sim.metrics.context import MetricContext
from sim.metrics.drivable import Offroad, OffroadFraction
from sim.metrics.imitation import ADE, FDE
from sim.metrics.progress import Progress, RouteCompletion
from sim.metrics.rules import DrivingDirectionCompliance, LaneKeeping, SpeedLimitCompliance, TrafficLightCompliance
from sim.metrics.scores import NuplanScore, Score, human_terms
from sim.metrics.ttc import MinTTC, TTCOk
from sim.rollout import Rollout

__all__ = ["REGISTRY", "SERIES", "Metric", "MetricContext", "compute_metrics", "metric_series"]

REGISTRY: dict[str, Metric] = {
    m.name: m
    for m in (
        ADE(),
        FDE(),
        Collision(),
        CollisionTime(),
        CollisionAtFault(),
        NoAtFaultCollisions(),
        Offroad(),
        OffroadFraction(),
        Progress(),
        RouteCompletion(),
        MinTTC(),
        TTCOk(),
        Comfortable(),
        TrafficLightCompliance(),
        DrivingDirectionCompliance(),
        SpeedLimitCompliance(),
        LaneKeeping(),
        Score(),
        NuplanScore(),
    )
}


def compute_metrics(ro: Rollout, batch: ScenarioBatch, compile: StepCompile | None = None) -> dict[str, Tensor]:
    """Every metric in :data:`REGISTRY`.

    Args:
        ro: the closed-loop rollout (B scenes).
        batch: the batch it ran on.
        compile: compile the metrics' candidate filters (same values) and the route projection's nearest vertex
            (round-off; an exact tie may pick the neighbouring vertex) where :class:`~sim.compiled.StepCompile`
            says so.

    Returns:
        ``{name: float [B]}``; booleans as 0/1, ``collision_time`` NaN without collision.

    Raises:
        SimError: the rollout does not belong to the batch (shapes or init_step differ).
    """
    human_terms(batch)  # first: the recorded driver's context is gone before the policy's fills (peak memory)
    c = MetricContext(ro, batch, compile)
    return {name: m.from_context(c).float() for name, m in REGISTRY.items()}


SERIES = ("collision", "offroad_dist", "route_s", "log_dist", "accel", "jerk", "lat_accel", "yaw_rate", "ttc",
          "yaw_accel", "jerk_magnitude")


def metric_series(ro: Rollout, batch: ScenarioBatch, names: Sequence[str] = SERIES) -> dict[str, Tensor]:
    """Per-step signals shared by the metrics and the training reward.

    Args:
        ro: the closed-loop rollout (B scenes).
        batch: the batch it ran on.
        names: which series to compute (default all of :data:`SERIES`; ``ttc`` is the costly one).

    Returns:
        ``{name: [B, T]}``: ``collision`` (bool, any agent, fault-agnostic), ``offroad_dist``
        (m, worst ego corner, > 0 outside), ``route_s`` (m along the route), ``log_dist`` (m),
        ``accel`` (m/s^2), ``jerk`` (m/s^3), ``lat_accel`` (m/s^2), ``yaw_rate`` (rad/s),
        ``ttc`` (s; :data:`sim.geometry.TTC_NONE` where none or not controlled), ``yaw_accel`` (rad/s^2),
        ``jerk_magnitude`` (m/s^3), ``controlled`` (bool).
        Values at padded steps are meaningless.
    """
    unknown = sorted(set(names) - set(SERIES))
    if unknown:
        raise SimError(f"metric_series: unknown series {unknown}; known: {list(SERIES)}")
    c = MetricContext(ro, batch)
    out = {n: getattr(c, n) for n in names}
    out["controlled"] = c.controlled
    return out
