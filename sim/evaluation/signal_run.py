"""``--signals`` in an evaluation call: read the training log, match checkpoints, judge every signal.

Before anything is written (:func:`plan_signals`): the log is read (:func:`sim.selection.signals.read_signals`),
each checkpoint is matched to the nearest logged step of every series, and the matches are printed. A log the
user named must fit (any problem is a one-line :class:`~sim.selection.signals.SignalError`); the default log of
the project's own runs (``<run>/entropy_history.json``) is used when it fits and skipped with a note otherwise.
Foreign checkpoints take their entropy (the headline signal) and training reward from the log
(:func:`fill_candidates`), so the entropy verdict covers them too; where a results file stores other values for
them (an earlier call's log), the call updates them (:func:`sim.evaluation.candidates.stale_attrs` on
:data:`LOG_ATTRS`). After the evaluation
:func:`judge` gives the :class:`~sim.selection.signal_verdict.SignalVerdict` over the stored per-scene metric.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.evaluation.candidates import Candidate
from sim.metrics.catalogue import higher_is_better
from sim.results.run_folder import HISTORY_FILE
from sim.selection.signal_verdict import SignalVerdict, judge_signals
from sim.selection.signals import MatchedSignals, SignalError, Signals, match_checkpoints, read_signals

REWARD_NAMES = ("train_reward", "rollout/ep_rew_mean", "charts/episodic_return", "episode_reward")
"""Series that are the training reward, in order of preference (fills the ``best_reward`` rule)."""

LOG_ATTRS = ("entropy", "train_reward")
"""Checkpoint attributes a training log fills (:func:`fill_candidates`). A results file's stored ones follow the
last call (:func:`~sim.evaluation.candidates.stale_attrs`), as its ``signals_json`` does: another log is not
another experiment."""


@dataclass(frozen=True)
class SignalPlan:
    """A training log matched to the checkpoints of a call.

    Attributes:
        source: the file or folder read. signals: its series. matched: values per checkpoint key.
        keys: candidate keys judged (checkpoints with a training step), in candidate order.
        steps: their training steps.
    """

    source: str
    signals: Signals
    matched: MatchedSignals
    keys: tuple[str, ...]
    steps: tuple[int, ...]


def plan_signals(path: str | None, names: Sequence[str], cands: Sequence[Candidate], run_dir: Path | None,
                 log: Callable[[str], None]) -> SignalPlan | None:
    """Read and match the training log of a call (before anything is written).

    Args:
        path: ``--signals`` (None: ``<run_dir>/entropy_history.json`` when it exists).
        names: ``--signal`` names: scalars that must be in the log (every scalar is judged).
        cands: the call's candidates (baselines are ignored).
        run_dir: the run the checkpoints belong to, or None.
        log: where the matches are printed.

    Returns:
        The plan, or None when there is no log (or the default log does not fit; a note says why).

    Raises:
        SignalError: the named log is unreadable, lacks a named scalar (also the default log, and a missing log,
            when ``names`` are given), or a checkpoint matches no logged step.
    """
    explicit = path is not None
    if path is None:
        default = run_dir / HISTORY_FILE if run_dir is not None else None
        if default is None or not default.is_file():
            if names:
                raise SignalError(f"--signal {names[0]}: no training log to read it from (no {HISTORY_FILE} in the "
                                  "run; name one with --signals PATH)")
            return None
        path = str(default)
    cks = [c for c in cands if not c.is_baseline]
    name_of = {c.key: c.name for c in cks}
    try:
        sig = read_signals(path, require=names)
        steps = {c.key: (c.episode if c.episode >= 0 else None) for c in cks}
        if not explicit:
            steps = {k: v for k, v in steps.items() if v is not None}
        if not steps:
            raise SignalError(f"{path}: no checkpoint with a training step to match")
        matched = match_checkpoints(sig, steps, names=name_of)
    except SignalError as e:
        if explicit or names:  # a named log or scalar must be there: its absence is an error
            raise
        log(f"training signals not judged: {e}")
        return None
    keys = tuple(steps)
    shown = sig.headline or next(iter(sig.series), None)
    log(f"Training signals: {len(sig.series)} series from {sig.source}; checkpoint -> nearest logged step:")
    for m in matched.matches:
        if m.signal == shown:
            log(f"  {name_of[m.checkpoint]} " + m.line().split(" ", 1)[1])
    return SignalPlan(sig.source, sig, matched, keys, tuple(int(steps[k]) for k in keys))  # type: ignore[arg-type]


def fill_candidates(cands: Sequence[Candidate], plan: SignalPlan | None) -> list[Candidate]:
    """Give candidates without an entropy (foreign checkpoints) the logged entropy and training reward."""
    if plan is None:
        return list(cands)
    pos = {k: i for i, k in enumerate(plan.keys)}

    def value(names: Sequence[str | None], key: str) -> float:
        for n in names:
            if n is not None and n in plan.matched.values:
                return float(plan.matched.values[n][pos[key]])
        return math.nan

    out = []
    for c in cands:
        if c.key in pos and math.isnan(c.entropy):
            c = dataclasses.replace(c, entropy=value([plan.signals.headline], c.key),
                                    train_reward=c.train_reward if not math.isnan(c.train_reward)
                                    else value(REWARD_NAMES, c.key))
        out.append(c)
    return out


def stale_note(out: Path, stale: Mapping[str, Mapping[str, float]], plan: SignalPlan | None) -> str:
    """One line saying which stored :data:`LOG_ATTRS` differed from this call's and what became of them."""
    names = [a for a in LOG_ATTRS if any(a in d for d in stale.values())]
    what = f"the stored {' and '.join(names)} of {len(stale)} checkpoint(s) (written by an earlier call)"
    src = f"this call's training log {plan.source}" if plan is not None else \
        "this call's, which reads no training log (--signals)"
    return f"note: {out}: {what} differ from {src}: updated, as a fresh --out would hold them"


