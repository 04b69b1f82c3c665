"""Budgeted checkpoint selection: a paired race that stops once one candidate is best with high probability.

Torch-free (numpy only): pure functions from per-candidate per-scene scores to the next allocation, the stop
decision and P(best), so the same code drives ``python -m sim.evaluate --budget`` and the replay in
``benchmarks/budgeted_selection.py``. Method (``docs/selection.md``): active offline policy selection
(Konyushkova et al. 2021, "Active offline policy selection"; ``../shared/REFERENCE.md``), done here as
successive elimination with paired scenes:

1. Scenes are taken in one seeded random order (:func:`scene_order`); every candidate still in the race is
   evaluated on the same prefix of that order (paired: per-scene differences cancel the scene's difficulty).
2. After each round, P(best) of each candidate in the race is the probability that it has the highest mean on
   the full sweep (the N scenes), given the n scenes seen: the unseen N - n scenes are drawn by a Polya urn from
   the seen ones (the Polya posterior of a finite population, Ghosh & Meeden 1997, a Bayesian bootstrap), the
   same draw for every candidate (paired); ties share the credit: :func:`p_best`. At n = N it is exact. The urn
   also holds a prior of total weight ``PRIOR_MASS`` (a Dirichlet process's concentration) on K pseudo-scenes,
   each favouring one candidate by the whole observed score range: without it, a candidate at least as good as
   another on every seen scene would be better with probability 1, however few scenes tell them apart.
3. A candidate is clearly worse, and gets no more scenes, when the same posterior probability that its
   full-sweep mean is at least the leader's falls below ``(1 - confidence) / L / (candidates in the race - 1)``
   (a Bonferroni split of the error over the pairwise comparisons): :func:`prob_at_least`.
4. The race stops when one candidate has P(best) >= ``1 - (1 - confidence) / L``, every scene is used, or the
   next round would exceed the budget. L (:func:`looks`) is the number of rounds the schedule takes to reach every
   scene: the race tests after each round, and testing L times at level ``1 - confidence`` would stop on a wrong
   leader more often than ``1 - confidence`` (a Bonferroni split over the looks; step 3's threshold is split the
   same way). The pick is the leader (highest mean on the common scenes of the race).

5. When the budget cannot pay the next round for every candidate in the race, the rollouts left go to the m
   candidates highest in P(best) (the race goes on with them: up to ``rollouts left // m`` more scenes each, in
   rounds that may still eliminate or stop), with m (from two to all of them) chosen to minimise the posterior
   expected full-sweep regret of the pick were each to get them all (:func:`contenders`: the
   next scenes are drawn from the same Polya posterior as the unseen ones, so the draws say both what the extra
   scenes would show and what the full sweep holds). m = all is uniform allocation from there on, so the race
   drops no one unless its own posterior expects a lower regret from it; ties keep more candidates. The others
   are dropped where they are. Before any decision can be taken (below), the last round is cut short for every
   candidate instead.

Rounds grow geometrically (``growth``) from ``min_scenes``; no decision is taken before ``min_scenes`` scenes tell
the racing candidates apart (scenes where they all score the same carry no information on the ranking, and on a
handful of telling scenes any resampling scheme is over-confident: a candidate at least as good as the others on
each of them gets P(best) = 1). Rollouts are counted as (candidate, scene) pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_SCENES = 16  # scenes that tell the racing candidates apart before anything is decided
GROWTH = 1.5  # each round's common prefix is this many times the previous one
N_RESAMPLES = 2000  # bootstrap resamples for P(best) and the elimination test
PRIOR_MASS = 1.0  # Dirichlet-process prior weight of "an unseen scene unlike any seen one" (in scenes)
TIE_TOL = 1e-12  # means closer than this (relative to the scores' scale) are ties

STOP_CONFIDENT = "confident"
STOP_BUDGET = "budget"
STOP_ALL_SCENES = "all scenes"
STOP_ONE_LEFT = "one left"


def check_budget(budget: float) -> None:
    """Raise ValueError unless ``budget`` is 0, a fraction in (0, 1] or a whole number above 1 (``--budget``)."""
    if budget < 0 or (budget > 1 and budget != int(budget)):
        raise ValueError(f"--budget must be 0 (full sweep), a fraction in (0, 1] or a whole number of rollouts, "
                         f"got {budget}")


def budget_rollouts(budget: float, n_candidates: int, n_scenes: int) -> int:
    """Rollouts (candidate x scene pairs) a ``--budget`` value allows.

    Args:
        budget: 0 for the full sweep; a fraction in (0, 1] of the full sweep; or a whole number > 1 of rollouts.
        n_candidates: distinct policies in the race. n_scenes: scenes of the sweep.

    Returns:
        The number of rollouts, at most the full sweep ``n_candidates * n_scenes``.

    Raises:
        ValueError: a negative budget, or a count above 1 that is not a whole number.
    """
    full = n_candidates * n_scenes
    check_budget(budget)
    if budget == 0:
        return full
    if budget <= 1:
        return min(full, int(math.floor(budget * full + 1e-9)))
    return min(full, int(budget))


def scene_order(n_scenes: int, seed: int) -> np.ndarray:
    """The seeded order in which scenes enter the race: a permutation of ``range(n_scenes)`` (int64 [N])."""
    return np.random.default_rng([seed, 23]).permutation(n_scenes)


def _weights(n: int, n_total: int | None, n_resamples: int, seed: int, tag: int, n_prior: int = 0) -> np.ndarray:
    """Scene weights [R, n + n_prior], each row summing to the number of scenes the mean is over.

    ``n_total`` None: Efron's bootstrap (multinomial counts of n draws; no prior columns). Otherwise the Polya
    posterior of a finite population of ``n_total`` scenes of which these n are seen (Ghosh & Meeden 1997), with
    a Dirichlet-process prior: each seen scene counts once, and the ``n_total - n`` unseen ones are drawn by a
    Polya urn that starts with one ball per seen scene and ``PRIOR_MASS / n_prior`` for each of ``n_prior`` prior
    pseudo-scenes (Blackwell-MacQueen), i.e. Dirichlet-multinomial counts.
    """
    rng = np.random.default_rng([seed, tag, n, 0 if n_total is None else 1 + n_total, n_prior])
    if n_total is None:
        return rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(np.float64)
    if n_total < n:
        raise ValueError(f"n_total ({n_total}) must be >= the scenes seen ({n})")
    base = np.concatenate([np.ones(n), np.zeros(n_prior)])
    unseen = n_total - n
    if unseen == 0:
        return np.tile(base, (n_resamples, 1))
    return base + rng.multinomial(unseen, rng.dirichlet(_concentration(n, n_prior), size=n_resamples)).astype(
        np.float64)


def _concentration(n: int, n_prior: int) -> np.ndarray:
    """The Polya urn's starting balls ``[n + n_prior]``: one per seen scene, ``PRIOR_MASS`` shared by the prior's
    pseudo-scenes."""
    return np.concatenate([np.ones(n), np.full(n_prior, PRIOR_MASS / max(n_prior, 1))])


def _with_prior(scores: np.ndarray) -> np.ndarray:
    """``scores [K, n]`` and the prior's K pseudo-scenes ``[K, n + K]``: the scores' observed range favouring one
    candidate each (that candidate at the highest score seen, every other at the lowest)."""
    k = scores.shape[0]
    lo, hi = float(scores.min()), float(scores.max())
    return np.concatenate([scores, lo + (hi - lo) * np.eye(k)], axis=1)


def _resampled_means(scores: np.ndarray, n_total: int | None, n_resamples: int, seed: int, tag: int) -> np.ndarray:
    """Means [K, R] over resampled scenes; with ``n_total``, with the prior's K pseudo-scenes (:func:`_with_prior`)."""
    k = scores.shape[0]
    x = _with_prior(scores) if n_total is not None and k > 1 else scores
    w = _weights(scores.shape[1], n_total, n_resamples, seed, tag, x.shape[1] - scores.shape[1])
    return x @ w.T / w[0].sum()


