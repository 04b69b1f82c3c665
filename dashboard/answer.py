"""The dashboard's answer, drawn above the charts: the verdict in one sentence and the report card (no pandas).

The verdict names the max-entropy rule's pick, its rank and its regret with a 95 % interval, and whether entropy
ranks checkpoints better than the training step does (the stored verdict's ``entropy_beats_step``,
:func:`sim.selection.verdict.compute_verdict`). The regret's interval is the normal-approximation interval of the
mean paired per-scene difference between the best checkpoint and the pick
(:func:`sim.selection.report.mean_interval`, the CLI's method for means) over the scenes both were evaluated on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dashboard import rules, table
from dashboard.run_kind import RunKind
from dashboard.run_roles import RunRoles
from sim.metrics.catalogue import CARD_DECIMALS, higher_is_better
from sim.results.run_folder import SAME_POLICY, step_from_name
from sim.selection.report import mean_interval
from sim.selection.verdict import MIN_CORR

ONE_CHECKPOINT = ("One checkpoint cannot be ranked: only {name} has results. Evaluate more checkpoints of the run "
                  "to judge a selection rule.")
NO_CHECKPOINT = "No entropy-ranked checkpoint evaluated yet."
NOT_APPLICABLE = ("{metric} is not applicable on these scenes: it is undefined for every evaluated checkpoint (the "
                  "scenes' maps lack what it needs, docs/metrics.md). Pick another metric.")
UNEQUAL_SCENES = (" Checkpoints have results on different numbers of scenes ({lo} to {hi}: an evaluation still "
                  "running?): ranks compare means over different scenes until every checkpoint has them all.")
NO_ENTROPY = ("No evaluated checkpoint has an entropy, so the max-entropy rule picks nothing{hint}; the other rules "
              "are in the card.")
SIGNALS_HINT = " (give `python -m sim.evaluate` the training log: `--signals LOG`)"


@dataclass(frozen=True)
class Answer:
    """What the top of the page says.

    Attributes:
        sentence: the verdict, one sentence (markdown). card: :func:`dashboard.rules.report_card_rows` (with
            ``key`` and ``best_key``). stored: the stored verdict when it judges this view (same metric, same
            roles, complete set), else None. regret_ci: (regret, low, high, scenes) of the max-entropy pick, or None.
    """

    sentence: str
    card: tuple[dict, ...]
    stored: dict | None
    regret_ci: tuple[float, float, float, int] | None


def paired_regret(a: np.ndarray, b: np.ndarray, metric: str) -> tuple[float, float, float, int]:
    """Regret of ``b`` against ``a`` (float [N] per-scene values on the same scenes) with its 95 % interval.

    Returns:
        (mean of sign * (a - b), low, high, N), sign +1 when higher ``metric`` is better; NaN-free scenes only.
    """
    sign = 1.0 if higher_is_better(metric) else -1.0
    d = sign * (np.asarray(a, float) - np.asarray(b, float))
    d = d[np.isfinite(d)]
    m, lo, hi = mean_interval(d)
    return m, lo, hi, int(d.size)


def usable_stored(verdict: dict | None, ck: table.Rows, metric: str, rr: RunRoles) -> dict | None:
    """The stored verdict when it judges what the page shows: same metric, a complete comparison set, and the
    same max-entropy pick as the run's role files now give (they may have changed since ``sim.evaluate``)."""
    if not verdict or verdict.get("metric") != metric or rr.partial_line():
        return None
    me = (verdict.get("rules") or {}).get("max_entropy") or {}
    if me and me.get("key") != table.role_key(ck, "best_entropy", tuple(rr.declared), rr.after_episode):
        return None
    return verdict


def step_clause(stored: dict | None, n: int) -> str:
    """Whether entropy ranks checkpoints better than the training step does, in words."""
    if n < MIN_CORR:
        return f"{n} checkpoints are too few to compare entropy with the training step (needs {MIN_CORR})"
    if stored is None or "entropy_beats_step" not in stored or stored.get("entropy_beats_step") is None:
        return "entropy against the training step is judged by `python -m sim.evaluate` (no stored verdict)"
    return ("entropy ranks checkpoints " + ("better" if stored["entropy_beats_step"] else "no better")
            + " than the training step does")