def judge(plan: SignalPlan, rows: dict[str, np.ndarray], metric: str, n_resamples: int, seed: int
          ) -> SignalVerdict | None:
    """Judge every signal on ``metric``.

    Args:
        plan: from :func:`plan_signals`.
        rows: candidate key -> the metric on the call's scenes ``[S]`` (keys absent were not evaluated).
        metric: closed-loop metric (catalogue name). n_resamples, seed: scenario bootstrap.

    Returns:
        The verdict over the checkpoints of the plan that have rows, on the scenes where ``metric`` is defined for
        every one of them (a map-rule metric is NaN where not applicable: the verdict's notes say how many scenes
        that leaves); None if no checkpoint has rows or no scene is left.
    """
    idx = [i for i, k in enumerate(plan.keys) if k in rows]
    if not idx:
        return None
    keys = [plan.keys[i] for i in idx]
    m = np.stack([np.asarray(rows[k], dtype=np.float64) for k in keys])
    defined = np.isfinite(m).all(axis=0)
    if not defined.any():
        return None
    notes = list(plan.matched.notes)
    if not defined.all():
        notes.append(f"{metric}: judged on the {int(defined.sum())} of {m.shape[1]} scenes where it is defined for "
                     "every checkpoint (not applicable on the others)")
    values = {n: [v[i] for i in idx] for n, v in plan.matched.values.items()}
    return judge_signals(m[:, defined], values, keys, metric_name=metric,
                         higher_is_better=higher_is_better(metric), headline=plan.signals.headline,
                         steps=[plan.steps[i] for i in idx], notes=notes, n_resamples=n_resamples, seed=seed)


def ranking_lines(v: SignalVerdict, names: dict[str, str]) -> list[str]:
    """:meth:`SignalVerdict.lines` with checkpoint keys replaced by file names."""
    out = []
    for ln in v.lines():
        for k, n in names.items():
            ln = ln.replace(k, n)
        out.append(ln)
    return out
