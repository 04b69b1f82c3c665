"""`entropy_history.json` and `train_metrics.json` built from the evaluation records (docs/run_files.md).

Neither file holds wall-clock times, so a resumed run writes exactly the files of an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sim.results.run_folder import HISTORY_FILE, TRAIN_METRICS_FILE, role_file
from training.run_dir import write_json

HISTORY_SCHEMA_VERSION = 1
PPO_SERIES = ("policy_loss", "value_loss", "approx_kl", "clip_fraction", "explained_variance")
"""The trainer's PPO statistics: series of ``entropy_history.json`` and keys of ``meta["ppo_stats"]``, each the
mean over the PPO iterations of an evaluation interval (``docs/run_files.md``)."""


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation interval.

    Attributes:
        episode: RL episodes done when evaluated.
        step: PPO iterations done.
        entropy: nats, summed over delta dims, averaged over the run's fixed evaluation states.
        entropy_per_dim: nats per delta dim (length 2K).
        train_reward: mean return of the training episodes of the interval.
        eval_info: ``mean_delta_norm``, ``max_delta_norm``, ``std_delta_norm`` (m), ``policy_entropy`` (nats),
            ``mean_return``, ``val_*`` closed-loop means over the validation scenes.
        path: the candidate file relative to the run dir (``checkpoints/ep00050.pt``), None once evicted.
        ppo_stats: :data:`PPO_SERIES` -> mean over the interval's PPO iterations (None when undefined);
            empty in records of runs written before these statistics were logged.
    """

    episode: int
    step: int
    entropy: float
    entropy_per_dim: list[float]
    train_reward: float
    eval_info: dict[str, float]
    path: str | None
    ppo_stats: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> EvalRecord:
        """Inverse of :meth:`to_dict`."""
        return EvalRecord(int(d["episode"]), int(d["step"]), float(d["entropy"]),
                          [float(v) for v in d["entropy_per_dim"]], float(d["train_reward"]),
                          {k: float(v) for k, v in d["eval_info"].items()}, d["path"],
                          {k: None if v is None else float(v) for k, v in d.get("ppo_stats", {}).items()})


def entropy_history_doc(records: list[EvalRecord], best: EvalRecord | None, *, select_after: int,
                        state_dependent_std: bool, bc: dict[str, Any] | None) -> dict[str, Any]:
    """The ``entropy_history.json`` document: one entry per evaluation, in episode order."""
    return {
        "schema_version": HISTORY_SCHEMA_VERSION,
        "unit": "nats",
        "state_dependent_std": state_dependent_std,
        "select_after": select_after,
        "episodes": [r.episode for r in records],
        "steps": [r.step for r in records],
        "entropy": [r.entropy for r in records],
        "entropy_per_dim": [r.entropy_per_dim for r in records],
        "train_reward": [r.train_reward for r in records],
        "mean_delta_norm": [r.eval_info["mean_delta_norm"] for r in records],
        "max_delta_norm": [r.eval_info["max_delta_norm"] for r in records],
        "std_delta_norm": [r.eval_info["std_delta_norm"] for r in records],
        "val_score": [r.eval_info.get("val_score") for r in records],
        "checkpoints": [r.path for r in records],
        **{name: [r.ppo_stats.get(name) for r in records] for name in PPO_SERIES},
        "best_entropy": best.entropy if best else None,
        "best_episode": best.episode if best else None,
        "bc": bc,
    }


def _ref(path: str, r: EvalRecord | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"path": path, "source": r.path, "episode": r.episode, "entropy": r.entropy, "train_reward": r.train_reward}


def train_metrics_doc(records: list[EvalRecord], ranked: list[EvalRecord], best: EvalRecord | None,
                      best_reward: EvalRecord | None, *, keep_top_k: int, select_after: int, episodes_done: int,
                      stop_reason: str | None, bc: dict[str, Any] | None) -> dict[str, Any]:
    """The ``train_metrics.json`` document: best checkpoint, entropy-ranked list, every evaluation."""
    last = records[-1] if records else None
    return {
        "schema_version": HISTORY_SCHEMA_VERSION,
        "best_checkpoint": _ref(role_file("best_entropy"), best),
        "best_reward_checkpoint": _ref(role_file("best_reward"), best_reward),
        "last_checkpoint": _ref(role_file("last"), last),
        "bc_checkpoint": bc,
        "ranked": [{"rank": i + 1, **r.to_dict()} for i, r in enumerate(ranked)],
        "evaluations": [r.to_dict() for r in records],
        "keep_top_k": keep_top_k,
        "select_after": select_after,
        "episodes_done": episodes_done,
        "stop_reason": stop_reason,
    }


def write_history(run: Path, entropy_doc: dict[str, Any], metrics_doc: dict[str, Any]) -> None:
    """Write both files atomically."""
    write_json(run / HISTORY_FILE, entropy_doc)
    write_json(run / TRAIN_METRICS_FILE, metrics_doc)
