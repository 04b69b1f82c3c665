"""The one context of a (rollout, batch) pair: :class:`ContextCore` and every family's signals, each computed once,
lazily (``cached_property``), whichever metric asks first."""

from __future__ import annotations

from sim.metrics.base import ContextCore
from sim.metrics.collisions import CollisionSignals
from sim.metrics.comfort import ComfortSignals
from sim.metrics.drivable import DrivableSignals
from sim.metrics.imitation import ImitationSignals
from sim.metrics.progress import ProgressSignals
from sim.metrics.ttc import TTCSignals


class MetricContext(ContextCore, ImitationSignals, CollisionSignals, DrivableSignals, ProgressSignals, ComfortSignals,
                    TTCSignals):
    """Shared intermediate results for one (rollout, batch) pair; each computed once, lazily.

    Args:
        ro: the closed-loop rollout (``ego [B, T, 7]``, the other agents in ``record [B, A, T, 7]``).
        batch: the batch it ran on (same B, A, T and ``init_step``).
        compile: compile the candidate filters and the route projection where it says so.

    Raises:
        SimError: the rollout does not belong to the batch.
    """
