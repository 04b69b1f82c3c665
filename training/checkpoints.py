"""Entropy-ranked checkpoint manager (Lightning ModelCheckpoint style: top-k, best, last).

Candidates are ranked by entropy, highest first (ties: earlier episode first); only candidates at
``episode >= select_after`` are ranked. ``best_entropy.pt`` is the top of the ranking, ``best_reward.pt``
the candidate with the highest training reward, ``last.pt`` the newest (and it carries the state needed
to resume). With ``keep_top_k > 0`` only the top-k ranked candidate files stay in ``checkpoints/``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from policy.checkpoint import CheckpointError, atomic_write_bytes, save_checkpoint
from policy.model import WaypointPolicy
from sim.results.run_folder import candidate_name, role_file
from sim.selection.verdict import entropy_order
from training.config import TrainError
from training.history import EvalRecord


def rank(records: list[EvalRecord], select_after: int) -> list[EvalRecord]:
    """Eligible records (``episode >= select_after``) by entropy, highest first, earlier episode on ties: the
    verdict's max-entropy rule (:func:`sim.selection.verdict.entropy_order`, the one definition)."""
    order = entropy_order([r.episode for r in records], [r.entropy for r in records], select_after)
    return [records[i] for i in order]


@dataclass
class CheckpointManager:
    """Writes candidates and keeps ``best_entropy.pt``, ``best_reward.pt`` and the top-k retention in step.

    Attributes:
        run: run directory.
        keep_top_k: 0 keeps every candidate file.
        select_after: first episode that may become best_entropy.
        records: every evaluation so far, in order.
    """

    run: Path
    keep_top_k: int = 0
    select_after: int = 0
    records: list[EvalRecord] = field(default_factory=list)

    @property
    def ranked(self) -> list[EvalRecord]:
        """Eligible candidates, best (highest entropy) first."""
        return rank(self.records, self.select_after)

    @property
    def best(self) -> EvalRecord | None:
        """The best_entropy record, or None when nothing is eligible yet."""
        r = self.ranked
        return r[0] if r else None

    @property
    def best_reward(self) -> EvalRecord | None:
        """The record with the highest training reward (earlier on ties)."""
        if not self.records:
            return None
        return max(self.records, key=lambda r: (r.train_reward, -r.episode))

    def add(self, policy: WaypointPolicy, config: dict[str, Any], meta: dict[str, Any], record: EvalRecord) -> None:
        """Save a candidate for ``record`` and update best files and retention.

        Raises:
            TrainError: a file cannot be written (earlier files stay as they were).
        """
        name = candidate_name(record.episode)
        record = replace(record, path=name)
        try:
            save_checkpoint(self.run / name, policy, config, {**meta, "kind": "candidate"})
        except CheckpointError as e:
            raise TrainError(str(e)) from e
        self.records = [r for r in self.records if r.episode != record.episode] + [record]
        self.records.sort(key=lambda r: r.episode)
        if self.best is not None and self.best.episode == record.episode:
            self._copy(name, role_file("best_entropy"), "best_entropy")
        if self.best_reward is not None and self.best_reward.episode == record.episode:
            self._copy(name, role_file("best_reward"), "best_reward")
        self._retain()

    def _copy(self, src: str, dst: str, kind: str) -> None:
        """Re-save ``src`` as ``dst`` with ``meta.kind`` and ``meta.source`` set (weights_only round trip)."""
        try:
            obj = torch.load(self.run / src, map_location="cpu", weights_only=True)
            obj["meta"] = {**obj["meta"], "kind": kind, "source": src}
            obj.pop("train_state", None)
            buf = io.BytesIO()
            torch.save(obj, buf)
            atomic_write_bytes(self.run / dst, buf.getvalue())
        except CheckpointError as e:
            raise TrainError(str(e)) from e

    def _retain(self) -> None:
        if self.keep_top_k <= 0:
            return
        keep = {r.episode for r in self.ranked[: self.keep_top_k]}
        new = []
        for r in self.records:
            if r.path is not None and r.episode not in keep:
                (self.run / r.path).unlink(missing_ok=True)
                r = replace(r, path=None)
            new.append(r)
        self.records = new

    def restore_best_files(self) -> None:
        """After a resume: make ``best_entropy.pt``/``best_reward.pt`` match the records again."""
        for rec, dst, kind in ((self.best, role_file("best_entropy"), "best_entropy"),
                               (self.best_reward, role_file("best_reward"), "best_reward")):
            if rec is not None and rec.path is not None and (self.run / rec.path).is_file():
                self._copy(rec.path, dst, kind)
