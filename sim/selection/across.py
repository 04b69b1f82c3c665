"""The verdict across seeds: how a selection rule does over several independent training runs.

One run says little: a rule can pick the best checkpoint of one seed and the second-worst of
the next. Given each run's own verdict (one :class:`SeedResult` per run, all judged by the same
closed-loop metric on the same scenario set and settings), this reports per rule:

- ``mean_regret`` over seeds with a seed-level bootstrap interval (:func:`sim.selection.bootstrap.index_bootstrap`,
  percentile method, resampling runs; undefined below 2 seeds);
- ``p_best``: the fraction of seeds where the rule picks the best checkpoint (rank 1);
- ``mean_rank`` of its pick (1 = best), and each seed's pick;

- ``poi_over_last``: the probability of improvement of the rule's pick over ``last`` (rliable, Agarwal et al.
  2021; :func:`sim.selection.stats.probability_of_improvement` with seeds as runs and scenes as tasks: on a
  random scene, how likely a seed's pick by this rule beats a seed's ``last``), with a seed-bootstrap
  percentile interval, where every run carries its picks' per-scene values;

and the per-seed rank correlation (Spearman) between entropy and the metric, with its mean and
seed-bootstrap interval. Rules are the run verdict's built-in ones (``max_entropy``, ``last``,
``best_reward``, ``bc``, ``random`` as expected regret) and, when present, one rule per logged
training signal (``max:<signal>`` / ``min:<signal>``). This follows the offline policy
selection literature's habit of reporting regret and rank correlation against baselines.

Needs numpy and scipy only (no torch); the dashboard uses it too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sim.results.identity import Experiment, difference, shown_setting
from sim.selection.bootstrap import index_bootstrap
from sim.selection.variance import SeedVariance, VarianceParts, across_seeds


class AcrossError(ValueError):
    """Runs that cannot be judged together; the message names the run and the difference."""


@dataclass(frozen=True)
class RulePick:
    """One rule's pick in one run.

    Attributes:
        name: the picked checkpoint's display name ("" for the random rule's expectation).
        rank: 1 = the best checkpoint of the run by the metric (0 when undefined, e.g. random).
        regret: best value minus the pick's value, >= 0, in the metric's unit (sign-adjusted so
            that lower is better for every metric).
    """

    name: str
    rank: int
    regret: float


@dataclass(frozen=True)
class SeedResult:
    """One run's verdict, reduced to what the across-seeds view needs.

    Attributes:
        run: the run's label (its folder name).
        metric: the closed-loop metric that defines "best".
        n_checkpoints: distinct policies judged in the run.
        scenario_digest: identifies the scenario set the run was evaluated on.
        settings_digest: identifies the evaluation settings (agents, backend, ...).
        picks: rule -> :class:`RulePick` (rules that pick nothing in this run are absent).
        spearman: entropy vs metric Spearman rho across the run's checkpoints (None if undefined).
        train_seed: the training seed of the run (its ``config.json``), None when unknown.
        pick_scores: rule -> the metric of its pick on each scene (the run's scenes, sorted by id), sign-adjusted
            so that higher is better; empty when not loaded (no probability of improvement then).
        experiment: the results file's :class:`sim.results.identity.Experiment` (None: not read from a file);
            runs of another metric version are refused by :func:`sim.results.identity.difference`.
        pick_variance: rule -> :class:`sim.selection.variance.VarianceParts` of its pick's sampled rollouts
            (``sim.evaluate --rollouts K``); empty without.
    """

    run: str
    metric: str
    n_checkpoints: int
    scenario_digest: str
    settings_digest: str
    picks: Mapping[str, RulePick]
    spearman: float | None = None
    train_seed: int | None = None
    pick_scores: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    experiment: Experiment | None = None
    pick_variance: Mapping[str, VarianceParts] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleAcross:
    """A rule over seeds (see the module docstring for each statistic)."""

    rule: str
    n_seeds: int
    mean_regret: float | None
    mean_regret_ci: tuple[float | None, float | None]
    p_best: float | None
    mean_rank: float | None
    picks: tuple[str, ...] = field(default_factory=tuple)
    poi_over_last: float | None = None
    poi_over_last_ci: tuple[float | None, float | None] = (None, None)


@dataclass(frozen=True)
class AcrossVerdict:
    """The verdict across seeds.

    Attributes:
        metric: the metric that defines "best".
        runs: run labels in input order.
        rules: one :class:`RuleAcross` per rule, best mean regret first (ties: higher p_best).
        spearman_per_seed: entropy-vs-metric rho of each run (None where undefined).
        spearman_mean: mean of the defined per-seed values.
        spearman_ci: seed-bootstrap percentile interval of that mean.
        confidence: interval level.
        variance: rule -> :class:`sim.selection.variance.SeedVariance` of its picks over the runs that have sampled
            rollouts (``--rollouts K``): within a scene, between scenes, between seeds; empty without.
    """

    metric: str
    runs: tuple[str, ...]
    rules: tuple[RuleAcross, ...]
    spearman_per_seed: tuple[float | None, ...]
    spearman_mean: float | None
    spearman_ci: tuple[float | None, float | None]
    confidence: float
    variance: Mapping[str, SeedVariance] = field(default_factory=dict)

    def rule(self, name: str) -> RuleAcross:
        """The entry of one rule; KeyError if absent."""
        for r in self.rules:
            if r.rule == name:
                return r
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; ``rules`` keyed by rule name, each with ``mean_regret``, ``mean_regret_ci``, ``p_best``."""
        d = asdict(self)
        d["rules"] = {r["rule"]: {k: v for k, v in r.items() if k != "rule"} for r in d["rules"]}
        d["order"] = [r.rule for r in self.rules]
        return d


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def seed_bootstrap_mean(values: Sequence[float], *, n_resamples: int = 9999, seed: int = 0,
                        confidence: float = 0.95) -> tuple[float | None, tuple[float | None, float | None]]:
    """Mean of per-seed values and its seed-level bootstrap percentile interval.

    Args:
        values: one value per seed (NaNs dropped).

    Returns:
        ``(mean, (low, high))``; the interval is ``(None, None)`` below 2 values, and collapses to the
        value when every seed agrees.
    """
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return None, (None, None)
    mean = float(v.mean())
    if v.size < 2:
        return mean, (None, None)
    if np.all(v == v[0]):
        return mean, (mean, mean)
    lo, hi = index_bootstrap(lambda idx: v[idx].mean(-1)[None], v.size, 1, n_resamples, seed, confidence)
    return mean, (_finite(lo[0]), _finite(hi[0]))


def check_comparable(seeds: Sequence[SeedResult]) -> None:
    """Refuse runs judged on another metric, scenario set, metric version or settings than the first.

    The scenario set is compared by content (the evaluated scenes' digests: each run may name its copy
    differently), the metric version by :func:`sim.results.identity.difference`.

    Raises:
        AcrossError: one line naming the run and what differs; also for no run, duplicate labels, or two runs
            trained with the same seed (not independent).
    """
    if not seeds:
        raise AcrossError("no runs to compare")
    labels = [s.run for s in seeds]
    if len(set(labels)) != len(labels):
        raise AcrossError(f"the same run is given twice: {sorted({x for x in labels if labels.count(x) > 1})}")
    ref = seeds[0]
    for s in seeds[1:]:
        both = ref.experiment is not None and s.experiment is not None
        d = difference(ref.experiment, s.experiment, ("metrics_version",)) if both else None
        ds = difference(ref.experiment, s.experiment, ("settings",)) if both else None
        named = None if ds is None else \
            f"{ds.key} {shown_setting(ds.key, ds.given)} vs {shown_setting(ds.key, ds.stored)}"
        found = [f"{what} ({b} vs {a})" if what != "other evaluation settings" or named is None else
                 f"{what} ({named})" for what, a, b in (
                     ("another metric", ref.metric, s.metric),
                     ("another scenario set", ref.scenario_digest, s.scenario_digest),
                     *([(f"another {d.what}", d.stored, d.given)] if d else []),
                     ("other evaluation settings", ref.settings_digest, s.settings_digest)) if a != b]
        if found:  # every difference, so that one re-evaluation fixes them all
            raise AcrossError(f"{s.run}: evaluated with {' and '.join(found)} than {ref.run}; evaluate both runs the "
                              "same way")
    by_seed: dict[int, str] = {}
    for s in seeds:
        if s.train_seed is not None and s.train_seed in by_seed:
            raise AcrossError(f"{s.run}: trained with seed {s.train_seed} like {by_seed[s.train_seed]}; runs of one "
                              "seed are not independent samples: compare runs trained with different --seed")
        if s.train_seed is not None:
            by_seed[s.train_seed] = s.run


def poi_over_last(seeds: Sequence[SeedResult], rule: str, *, n_resamples: int = 9999, seed: int = 0,
                  confidence: float = 0.95) -> tuple[float | None, tuple[float | None, float | None]]:
    """Probability of improvement of ``rule``'s pick over ``last`` across seeds, with a seed-bootstrap interval.

    Seeds are rliable's runs and scenes its tasks: ``P = mean over scenes of P(X_n > Y_n)`` over every pair of a
    seed's pick by ``rule`` (X) and a seed's ``last`` (Y). The interval resamples seeds (the same resampled seeds
    for X and Y), percentile method; ``(None, None)`` below 2 seeds.

    Returns:
        ``(poi, (low, high))``; all None when a run lacks either pick's per-scene values or they differ in length.
    """
    from sim.selection.stats import probability_of_improvement

    if rule == "last" or not seeds:
        return None, (None, None)
    xs = [s.pick_scores.get(rule) for s in seeds]
    ys = [s.pick_scores.get("last") for s in seeds]
    if any(v is None for v in xs + ys) or len({len(v) for v in xs + ys}) != 1 or not len(xs[0]):
        return None, (None, None)
    x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)  # [R, N]
    point = float(probability_of_improvement(x, y))
    if len(seeds) < 2:
        return point, (None, None)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(seeds), size=(n_resamples, len(seeds)))
    dist = np.array([probability_of_improvement(x[i], y[i]) for i in idx])
    a = (1 - confidence) / 2 * 100
    return point, (float(np.percentile(dist, a)), float(np.percentile(dist, 100 - a)))


