"""What-if checkpoint selection for the dashboard (numpy; no Streamlit, no pandas import).

Judging (rank, regret, which checkpoint a standard rule picks, rank correlations and their intervals) is the
verdict's own code (:mod:`sim.selection.verdict`); metric directions come from :mod:`sim.metrics.catalogue`.
What is added here is the what-if editor's family of rules. A *rule* picks one evaluated checkpoint from its
entropy: the max (or min) of the entropy, optionally smoothed over the training history with a trailing
window, among checkpoints at or after a given episode. Its pick is judged against the truly best checkpoint
by a closed-loop metric: rank (1 = best) and regret (how much worse than the best, in the metric's units, >= 0).

The checkpoint table ``ck`` used here (``dashboard.data.checkpoint_rows``, or the same as a pandas frame) is keyed
by checkpoint with columns ``name, kind, episode, entropy, train_reward, roles`` and, per metric ``m``, the mean ``m``.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dashboard import table
from dashboard.table import Rows, smooth
from sim.metrics.catalogue import higher_is_better
from sim.selection.verdict import RULE_ROLES, RULES, correlations_with_ci, pick_index, rank_and_regret

if TYPE_CHECKING:
    import pandas as pd

RULE_LABELS = {"max_entropy": "Max entropy", "last": "Last", "best_reward": "Best training reward",
               "bc": "Behaviour-cloned start", "random": "Random (expected)"}


@dataclass(frozen=True)
class Rule:
    """A selection rule.

    Attributes:
        mode: ``max`` or ``min`` entropy. after_episode: only checkpoints with episode >= this.
        window: trailing smoothing window in history points (1 = raw entropy).
    """

    mode: str = "max"
    after_episode: int = 0
    window: int = 1

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"rule mode must be 'max' or 'min', got {self.mode!r}")
        if self.window < 1:
            raise ValueError(f"smoothing window must be >= 1, got {self.window}")


@dataclass(frozen=True)
class Pick:
    """A rule's pick and how good it is.

    Attributes:
        key, name, episode: the picked checkpoint. value: its metric mean. rank: 1 = best of ``n``.
        regret: best value minus the pick's (sign-adjusted, >= 0). best_key/best_name/best_value: the best.
        random_regret: expected regret of a uniformly random pick. sentence: one-sentence verdict.
    """

    key: str
    name: str
    episode: int
    value: float
    rank: int
    n: int
    regret: float
    best_key: str
    best_name: str
    best_value: float
    random_regret: float
    sentence: str


def _finite(v: object) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _checkpoints(ck: Rows | pd.DataFrame, *required: str) -> Rows:
    """The checkpoint rows (no baselines) with a value in every ``required`` column."""
    return Rows.of(ck).where(lambda r: r["kind"] == "checkpoint" and all(_finite(r.get(c)) for c in required))


def rule_scores(ck: Rows | pd.DataFrame, window: int, history: dict | None = None) -> dict[str, float]:
    """Entropy score per checkpoint key under a smoothing window (in episode order).

    With a history (``episodes``, ``entropy`` lists) the trailing-smoothed history is read at each
    checkpoint's episode (last history point at or before it); otherwise checkpoint entropies are smoothed in
    episode order.
    """
    r = Rows.of(ck).sorted_by("episode")
    ent = r.column("entropy")
    if history and len(history.get("episodes", [])) and window > 1:
        ep = np.asarray(history["episodes"], dtype=float)
        order = np.argsort(ep, kind="stable")
        ep, sm = ep[order], smooth(np.asarray(history["entropy"], dtype=float)[order], window)
        idx = np.searchsorted(ep, r.column("episode"), side="right") - 1
        vals = np.where(idx >= 0, sm[np.clip(idx, 0, None)], np.nan)
        vals = np.where(np.isnan(vals), ent, vals)
    else:
        vals = smooth(ent, window)
    return dict(zip(r.keys, (float(v) for v in vals)))


def judge(ck: Rows | pd.DataFrame, key: str, metric: str) -> tuple[int, float, str]:
    """Rank (1 = best), regret (>= 0) of checkpoint ``key`` by ``metric`` among ``ck`` rows, and the best key."""
    r = Rows.of(ck)
    rank, regret, best = rank_and_regret(r.column(metric), r.keys.index(key), higher_is_better(metric))
    return rank, regret, r.keys[best]


def _sentence(label: str, p_name: str, ep: int, rank: int, n: int, regret: float, rnd: float, metric: str,
              unit: str = "episode") -> str:
    if rank == 1:
        tail = "it is the best checkpoint"
    elif regret < rnd:
        tail = f"better than a random pick (expected regret {rnd:.3g})"
    else:
        tail = f"no better than a random pick (expected regret {rnd:.3g})"
    return f"{label} picks {p_name} ({unit} {ep}): rank {rank} of {n} by {metric}, regret {regret:.3g}; {tail}."


def pick_by_key(ck: Rows | pd.DataFrame, key: str, metric: str, label: str, unit: str = "episode") -> Pick:
    """Judge a given checkpoint ``key`` (candidates = rows of ``ck`` with kind ``checkpoint``); ``unit``: what a
    checkpoint's step counts (:attr:`dashboard.run_kind.RunKind.step_unit`), as the sentence names it."""
    cand = _checkpoints(ck, metric)
    rank, regret, best = judge(cand, key, metric)
    sign = 1.0 if higher_is_better(metric) else -1.0
    vals = cand.column(metric)
    best_value = float(cand.get(best, metric))
    rnd = float(np.mean(sign * (best_value - vals)))
    name, episode = str(cand.get(key, "name")), int(cand.get(key, "episode"))
    return Pick(key=key, name=name, episode=episode, value=float(cand.get(key, metric)), rank=rank,
                n=len(cand), regret=regret, best_key=best, best_name=str(cand.get(best, "name")),
                best_value=best_value, random_regret=rnd,
                sentence=_sentence(label, name, episode, rank, len(cand), regret, rnd, metric, unit))


