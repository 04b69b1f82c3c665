"""The scores: ``score`` (NAVSIM v2 EPDMS with NAVSIM's human filter) and ``nuplan_score`` (nuPlan's closed-loop
score). Formulas in :mod:`sim.metrics.catalogue` (``epdms``, ``nuplan_score``; NC through its ``score_terms``);
the terms are the other families' metrics (:data:`TERM_METRICS`)."""

from __future__ import annotations

import weakref

import torch
from torch import Tensor

from sim.batch import ScenarioBatch
from sim.metrics.base import Metric
from sim.metrics.catalogue import NUPLAN_NC, epdms, nuplan_score, score_terms
from sim.metrics.collisions import NoAtFaultCollisions
from sim.metrics.comfort import Comfortable
from sim.metrics.context import MetricContext
from sim.metrics.drivable import Offroad
from sim.metrics.progress import Progress
from sim.metrics.rules import DrivingDirectionCompliance, LaneKeeping, SpeedLimitCompliance, TrafficLightCompliance
from sim.metrics.ttc import TTCOk
from sim.rollout import Rollout

TERM_METRICS: dict[str, Metric] = {
    m.name: m
    for m in (NoAtFaultCollisions(), Offroad(), DrivingDirectionCompliance(), TrafficLightCompliance(), Progress(),
              TTCOk(), LaneKeeping(), Comfortable(), SpeedLimitCompliance())
}
_HUMAN_TERMS: weakref.WeakKeyDictionary[ScenarioBatch, dict[str, Tensor]] = weakref.WeakKeyDictionary()


def _terms(c: MetricContext) -> dict[str, Tensor]:
    """The score terms of a context (:func:`sim.metrics.catalogue.score_terms`: NAVSIM's NC, that of ``score``),
    once; ``nuplan_score``'s NC is nuPlan's own (``CollisionSignals.nuplan_no_at_fault_collisions``: 0 from the
    second at-fault object on), which a stored row cannot tell."""
    got = c.__dict__.get("_score_terms")
    if got is None:
        got = score_terms({n: m.from_context(c) for n, m in TERM_METRICS.items()})
        got[NUPLAN_NC] = c.nuplan_no_at_fault_collisions
        c.__dict__["_score_terms"] = got
    return got


def human_terms(batch: ScenarioBatch) -> dict[str, Tensor]:
    """The score terms of the recorded driver: every agent (ego included) on its log, unfiltered. A property of the
    batch alone: computed once per batch and kept while it lives (NAVSIM's human filter compares against it)."""
    got = _HUMAN_TERMS.get(batch)
    if got is None:
        action = torch.zeros(batch.num_scenes, batch.num_steps, 2, device=batch.device, dtype=batch.log.dtype)
        log = Rollout(batch.log, batch.valid, action, None, agent_model="log", init_step=batch.init_step, dt=batch.dt)
        got = _HUMAN_TERMS[batch] = _terms(MetricContext(log, batch))
    return got


class Score(Metric):
    """NAVSIM v2 EPDMS with the human filter (:func:`sim.metrics.catalogue.epdms`)."""

    name = "score"

    def from_context(self, c):
        return epdms(_terms(c), human_terms(c.batch))


class NuplanScore(Metric):
    """nuPlan's closed-loop score, no human filter (:func:`sim.metrics.catalogue.nuplan_score`)."""

    name = "nuplan_score"

    def from_context(self, c):
        return nuplan_score(_terms(c))