def compare_runs(seeds: Sequence[SeedResult], *, n_resamples: int = 9999, seed: int = 0,
                 confidence: float = 0.95) -> AcrossVerdict:
    """Judge every rule over the runs (see the module docstring).

    Raises:
        AcrossError: runs that are not comparable (:func:`check_comparable`).
    """
    check_comparable(seeds)
    rules: list[str] = []
    for s in seeds:
        rules.extend(r for r in s.picks if r not in rules)
    out: list[RuleAcross] = []
    for rule in rules:
        picks = [s.picks.get(rule) for s in seeds]
        got = [p for p in picks if p is not None]
        mean, ci = seed_bootstrap_mean([p.regret for p in got], n_resamples=n_resamples, seed=seed,
                                       confidence=confidence)
        ranked = [p for p in got if p.rank > 0]
        poi, poi_ci = poi_over_last(seeds, rule, n_resamples=min(n_resamples, 1999), seed=seed,
                                    confidence=confidence)
        out.append(RuleAcross(
            rule=rule, n_seeds=len(got), mean_regret=mean, mean_regret_ci=ci,
            p_best=(sum(p.rank == 1 for p in ranked) / len(ranked)) if ranked else None,
            mean_rank=float(np.mean([p.rank for p in ranked])) if ranked else None,
            picks=tuple(p.name if p is not None else "" for p in picks), poi_over_last=poi, poi_over_last_ci=poi_ci))
    out.sort(key=lambda r: (math.inf if r.mean_regret is None else r.mean_regret, -(r.p_best or 0.0), r.rule))
    rhos = tuple(_finite(s.spearman) for s in seeds)
    rho_mean, rho_ci = seed_bootstrap_mean([r for r in rhos if r is not None], n_resamples=n_resamples, seed=seed,
                                           confidence=confidence)
    variance = {r: across_seeds([s.pick_variance[r] for s in seeds if r in s.pick_variance])
                for r in rules if any(r in s.pick_variance for s in seeds)}
    return AcrossVerdict(metric=seeds[0].metric, runs=tuple(s.run for s in seeds), rules=tuple(out),
                         spearman_per_seed=rhos, spearman_mean=rho_mean, spearman_ci=rho_ci, confidence=confidence,
                         variance=variance)


