"""The field's statistics for comparing checkpoints, and the verdict per scenario type.

Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the Statistical Precipice" (NeurIPS; the
``rliable`` library) recommend, instead of means with normal intervals:

- **IQM**, the interquartile mean: the mean of the middle 50 % of the scores (``scipy.stats.trim_mean(x,
  0.25)``, what ``rliable.metrics.aggregate_iqm`` computes), robust to a few outlier scenes;
- **stratified bootstrap** intervals: scenes are resampled with replacement *within* each stratum, here the
  scene's primary scenario type (:func:`scenarios.types.primary_type`), so every resample keeps the suite's mix
  of kinds of scene (``scipy.stats.bootstrap`` with one sample per stratum, percentile method; strata of a
  single scene, which it cannot resample, are pooled into one stratum :data:`POOLED_STRATUM`);
- **probability of improvement** ``P(X > Y)``: rliable's definition with scenes as its tasks and rollouts as
  its runs, ``mean over scenes n of P(X_n > Y_n) + P(X_n = Y_n) / 2``, i.e. the Mann-Whitney U statistic over
  the rollouts of each scene divided by ``R_x R_y`` (with one rollout per scene: how often X beats Y on the
  same scene, ties half). Scores are sign-adjusted so "improvement" follows the metric's direction;
- **performance profiles**: per checkpoint, the fraction of scenes whose score exceeds each threshold.

Comparisons: each checkpoint over the pick (the max-entropy rule's checkpoint), each selection rule's pick
over ``last``, and, through :mod:`sim.selection.across`, each rule over ``last`` across seeds. The per-type
breakdown judges the rules again on the scenes of each type (:data:`MIN_TYPE_SCENES` scenes at least).

Needs numpy; scipy is imported when computing. No torch (the dashboard imports this module).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from scenarios.types import TYPE_ORDER, primary_type
from sim.selection.bootstrap import index_bootstrap

IQM_TRIM = 0.25  # the fraction cut from each end: the interquartile mean
MIN_TYPE_SCENES = 5  # a scenario type with fewer scenes gets its count but no per-type verdict
PROFILE_POINTS = 41  # thresholds of a performance profile, evenly spaced over the scores' range
POOLED_STRATUM = "(types with one scene)"
PICK_RULE = "max_entropy"  # "the pick": the rule this project judges
BASE_RULE = "last"  # the baseline every rule is compared with


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean (mean of the middle 50 %) along ``axis`` (rliable's ``aggregate_iqm`` per row).

    Args:
        x: float array of scores (finite).

    Returns:
        ``x`` reduced over ``axis``; for a length that is a multiple of 4, exactly the mean of the sorted middle half.
    """
    from scipy.stats import trim_mean

    return np.asarray(trim_mean(np.asarray(x, dtype=np.float64), IQM_TRIM, axis=axis))


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """rliable's probability of improvement of X over Y, scenes as tasks, rollouts as runs.

    Args:
        x: float ``[..., R_x, N]`` scores of X (higher is better): R_x rollouts on each of N scenes.
        y: float ``[..., R_y, N]`` scores of Y on the same N scenes.

    Returns:
        float ``[...]`` in [0, 1]: the mean over scenes of ``P(X_n > Y_n) + P(X_n = Y_n) / 2`` (0.5: no
        difference). Equals ``rliable.metrics.probability_of_improvement`` and, per scene, the Mann-Whitney U
        statistic of X's rollouts against Y's divided by ``R_x R_y``.
    """
    x = np.asarray(x, dtype=np.float64)[..., :, None, :]
    y = np.asarray(y, dtype=np.float64)[..., None, :, :]
    per_scene = (x > y).mean(axis=(-3, -2)) + 0.5 * (x == y).mean(axis=(-3, -2))
    return per_scene.mean(axis=-1)