def apply_rule(ck: Rows | pd.DataFrame, rule: Rule, metric: str, history: dict | None = None,
               unit: str = "episode") -> Pick | None:
    """Apply a what-if rule; None when no checkpoint is eligible (e.g. ``after_episode`` past the last). ``unit``:
    what a checkpoint's step counts (the run's :attr:`dashboard.run_kind.RunKind.step_unit`)."""
    cand = _checkpoints(ck, "entropy", metric)
    if cand.empty:
        return None
    if rule.mode == "max" and rule.window == 1:  # the standard rule: the one definition (verdict.pick_index)
        plain = [tuple(r for r in roles if r == "candidate") or ("bc",) for roles in cand.cols["roles"]]
        i = pick_index("max_entropy", plain, np.asarray(cand.cols["episode"]), cand.column("entropy"),
                       cand.column("train_reward"), (), rule.after_episode)
        if i is None:
            return None
        key = cand.keys[i]
    else:
        scores = rule_scores(cand, rule.window, history)
        eligible = {k: v for k, v in scores.items() if cand.get(k, "episode") >= rule.after_episode and _finite(v)}
        if not eligible:
            return None
        key = (max if rule.mode == "max" else min)(eligible, key=eligible.__getitem__)  # first on ties
    label = f"{rule.mode.capitalize()} entropy" + (f" after {unit} {rule.after_episode}" if rule.after_episode else "")
    label += f" (window {rule.window})" if rule.window > 1 else ""
    return pick_by_key(cand, key, metric, label, unit)


def role_key(ck: Rows | pd.DataFrame, role: str, declared: Collection[str] = (), after_episode: int = 0) -> str | None:
    """Key of the checkpoint a standard rule picks: the one carrying ``role`` (``best_entropy``, ``last``,
    ``best_reward``, ``bc``), else the verdict's fallback (:func:`dashboard.table.role_key`); None when the
    run declares the role (``declared``) but its policy has no results yet."""
    return table.role_key(Rows.of(ck), role, declared, after_episode)


def so_far(sentence: str) -> str:
    """A pick's sentence on a partial comparison set: says so, and never "the best checkpoint" outright."""
    return ("So far (partial comparison set): " + sentence[0].lower() + sentence[1:]).replace(
        "it is the best checkpoint", "the best of those evaluated so far")


CARD_COLUMNS = ("rule", "checkpoint", "episode", "value", "rank", "of", "regret", "verdict")


def report_card_rows(ck: Rows | pd.DataFrame, metric: str, declared: Collection[str] = (), after_episode: int = 0,
                     partial: bool = False, unit: str = "episode") -> list[dict]:
    """Rank and regret of every standard rule under ``metric`` (pandas-free: the default view's table).

    Args:
        declared, after_episode: see :func:`role_key`. partial: the comparison set is incomplete: every
            sentence says "so far" and never calls a pick "the best checkpoint" outright. unit: what a checkpoint's
            step counts (:attr:`dashboard.run_kind.RunKind.step_unit`: ``environment step`` for SB3), as the
            sentences name it.

    Returns:
        One dict per rule (``max_entropy, last, best_reward, bc``; rules that pick nothing omitted) with keys
        :data:`CARD_COLUMNS` and ``key``, ``best_key`` (the pick's and the best checkpoint's keys).
    """
    rows = []
    cand = _checkpoints(ck, metric)
    for rule in RULES:
        key = role_key(cand, RULE_ROLES[rule], declared, after_episode)
        if key is None:
            continue
        p = pick_by_key(cand, key, metric, RULE_LABELS[rule], unit)
        rows.append({"rule": RULE_LABELS[rule], "checkpoint": p.name, "episode": p.episode, "value": p.value,
                     "rank": p.rank, "of": p.n, "regret": p.regret,
                     "verdict": so_far(p.sentence) if partial else p.sentence, "key": p.key, "best_key": p.best_key})
    return rows


def rank_correlations(x: np.ndarray, per_scene: np.ndarray, n_boot: int = 300, seed: int = 0) -> dict[str, float]:
    """Spearman and Kendall with paired-bootstrap 95 % intervals: the verdict's computation
    (:func:`sim.selection.verdict.correlations_with_ci`) with ``n_boot`` resamples."""
    return correlations_with_ci(x, per_scene, n_resamples=n_boot, seed=seed)