def _tol(scores: np.ndarray) -> float:
    return TIE_TOL * max(1.0, float(np.max(np.abs(scores))) if scores.size else 1.0)


def _check(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] == 0 or not np.isfinite(scores).all():
        raise ValueError(f"scores must be a finite [K, n>0] array, got shape {scores.shape}")
    return scores


def p_best(scores: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0,
           n_total: int | None = None) -> np.ndarray:
    """Probability that each candidate has the highest mean score, the same resample for every candidate (paired).

    Args:
        scores: [K, n] per-candidate per-scene scores on the same n scenes, oriented so that higher is better.
        n_resamples: resamples. seed: resampling seed (same seed, same result).
        n_total: None: the paired bootstrap over the n scenes (the mean of the population they are drawn from).
            A number N >= n: the probability of being best on the full sweep of N scenes, of which these n are a
            random subset (Polya posterior, :func:`_weights`); at n == N it is exact (1 for the highest mean).

    Returns:
        float64 [K] summing to 1; a tie for the highest mean in a resample splits its credit equally.

    Raises:
        ValueError: ``scores`` is not 2-D with at least one scene, or holds NaN; ``n_total`` < n.
    """
    scores = _check(scores)
    means = _resampled_means(scores, n_total, n_resamples, seed, 1)
    top = means >= means.max(axis=0, keepdims=True) - _tol(scores)
    return (top / top.sum(axis=0, keepdims=True)).mean(axis=1)


