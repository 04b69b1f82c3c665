"""The closed-loop metric catalogue: name, unit, direction and a one-line definition of every metric.

The one place these facts are written (DESIGN.md "Closed-loop metrics"; the full definitions are in
``docs/metrics.md`` and the computations in :mod:`sim.metrics`). Every list, table column and axis label
of the CLI, the results file and the dashboard is derived from :data:`CATALOGUE`. Torch-free (stdlib only)
so the dashboard can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricSpec:
    """What one per-scenario metric means.

    Attributes:
        name: key in the results file and in :data:`sim.metrics.REGISTRY`.
        unit: ``m``, ``s``, ``bool`` (0/1) or ``fraction`` (in [0, 1]).
        higher_is_better: direction used by the verdict and every ranking.
        definition: one line, the docs table's wording.
        label: short human label (table headers, axis titles).
    """

    name: str
    unit: str
    higher_is_better: bool
    definition: str
    label: str

    @property
    def axis_title(self) -> str:
        """Axis title with the unit where it has one (``ADE (m)``, ``collision rate``)."""
        if self.unit == "bool":
            return f"{self.label} rate"
        return f"{self.label} ({self.unit})" if self.unit in ("m", "s") else self.label


CATALOGUE: tuple[MetricSpec, ...] = (
    MetricSpec("ade", "m", False, "mean over controlled steps of the ego's distance to its logged position", "ADE"),
    MetricSpec("fde", "m", False, "the ego's distance to its logged position at the last valid step", "FDE"),
    MetricSpec("collision", "bool", False, "the ego's box overlaps a valid agent's box at any controlled step",
               "collision"),
    MetricSpec("collision_time", "s", True, "time after init_step of the first collision (NaN without one)",
               "collision time"),
    MetricSpec("collision_at_fault", "bool", False, "a collision the ego is blamed for (nuPlan's rule)",
               "at-fault collision"),
    MetricSpec("no_at_fault_collisions", "fraction", True,
               "NAVSIM NC: 0 after an at-fault collision with a road user, 0.5 with objects only, else 1",
               "no at-fault collisions"),
    MetricSpec("offroad", "bool", False, "any ego corner more than 0.3 m outside the drivable area", "offroad"),
    MetricSpec("offroad_fraction", "fraction", False, "fraction of controlled steps off-road", "offroad fraction"),
    MetricSpec("progress", "fraction", True, "nuPlan ego progress min(1, max(ego, 2 m) / max(expert, 2 m))",
               "progress"),
    MetricSpec("route_completion", "fraction", True, "fraction of the route covered (CARLA Leaderboard)",
               "route completion"),
    MetricSpec("min_ttc", "s", True,
               "smallest constant-velocity time-to-collision up to 3 s with the agents nuPlan counts (3.1: none)",
               "min TTC"),
    MetricSpec("ttc_ok", "bool", True, "min_ttc > 0.95 s", "TTC ok"),
    MetricSpec("comfortable", "bool", True, "every controlled step within nuPlan's six comfort bounds", "comfortable"),
    MetricSpec("score", "fraction", True,
               "NAVSIM-PDM-style no_at_fault_collisions * drivable * (5 progress + 5 ttc_ok + 2 comfortable) / 12",
               "score"),
)
SPECS: dict[str, MetricSpec] = {m.name: m for m in CATALOGUE}
METRIC_NAMES: tuple[str, ...] = tuple(SPECS)
LOWER_IS_BETTER: frozenset[str] = frozenset(m.name for m in CATALOGUE if not m.higher_is_better)
NOT_JUDGED: frozenset[str] = frozenset({"collision_time"})  # NaN without a collision: no mean to rank on
JUDGED_METRICS: tuple[str, ...] = tuple(n for n in METRIC_NAMES if n not in NOT_JUDGED)
TABLE_METRICS: tuple[str, ...] = ("ade", "fde", "collision", "offroad", "score")  # the CLI summary's columns
SCORE_WEIGHTS: dict[str, float] = {"progress": 5.0, "ttc_ok": 5.0, "comfortable": 2.0}
METRICS_VERSION = 2  # bump when a definition above (or its computation in sim.metrics) changes a number


def higher_is_better(metric: str) -> bool:
    """Direction of ``metric`` (unknown names count as higher-is-better)."""
    spec = SPECS.get(metric)
    return True if spec is None else spec.higher_is_better


def axis_title(metric: str) -> str:
    """Axis title of ``metric`` with its unit (the bare name for metrics outside the catalogue)."""
    spec = SPECS.get(metric)
    return metric if spec is None else spec.axis_title


def pdm_score(at_fault: Any, offroad: Any, progress: Any, ttc_ok: Any, comfortable: Any) -> Any:
    """NAVSIM-PDM-style score (DESIGN.md): ``(1 - at_fault) (1 - offroad) (5 EP + 5 TTC + 2 C) / 12``.

    ``at_fault`` is the at-fault penalty ``1 - no_at_fault_collisions``: 1 after an at-fault collision with a
    vehicle, pedestrian or cyclist, 0.5 with objects only (NAVSIM NC in {0, 0.5, 1}), 0 without one; a 0/1
    ``collision_at_fault`` flag gives the strict form. Works elementwise on floats, numpy arrays or torch
    tensors of one shape (flags in [0, 1], progress in [0, 1]).
    """
    weighted = sum(w * v for w, v in zip(SCORE_WEIGHTS.values(), (progress, ttc_ok, comfortable), strict=True))
    return (1.0 - at_fault) * (1.0 - offroad) * weighted / sum(SCORE_WEIGHTS.values())
