"""What a run folder says about itself, read without torch (the dashboard and ``sim.across`` use it).

A run (DESIGN "Files a run writes") declares its roles by its role files (:data:`ROLE_FILES`) and records in
``train_metrics.json`` which episode each role copies and the trainer's ``select_after``. Roles come from
here, never from which checkpoints happen to have results yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROLE_FILES: dict[str, str] = {"best_entropy.pt": "best_entropy", "last.pt": "last", "best_reward.pt": "best_reward",
                              "bc.pt": "bc"}
_METRICS_KEYS = {"best_entropy": "best_checkpoint", "last": "last_checkpoint",
                 "best_reward": "best_reward_checkpoint", "bc": "bc_checkpoint"}


@dataclass(frozen=True)
class RoleRef:
    """One role the run declares.

    Attributes:
        role: ``best_entropy``, ``last``, ``best_reward`` or ``bc``. file: the role file's name.
        episode: the episode it copies (-1: unknown). source: the episode file it copies ("" if unknown).
    """

    role: str
    file: str
    episode: int = -1
    source: str = ""


def _train_metrics(run: Path) -> dict[str, Any]:
    try:
        doc = json.loads((run / "train_metrics.json").read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def select_after(run: Path | None) -> int:
    """The trainer's ``select_after`` (first episode that may become ``best_entropy``), 0 when unknown."""
    if run is None:
        return 0
    try:
        return int(_train_metrics(run).get("select_after") or 0)
    except (TypeError, ValueError):
        return 0


def declared_roles(run: Path) -> dict[str, RoleRef]:
    """Roles whose role file exists in ``run``, with the episode each copies (from ``train_metrics.json``)."""
    doc = _train_metrics(run)
    out: dict[str, RoleRef] = {}
    for fname, role in ROLE_FILES.items():
        if not (run / fname).is_file():
            continue
        ref = doc.get(_METRICS_KEYS[role]) or {}
        ep = ref.get("episode", 0 if role == "bc" else -1) if isinstance(ref, dict) else -1
        src = str(ref.get("source", "")) if isinstance(ref, dict) else ""
        try:
            ep = int(ep)
        except (TypeError, ValueError):
            ep = -1
        out[role] = RoleRef(role=role, file=fname, episode=ep, source=Path(src).name if src else "")
    return out