def prob_at_least(scores: np.ndarray, leader: int, n_resamples: int = N_RESAMPLES, seed: int = 0,
                  n_total: int | None = None) -> np.ndarray:
    """Probability that each candidate's mean is at least the leader's (1 for the leader); arguments as in
    :func:`p_best`.

    Returns:
        float64 [K].
    """
    scores = _check(scores)
    means = _resampled_means(scores, n_total, n_resamples, seed, 2)
    return (means - means[leader] >= -_tol(scores)).mean(axis=1)


@dataclass(frozen=True)
class BudgetPlan:
    """Settings of one race.

    Attributes:
        total: rollouts allowed (:func:`budget_rollouts`). confidence: P(best) that ends the race, in (0, 1].
        n_resamples: bootstrap resamples. seed: scene order and resampling seed.
        min_scenes: scenes each candidate gets before any decision. growth: round-to-round prefix growth (> 1).
    """

    total: int
    confidence: float = 0.95
    n_resamples: int = N_RESAMPLES
    seed: int = 0
    min_scenes: int = MIN_SCENES
    growth: float = GROWTH

    def __post_init__(self) -> None:
        if not 0 < self.confidence <= 1:
            raise ValueError(f"confidence must be in (0, 1], got {self.confidence}")
        if self.growth <= 1 or self.min_scenes < 1 or self.total < 0:
            raise ValueError("growth must be > 1, min_scenes >= 1 and total >= 0")


@dataclass(frozen=True)
class RaceResult:
    """What a race did.

    Attributes:
        pick: index of the picked candidate (None when nothing could be evaluated).
        p_best: float [K]: P(best) in the final race for candidates still in it, at elimination for the others.
        n_scenes: int [K]: scenes each candidate received (a prefix of ``order``).
        dropped_after: int [K]: common scenes when a candidate was eliminated (-1: never).
        rollouts: (candidate, scene) pairs the race used (stored or new). simulated: of those, the new ones.
        full: rollouts of the full sweep. order: the scene order. stop: why it stopped. rounds: rounds run.
        total: the budget (rollouts). history: per round, the common scenes, candidates in the race, rollouts
            so far and the highest P(best).
    """

    pick: int | None
    p_best: np.ndarray
    n_scenes: np.ndarray
    dropped_after: np.ndarray
    rollouts: int
    simulated: int
    full: int
    order: np.ndarray
    stop: str
    rounds: int = 0
    total: int = 0
    history: tuple[dict, ...] = field(default=())

    @property
    def saved(self) -> int:
        """Rollouts of the full sweep not run."""
        return self.full - self.rollouts