def build_answer(ck: table.Rows, metric: str, verdict: dict | None, rr: RunRoles, per_scene, kind: RunKind
                 ) -> Answer:
    """The verdict sentence and report card of a run.

    Args:
        ck: the checkpoint rows with the run's roles (:func:`dashboard.run_roles.apply_run_roles`).
        metric: the closed-loop metric. verdict: the stored verdict (``/verdict`` JSON) or None.
        rr: the run's roles and completeness. kind: the run's kind (its step unit).
        per_scene: ``(keys, metric) -> float [C, N]`` on common scenes (:func:`dashboard.data.per_scene_matrix`).
    """
    partial = bool(rr.partial_line())
    card = tuple(rules.report_card_rows(ck, metric, tuple(rr.declared), rr.after_episode, partial=partial,
                                        unit=kind.step_unit))
    stored = usable_stored(verdict, ck, metric, rr)
    cands = table.candidates(ck).where(lambda r: _finite(r.get(metric)))
    n = len(cands)
    me = next((r for r in card if r["rule"] == rules.RULE_LABELS["max_entropy"]), None)
    if n == 0:
        return Answer(NOT_APPLICABLE.format(metric=metric) if len(table.candidates(ck)) else NO_CHECKPOINT, card,
                      stored, None)
    if n == 1:
        return Answer(ONE_CHECKPOINT.format(name=f"**{cands.cols['name'][0]}**"), (), stored, None)
    if me is None:
        return Answer(NO_ENTROPY.format(hint=SIGNALS_HINT if kind.plugin else ""), card, stored, None)
    if me["key"] == me["best_key"]:
        ci = (0.0, 0.0, 0.0, 0)
        regret = f"regret 0 (it is the best{' so far' if partial else ''})"
    else:
        mat = per_scene([me["best_key"], me["key"]], metric)
        ci = paired_regret(mat[0], mat[1], metric) if mat.shape[1] else None
        regret = f"regret {me['regret']:.3g}" + (f" (95 % CI {ci[1]:.3g} to {ci[2]:.3g} over {ci[3]} scenes)"
                                                   if ci and math.isfinite(ci[1]) else "")
    head = "So far (partial comparison set): max" if partial else "Max"
    sentence = (f"{head} entropy picks **{me['checkpoint']}** ({kind.step_unit} {me['episode']}): rank {me['rank']} "
                f"of {me['of']} by {metric}, {regret}; {step_clause(stored, n)}.")
    counts = [int(x) for x in cands.cols["n"] if x is not None]
    if counts and min(counts) != max(counts):
        sentence += UNEQUAL_SCENES.format(lo=min(counts), hi=max(counts))
    return Answer(sentence, card, stored, ci)


def card_markdown(card: Sequence[dict], metric: str, kind: RunKind) -> str:
    """The report card as a markdown table: each rule's pick, its step, the metric with its rank, and regret.

    The card sits beside the verdict and must fit a 700 px window: the step column is left out when every pick's
    file name already holds its step (``ep00050.pt`` is episode 50), and the rank shares the metric's column.
    """
    steps = not all(r["episode"] >= 0 and step_from_name(str(r["checkpoint"]).split(SAME_POLICY)[0]) == r["episode"]
                    for r in card)
    head = ("rule", "pick", *((kind.step_unit,) if steps else ()), f"{metric} (rank)", "regret")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in card:  # fixed decimals: a column reads down (0.1480 under 0.1581)
        step = f" {r['episode']} |" if steps else ""
        value, regret = f"{r['value']:.{CARD_DECIMALS}f}", f"{r['regret']:.{CARD_DECIMALS}f}"
        lines.append(f"| {r['rule']} | {r['checkpoint']} |{step} {value} ({r['rank']}/{r['of']}) | {regret} |")
    return "\n".join(lines)


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
