"""The closed-loop metric catalogue: name, unit, direction and a one-line definition of every metric.

The one place these facts are written (docs/metrics.md; the full definitions are in
``docs/metrics.md`` and the computations in :mod:`sim.metrics.registry`). Every list, table column and axis label
of the CLI, the results file and the dashboard is derived from :data:`CATALOGUE`. Torch-free (stdlib only)
so the dashboard can import it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricSpec:
    """What one per-scenario metric means.

    Attributes:
        name: key in the results file and in :data:`sim.metrics.registry.REGISTRY`.
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
    def bounds(self) -> tuple[float, float]:
        """The values the metric can take, by its unit: ``[0, inf)`` for m and s, ``[0, 1]`` for 0/1 and fractions."""
        return (0.0, math.inf) if self.unit in ("m", "s") else (0.0, 1.0)

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
    MetricSpec("progress", "fraction", True,
               "nuPlan ego progress min(1, max(ego, 2 m) / max(expert, 2 m)); 0 after 2 m backwards", "progress"),
    MetricSpec("route_completion", "fraction", True, "fraction of the route covered (CARLA Leaderboard)",
               "route completion"),
    MetricSpec("min_ttc", "s", True,
               "smallest constant-velocity time-to-collision up to 3 s with the agents nuPlan counts (3.1: none)",
               "min TTC"),
    MetricSpec("ttc_ok", "bool", True, "min_ttc > 0.95 s", "TTC ok"),
    MetricSpec("comfortable", "bool", True, "every controlled step within nuPlan's six comfort bounds", "comfortable"),
    # --- the map rules (sim.metrics.rules); NaN = not applicable (the scene's map lacks the semantic)
    MetricSpec("traffic_light_compliance", "bool", True,
               "1 = never enters a lane past its stop line while its light is red (NAVSIM v2); NaN without lights",
               "traffic-light compliance"),
    MetricSpec("driving_direction_compliance", "fraction", True,
               "worst 1 s of signed progress against the lane: < 2 m 1, < 6 m 0.5, else 0 (nuPlan); NaN without lanes",
               "driving direction"),
    MetricSpec("speed_limit_compliance", "fraction", True,
               "max(0, 1 - over-speed integral / (2.23 m/s * duration)) (nuPlan); NaN without speed limits",
               "speed-limit compliance"),
    MetricSpec("lane_keeping", "bool", True,
               "0 = over 0.5 m from a lane centreline for 2 s outside intersections (NAVSIM v2); NaN without lanes",
               "lane keeping"),
    # --- the two scores (formulas below)
    MetricSpec("score", "fraction", True,
               "NAVSIM v2 EPDMS NC * DAC * DDC * TLC * (5 EP + 5 TTC + 2 LK + 2 HC) / 14, human-filtered",
               "score (EPDMS)"),
    MetricSpec("nuplan_score", "fraction", True,
               "nuPlan closed-loop score NC * DAC * DDC * (EP >= 0.2) * (5 EP + 5 TTC + 4 SLC + 2 C) / 16 (nuPlan NC)",
               "nuPlan score"),
)
SPECS: dict[str, MetricSpec] = {m.name: m for m in CATALOGUE}
METRIC_NAMES: tuple[str, ...] = tuple(SPECS)
LOWER_IS_BETTER: frozenset[str] = frozenset(m.name for m in CATALOGUE if not m.higher_is_better)
NOT_JUDGED: frozenset[str] = frozenset({"collision_time"})  # NaN without a collision: no mean to rank on
MAP_RULES: tuple[str, ...] = ("traffic_light_compliance", "driving_direction_compliance", "speed_limit_compliance",
                              "lane_keeping")  # NaN (not applicable) on a scene whose map lacks what they need