def _prefix_sums(x: np.ndarray, n_total: int, prefixes: Sequence[int], n_resamples: int,
                 seed: int) -> dict[int, np.ndarray]:
    """Posterior draws of the candidates' score sums over the next r unseen scenes, for each r in ``prefixes``
    (0 to N - n): ``{r: float [K, R]}``, the draws nested (the first r of the same sequence for every r).

    The same Polya posterior as :func:`_weights` (each seen scene weight 1, the prior's K pseudo-scenes of
    :func:`_resampled_means` ``PRIOR_MASS`` in all): the scene order is random, so the next r scenes are the first
    r draws of the urn, and r = N - n is every unseen scene (the full sweep). Given the urn's Dirichlet weights,
    disjoint stretches of the sequence are independent multinomial counts.
    """
    k, n = x.shape
    ext = _with_prior(x)
    rng = np.random.default_rng([seed, 3, n, 1 + n_total, k])  # tag 3: not the draws of p_best or prob_at_least
    probs = rng.dirichlet(_concentration(n, k), size=n_resamples)
    counts, done, sums = np.zeros_like(probs), 0, {}
    for r in sorted(set(prefixes)):
        if r > done:
            counts += rng.multinomial(r - done, probs)
            done = r
        sums[r] = ext @ counts.T
    return sums


