"""Which trainer a run's checkpoints come from, and the words the dashboard uses for it (pure: no Streamlit).

A run of this project's trainer counts its checkpoints in episodes and declares roles with role files
(``best_entropy.pt``, ``last.pt``, ...). Checkpoints evaluated through an agent plug-in (``python -m sim.evaluate
--agent sb3|torchscript|MODULE:FACTORY``, :mod:`sim.evaluation.plugin_candidates`) have neither: their step is the
plug-in's (environment steps for SB3's ``rl_model_<steps>_steps.zip``), ``last`` is the highest step, and the
stored ``eval_info`` names the plug-in (``{"agent": "sb3", "step": ..., "step_source": ...}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sim.results.run_folder import OWN_AGENT as OWN
from sim.results.run_folder import STEP_UNITS, stored_agent
from sim.results.run_folder import step_unit as unit_of

# Legend labels of the marked checkpoints of a plug-in run (the project's run: dashboard.figures.MARKS).
PLUGIN_MARK_LABELS = {"last": "last (highest step)", "max_entropy": "max entropy (rule)",
                      "best_reward": "best logged reward"}


@dataclass(frozen=True)
class RunKind:
    """Where a run's checkpoints come from.

    Attributes:
        agent: ``own`` (this project's trainer) or the ``--agent`` plug-in (``sb3``, ``torchscript``, ...).
        step_unit: what a checkpoint's step (the results' ``episode`` field) counts, singular.
    """

    agent: str = OWN
    step_unit: str = STEP_UNITS[OWN]

    @property
    def plugin(self) -> bool:
        """Checkpoints of a foreign trainer: no project run folder, no role files, no entropy_history.json."""
        return self.agent != OWN

    def mark_label(self, role: str, default: str) -> str:
        """The legend label of a marked checkpoint (``default``: the project run's label)."""
        return PLUGIN_MARK_LABELS.get(role, default) if self.plugin else default


def run_kind(summary: Any) -> RunKind:
    """The kind of a run from its results summary (:class:`sim.results.reader.ResultsSummary`, or None).

    A checkpoint whose stored ``eval_info`` names an ``agent`` other than ``own`` makes it a plug-in run (the first
    such checkpoint's agent names it); otherwise the root ``config``'s ``agent`` (``EvalConfig.agent``) decides.
    """
    if summary is None:
        return RunKind()
    agent = stored_agent(c.eval_info for c in summary.checkpoints.values() if c.kind == "checkpoint")
    if agent != OWN:
        return RunKind(agent, unit_of(agent))
    agent = ((summary.attrs or {}).get("config") or {}).get("agent")
    if isinstance(agent, str) and agent != OWN:
        return RunKind(agent, unit_of(agent))
    return RunKind()


PROJECT_RUN = RunKind()  # a run of this project's trainer (the default of every figure)