def format_table(v: AcrossVerdict) -> str:
    """The across-seeds table as plain text (one row per rule, best first)."""

    def num(x: float | None, fmt: str = ".3f") -> str:
        return "n/a" if x is None else format(x, fmt)

    head = (f"{'rule':<22} {'seeds':>5} {'mean regret':>11} {'interval':>19} {'p(best)':>7} {'mean rank':>9} "
            f"{'P(>last)':>8} {'interval':>12}  picks")
    lines = [f"Across {len(v.runs)} runs, metric {v.metric} (regret: best minus pick; 0 is best)", head]
    for r in v.rules:
        lo, hi = r.mean_regret_ci
        lines.append(f"{r.rule:<22} {r.n_seeds:>5} {num(r.mean_regret):>11} {'[' + num(lo) + ', ' + num(hi) + ']':>19} "
                     f"{num(r.p_best, '.2f'):>7} {num(r.mean_rank, '.2f'):>9} {num(r.poi_over_last, '.2f'):>8} "
                     f"{'[' + num(r.poi_over_last_ci[0], '.2f') + ', ' + num(r.poi_over_last_ci[1], '.2f') + ']':>12}  "
                     f"{', '.join(p or '-' for p in r.picks)}")
    if len(v.runs) < 2:
        lines.append("one run: the intervals over seeds need two or more runs trained with different seeds")
    lo, hi = v.spearman_ci
    per = ", ".join(num(x, ".2f") for x in v.spearman_per_seed)
    lines.append(f"entropy vs {v.metric} Spearman per seed: {per}; mean {num(v.spearman_mean, '.2f')} "
                 f"[{num(lo, '.2f')}, {num(hi, '.2f')}]")
    if v.variance:
        lines.append(f"Variance of {v.metric} over sampled rollouts, per rule's pick (within a scene | between-scene "
                     "component | between seed means | between-seed component; sim/selection/variance.py):")
        for rule, sv in v.variance.items():
            parts = (sv.within_scene, sv.between_scene, sv.between_seed_means, sv.between_seed)
            lines.append(f"  {rule:<20} {sv.n_runs} runs: " + " | ".join(num(_finite(x), ".4f") for x in parts))
    return "\n".join(lines)
