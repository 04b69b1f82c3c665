"""The run-folder layout (its file names, its roles) and what a run folder says about itself, read without torch.

The one home of every name in a run folder (docs/run_files.md): the trainer writes them, the
evaluation, the dashboard and ``sim.across`` read them. A run declares its roles by its role files
(:data:`ROLE_FILES`) and records in ``train_metrics.json`` which episode each role copies and the trainer's
``select_after``. Roles come from here, never from which checkpoints happen to have results yet.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"  # every setting, the seed, package versions, git revision
HISTORY_FILE = "entropy_history.json"  # entropy (and the other series) per evaluation interval
TRAIN_METRICS_FILE = "train_metrics.json"  # the ranked checkpoints, each role's source, select_after
CHECKPOINTS_DIR = "checkpoints"  # ep{episode:05d}.pt, one per evaluation interval
EVAL_STATES_FILE = "eval_states.pt"  # the fixed evaluation states entropy is averaged over
SCENES_FILE = "scenes.json"  # the scene ids the run trained and validated on ({"train": [...], "val": [...]})
LATEST_LINK = "latest"  # <runs dir>/latest -> the newest run
RESULTS_NAME = "results.h5"  # a run's results file (its first scenario set; others: sim.results.identity)
RUN_MARKERS: tuple[str, ...] = (CONFIG_FILE, HISTORY_FILE, TRAIN_METRICS_FILE, CHECKPOINTS_DIR)  # a run folder
ROLES: tuple[str, ...] = ("candidate", "best_entropy", "last", "best_reward", "bc")  # a checkpoint's roles
SAME_POLICY = " = "  # joins the file names of one policy in its display name: "ep00050.pt = bc.pt"
OWN_AGENT = "own"  # sim.evaluate's --agent default: this project's trainer, whose checkpoints count episodes
STEP_UNITS = {OWN_AGENT: "episode", "sb3": "environment step"}  # what a checkpoint's step counts, per plug-in
OTHER_UNIT = "training step"  # torchscript and MODULE:FACTORY plug-ins: whatever their step counts


_STEP_PATTERNS = (re.compile(r"_(\d+)_steps$"), re.compile(r"^ep(\d+)$"), re.compile(r"(?:step|steps|iter)[_-]?(\d+)$"))


def step_from_name(path: str | Path) -> int | None:
    """Training step in a checkpoint's file name: ``ep00100.pt`` -> 100, ``rl_model_20000_steps.zip`` -> 20000."""
    stem = Path(path).stem
    for pat in _STEP_PATTERNS:
        m = pat.search(stem)
        if m:
            return int(m.group(1))
    return None


def step_unit(agent: str | None) -> str:
    """What the checkpoints' step (the results' ``episode`` field) counts for an ``--agent`` (None: ``own``)."""
    return STEP_UNITS.get(agent or OWN_AGENT, OTHER_UNIT)


def stored_agent(eval_infos: Any) -> str:
    """The ``--agent`` of a results file's checkpoints: the first stored ``eval_info`` naming an ``agent`` other
    than ``own`` (a plug-in writes ``{"agent": "sb3", ...}``), else ``own``. ``eval_infos``: an iterable of dicts."""
    for info in eval_infos:
        agent = (info or {}).get("agent") if isinstance(info, dict) else None
        if isinstance(agent, str) and agent != OWN_AGENT:
            return agent
    return OWN_AGENT


def role_file(role: str) -> str:
    """The role file of ``role`` at the run's root (``best_entropy.pt``); ``candidate`` has none."""
    if role not in ROLES or role == "candidate":
        raise ValueError(f"no role file for {role!r}; roles with one: {ROLES[1:]}")
    return f"{role}.pt"


def candidate_name(episode: int) -> str:
    """``checkpoints/ep{episode:05d}.pt``, a candidate's path relative to the run folder."""
    return f"{CHECKPOINTS_DIR}/ep{episode:05d}.pt"


ROLE_FILES: dict[str, str] = {role_file(r): r for r in ROLES[1:]}  # file name -> role
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
        doc = json.loads((run / TRAIN_METRICS_FILE).read_text())
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


def trained_scene_ids(run: Path | None) -> set[str]:
    """The ids of the scenes ``run`` trained on (its :data:`SCENES_FILE`), empty when unknown."""
    if run is None:
        return set()
    try:
        doc = json.loads((run / SCENES_FILE).read_text())
        return {str(x) for x in doc.get("train", [])} if isinstance(doc, dict) else set()
    except (OSError, ValueError, TypeError):
        return set()


def reused_scenes_line(run: Path | None, evaluated: list[str], shown: int = 5) -> str | None:
    """A one-line warning when the evaluated scenes include scenes the run trained on (their ids), else None."""
    reused = sorted(trained_scene_ids(run) & set(evaluated))
    if not reused:
        return None
    more = f" and {len(reused) - shown} more" if len(reused) > shown else ""
    return (f"warning: {len(reused)} of the {len(evaluated)} evaluated scenes are scenes run {run.name} trained on "
            f"({', '.join(reused[:shown])}{more}): closed-loop scores on them are not held-out scores")
