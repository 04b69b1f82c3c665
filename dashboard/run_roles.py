"""Roles and completeness of a run as the dashboard shows them (pure: no Streamlit, no torch).

Roles come from the run itself: a role is declared when its role file exists (``best_entropy.pt``,
``last.pt``, ``best_reward.pt``, ``bc.pt``; :func:`sim.results.run_folder.declared_roles`), and it belongs to
the evaluated policy whose stored ``files`` hold that file (or the episode file it copies, from
``train_metrics.json``). Never from which checkpoints happen to be evaluated yet: a declared role whose
policy has no results is "not evaluated yet", not a stand-in. Without the role file, every view takes the
rule's fallback from :func:`sim.selection.verdict.pick_index`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboard.table import Rows
from sim.results.run_folder import RoleRef, declared_roles, select_after
from sim.selection.verdict import Completeness, completeness

ROLE_NAMES = ("best_entropy", "last", "best_reward", "bc")


@dataclass(frozen=True)
class RunRoles:
    """What the run declares and how much of it has results.

    Attributes:
        declared: role -> :class:`RoleRef` for the role files present. after_episode: the trainer's
            ``select_after``. comp: completeness of the comparison set (None when the results file does not
            record it). missing_roles: declared roles whose policy has no results yet.
    """

    declared: dict[str, RoleRef]
    after_episode: int
    comp: Completeness | None
    missing_roles: tuple[str, ...]

    def partial_line(self) -> str:
        """One plain sentence about what is missing ("" when nothing is)."""
        parts = []
        if self.comp is not None and not self.comp.is_complete:
            parts.append(self.comp.line())
        if self.missing_roles:
            files = ", ".join(f"{self.declared[r].file}" + (f" ({self.declared[r].source})"
                                                          if self.declared[r].source else "")
                              for r in self.missing_roles)
            parts.append(f"Not evaluated yet: {files}.")
        return " ".join(parts)


def _owner(rows: Rows, ref: RoleRef) -> str | None:
    for want in (ref.file, ref.source):
        if not want:
            continue
        for key, files in zip(rows.keys, rows.cols["files"]) if "files" in rows else ():
            if want in tuple(files or ()):
                return str(key)
    return None


def apply_run_roles(ck: Rows | Any, run_dir: Path, attrs: dict[str, Any] | None) -> tuple[Rows, RunRoles]:
    """The checkpoint table with ``roles`` taken from the run's files, and the run's :class:`RunRoles`.

    Pandas-free (the first paint uses it).

    Args:
        ck: ``dashboard.data.checkpoint_rows`` (with a ``files`` column; a pandas frame is converted).
        run_dir: the run folder.
        attrs: the results file's root attributes (``comparison_set``, ``scene_digests``), or None.
    """
    declared = declared_roles(run_dir)
    ck = Rows.of(ck)
    if len(ck):
        owners = {r: _owner(ck, ref) for r, ref in declared.items()}
        roles = tuple(tuple(x for x in ("candidate",) if x in tuple(roles or ()))
                      + tuple(r for r in ROLE_NAMES if owners.get(r) == key)
                      for key, roles in zip(ck.keys, ck.cols["roles"], strict=True))
        ck = Rows(ck.keys, {**ck.cols, "roles": roles})
    else:
        owners = dict.fromkeys(declared)
    missing = tuple(r for r in ROLE_NAMES if r in declared and owners.get(r) is None)
    comp = None
    attrs = attrs or {}
    try:
        expected = json.loads(attrs["comparison_set"])
        scene_ids = list(json.loads(attrs["scene_digests"]))
        done = {k: set(ck.get(k, "scenario_id")) if k in ck.keys and "scenario_id" in ck else set()
                for k in (e["key"] for e in expected)}
        comp = completeness([e["key"] for e in expected], done, scene_ids)
    except (KeyError, ValueError, TypeError):
        comp = None
    return ck, RunRoles(declared=declared, after_episode=select_after(run_dir), comp=comp, missing_roles=missing)