def contenders(active: Sequence[int], x: np.ndarray, p: np.ndarray, remaining: int, n_total: int,
               n_resamples: int = N_RESAMPLES, seed: int = 0) -> list[int]:
    """Who gets the rollouts left when they cannot pay the next round for everyone in the race (step 5).

    The options are the m highest in P(best) ``p`` (ties: the earlier candidate), m from 2 to all of ``active``,
    each getting ``remaining // m`` more scenes of the order (at most every scene), the pick then being the
    highest mean among them; m = ``len(active)`` is uniform allocation from here on (nobody dropped). The option
    kept has the lowest posterior expected full-sweep regret of its pick (the Polya posterior of step 2, with the
    next scenes drawn from it, the same draws for every option: :func:`_prefix_sums`); ties keep more candidates.

    Args:
        active: the candidates in the race. x: float [len(active), n] their scores on the common n scenes (higher
            is better). p: their P(best). remaining: rollouts left. n_total: scenes of the full sweep.
        n_resamples: posterior draws. seed: their seed.

    Returns:
        The candidates to give the rest to, in race order (all of ``active`` when nobody is to be dropped).
    """
    x = _check(x)
    k, n = x.shape
    unseen = n_total - n
    if k <= 2 or unseen <= 0:
        return list(active)
    extra = {m: min(unseen, remaining // m) for m in range(k, 1, -1)}
    sums = _prefix_sums(x, n_total, [*extra.values(), unseen], n_resamples, seed)
    seen = x.sum(axis=1)[:, None]
    full = (seen + sums[unseen]) / n_total  # [K, R]: the full-sweep means
    best, cols = full.max(axis=0), np.arange(n_resamples)
    ranked = sorted(range(k), key=lambda i: (-p[i], i))
    keep, least = list(range(k)), math.inf
    for m, r in extra.items():  # from every candidate down to two: ties keep more
        if r == 0 and m < k:  # nothing more for them to learn: dropping the others cannot pay
            continue
        top = np.array(sorted(ranked[:m]))
        pick = top[np.argmax(seen[top] + sums[r][top], axis=0)]
        loss = float((best - full[pick, cols]).mean())
        if loss < least - _tol(x):
            keep, least = list(top), loss
    return [active[i] for i in keep]


def looks(n_scenes: int, plan: BudgetPlan) -> int:
    """Rounds the schedule takes to reach every scene: the number of times the race tests (at least 1)."""
    cur, n = min(n_scenes, plan.min_scenes), 1
    while cur < n_scenes:
        cur, n = min(n_scenes, max(cur + 1, math.ceil(cur * plan.growth))), n + 1
    return n


Evaluate = Callable[[dict[int, list[int]]], dict[int, np.ndarray]]
"""``evaluate({candidate: scene indices}) -> {candidate: scores [len(scenes)]}`` (higher is better)."""


def race(n_candidates: int, n_scenes: int, plan: BudgetPlan, evaluate: Evaluate,
         known: np.ndarray | None = None) -> RaceResult:
    """Run the paired race (module docstring), calling ``evaluate`` only for pairs not in ``known``.

    Args:
        n_candidates: K distinct policies. n_scenes: N scenes.
        plan: budget and decision settings.
        evaluate: returns the scores of the asked candidates on the asked scene indices, oriented so that higher
            is better; called once per round with the missing pairs of that round (every candidate asked must be
            answered).
        known: optional float [K, N] scores already stored (NaN where absent): used without calling
            ``evaluate`` (resume), still counted as rollouts of the race.

    Returns:
        :class:`RaceResult`. Deterministic for a given ``plan.seed`` and scores.
    """
    k_all, full = n_candidates, n_candidates * n_scenes
    s = np.full((k_all, n_scenes), np.nan) if known is None else np.array(known, dtype=np.float64, copy=True)
    order = scene_order(n_scenes, plan.seed)
    active = list(range(k_all))
    pb = np.zeros(k_all)
    got = np.zeros(k_all, dtype=np.int64)
    dropped = np.full(k_all, -1, dtype=np.int64)
    used = simulated = rounds = 0
    cur = 0
    target = min(n_scenes, plan.min_scenes)
    stop = STOP_ALL_SCENES
    alpha = (1.0 - plan.confidence) / looks(n_scenes, plan)  # the error, split over the rounds' tests
    history = []
    judged: list[int] = []
    ready = False
    while k_all and n_scenes:
        room = (plan.total - used) // len(active)
        if ready and cur + room < target and len(active) > 2 and used < plan.total:  # step 5: the contenders
            x = s[np.ix_(active, order[:cur])]
            focus = contenders(active, x, pb[active], plan.total - used, n_scenes, plan.n_resamples,
                               plan.seed + rounds)
            for a in set(active) - set(focus):
                dropped[a] = cur
            active = focus
            room = (plan.total - used) // len(active)
        target = min(target, cur + room)
        if target <= cur:
            stop = STOP_BUDGET
            break
        cols = order[cur:target]
        ask = {k: [int(j) for j in cols if np.isnan(s[k, j])] for k in active}
        ask = {k: v for k, v in ask.items() if v}
        if ask:
            for k, v in evaluate(ask).items():
                s[k, ask[k]] = np.asarray(v, dtype=np.float64).reshape(len(ask[k]))
            simulated += sum(len(v) for v in ask.values())
        used += len(active) * (target - cur)
        got[active] = target
        cur = target
        rounds += 1
        x = s[np.ix_(active, order[:cur])]
        p = p_best(x, plan.n_resamples, plan.seed + rounds, n_total=n_scenes)
        pb[active] = p
        judged = list(active)
        lead = int(np.argmax(x.mean(axis=1)))
        # scenes that tell candidates apart: on the others every candidate scores the same
        told = int((np.ptp(x, axis=0) > _tol(x)).sum()) if len(active) > 1 else cur
        ready = told >= plan.min_scenes or cur == n_scenes
        history.append({"scenes": cur, "telling": told, "in_race": len(active), "rollouts": used,
                        "max_p_best": float(p.max())})
        if ready and p.max() >= 1.0 - alpha:
            stop = STOP_CONFIDENT
            break
        if cur == n_scenes:
            stop = STOP_ALL_SCENES
            break
        if ready and len(active) > 1:
            delta = alpha / (len(active) - 1)
            ge = prob_at_least(x, lead, plan.n_resamples, plan.seed + rounds, n_total=n_scenes)
            keep = [a for a, q in zip(active, ge, strict=True) if q >= delta]
            for a in set(active) - set(keep):
                dropped[a] = cur
            active = keep
            if len(active) == 1:
                pb[active] = 1.0
                stop = STOP_ONE_LEFT
                break
        target = min(n_scenes, max(cur + 1, math.ceil(cur * plan.growth)))
    pick = None
    if cur:
        x = s[np.ix_(active, order[:cur])]
        pick = active[int(np.argmax(x.mean(axis=1)))]
        if judged != active:  # dropped after the last P(best): the race's final P(best) is among those left
            pb[active] = p_best(x, plan.n_resamples, plan.seed + rounds, n_total=n_scenes)
    return RaceResult(pick, pb, got, dropped, used, simulated, full, order, stop, rounds, plan.total, tuple(history))


def uniform_pick(scores: np.ndarray, rollouts: int, seed: int = 0) -> int:
    """The pick of uniform allocation at a given budget: every candidate gets the same first
    ``rollouts // K`` scenes of :func:`scene_order` (at least one), the highest mean wins.

    Args:
        scores: [K, N] full-sweep scores (higher is better). rollouts: rollouts to spend.

    Returns:
        Row index of the pick.
    """
    k, n = scores.shape
    m = max(1, min(n, rollouts // k))
    cols = scene_order(n, seed)[:m]
    return int(np.argmax(scores[:, cols].mean(axis=1)))


def regret(scores: np.ndarray, pick: int) -> float:
    """Full-sweep regret of ``pick``: best mean minus the pick's mean over all scenes ([K, N], higher is better)."""
    means = np.asarray(scores, dtype=np.float64).mean(axis=1)
    return float(means.max() - means[pick])


def budget_section(result: RaceResult, keys: Sequence[str], names: Sequence[str], metric: str,
                   confidence: float, seed: int) -> dict[str, Any]:
    """The verdict's ``budget`` section (``/verdict`` JSON, ``docs/results_schema.md``; ``docs/selection.md``).

    Args:
        result: the race. keys, names: the racing candidates' result-group keys and display names, in race order.
        metric: ``--metric``. confidence: ``--confidence``. seed: the scene-order and bootstrap seed.

    Returns:
        ``{"metric", "confidence", "seed", "budget", "rollouts", "simulated", "full_sweep", "saved",
        "saved_fraction", "stop", "rounds", "pick": {"key", "name"} | None, "checkpoints": [{"key", "name",
        "p_best", "n_scenes", "dropped_after"}]}``: ``rollouts`` counts the (checkpoint, scene) pairs the race
        used (stored ones included), ``simulated`` those it ran now, ``saved`` = ``full_sweep - rollouts``.
    """
    pick = None if result.pick is None else {"key": keys[result.pick], "name": names[result.pick]}
    return {
        "metric": metric, "confidence": float(confidence), "seed": int(seed), "budget": int(result.total),
        "rollouts": int(result.rollouts), "simulated": int(result.simulated), "full_sweep": int(result.full),
        "saved": int(result.saved), "saved_fraction": result.saved / result.full if result.full else 0.0,
        "stop": result.stop, "rounds": int(result.rounds), "pick": pick,
        "checkpoints": [{"key": k, "name": n, "p_best": float(result.p_best[i]), "n_scenes": int(result.n_scenes[i]),
                         "dropped_after": None if result.dropped_after[i] < 0 else int(result.dropped_after[i])}
                        for i, (k, n) in enumerate(zip(keys, names, strict=True))],
    }


def budget_lines(doc: Mapping[str, Any]) -> list[str]:
    """The summary's lines for a ``budget`` section (:func:`budget_section`)."""
    pick = doc["pick"]["name"] if doc.get("pick") else "none"
    lines = [f"Budgeted selection by {doc['metric']}: pick {pick} ({doc['stop']}); "
             f"{doc['rollouts']} of {doc['full_sweep']} rollouts ({doc['simulated']} simulated now), "
             f"{doc['saved']} saved ({100 * doc['saved_fraction']:.0f} % of the full sweep)"]
    for c in sorted(doc["checkpoints"], key=lambda c: -c["p_best"]):
        out = f", dropped after {c['dropped_after']} scenes" if c["dropped_after"] is not None else ""
        lines.append(f"  {c['name']}: P(best) {c['p_best']:.3f}, {c['n_scenes']} scenes{out}")
    return lines