JUDGED_METRICS: tuple[str, ...] = tuple(n for n in METRIC_NAMES if n not in NOT_JUDGED)
TABLE_METRICS: tuple[str, ...] = ("ade", "fde", "collision", "offroad", "score", "nuplan_score")  # CLI summary
CARD_DECIMALS = 4  # the report card's value and regret (CLI, HTML report, dashboard): top picks differ in the 3rd
SCORE_WEIGHTS: dict[str, float] = {"progress": 5.0, "ttc_ok": 5.0, "comfortable": 2.0}  # PDMS v1 (pdm_score)
METRICS_VERSION = 4  # bump when a definition above (or its computation in sim.metrics.registry) changes a number
# version 2: nuPlan's TTC candidates, objects 0.5 in NC (no_at_fault_collisions), six comfort bounds, IDM vehicles only
# version 3: score is NAVSIM v2's EPDMS with the human filter, nuplan_score added, the four map-rule metrics added
# version 4: edge cases as nuPlan's code: TTC "ahead" within 30 deg; at-fault rear = agent behind the rear axle, stopped
# at <= 0.05 m/s; nuplan_score's NC 0 from the 2nd object; EP 0 backwards; DDC's 11-step signed window and strict
# bounds; speed limit counts the init sample; comfort bounds strict


def higher_is_better(metric: str) -> bool:
    """Direction of ``metric`` (unknown names count as higher-is-better)."""
    spec = SPECS.get(metric)
    return True if spec is None else spec.higher_is_better


def axis_title(metric: str) -> str:
    """Axis title of ``metric`` with its unit (the bare name for metrics outside the catalogue)."""
    spec = SPECS.get(metric)
    return metric if spec is None else spec.axis_title


def pdm_score(at_fault: Any, offroad: Any, progress: Any, ttc_ok: Any, comfortable: Any) -> Any:
    """NAVSIM-PDM-style score (metric version 1): ``(1 - at_fault) (1 - offroad) (5 EP + 5 TTC + 2 C) / 12``.

    ``at_fault`` is the at-fault penalty ``1 - no_at_fault_collisions``: 1 after an at-fault collision with a
    vehicle, pedestrian or cyclist, 0.5 with objects only (NAVSIM NC in {0, 0.5, 1}), 0 without one; a 0/1
    ``collision_at_fault`` flag gives the strict form. Works elementwise on floats, numpy arrays or torch
    tensors of one shape (flags in [0, 1], progress in [0, 1]).
    """
    weighted = sum(w * v for w, v in zip(SCORE_WEIGHTS.values(), (progress, ttc_ok, comfortable), strict=True))
    return (1.0 - at_fault) * (1.0 - offroad) * weighted / sum(SCORE_WEIGHTS.values())


# ----------------------------------------------------------------------------- the two scores (METRICS_VERSION 2)
# Score terms by name: "no_at_fault_collision" (NC), "drivable" (DAC = 1 - offroad), "driving_direction_compliance"
# (DDC), "traffic_light_compliance" (TLC), "progress" (EP), "ttc_ok" (TTC), "lane_keeping" (LK), "comfortable" (HC:
# comfort including the motion history, as this project's comfort filters reach into the logged history) and
# "speed_limit_compliance" (SLC). NAVSIM v2's extended comfort EC (consistency of consecutive plans) needs every
# policy's plans at every step, which a log replay or a controls policy does not have: dropped with its weight 2.
EPDMS_MULTIPLIERS: tuple[str, ...] = ("no_at_fault_collision", "drivable", "driving_direction_compliance",
                                      "traffic_light_compliance")
EPDMS_WEIGHTS: dict[str, float] = {"progress": 5.0, "ttc_ok": 5.0, "lane_keeping": 2.0, "comfortable": 2.0}
NUPLAN_MULTIPLIERS: tuple[str, ...] = ("no_at_fault_collision", "drivable", "driving_direction_compliance")
NUPLAN_NC = "nuplan_no_at_fault_collision"  # nuPlan's own NC where the terms carry it (0 from the 2nd object on)
NUPLAN_WEIGHTS: dict[str, float] = {"progress": 5.0, "ttc_ok": 5.0, "speed_limit_compliance": 4.0, "comfortable": 2.0}
MAKING_PROGRESS = 0.2  # nuPlan ego_is_making_progress: EP below this zeroes the score


