"""Which training signal picks the best checkpoint? A verdict over every logged scalar (numpy + scipy).

Input: a closed-loop metric per checkpoint and scenario ``[C, S]`` and, per signal, one value per checkpoint
``[C]`` (NaN where the signal has no logged step near the checkpoint; see
:func:`sim.selection.signals.match_checkpoints`).
For each signal, over the checkpoints where it is defined:

- Spearman and Kendall rank correlation between the signal and the checkpoint's mean metric, with a paired
  scenario-bootstrap percentile interval (the same bootstrap as the entropy verdict: every resample recomputes
  every checkpoint's mean on one resampled scenario set). None when fewer than 3 checkpoints. A signal that is
  constant over the checkpoints picks nothing and is left out (with a note).
- Regret of "pick the max" and "pick the min" of the signal against the best checkpoint by the metric (best mean
  minus picked mean, in metric units, >= 0; the direction of the metric is honoured). Ties go to the earlier
  checkpoint in input order.

Signals are ranked by their lower regret of the two rules (the rule is named; choosing the direction after
seeing the results flatters every signal alike, so compare signals with each other and with the training-step
baseline, which is added when checkpoint steps are given: "pick the max step" = the last checkpoint).
Entropy stays the headline: :attr:`SignalVerdict.headline` names it and it is reported first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from sim.selection.verdict import MIN_CHECKPOINTS, kendall_rows, paired_bootstrap, spearman_rows

STEP_SIGNAL = "training step"


@dataclass(frozen=True)
class SignalJudgement:
    """One selection rule on one signal: "pick the checkpoint where ``signal`` is highest" (``rule="max"``) or
    lowest (``rule="min"``). Both directions of every signal are ranked as separate, fixed rules, so no entry
    chooses its direction after seeing the closed-loop results (JSON-serialisable through
    :meth:`SignalVerdict.to_dict`).

    Attributes:
        signal: name.
        n_checkpoints: checkpoints where the signal is defined.
        spearman, kendall: rank correlation with the mean metric (None below 3 checkpoints).
        spearman_ci, kendall_ci: ``(low, high)`` bootstrap interval, or None.
        pick_max, pick_min: checkpoint keys picked by the rules.
        regret_max, regret_min: metric units, >= 0.
        rule: ``"max"`` or ``"min"``: the rule this entry judges.
        regret: that rule's regret (``regret_max`` or ``regret_min``).
        headline: this entry is the rule under test, "pick the max entropy".
    """

    signal: str
    n_checkpoints: int
    spearman: float | None
    spearman_ci: tuple[float | None, float | None] | None
    kendall: float | None
    kendall_ci: tuple[float | None, float | None] | None
    pick_max: str
    pick_min: str
    regret_max: float
    regret_min: float
    rule: str
    regret: float
    headline: bool


@dataclass(frozen=True)
class SignalVerdict:
    """Every signal judged on one metric.

    Attributes:
        metric: the closed-loop metric.
        higher_is_better: its direction.
        checkpoints: the C checkpoint keys.
        best_checkpoint: best by mean metric; best_value: its mean.
        n_scenarios: S.
        headline: the entropy signal's name, or None.
        ranking: every signal's two rules, lowest regret first (ties: headline first, then name, max first).
        notes: lines to show (sign conventions, signals left out).
        confidence, n_resamples, seed: bootstrap settings.
    """

    metric: str
    higher_is_better: bool
    checkpoints: tuple[str, ...]
    best_checkpoint: str
    best_value: float
    n_scenarios: int
    headline: str | None
    ranking: tuple[SignalJudgement, ...]
    notes: tuple[str, ...]
    confidence: float
    n_resamples: int
    seed: int

    def judgement(self, signal: str, rule: str | None = None) -> SignalJudgement:
        """The entry of ``signal`` for ``rule`` ("max"/"min"; None: its better-ranked one); KeyError if absent."""
        for j in self.ranking:
            if j.signal == signal and rule in (None, j.rule):
                return j
        raise KeyError(signal)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists, NaN becomes None)."""
        return _plain(asdict(self))

    def lines(self) -> list[str]:
        """Human-readable summary: the headline signal first (labelled, with its place), then one row per signal
        in rank order (its better direction; the other direction's place and regret in brackets)."""
        d = "higher" if self.higher_is_better else "lower"
        out = [f"Which training signal picks the best checkpoint? metric {self.metric} ({d} is better), "
               f"{len(self.checkpoints)} checkpoints x {self.n_scenarios} scenes; best {self.best_checkpoint} "
               f"({self.best_value:.4g})"]
        rank = {id(j): 1 + i for i, j in enumerate(self.ranking)}
        n = len(self.ranking)

        def entry(j: SignalJudgement) -> str:
            rho = "n/a" if j.spearman is None else f"{j.spearman:+.2f}"
            if j.spearman_ci is not None and j.spearman_ci[0] is not None:
                rho += f" [{j.spearman_ci[0]:+.2f}, {j.spearman_ci[1]:+.2f}]"
            pick = j.pick_max if j.rule == "max" else j.pick_min
            return f"{j.rule} {j.signal}: picks {pick}, regret {j.regret:.4g}; spearman {rho}"

        for j in self.ranking:
            if j.headline:
                out.append(f"  #{rank[id(j)]} of {n}: {entry(j).replace(':', ' (headline):', 1)}")
        out.append("  ranking, one row per signal (its better direction first):")
        seen: set[str] = set()
        for j in self.ranking:
            if j.signal in seen:
                continue
            seen.add(j.signal)
            other = [o for o in self.ranking if o.signal == j.signal and o is not j]
            tail = "".join(f" ({o.rule}: #{rank[id(o)]}, regret {o.regret:.4g})" for o in other)
            out.append(f"  #{rank[id(j)]} {entry(j)}{tail}")
        out += [f"  note: {n}" for n in self.notes]
        return out


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _opt(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def judge_signals(metric: np.ndarray, signals: Mapping[str, Sequence[float]], checkpoints: Sequence[str], *,
                  metric_name: str = "score", higher_is_better: bool = True, headline: str | None = None,
                  steps: Sequence[int] | None = None, notes: Sequence[str] = (), n_resamples: int = 1000,
                  confidence: float = 0.95, seed: int = 0) -> SignalVerdict:
    """Judge every signal as a checkpoint-selection rule.

    Args:
        metric: float ``[C, S]`` per-checkpoint, per-scenario closed-loop metric (common scenes; NaN-free).
        signals: name -> ``[C]`` values (NaN = not defined at that checkpoint).
        checkpoints: the C checkpoint keys.
        metric_name: for the report.
        higher_is_better: direction of the metric.
        headline: the entropy signal's name (:attr:`sim.selection.signals.Signals.headline`).
        steps: ``[C]`` training steps; adds the :data:`STEP_SIGNAL` baseline.
        notes: lines carried into the verdict (e.g. :attr:`sim.selection.signals.MatchedSignals.notes`).
        n_resamples, confidence, seed: scenario bootstrap settings.

    Raises:
        ValueError: shapes do not agree, no checkpoint, or a non-finite metric value.
    """
    m = np.asarray(metric, dtype=np.float64)
    keys = tuple(str(k) for k in checkpoints)
    c = len(keys)
    if m.ndim != 2 or m.shape[0] != c or c == 0 or m.shape[1] == 0:
        raise ValueError(f"metric must be [C={c}, S>0], got {list(m.shape)}")
    if not np.isfinite(m).all():
        raise ValueError("metric holds NaN or inf; pass common scenes with finite values")
    sig = {k: np.asarray(v, dtype=np.float64) for k, v in signals.items()}
    if steps is not None:
        sig[STEP_SIGNAL] = np.asarray(steps, dtype=np.float64)
    for k, v in sig.items():
        if v.shape != (c,):
            raise ValueError(f"signal {k!r} must be [{c}], got {list(v.shape)}")
    mean = m.mean(1)
    orient = 1.0 if higher_is_better else -1.0
    best = int(np.argmax(orient * mean))
    judged = [_judge(k, v, m, mean, orient, best, keys, k == headline, n_resamples, confidence, seed)
              for k, v in sig.items()]
    judged = [j for j in judged if j is not None]
    left = [f"{k}: {'constant over' if np.isfinite(v).any() else 'defined at no'} checkpoint(s), not judged"
            for k, v in sig.items() if k not in {j.signal for j in judged}]
    rules = [replace(j, rule=r, regret=j.regret_max if r == "max" else j.regret_min,
                     headline=j.headline and r == "max") for j in judged for r in ("max", "min")]
    ranking = tuple(sorted(rules, key=lambda j: (j.regret, not j.headline, j.signal, j.rule != "max")))
    return SignalVerdict(metric_name, higher_is_better, keys, keys[best], float(mean[best]), int(m.shape[1]),
                         headline if headline in sig else None, ranking, tuple(notes) + tuple(left), confidence,
                         n_resamples, seed)


def _judge(name: str, v: np.ndarray, m: np.ndarray, mean: np.ndarray, orient: float, best: int,
           keys: tuple[str, ...], is_headline: bool, n_resamples: int, confidence: float,
           seed: int) -> SignalJudgement | None:
    ok = np.flatnonzero(np.isfinite(v))
    if ok.size == 0 or (ok.size > 1 and np.ptp(v[ok]) == 0):
        return None  # nothing to pick with
    y = v[ok]
    i_max, i_min = int(ok[np.argmax(y)]), int(ok[np.argmin(y)])  # argmax/argmin: first on ties
    r_max = float(orient * (mean[best] - mean[i_max]))
    r_min = float(orient * (mean[best] - mean[i_min]))
    rho = tau = None
    rho_ci = tau_ci = None
    if ok.size >= MIN_CHECKPOINTS:
        sub = m[ok]
        rho = _opt(spearman_rows(sub.mean(1), y))
        tau = _opt(kendall_rows(sub.mean(1), y))

        def stat(idx: np.ndarray, axis: int = -1) -> np.ndarray:
            mm = sub[:, idx].mean(-1)  # [C', ...]
            mm = np.moveaxis(mm, 0, -1)  # [..., C']
            return np.stack([spearman_rows(mm, y), kendall_rows(mm, y)])

        lo, hi = paired_bootstrap(stat, m.shape[1], 2, n_resamples, seed, confidence)
        rho_ci, tau_ci = (_opt(lo[0]), _opt(hi[0])), (_opt(lo[1]), _opt(hi[1]))
    return SignalJudgement(name, int(ok.size), rho, rho_ci, tau, tau_ci, keys[i_max], keys[i_min], r_max, r_min,
                           "max", r_max, is_headline)
