"""The comparison set of foreign checkpoints: ``--agent NAME_OR_MODULE:FACTORY --ckpt 'DIR/*'``.

Every file the ``--ckpt`` values match (globs expanded here, a folder stands for every file in it) is loaded
once through the agent plug-in (:func:`sim.evaluation.plugins.load_agent`), which checks it and gives its
:class:`~sim.evaluation.plugins.AgentInfo`, and run once on a probe (:func:`sim.evaluation.plugins.probe_agent`:
an exception or an output of the wrong shape is refused, a non-finite output skips the file) before anything is
written. Files with the same ``identity`` (the digest of the acting weights, and a TorchScript file's code)
merge into one candidate, keyed by the identity's first 16 hex digits, so results keys and resume do not depend
on file names. Roles are inferred where they can be: every file is a ``candidate``; the highest training step
is ``last``. Entropy and training reward come from the training log (:mod:`sim.evaluation.signal_run`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from sim.evaluation.candidates import Candidate, SkippedCheckpoint, file_sha256, resolve_ckpt
from sim.results.errors import EvaluationError

NOT_CHECKPOINTS = (".h5", ".json", ".jsonl", ".ndjson", ".csv", ".txt", ".md", ".lock", ".log")
"""Files in a ``--ckpt DIR`` folder that are never checkpoints (results, logs)."""


def checkpoint_files(values: Sequence[str], latest: Path, log: Callable[[str], None],
                     suffixes: Sequence[str] | None = None) -> list[Path]:
    """Files named by ``--ckpt`` values: paths, quoted globs (expanded here) and folders (every file in them).

    Args:
        suffixes: the plug-in's ``checkpoint_suffixes`` (``sb3``: ``.zip``), or None: a folder's files of another
            suffix are left out with a note naming them (never read: SB3's side files).

    Raises:
        EvaluationError: a value matches nothing, or a folder holds no file.
    """
    out: list[Path] = []
    for v in values:
        p = Path(v).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                           and f.suffix not in NOT_CHECKPOINTS)
            if suffixes:
                other = [f.name for f in files if f.suffix not in suffixes]
                files = [f for f in files if f.suffix in suffixes]
                if other:
                    log(_side_files_note(v, other, suffixes))
            if not files:
                raise EvaluationError(f"--ckpt {v}: folder holds no checkpoint file"
                                      + (f" ({' or '.join(suffixes)})" if suffixes else ""))
            out.extend(files)
        else:
            out.extend(resolve_ckpt([v], latest, log))
    seen: set[Path] = set()
    return [f for f in out if not (f.resolve() in seen or seen.add(f.resolve()))]


def _side_files_note(folder: str, names: Sequence[str], suffixes: Sequence[str]) -> str:
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    note = (f"note: --ckpt {folder}: {len(names)} file(s) not {' or '.join(suffixes)} skipped, never read: {shown}")
    if any("vecnormalize" in n.lower() for n in names):
        note += ("; VecNormalize statistics are not applied (a model trained on normalised observations is "
                 "evaluated on raw ones)")
    return note


def results_dir(files: Sequence[Path]) -> Path:
    """Where the results of foreign checkpoints go by default: their common folder (its parent if it is
    called ``checkpoints``, as SB3 examples and this project's runs lay them out)."""
    common = Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
    return common.parent if common.name == "checkpoints" else common


def plugin_candidates(values: Sequence[str], spec: str, device: str, latest: Path,
                      log: Callable[[str], None], sampling: bool = False,
                      skipped: list[SkippedCheckpoint] | None = None) -> tuple[list[Candidate], Path]:
    """Load every checkpoint the ``--ckpt`` values match through the ``spec`` plug-in; one candidate per identity.

    Args:
        values: ``--ckpt`` values (paths, globs, folders).
        spec: ``--agent`` value (``sb3``, ``torchscript``, ``module:factory``).
        device: torch device the agents are built on.
        latest: the folder bare names resolve in (as for the project's own checkpoints).
        log: where to say what was found.
        sampling: the call samples actions (``--rollouts K > 0``): every agent must (before anything is written).
        skipped: where the files whose output on the load-time probe is not finite are recorded
            (:func:`sim.evaluation.plugins.probe_agent`); they are not evaluated.

    Returns:
        (candidates ordered by step then name, the default results folder).

    Raises:
        sim.evaluation.plugins.AgentError: a file the plug-in refuses, or an agent that fails on the load-time
            probe or returns the wrong shape there (one line naming it).
        EvaluationError: nothing matched.
    """
    from sim.evaluation.plugins import check_can_sample, load_agent, probe_agent, resolve_factory

    files = checkpoint_files(values, latest, log, getattr(resolve_factory(spec), "checkpoint_suffixes", None))
    if not files:
        raise EvaluationError("nothing to evaluate: give --ckpt")
    groups: dict[str, dict] = {}
    bad: list[tuple[Path, str]] = []
    for f in files:
        agent = load_agent(spec, str(f.resolve()), device)
        if sampling:
            check_can_sample(agent)
        reason = probe_agent(agent, spec, device, sampling)
        if reason:
            bad.append((f.resolve(), reason))
            continue
        info = agent.info
        g = groups.setdefault(info.identity, {"info": info, "files": []})
        g["files"].append(str(f.resolve()))
    steps = [g["info"].step for g in groups.values() if g["info"].step is not None]
    last = max(steps) if steps else None
    cands = []
    for ident, g in groups.items():
        info = g["info"]
        roles = ("candidate", "last") if last is not None and info.step == last else ("candidate",)
        cands.append(Candidate(
            key=ident[:16], name=Path(info.path).name, path=info.path, sha256=file_sha256(Path(info.path)),
            weights_sha256=ident, roles=roles, episode=-1 if info.step is None else int(info.step),
            eval_info={"agent": info.plugin, "step": info.step, "step_source": info.step_source},
            files=tuple(g["files"])))
    cands.sort(key=lambda c: (c.episode, c.name))
    out = results_dir([Path(c.path) for c in cands] + [f for f, _ in bad])
    if skipped is not None:
        skipped.extend(SkippedCheckpoint(str(f), "", reason, str(out)) for f, reason in bad)
    dup = len(files) - len(bad) - len(cands)
    log(f"--agent {spec}: {len(cands)} checkpoint(s) from {len(files)} file(s)"
        + (f" ({dup} the same policy as another: same identity)" if dup else "")
        + (f" ({len(bad)} skipped: output not finite)" if bad else "") + f"; last = highest step ({last})")
    return cands, out