def _fill_nan(x: Any, value: float) -> Any:
    """``x`` with NaN replaced by ``value`` (float, numpy array or torch tensor)."""
    if hasattr(x, "nan_to_num") and not hasattr(x, "__array_namespace__"):  # torch
        return x.nan_to_num(nan=value)
    if hasattr(x, "__array_namespace__"):  # numpy
        xp = x.__array_namespace__()
        return xp.where(x != x, value, x)
    return value if x != x else x


def human_filter(policy: Any, human: Any) -> Any:
    """NAVSIM's human penalty filter (``navsim/evaluate/pdm_score.py``): a term the recorded driver scores 0 on is 1
    for the policy (a NaN stays NaN; a human NaN filters nothing)."""
    return policy + (1.0 - policy) * (human == 0)


def _weighted(terms: Mapping[str, Any], weights: Mapping[str, float]) -> Any:
    """Weighted mean of the terms; a NaN (not applicable) term is dropped with its weight."""
    num = sum(w * _fill_nan(terms[n], 0.0) for n, w in weights.items())
    den = sum(w * (terms[n] == terms[n]) for n, w in weights.items())
    if isinstance(den, int | float) and den == 0:  # every term not applicable: so is the score (arrays give NaN)
        return math.nan
    return num / den


def epdms(terms: Mapping[str, Any], human: Mapping[str, Any] | None = None) -> Any:
    """NAVSIM v2 EPDMS (``navsim/planning/simulation/planner/pdm_planner/scoring/pdm_scorer.py``, ``docs/metrics.md``):
    ``NC * DAC * DDC * TLC * (5 EP + 5 TTC + 2 LK + 2 HC) / 14`` (EC dropped, see above).

    Args:
        terms: the policy's unfiltered terms by name (floats, numpy arrays or torch tensors of one shape).
        human: the same terms of the recorded driver (log replay); each term it scores 0 on is 1 for the policy
            (:func:`human_filter`). None: no filter.

    Returns:
        The score, elementwise; a NaN multiplier counts as 1 and a NaN weighted term is dropped with its weight.
    """
    names = (*EPDMS_MULTIPLIERS, *EPDMS_WEIGHTS)
    t = {n: terms[n] if human is None else human_filter(terms[n], human[n]) for n in names}
    prod = 1.0
    for n in EPDMS_MULTIPLIERS:
        prod = prod * _fill_nan(t[n], 1.0)
    return prod * _weighted(t, EPDMS_WEIGHTS)


def nuplan_score(terms: Mapping[str, Any]) -> Any:
    """nuPlan's closed-loop scenario score (``nuplan/planning/metrics/`` and the CLS aggregator; no human filter):
    ``NC * DAC * DDC * (EP >= 0.2) * (5 EP + 5 TTC + 4 SLC + 2 C) / 16``; NaN handled as in :func:`epdms`. NC is
    the terms' :data:`NUPLAN_NC` where they carry it (nuPlan's product over road users and objects:
    ``no_ego_at_fault_collisions.py``), else ``no_at_fault_collision``."""
    t = {**terms, "no_at_fault_collision": terms[NUPLAN_NC]} if NUPLAN_NC in terms else terms
    prod = 1.0 * (t["progress"] >= MAKING_PROGRESS)
    for n in NUPLAN_MULTIPLIERS:
        prod = prod * _fill_nan(t[n], 1.0)
    return prod * _weighted(t, NUPLAN_WEIGHTS)


def score_terms(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The score terms from stored metric values (a results row): NC = no_at_fault_collisions (0, 0.5 after hitting
    only objects, 1), DAC = 1 - offroad. nuPlan's NC (:data:`NUPLAN_NC`) is 0 from the second at-fault object on; a
    row does not count the objects, so :func:`nuplan_score` of a row uses NAVSIM's NC (the same below two object
    hits); the metrics (:mod:`sim.metrics.scores`) add the counted one."""
    t = {n: metrics[n] for n in ("driving_direction_compliance", "traffic_light_compliance", "progress", "ttc_ok",
                                 "lane_keeping", "comfortable", "speed_limit_compliance")}
    t["no_at_fault_collision"] = metrics["no_at_fault_collisions"]
    t["drivable"] = 1.0 - metrics["offroad"]
    return t