def performance_profile(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of scenes whose score exceeds each threshold (rliable's score distribution, ``>``).

    Args:
        scores: float ``[C, N]`` (C checkpoints, N scenes; NaN scenes left out per row).
        thresholds: float ``[K]``.

    Returns:
        float ``[C, K]``, non-increasing in the threshold.
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    fin = np.isfinite(s)
    above = (s[:, None, :] > t[None, :, None]) & fin[:, None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return above.sum(-1) / fin.sum(-1, keepdims=True)


def strata(types: Sequence[Sequence[str]]) -> list[str]:
    """The stratum of each scene: its primary type; types held by a single scene are pooled together.

    Args:
        types: per scene, its scenario types (empty: ``unclassified``).

    Returns:
        One stratum name per scene (a pooled stratum of one scene joins the largest stratum).
    """
    prim = [primary_type(tuple(t)) for t in types]
    counts = {p: prim.count(p) for p in set(prim)}
    out = [POOLED_STRATUM if counts[p] == 1 else p for p in prim]
    if out.count(POOLED_STRATUM) == 1 and len(set(out)) > 1:
        largest = max((p for p in set(out) if p != POOLED_STRATUM), key=lambda p: (out.count(p), p))
        out = [largest if p == POOLED_STRATUM else p for p in out]
    return out


def stratified_bootstrap(stat_fn: Callable[[np.ndarray], np.ndarray], groups: Sequence[str], n_stats: int,
                         n_resamples: int, seed: int, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of a vector statistic of scene indices, resampling scenes within strata
    (:func:`sim.selection.bootstrap.index_bootstrap` with ``groups``).

    Args:
        stat_fn: scene indices ``[B, N]`` (each row one resample) -> ``[n_stats, B]``.
        groups: the stratum of each of the N scenes (:func:`strata`).
        n_stats: length of the statistic. n_resamples, seed, confidence: of the bootstrap.

    Returns:
        ``(low, high)``, each ``[n_stats]``; NaN with fewer than 2 scenes or 2 resamples.
    """
    return index_bootstrap(stat_fn, len(groups), n_stats, n_resamples, seed, confidence, groups=groups)


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def field_statistics(values: np.ndarray, keys: Sequence[str], names: Sequence[str],
                     picks: Mapping[str, int | None], higher_is_better: bool, types: Sequence[Sequence[str]],
                     metric: str, n_resamples: int = 999, seed: int = 0, confidence: float = 0.95) -> dict[str, Any]:
    """IQM with stratified intervals, probabilities of improvement and performance profiles of C checkpoints.

    Args:
        values: float ``[C, N]``, the metric per checkpoint and scene (scenes with a NaN anywhere are left out).
        keys, names: the C checkpoints. picks: rule -> checkpoint index (None: the rule picks nothing).
        higher_is_better: the metric's direction (improvement follows it; IQM stays in the metric's units).
        types: per scene, its scenario types (the strata); empty sequences when unknown.
        metric: the metric's name. n_resamples, seed, confidence: the bootstrap (same seed, same intervals).

    Returns:
        The ``statistics`` entry of the verdict (``docs/results_schema.md``): ``metric, n_scenes, strata
        {stratum: n}, pick, checkpoints [{key, name, iqm, iqm_ci, poi_over_pick, poi_ci}], rules_over_last
        {rule: {key, poi, ci}}, profile {thresholds, fractions {key: [K]}}``; None where undefined.
    """
    v = np.asarray(values, dtype=np.float64)
    c = v.shape[0]
    types = list(types) if len(types) == v.shape[1] else [()] * v.shape[1]
    keep = np.isfinite(v).all(axis=0) if c else np.zeros(v.shape[1], dtype=bool)
    v, types = v[:, keep], [t for t, k in zip(types, keep, strict=True) if k]
    n = v.shape[1]
    groups = strata(types)
    sign = 1.0 if higher_is_better else -1.0
    pick = picks.get(PICK_RULE)
    base = picks.get(BASE_RULE)
    rules = [r for r in picks if r != BASE_RULE]

    def stat_fn(idx: np.ndarray) -> np.ndarray:
        x = v[:, idx]  # [C, B, N']
        out = [iqm(x, axis=-1)]
        signed = sign * x[:, :, None, :]  # [C, B, R=1, N']
        out.append(probability_of_improvement(signed, signed[pick]) if pick is not None
                   else np.full((c, idx.shape[0]), np.nan))
        for r in rules:
            i = picks[r]
            ok = i is not None and base is not None
            out.append(probability_of_improvement(signed[i], signed[base])[None] if ok
                       else np.full((1, idx.shape[0]), np.nan))
        return np.concatenate(out, axis=0)

    n_stats = 2 * c + len(rules)
    if c == 0 or n == 0:
        point, lo, hi = (np.full(n_stats, np.nan) for _ in range(3))
    else:
        point = stat_fn(np.arange(n)[None])[:, 0]
        lo, hi = stratified_bootstrap(stat_fn, groups, n_stats, n_resamples, seed, confidence)
    checkpoints = [{"key": keys[i], "name": names[i], "iqm": _num(point[i]), "iqm_ci": [_num(lo[i]), _num(hi[i])],
                    "poi_over_pick": _num(point[c + i]), "poi_ci": [_num(lo[c + i]), _num(hi[c + i])]}
                   for i in range(c)]
    over_last = {}
    for j, r in enumerate(rules):
        i = picks[r]
        k = 2 * c + j
        over_last[r] = None if i is None or base is None else {
            "key": keys[i], "poi": _num(point[k]), "ci": [_num(lo[k]), _num(hi[k])]}
    lo_t, hi_t = (float(v.min()), float(v.max())) if n else (0.0, 1.0)
    thresholds = np.linspace(lo_t, hi_t if hi_t > lo_t else lo_t + 1.0, PROFILE_POINTS)
    prof = performance_profile(v, thresholds) if n else np.zeros((c, PROFILE_POINTS))
    return {
        "metric": metric, "higher_is_better": bool(higher_is_better), "n_scenes": n,
        "strata": {g: groups.count(g) for g in sorted(set(groups), key=_type_rank)},
        "pick": None if pick is None else keys[pick], "base": None if base is None else keys[base],
        "confidence": confidence, "n_resamples": n_resamples, "seed": seed,
        "checkpoints": checkpoints, "rules_over_last": over_last,
        "profile": {"thresholds": thresholds.tolist(), "fractions": {keys[i]: prof[i].tolist() for i in range(c)}},
    }


def _type_rank(t: str) -> tuple[int, str]:
    return (TYPE_ORDER.index(t), t) if t in TYPE_ORDER else (len(TYPE_ORDER), t)


def type_breakdown(values: np.ndarray, keys: Sequence[str], names: Sequence[str], picks: Mapping[str, int | None],
                   higher_is_better: bool, types: Sequence[Sequence[str]], metric: str) -> dict[str, Any]:
    """The verdict per scenario type: on the scenes carrying each type, the best checkpoint, every rule's pick with
    its rank and regret, and each checkpoint's mean and IQM (a scene with several types counts in each).

    Args:
        values: float ``[C, N]`` metric per checkpoint and scene. keys, names: the C checkpoints.
        picks: rule -> index (the whole run's picks: a rule does not know the scene types).
        higher_is_better: the metric's direction. types: per scene, its types. metric: the metric's name.

    Returns:
        ``{min_scenes, metric, types: [{type, n, judged, best, rules {rule: {key, name, value, rank, regret}},
        mean {key: x}, iqm {key: x}}], sentence}``; a type with fewer than :data:`MIN_TYPE_SCENES` scenes has
        ``judged`` False and no ``best`` nor ``rules``.
    """
    v = np.asarray(values, dtype=np.float64)
    sign = 1.0 if higher_is_better else -1.0
    found = sorted({t for ts in types for t in ts}, key=_type_rank)
    rows = []
    for t in found:
        cols = np.array([t in ts for ts in types], dtype=bool)
        sub = v[:, cols]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            means = np.nanmean(sub, axis=-1) if sub.size else np.full(len(keys), np.nan)
        fin = np.isfinite(sub).all(axis=0)
        iq = iqm(sub[:, fin], axis=-1) if fin.any() else np.full(len(keys), np.nan)
        row: dict[str, Any] = {"type": t, "n": int(cols.sum()), "judged": bool(cols.sum() >= MIN_TYPE_SCENES),
                               "mean": {k: _num(m) for k, m in zip(keys, means, strict=True)},
                               "iqm": {k: _num(m) for k, m in zip(keys, np.atleast_1d(iq), strict=True)}}
        if row["judged"] and np.isfinite(means).any():
            s = sign * means
            best = int(np.nanargmax(s))
            row["best"] = {"key": keys[best], "name": names[best], "value": _num(means[best])}
            row["rules"] = {r: None if i is None or not math.isfinite(s[i]) else {
                "key": keys[i], "name": names[i], "value": _num(means[i]),
                "rank": 1 + int(np.sum(s > s[i])), "regret": _num(s[best] - s[i])} for r, i in picks.items()}
        rows.append(row)
    out = {"metric": metric, "min_scenes": MIN_TYPE_SCENES, "types": rows}
    out["sentence"] = type_sentence(out)
    return out


def type_best_label(row: Mapping[str, Any]) -> str:
    """The "best" cell of a :func:`type_breakdown` row: the best checkpoint's name, "too few scenes" below
    :data:`MIN_TYPE_SCENES`, or "not applicable" where the metric is defined on none of the type's scenes (a
    map-rule metric on scenes without that information)."""
    if not row.get("judged"):
        return "too few scenes"
    return row["best"]["name"] if row.get("best") else "not applicable"


def type_table_rows(b: Mapping[str, Any]) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """The per-type table of a :func:`type_breakdown` result as the CLI, the dashboard and the HTML report show it.

    Returns:
        ``(header, rows)``: header ``type, scenes, best, <rule>...`` (the rules some row judges, in the breakdown's
        order); one row per type: its name, scenes (int), :func:`type_best_label`, and per rule ``"0.080 (rank 2)"``
        (its regret and rank on the type's scenes), ``"n/a"`` (no pick) or ``""`` (type not judged).
    """
    types = list(b.get("types") or ())
    rules = list(dict.fromkeys(r for row in types for r, e in (row.get("rules") or {}).items() if e))
    rows = []
    for row in types:
        cells: list[str] = []
        for r in rules:
            e = (row.get("rules") or {}).get(r)
            cells.append("" if not row.get("best") else "n/a" if e is None else
                         f"{e['regret']:.3f} (rank {e['rank']})")
        rows.append((row["type"], int(row["n"]), type_best_label(row), *cells))
    return ("type", "scenes", "best", *rules), rows


def type_sentence(b: Mapping[str, Any], rule: str = PICK_RULE) -> str:
    """Plain words for one rule per type: "max entropy picks the best on X (n=12); regret 0.08 on Y (n=6); ..."."""
    good, bad, few = [], [], []
    for row in b.get("types") or ():
        e = (row.get("rules") or {}).get(rule)
        if not row.get("judged"):
            few.append(f"{row['type']} ({row['n']})")
        elif e is None:
            continue
        elif e["rank"] == 1:
            good.append(f"{row['type']} (n={row['n']})")
        else:
            bad.append(f"regret {e['regret']:.3g} on {row['type']} (n={row['n']}, rank {e['rank']})")
    label = rule.replace("_", " ")
    parts = []
    if good:
        parts.append(f"picks the best on {', '.join(good)}")
    parts.extend(bad)
    head = f"{label} by {b.get('metric', 'the metric')}, per scenario type: " + ("; ".join(parts) if parts
                                                                                  else "no type judged")
    if few:
        head += f"; no verdict with fewer than {b.get('min_scenes', MIN_TYPE_SCENES)} scenes: {', '.join(few)}"
    return head + "."
