"""Which checkpoints to evaluate: resolution of ``--ckpt`` values, run discovery, roles, dedupe.

A run (docs/run_files.md) holds ``checkpoints/ep{episode:05d}.pt`` and at its root
``best_entropy.pt``, ``last.pt``, ``best_reward.pt``, ``bc.pt``. Role files are re-saved copies
of a candidate with a different ``meta.kind``, so their file digests differ; candidates are
therefore identified by the digest of their *weights* (state_dict and architecture), and files
with the same weights merge into one candidate whose roles are the union.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim.results.errors import EvaluationError
from sim.results.run_folder import (  # noqa: F401 - select_after re-exported for the CLI
    CHECKPOINTS_DIR,
    HISTORY_FILE,
    ROLE_FILES,
    ROLES,
    RUN_MARKERS,
    SAME_POLICY,
    select_after,
)
from sim.results.schema import CheckpointAttrs

BASELINES = ("log-replay", "constant-velocity")


@dataclass(frozen=True, eq=False)
class Candidate:
    """One row of the comparison: a checkpoint (deduplicated by weights) or a baseline.

    Attributes:
        key: results group name: 16 hex digits of the weights digest, or ``baseline-<name>``.
        name: display name (``ep00100.pt``, ``bc.pt``, ``log-replay``).
        path: absolute path of the representative file ("" for baselines).
        sha256: full sha256 of the representative file ("" for baselines).
        weights_sha256: full digest of the weights and architecture ("" for baselines).
        kind: ``checkpoint`` or ``baseline``.
        roles: subset of :data:`ROLES`.
        episode: training episode (-1 for baselines).
        entropy: policy entropy, nats (NaN for baselines or when unknown).
        entropy_per_dim: nats per action dimension.
        train_reward: mean training return at that checkpoint (NaN if unknown).
        eval_info: the checkpoint's ``meta.eval_info``.
        files: every file merged into this candidate.
        run_dir: the run directory the checkpoint belongs to (None outside a run).
    """

    key: str
    name: str
    path: str = ""
    sha256: str = ""
    weights_sha256: str = ""
    kind: str = "checkpoint"
    roles: tuple[str, ...] = ()
    episode: int = -1
    entropy: float = math.nan
    entropy_per_dim: tuple[float, ...] = ()
    train_reward: float = math.nan
    eval_info: dict[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    run_dir: str | None = None

    @property
    def is_baseline(self) -> bool:
        return self.kind == "baseline"

    def attrs(self, backend: str) -> CheckpointAttrs:
        """Attributes of the ``/checkpoints/<key>`` group (docs/results_schema.md)."""
        return CheckpointAttrs(name=self.name, kind=self.kind, path=self.path, sha256=self.sha256,
                               weights_sha256=self.weights_sha256, roles=self.roles, files=self.files,
                               episode=self.episode, entropy=self.entropy, entropy_per_dim=self.entropy_per_dim,
                               train_reward=self.train_reward, eval_info=self.eval_info, backend=backend)


@dataclass(frozen=True)
class SkippedCheckpoint:
    """A checkpoint file left out of the comparison set, stored in the results file's ``/skipped`` table.

    Same fields as ``scenarios.loading.SkippedScene`` (``file, scene_id, reason``; ``scene_id`` is "" here), so
    the one table and the one summary list hold both.

    Attributes:
        file: the checkpoint's path.
        scene_id: always "" (a whole checkpoint, not a scene).
        reason: one line saying why.
        run_dir: the run the file belongs to (None outside a run); not stored.
    """

    file: str
    scene_id: str
    reason: str
    run_dir: str | None = None

    def line(self) -> str:
        """``skipped checkpoint FILE: reason`` for logs and summaries."""
        return f"skipped checkpoint {self.file}: {self.reason}"


def non_finite_skip(path: Path, obj: dict[str, Any]) -> SkippedCheckpoint | None:
    """A skip record when the checkpoint's acting weights hold a NaN or an infinity (else None).

    Acting weights: every state_dict tensor but the value head (``policy.checkpoint.first_non_finite`` with
    ``acting_only``): such a policy cannot drive, and scoring it would make a NaN run look like a verdict.
    """
    from policy.checkpoint import first_non_finite

    bad = first_non_finite(obj.get("state_dict") or {}, acting_only=True)
    if bad is None:
        return None
    run = run_dir_of(path)
    return SkippedCheckpoint(str(path), "", f"acting weight {bad} is not finite (NaN or infinite); not evaluated",
                             str(run) if run else None)


def baseline(name: str) -> Candidate:
    """The baseline row ``name`` (one of :data:`BASELINES`)."""
    if name not in BASELINES:
        raise EvaluationError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    return Candidate(key=f"baseline-{name}", name=name, kind="baseline")


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_sha256(obj: dict[str, Any]) -> str:
    """Identity of a raw checkpoint: the digest of the weights that *act* (what the simulator sees).

    ``meta["policy_digest"]`` when the trainer recorded it, else :func:`policy.checkpoint.acting_digest`
    of the state_dict and ``config["policy"]`` (value head excluded, log-std included). Two files with equal
    digests drive identically (e.g. ``ep00050.pt`` and ``bc.pt`` while PPO warms up only the value head)
    and are one candidate.
    """
    digest = (obj.get("meta") or {}).get("policy_digest")
    if isinstance(digest, str) and len(digest) == 64:
        return digest
    from policy.checkpoint import acting_digest

    sd = {k: v for k, v in obj["state_dict"].items() if isinstance(v, torch.Tensor)}
    return acting_digest(sd, (obj.get("config") or {}).get("policy"))


def run_dir_of(path: Path) -> Path | None:
    """The run directory a checkpoint file belongs to (resolved), or None."""
    path = path.resolve()
    for d in (path.parent.parent, path.parent) if path.parent.name == CHECKPOINTS_DIR else (path.parent,):
        if any((d / m).exists() for m in RUN_MARKERS):
            return d
    return None


def run_files(run: Path) -> list[Path]:
    """The checkpoints of a run: role files at the root (:data:`ROLE_FILES`), then ``checkpoints/*.pt``.

    Other ``.pt`` files at the root (``eval_states.pt``...) are not checkpoints and are skipped.
    """
    if not run.is_dir():
        raise EvaluationError(f"{run}: run directory not found")
    files = sorted(run / n for n in ROLE_FILES if (run / n).is_file()) + sorted(
        p for p in (run / "checkpoints").glob("*.pt") if p.is_file()
    )
    if not files:
        zips = [p for d in (run, run / "checkpoints") if d.is_dir() for p in d.glob("*.zip")]
        hint = f" (it holds {len(zips)} .zip files: SB3 checkpoints? use --agent sb3)" if zips else ""
        raise EvaluationError(f"{run}: no checkpoints (*.pt) in the run directory or its checkpoints/{hint}")
    return files


def _has_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def resolve_ckpt(values: Sequence[str], latest: Path = Path("out/latest"), log=print,
                 run: Path | None = None) -> list[Path]:
    """Resolve ``--ckpt`` values: paths, globs, and bare names looked up in the run's folder.

    A value that is not a file in the working directory is tried in ``run/`` and ``run/checkpoints/`` (``--run``,
    when given), then in ``latest/`` and ``latest/checkpoints/``; the resolved path is reported through ``log``.

    Raises:
        EvaluationError: a value matches nothing (one line naming the folders tried).
    """
    roots = list(dict.fromkeys([*([run] if run is not None else []), latest]))
    bases = [b for r in roots for b in (r, r / "checkpoints")]
    tried = ", ".join(f"{r}/" for r in roots)
    out: list[Path] = []
    for v in values:
        p = Path(v).expanduser()
        if _has_glob(v):
            hits = sorted(Path(h) for h in glob.glob(str(p)))
            if not hits and not p.is_absolute():
                for base in bases:
                    hits = sorted(Path(h) for h in glob.glob(str(base / v)))
                    if hits:
                        log(f"{v} -> {len(hits)} file(s) in {base.resolve()}")
                        break
            hits = [h for h in hits if h.is_file()]
            if not hits:
                raise EvaluationError(f"--ckpt {v}: pattern matches no checkpoint file (also tried {tried})")
            out.extend(hits)
            continue
        if p.is_file():
            out.append(p)
            continue
        if p.exists():
            raise EvaluationError(f"--ckpt {v}: not a file")
        found = None
        if not p.is_absolute():
            found = next((base / v for base in bases if (base / v).is_file()), None)
        if found is None:
            raise EvaluationError(f"--ckpt {v}: checkpoint not found (looked in ./ and {tried})")
        log(f"{v} -> {found.resolve()}")
        out.append(found)
    return out


def _history_rewards(run: Path | None) -> dict[int, float]:
    if run is None:
        return {}
    p = run / HISTORY_FILE
    try:
        h = json.loads(p.read_text())
        return {int(e): float(r) for e, r in zip(h.get("episodes", []), h.get("train_reward", []))}
    except (OSError, ValueError, TypeError):
        return {}


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _int(v: Any, default: int = -1) -> int:
    """An episode number from a checkpoint's meta; ``default`` when it is not a whole number (malformed meta)."""
    if isinstance(v, bool):
        return default
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return default
    return int(f) if math.isfinite(f) and f == int(f) else default


def _floats(v: Any) -> tuple[float, ...]:
    """A flat tuple of floats (per-dimension entropies); () when ``v`` is not an array of numbers."""
    try:
        return tuple(float(x) for x in np.ravel(np.asarray(v, dtype=np.float64)))
    except (TypeError, ValueError, OverflowError):
        return ()


def alias_name(rep: str, episodes: dict[int, list[str]]) -> str:
    """Display name of one acting policy saved at several training points: ``ep00050.pt = bc.pt``.

    Args:
        rep: the representative file name.
        episodes: episode -> names of the episode files (and ``bc.pt``) that hold this policy.
    """
    names = [rep]
    for ep in sorted(episodes):
        own = sorted(episodes[ep], key=lambda n: (not n.startswith("ep"), n))
        if rep not in own:
            names.append(own[0])
    return SAME_POLICY.join(names)


def load_candidates(files: Iterable[Path], read_raw, skipped: list[SkippedCheckpoint] | None = None
                    ) -> list[Candidate]:
    """Read checkpoint files, merge equal weights, and return candidates in episode order.

    Args:
        files: checkpoint paths.
        read_raw: ``path -> raw checkpoint dict`` (``policy.checkpoint.read_checkpoint``); it raises
            a one-line error for missing or corrupt files.
        skipped: where files whose acting weights are not finite are recorded (:func:`non_finite_skip`); they
            are never candidates.
    """
    groups: dict[tuple[Path | None, str], dict[str, Any]] = {}
    seen: set[Path] = set()
    for f in files:
        f = f.resolve()
        if f in seen:
            continue
        seen.add(f)
        if f.is_file() and not zipfile.is_zipfile(f):
            raise EvaluationError(f"{f}: corrupt or not a checkpoint (not a torch.save archive)")
        try:
            obj = read_raw(f)
        except Exception as e:
            if f.suffix.lower() != ".zip":
                raise
            raise EvaluationError(f"{e} (a .zip: an SB3 checkpoint? use --agent sb3)") from None
        skip = non_finite_skip(f, obj)
        if skip is not None:
            if skipped is not None:
                skipped.append(skip)
            continue
        meta = obj["meta"]
        if not isinstance(meta, dict):
            raise EvaluationError(f"{f}: malformed checkpoint (meta is not a dict)")
        wkey = weights_sha256(obj)
        role = ROLE_FILES.get(f.name) or ("candidate" if f.name.startswith("ep") else None)
        kind = meta.get("kind")
        roles = {r for r in (role, kind if kind in ROLES else None) if r}
        # one policy counted once *within* a run; runs are never merged (one verdict per run)
        g = groups.setdefault((run_dir_of(f), wkey), {"files": [], "roles": set(), "meta": meta, "rep": f,
                                                      "episodes": {}, "wkey": wkey})
        g["files"].append(f)
        g["roles"] |= roles
        if f.name.startswith("ep") or f.name == "bc.pt":
            g["episodes"].setdefault(_int(meta.get("episode", -1)), []).append(f.name)
        if f.name.startswith("ep") and (not g["rep"].name.startswith("ep")
                                        or _int(meta.get("episode", -1)) < _int(g["meta"].get("episode", -1))):
            g["rep"], g["meta"] = f, meta
    out = []
    rewards_cache: dict[Path | None, dict[int, float]] = {}
    for g in groups.values():
        wkey = g["wkey"]
        rep: Path = g["rep"]
        meta = g["meta"]
        run = run_dir_of(rep)
        episode = _int(meta.get("episode", -1))
        reward = _float(meta.get("train_reward", math.nan))
        if math.isnan(reward):
            if run not in rewards_cache:
                rewards_cache[run] = _history_rewards(run)
            reward = rewards_cache[run].get(episode, math.nan)
        info = meta.get("eval_info")
        info = info if isinstance(info, dict) else {}
        per_dim = next((v for v in (meta.get("entropy_per_dim"), info.get("entropy_per_dim"))
                        if isinstance(v, (list, tuple, torch.Tensor)) and len(v)), ())
        out.append(
            Candidate(
                key=wkey[:16],
                name=alias_name(rep.name, g["episodes"]),
                path=str(rep),
                sha256=file_sha256(rep),
                weights_sha256=wkey,
                kind="checkpoint",
                roles=tuple(r for r in ROLES if r in g["roles"]),
                episode=episode,
                entropy=_float(meta.get("entropy", math.nan)),
                entropy_per_dim=_floats(per_dim),
                train_reward=reward,
                eval_info=info,
                files=tuple(str(p) for p in g["files"]),
                run_dir=str(run) if run else None,
            )
        )
    return sorted(out, key=lambda c: (c.episode, c.name))


def discover(
    ckpt: Sequence[str], run: str | None, only: bool, read_raw, latest: Path = Path("out/latest"), log=print,
    skipped: list[SkippedCheckpoint] | None = None,
) -> tuple[list[Candidate], Path | None]:
    """The comparison set of an evaluation call.

    Args:
        ckpt: ``--ckpt`` values (paths, globs, bare names).
        run: ``--run DIR`` or None.
        only: evaluate exactly the given checkpoints (no comparison set).
        read_raw: see :func:`load_candidates`.
        latest: the ``out/latest`` link bare names resolve against.
        log: where to say what was resolved and added.
        skipped: collects the files left out because their acting weights are not finite.

    Returns:
        (candidates in episode order, run directory or None).
    """
    files: list[Path] = []
    runs: list[Path] = []
    r = None
    if run is not None:
        r = Path(run).expanduser()
        if not r.is_dir():
            raise EvaluationError(f"--run {run}: run directory not found")
        runs.append(r.resolve())
    given = resolve_ckpt(ckpt, latest, log, run=r) if ckpt else []
    if r is not None and not (only and given):  # --run R --only --ckpt X: just X, of run R
        files.extend(run_files(r))
    files.extend(given)
    if not only:
        for g in given:
            rd = run_dir_of(g)
            if rd is not None and rd not in runs:
                extra = run_files(rd)
                runs.append(rd)
                log(
                    f"{g.name} belongs to run {rd}: evaluating its whole comparison set "
                    f"({len(extra)} checkpoint files; --only to evaluate just the given ones)"
                )
                files.extend(extra)
    if not files:
        return [], runs[0] if runs else None
    cands = load_candidates(files, read_raw, skipped)
    if not runs:
        rds = [Path(c.run_dir) for c in cands if c.run_dir]
        runs = rds[:1]
    return cands, runs[0] if runs else None


RUN_ATTRS = ("name", "path", "sha256", "roles", "files", "episode", "entropy_per_dim", "eval_info")
"""Checkpoint attributes a run's files decide: as the run goes on (a resumed training moves ``last`` and
``best_reward``, a role file is re-saved) they change for weights already evaluated, so a results file's stored ones
follow the last call over the run's whole comparison set (:func:`stale_attrs`)."""


def stale_attrs(cands: Sequence[Candidate], stored: Mapping[str, CheckpointAttrs], backend: str,
                names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The stored attributes among ``names`` that differ from this call's: ``key -> {attribute: value as stored}``.

    Args:
        cands: the call's candidates (baselines are ignored). stored: key -> the attributes in the results file.
        backend: the call's backend (:meth:`Candidate.attrs`). names: attribute names of
            :meth:`~sim.results.schema.CheckpointAttrs.to_hdf5` to compare (:data:`RUN_ATTRS`, the log's).

    Returns:
        One entry per checkpoint of the call stored with other values (NaN equals NaN), values as
        :meth:`~sim.results.schema.CheckpointAttrs.to_hdf5` writes them.
    """
    out: dict[str, dict[str, Any]] = {}
    for c in cands:
        if c.is_baseline or c.key not in stored:
            continue
        new, old = c.attrs(backend).to_hdf5(), stored[c.key].to_hdf5()
        diff = {a: new[a] for a in names if not _same(new[a], old[a])}
        if diff:
            out[c.key] = diff
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def split_by_run(cands: Sequence[Candidate], run: Path | None) -> list[tuple[Path | None, list[Candidate]]]:
    """Candidates grouped by the run they belong to (``--run`` wins for its own files), in first-seen order.

    One verdict per run, always: runs are never pooled.
    """
    groups: dict[Path | None, list[Candidate]] = {}
    for c in cands:
        rd = Path(c.run_dir) if c.run_dir else None
        if rd is None and run is not None:
            rd = run
        groups.setdefault(rd, []).append(c)
    return list(groups.items())


def comparison_set(cands: Sequence[Candidate]) -> list[dict[str, Any]]:
    """The run's distinct checkpoints as stored in the results file's ``comparison_set`` root attribute."""
    return [{"key": c.key, "name": c.name, "roles": list(c.roles), "episode": c.episode,
             "files": [Path(f).name for f in c.files]} for c in cands if not c.is_baseline]

