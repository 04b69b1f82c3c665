"""What-if checkpoint selection logic (pure numpy/pandas/scipy; no Streamlit).

A *rule* picks one evaluated checkpoint from its entropy: the max (or min) of the entropy, optionally smoothed
over the training history with a trailing window, among checkpoints at or after a given episode. Its pick is
judged against the truly best checkpoint by a closed-loop metric: rank (1 = best) and regret (how much worse
than the best, in the metric's units, >= 0).

The checkpoint frame ``ck`` used here (built by ``dashboard.data.checkpoint_frame``) is indexed by checkpoint key
with columns ``name, kind, episode, entropy, train_reward, roles`` and, per metric ``m``, the mean ``m``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

LOWER_IS_BETTER = frozenset({"ade", "fde", "collision", "collision_at_fault", "offroad", "offroad_fraction"})
RULE_LABELS = {"max_entropy": "Max entropy", "last": "Last", "best_reward": "Best training reward",
               "bc": "Behaviour-cloned start", "random": "Random (expected)"}


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (ADE, collisions, offroad: lower is better)."""
    return metric not in LOWER_IS_BETTER


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


def smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing NaN-aware moving average.

    Args:
        x: float [L]. window: points (>= 1).

    Returns:
        float [L]; element i is the mean of x[max(0, i - window + 1) : i + 1] ignoring NaN.
    """
    s = pd.Series(np.asarray(x, dtype=float))
    return s.rolling(max(1, int(window)), min_periods=1).mean().to_numpy()


def rule_scores(ck: pd.DataFrame, window: int, history: dict | None = None) -> pd.Series:
    """Entropy score per checkpoint under a smoothing window.

    With a history (``episodes``, ``entropy`` lists) the trailing-smoothed history is read at each
    checkpoint's episode (last history point at or before it); otherwise checkpoint entropies are smoothed in
    episode order.
    """
    ck = ck.sort_values("episode")
    if history and len(history.get("episodes", [])) and window > 1:
        ep = np.asarray(history["episodes"], dtype=float)
        order = np.argsort(ep, kind="stable")
        ep, sm = ep[order], smooth(np.asarray(history["entropy"], dtype=float)[order], window)
        idx = np.searchsorted(ep, ck["episode"].to_numpy(dtype=float), side="right") - 1
        vals = np.where(idx >= 0, sm[np.clip(idx, 0, None)], np.nan)
        vals = np.where(np.isnan(vals), ck["entropy"].to_numpy(dtype=float), vals)
        return pd.Series(vals, index=ck.index)
    return pd.Series(smooth(ck["entropy"].to_numpy(dtype=float), window), index=ck.index)


def judge(ck: pd.DataFrame, key: str, metric: str) -> tuple[int, float, str]:
    """Rank (1 = best), regret (>= 0) of checkpoint ``key`` by ``metric`` among ``ck`` rows, and the best key."""
    v = ck[metric].astype(float)
    hib = higher_is_better(metric)
    best_key = str(v.idxmax() if hib else v.idxmin())
    sign = 1.0 if hib else -1.0
    better = (sign * v > sign * v[key]).sum()
    return int(better) + 1, float(sign * (v[best_key] - v[key])), best_key


def _sentence(label: str, p_name: str, ep: int, rank: int, n: int, regret: float, rnd: float, metric: str) -> str:
    if rank == 1:
        tail = "it is the best checkpoint"
    elif regret < rnd:
        tail = f"better than a random pick (expected regret {rnd:.3g})"
    else:
        tail = f"no better than a random pick (expected regret {rnd:.3g})"
    return f"{label} picks {p_name} (episode {ep}): rank {rank} of {n} by {metric}, regret {regret:.3g}; {tail}."


def pick_by_key(ck: pd.DataFrame, key: str, metric: str, label: str) -> Pick:
    """Judge a given checkpoint ``key`` (candidates = rows of ``ck`` with kind ``checkpoint``)."""
    cand = ck[ck["kind"] == "checkpoint"].dropna(subset=[metric])
    rank, regret, best = judge(cand, key, metric)
    sign = 1.0 if higher_is_better(metric) else -1.0
    rnd = float(np.mean(sign * (cand.loc[best, metric] - cand[metric].astype(float))))
    row = cand.loc[key]
    return Pick(key=key, name=str(row["name"]), episode=int(row["episode"]), value=float(row[metric]), rank=rank,
                n=len(cand), regret=regret, best_key=best, best_name=str(cand.loc[best, "name"]),
                best_value=float(cand.loc[best, metric]), random_regret=rnd,
                sentence=_sentence(label, str(row["name"]), int(row["episode"]), rank, len(cand), regret, rnd,
                                   metric))


def apply_rule(ck: pd.DataFrame, rule: Rule, metric: str, history: dict | None = None) -> Pick | None:
    """Apply a what-if rule; None when no checkpoint is eligible (e.g. ``after_episode`` past the last)."""
    cand = ck[(ck["kind"] == "checkpoint") & ck["entropy"].notna()].dropna(subset=[metric])
    if cand.empty:
        return None
    scores = rule_scores(cand, rule.window, history)
    eligible = scores[cand.loc[scores.index, "episode"] >= rule.after_episode].dropna()
    if eligible.empty:
        return None
    key = str(eligible.idxmax() if rule.mode == "max" else eligible.idxmin())
    label = f"{rule.mode.capitalize()} entropy" + (f" after episode {rule.after_episode}" if rule.after_episode else "")
    label += f" (window {rule.window})" if rule.window > 1 else ""
    return pick_by_key(cand, key, metric, label)


def role_key(ck: pd.DataFrame, role: str) -> str | None:
    """Key of the checkpoint carrying ``role`` (``best_entropy``, ``last``, ``best_reward``, ``bc``), else derived."""
    cand = ck[ck["kind"] == "checkpoint"]
    if cand.empty:
        return None
    has = cand[cand["roles"].map(lambda r: role in r)]
    if not has.empty:
        return str(has.index[0])
    if role == "best_entropy" and cand["entropy"].notna().any():
        return str(cand["entropy"].idxmax())
    if role == "last":
        return str(cand["episode"].idxmax())
    if role == "bc":
        return str(cand["episode"].idxmin())
    if role == "best_reward" and cand["train_reward"].notna().any():
        return str(cand["train_reward"].idxmax())
    return None


def report_card(ck: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rank and regret of every standard rule under ``metric``.

    Returns:
        One row per rule (``max_entropy, last, best_reward, bc``; missing roles omitted) with columns
        ``rule, checkpoint, episode, value, rank, of, regret, verdict``.
    """
    rows = []
    role_of = {"max_entropy": "best_entropy", "last": "last", "best_reward": "best_reward", "bc": "bc"}
    cand = ck[ck["kind"] == "checkpoint"].dropna(subset=[metric])
    for rule, role in role_of.items():
        key = role_key(cand, role)
        if key is None:
            continue
        p = pick_by_key(cand, key, metric, RULE_LABELS[rule])
        rows.append({"rule": RULE_LABELS[rule], "checkpoint": p.name, "episode": p.episode, "value": p.value,
                     "rank": p.rank, "of": p.n, "regret": p.regret, "verdict": p.sentence})
    return pd.DataFrame(rows, columns=["rule", "checkpoint", "episode", "value", "rank", "of", "regret", "verdict"])


def rank_correlations(x: np.ndarray, per_scene: np.ndarray, n_boot: int = 300, seed: int = 0) -> dict[str, float]:
    """Spearman and Kendall between a per-checkpoint score and a metric, with paired-bootstrap 95 % intervals.

    Args:
        x: float [C] score per checkpoint (entropy, or episode). per_scene: float [C, N] metric per checkpoint and
            scenario (same scenarios in every row); scenarios are resampled jointly across checkpoints.
        n_boot: bootstrap resamples. seed: RNG seed.

    Returns:
        ``spearman, spearman_lo, spearman_hi, kendall, kendall_lo, kendall_hi, n`` (NaN when C < 3 or constant).
    """
    from scipy import stats  # imported here: keeps scipy off the dashboard's first paint

    x = np.asarray(x, dtype=float)
    m = np.asarray(per_scene, dtype=float)
    out = {k: math.nan for k in ("spearman", "spearman_lo", "spearman_hi", "kendall", "kendall_lo", "kendall_hi")}
    out["n"] = float(x.size)
    if x.size < 3 or m.ndim != 2 or m.shape[1] == 0 or np.nanstd(x) == 0:
        return out
    with np.errstate(all="ignore"):
        means = np.nanmean(m, axis=1)
        if np.isnan(means).any() or np.nanstd(means) == 0:
            return out
        out["spearman"] = float(stats.spearmanr(x, means)[0])
        out["kendall"] = float(stats.kendalltau(x, means)[0])
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, m.shape[1], (n_boot, m.shape[1]))
        boot = np.nanmean(m[:, idx], axis=2)  # [C, B]
    rx = stats.rankdata(x)
    rs, ks = [], []
    for b in range(n_boot):
        col = boot[:, b]
        if np.isnan(col).any() or np.std(col) == 0:
            continue
        rs.append(np.corrcoef(rx, stats.rankdata(col))[0, 1])
        ks.append(stats.kendalltau(x, col)[0])
    if rs:
        out["spearman_lo"], out["spearman_hi"] = (float(v) for v in np.nanpercentile(rs, [2.5, 97.5]))
        out["kendall_lo"], out["kendall_hi"] = (float(v) for v in np.nanpercentile(ks, [2.5, 97.5]))
    return out
