"""Selection verdict: does the entropy-picked checkpoint drive best in closed loop?

Across the checkpoints of a run (baselines excluded) this computes, per closed-loop metric,
Spearman and Kendall rank correlations between policy entropy and the checkpoint's mean
metric, and the same against the training step, with confidence intervals from a paired
scenario bootstrap (``scipy.stats.bootstrap`` resamples scenario indices; every resample
recomputes each checkpoint's mean on the same resampled scenario set, then the rank
correlation across checkpoints; percentile intervals, since rank correlations are bounded and
discrete and BCa collapses at +-1). It also computes the regret of the selection rules
(max entropy, last, best training reward, behaviour-cloned start, random) against the best
checkpoint by the chosen metric, and whether entropy tells more than the step does
(bootstrap interval of ``|rho_entropy| - |rho_step|`` above zero). Beside them, the field's statistics
(:mod:`sim.selection.stats`: IQM with intervals stratified by scenario type, probabilities of improvement,
performance profiles) and the verdict per scenario type.

Needs numpy and scipy only. The output structure is documented in ``docs/results_schema.md``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypedDict

import numpy as np

from sim.metrics.catalogue import higher_is_better as catalogue_direction
from sim.selection.bootstrap import index_bootstrap
from sim.selection.stats import field_statistics, type_breakdown

RULES = ("max_entropy", "last", "best_reward", "bc")
MIN_CORR = 3  # fewer distinct checkpoints: no rank correlation, no interval
RULE_ROLES = {"max_entropy": "best_entropy", "last": "last", "best_reward": "best_reward", "bc": "bc"}


class RuleEntry(TypedDict):
    """What a rule picks and how good it is (``None`` values: undefined)."""

    key: str
    name: str
    episode: int
    entropy: float | None
    value: float | None
    rank: int
    regret: float | None


class Verdict(TypedDict, total=False):
    """The verdict as stored under ``/verdict`` (JSON; ``docs/results_schema.md``)."""

    metric: str
    higher_is_better: bool
    n_checkpoints: int
    n_scenarios: int
    confidence: float
    n_resamples: int
    seed: int
    correlations: dict[str, dict[str, Any]]
    step_correlations: dict[str, dict[str, Any]]
    rules: dict[str, Any]
    best: dict[str, Any] | None
    entropy_vs_step: dict[str, Any]
    entropy_beats_step: bool
    completeness: dict[str, Any]
    unevaluated_roles: list[str]
    sentence: str
    statistics: dict[str, Any]
    by_type: dict[str, Any] | None
    budget: dict[str, Any]  # --budget only: sim.selection.budget.budget_section


@dataclass(frozen=True, eq=False)
class VerdictInput:
    """Per-checkpoint data of one run, C checkpoints on S common scenarios.

    Attributes:
        keys: C checkpoint keys; names: C display names.
        episodes: int ``[C]`` training episode of each checkpoint.
        entropy: float ``[C]`` policy entropy, nats.
        train_reward: float ``[C]`` mean training return (NaN when unknown).
        roles: C tuples of roles (``best_entropy``, ``last``, ``best_reward``, ``bc``, ``candidate``).
        metrics: metric name -> float ``[C, S]`` per-scenario values.
        declared: roles the run has a role file for (see :func:`pick_index`).
        after_episode: the trainer's ``select_after`` (max-entropy fallback).
        scene_types: S tuples of scenario types (``scenarios/types.py``), or empty when unknown (no per-type
            verdict, one bootstrap stratum).
    """

    keys: tuple[str, ...]
    names: tuple[str, ...]
    episodes: np.ndarray
    entropy: np.ndarray
    train_reward: np.ndarray
    roles: tuple[tuple[str, ...], ...]
    metrics: Mapping[str, np.ndarray]
    declared: tuple[str, ...] = ()
    after_episode: int = 0
    scene_types: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        c = len(self.keys)
        for name in ("episodes", "entropy", "train_reward"):
            if np.shape(getattr(self, name)) != (c,):
                raise ValueError(f"{name} must be [{c}], got {list(np.shape(getattr(self, name)))}")
        shapes = {np.shape(v) for v in self.metrics.values()}
        if len(shapes) > 1 or any(len(s) != 2 or s[0] != c for s in shapes):
            raise ValueError(f"metrics must all be [{c}, S], got {sorted(shapes)}")
        if self.scene_types and len(self.scene_types) != self.num_scenarios:
            raise ValueError(f"scene_types must have one entry per scenario ({self.num_scenarios}), "
                             f"got {len(self.scene_types)}")

    @property
    def num_scenarios(self) -> int:
        return int(next(iter(self.metrics.values())).shape[1]) if self.metrics else 0


MIN_CHECKPOINTS = 3  # fewest checkpoints a rank correlation is computed over (fewer: undefined, None)

def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho between each row of ``x`` ``[..., C]`` and ``y`` ``[C]`` (average ranks; NaN if constant)."""
    from scipy.stats import rankdata

    rx = rankdata(x, axis=-1)
    ry = rankdata(y)
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean()
    den = np.sqrt((rx * rx).sum(-1) * (ry * ry).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (rx * ry).sum(-1) / den
    return np.where(den > 0, r, np.nan)


def kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b between each row of ``x`` ``[..., C]`` and ``y`` ``[C]`` (NaN if constant)."""
    iu, ju = np.triu_indices(len(y), k=1)
    sx = np.sign(x[..., ju] - x[..., iu])
    sy = np.sign(y[ju] - y[iu])
    num = (sx * sy).sum(-1)
    den = np.sqrt((sx != 0).sum(-1) * float((sy != 0).sum()))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = num / den
    return np.where(den > 0, t, np.nan)


def _float(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _ci(lo: float, hi: float) -> list[float | None]:
    return [_float(lo), _float(hi)]


def paired_bootstrap(
    stat_fn, n_scen: int, n_stats: int, n_resamples: int, seed: int, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """Paired scenario bootstrap of a vector statistic of scenario indices (one stratum of
    :func:`sim.selection.bootstrap.index_bootstrap`). Returns (low, high) ``[n_stats]``."""
    return index_bootstrap(stat_fn, n_scen, n_stats, n_resamples, seed, confidence)


def entropy_order(episodes: Sequence[int], entropy: Sequence[float], after_episode: int = 0) -> list[int]:
    """The max-entropy rule's ranking, the one definition (the trainer's ``best_entropy.pt`` is its first entry):
    indices of the checkpoints at or after ``after_episode`` with a finite entropy, highest entropy first,
    earlier episode on ties.

    Args:
        episodes: int ``[C]``. entropy: float ``[C]`` nats (NaN: not ranked). after_episode: ``select_after``.
    """
    eps = [int(e) for e in episodes]
    ent = [float(x) for x in entropy]
    ok = [i for i in range(len(eps)) if eps[i] >= after_episode and math.isfinite(ent[i])]
    return sorted(ok, key=lambda i: (-ent[i], eps[i]))


def pick_index(rule: str, roles: Sequence[Sequence[str]], episodes: Sequence[int], entropy: Sequence[float],
               train_reward: Sequence[float], declared: Collection[str] = (), after_episode: int = 0) -> int | None:
    """Which of C checkpoints a standard rule picks (the one definition: CLI, verdict, chart, report card and
    what-if editor all call it).

    The checkpoint carrying the rule's role file (:data:`RULE_ROLES`) wins. When the run declares that role
    (``declared``: its role file exists) but no given checkpoint carries it, the pick is not evaluated yet:
    None, never a stand-in. Without the role in the run: ``max_entropy`` takes the highest entropy among
    checkpoints at or after ``after_episode`` (the trainer's ``select_after``), leaving out a BC start that is
    no training checkpoint (``bc`` without ``candidate``) when others exist, earlier episode on ties (the
    trainer's ranking); ``last`` the highest episode;
    ``best_reward`` the highest training reward; ``bc`` the checkpoint of episode 0.

    Returns:
        An index into the C checkpoints, or None when the rule cannot pick.
    """
    tagged = [i for i, r in enumerate(roles) if RULE_ROLES[rule] in r]
    if tagged:
        return tagged[0]
    if RULE_ROLES[rule] in declared:
        return None
    eps = np.asarray(episodes, dtype=np.int64).reshape(-1)
    if rule == "max_entropy":
        ent = np.asarray(entropy, dtype=float).copy()
        trained = np.array([("candidate" in r) or ("bc" not in r) for r in roles], dtype=bool)
        if (trained & np.isfinite(ent) & (eps >= after_episode)).any():  # bc.pt alone is no checkpoint it ranks
            ent[~trained] = np.nan
        order = entropy_order(eps, ent, after_episode)
        return order[0] if order else None
    if rule == "last":
        return int(np.argmax(eps)) if len(eps) else None
    if rule == "best_reward":
        rew = np.asarray(train_reward, dtype=float)
        return int(np.nanargmax(rew)) if np.isfinite(rew).any() else None
    zero = [i for i, e in enumerate(eps) if e == 0]
    return zero[0] if zero else None


@dataclass(frozen=True)
class Completeness:
    """How much of a run's comparison set has results.

    Attributes:
        expected: distinct checkpoints of the run (its comparison set). complete: of those, with results on
            every scene. missing_checkpoints: expected - complete. missing_pairs: (checkpoint, scene) pairs
            without results. n_scenes: scenes of the evaluation.
    """

    expected: int
    complete: int
    missing_checkpoints: int
    missing_pairs: int
    n_scenes: int

    @property
    def is_complete(self) -> bool:
        return self.missing_checkpoints == 0

    def line(self) -> str:
        """Plain statement for the CLI and the dashboard ("" when complete)."""
        if self.is_complete:
            return ""
        return (f"Partial comparison set: {self.complete} of {self.expected} checkpoints evaluated on all "
                f"{self.n_scenes} scenes; {self.missing_checkpoints} checkpoint(s) and {self.missing_pairs} "
                "(checkpoint, scene) pair(s) still missing, so 'best' means best so far.")


def completeness(expected_keys: Collection[str], done: Mapping[str, Collection[str]],
                 scene_ids: Collection[str]) -> Completeness:
    """Completeness of a comparison set.

    Args:
        expected_keys: the run's distinct checkpoint keys. done: key -> scenario ids with results.
        scene_ids: the scenario ids of the evaluation.
    """
    ids = set(scene_ids)
    missing = {k: len(ids - set(done.get(k, ()))) for k in expected_keys}
    full = sum(v == 0 for v in missing.values())
    return Completeness(expected=len(missing), complete=full, missing_checkpoints=len(missing) - full,
                        missing_pairs=int(sum(missing.values())), n_scenes=len(ids))


def rank_and_regret(values: np.ndarray, i: int, higher_is_better: bool) -> tuple[int, float, int]:
    """Rank (1 = best), regret (>= 0, in the metric's units) of checkpoint ``i`` and the index of the best.

    Args:
        values: float ``[C]`` mean metric per checkpoint (NaN: not ranked). i: the picked checkpoint.
        higher_is_better: the metric's direction.
    """
    sign = 1.0 if higher_is_better else -1.0
    v = sign * np.asarray(values, dtype=np.float64)
    best = int(np.nanargmax(v))
    return 1 + int(np.sum(v > v[i])), float(v[best] - v[i]), best


def correlations_with_ci(x: np.ndarray, per_scene: np.ndarray, n_resamples: int = 999, seed: int = 0,
                         confidence: float = 0.95) -> dict[str, float]:
    """Spearman and Kendall between a per-checkpoint score and a metric, with the verdict's paired bootstrap.

    Args:
        x: float ``[C]`` score per checkpoint (entropy, or the step).
        per_scene: float ``[C, S]`` metric per checkpoint and scenario (same scenarios in every row).

    Returns:
        ``spearman, spearman_lo, spearman_hi, kendall, kendall_lo, kendall_hi, n`` (NaN when C < 3, no
        scenario, or a constant).
    """
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(per_scene, dtype=np.float64)
    out = dict.fromkeys(("spearman", "spearman_lo", "spearman_hi", "kendall", "kendall_lo", "kendall_hi"), math.nan)
    out["n"] = float(x.size)
    if x.size < MIN_CHECKPOINTS or m.ndim != 2 or m.shape[1] == 0 or np.nanstd(x) == 0:
        return out

    def stat_fn(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        one = np.ndim(idx) == 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            means = np.nanmean(m[:, np.atleast_2d(idx)], axis=-1).T  # [B, C]
        res = np.stack([spearman_rows(means, x), kendall_rows(means, x)])  # [2, B]
        return res[:, 0] if one else res

    point = stat_fn(np.arange(m.shape[1]))
    lo, hi = paired_bootstrap(stat_fn, m.shape[1], 2, n_resamples, seed, confidence)
    out.update(spearman=float(point[0]), kendall=float(point[1]), spearman_lo=float(lo[0]),
               spearman_hi=float(hi[0]), kendall_lo=float(lo[1]), kendall_hi=float(hi[1]))
    return out


def _pick(inp: VerdictInput, rule: str) -> int | None:
    return pick_index(rule, inp.roles, inp.episodes, inp.entropy, inp.train_reward, inp.declared, inp.after_episode)


def resample_means(data: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """NaN-skipping means of ``data [..., S]`` over each resample of scenes ``idx [B, S']`` -> ``[..., B]``.

    The same values as ``np.nanmean(data[..., idx], axis=-1)`` up to float round-off (exact for values that are
    integers, such as rates' 0/1 entries), as one matrix product with each resample's scene counts instead of a
    ``[..., B, S']`` gather: NaN where a resample holds no defined value.
    """
    s, n_b = data.shape[-1], idx.shape[0]
    counts = np.bincount((idx + s * np.arange(n_b)[:, None]).ravel(), minlength=n_b * s).reshape(n_b, s)
    defined = ~np.isnan(data)
    flat = np.where(defined, data, 0.0).reshape(-1, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (flat @ counts.T.astype(np.float64)) / (defined.reshape(-1, s).astype(np.float64) @ counts.T)
    return means.reshape(*data.shape[:-1], n_b)


def _correlations(data: np.ndarray, names: list[str], hib: Mapping[str, bool], ent: np.ndarray, step: np.ndarray,
                  mi: int, n_resamples: int, seed: int, confidence: float
                  ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], bool]:
    """Rank correlations of every metric with entropy and with the step, paired-bootstrap intervals over scenes.

    Args:
        data: float ``[M, C, S]`` per-scene values (NaN: not applicable). names: the M metric names.
        hib: metric -> higher is better. ent, step: float ``[C]``. mi: the verdict metric's index.

    Returns:
        ``(correlations, step_correlations, entropy_vs_step, entropy_beats_step)``; correlations need at least
        :data:`MIN_CORR` distinct policies, intervals :data:`MIN_CHECKPOINTS` (else ``None``).
    """
    nm, c, s = data.shape

    def stat_fn(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        one = np.ndim(idx) == 1
        means = np.moveaxis(resample_means(data, np.atleast_2d(idx)), 1, -1)  # [M, B, C]
        rs_e, kt_e = spearman_rows(means, ent), kendall_rows(means, ent)
        rs_s, kt_s = spearman_rows(means, step), kendall_rows(means, step)
        diff = np.abs(rs_e[mi]) - np.abs(rs_s[mi])
        out = np.concatenate([rs_e, kt_e, rs_s, kt_s, diff[None]], axis=0)  # [4M + 1, B]
        return out[:, 0] if one else out

    point = stat_fn(np.arange(s)) if c >= MIN_CORR and s >= 1 else np.full(4 * nm + 1, np.nan)
    if c >= MIN_CHECKPOINTS:
        lo, hi = paired_bootstrap(stat_fn, s, len(point), n_resamples, seed, confidence)
    else:
        lo, hi = np.full(len(point), np.nan), np.full(len(point), np.nan)
    tables: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    for k, m in enumerate(names):
        for target, base in ((tables[0], 0), (tables[1], 2)):
            i_s, i_k = base * nm + k, (base + 1) * nm + k
            target[m] = {
                "spearman": _float(point[i_s]),
                "spearman_ci": _ci(lo[i_s], hi[i_s]),
                "kendall": _float(point[i_k]),
                "kendall_ci": _ci(lo[i_k], hi[i_k]),
                "n": c,
                "higher_is_better": bool(hib[m]),
            }
    d = 4 * nm
    diff = {"abs_spearman_diff": _float(point[d]), "ci": _ci(lo[d], hi[d])}
    return tables[0], tables[1], diff, bool(np.isfinite(lo[d]) and lo[d] > 0)


def _rules_section(inp: VerdictInput, values: np.ndarray, higher: bool, picks: Mapping[str, int | None]
                   ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Each rule's pick with its rank and regret, the random rule's expectation, and the best checkpoint.

    Args:
        inp: the run's checkpoints. values: float ``[C]`` mean of the verdict metric per checkpoint.
        higher: its direction. picks: rule -> the index it picks (None: no pick).

    Returns:
        ``(rules, best)`` as stored in the verdict (``None`` where undefined).
    """
    c = len(values)
    sign = 1.0 if higher else -1.0
    best_i = int(np.nanargmax(sign * values)) if np.isfinite(values).any() else None

    def entry(i: int | None) -> dict[str, Any] | None:
        if i is None or best_i is None:
            return None
        rank, regret, _ = rank_and_regret(values, i, higher)
        return {
            "key": inp.keys[i],
            "name": inp.names[i],
            "episode": int(inp.episodes[i]),
            "entropy": _float(inp.entropy[i]),
            "value": _float(values[i]),
            "rank": rank,
            "regret": _float(regret),
        }

    rules: dict[str, Any] = {r: entry(picks[r]) for r in RULES}
    rules["random"] = None
    if best_i is None:
        return rules, None
    regrets = sign * (values[best_i] - values)
    rules["random"] = {"expected_regret": _float(np.nanmean(regrets)), "value": _float(np.nanmean(values)),
                       "p_best": 1.0 / c}
    best = {k: v for k, v in entry(best_i).items() if k not in ("rank", "regret")}
    return rules, best


def compute_verdict(
    inp: VerdictInput,
    metric: str = "score",
    higher_is_better: Mapping[str, bool] | None = None,
    n_resamples: int = 999,
    seed: int = 0,
    confidence: float = 0.95,
    comp: Completeness | None = None,
) -> Verdict:
    """Judge the selection rules on one run's checkpoints.

    Args:
        inp: C checkpoints x S scenarios (baselines already removed).
        metric: the metric that defines "best" for regret (must be in ``inp.metrics``).
        higher_is_better: metric name -> direction; metrics missing here take the catalogue's
            (:mod:`sim.metrics.catalogue`).
        n_resamples: bootstrap resamples of scenarios.
        seed: bootstrap seed (same seed, same intervals).
        confidence: confidence level of the intervals.
        comp: how complete the run's comparison set is (stored as ``completeness``; a partial set is said
            in the sentence).

    Returns:
        The verdict dict of ``docs/results_schema.md`` (``None`` where a value is undefined).
    """
    if metric not in inp.metrics:
        raise ValueError(f"verdict metric {metric!r} not among {sorted(inp.metrics)}")
    hib = dict(higher_is_better or {})
    hib = {m: hib.get(m, catalogue_direction(m)) for m in inp.metrics}
    names = list(inp.metrics)
    c, s = len(inp.keys), inp.num_scenarios
    data = np.stack([np.asarray(inp.metrics[m], dtype=np.float64) for m in names]) if names else np.zeros((0, c, s))
    ent = np.asarray(inp.entropy, dtype=np.float64)
    mi = names.index(metric)
    correlations, step_correlations, diff, beats = _correlations(
        data, names, hib, ent, np.asarray(inp.episodes, dtype=np.float64), mi, n_resamples, seed, confidence)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = np.nanmean(data[mi], axis=-1) if c else np.zeros(0)  # [C]
    picks = {r: _pick(inp, r) for r in RULES}
    rules, best = _rules_section(inp, values, bool(hib[metric]), picks)
    verdict: Verdict = {
        "metric": metric,
        "higher_is_better": bool(hib[metric]),
        "n_checkpoints": c,
        "n_scenarios": s,
        "confidence": confidence,
        "n_resamples": n_resamples,
        "seed": seed,
        "correlations": correlations,
        "step_correlations": step_correlations,
        "rules": rules,
        "best": best,
        "entropy_vs_step": {"metric": metric, **diff},
        "entropy_beats_step": beats,
    }
    if comp is not None:
        verdict["completeness"] = {**asdict(comp), "line": comp.line()}
    verdict["sentence"] = sentence(verdict)
    verdict["statistics"] = field_statistics(data[mi] if c else np.zeros((0, s)), inp.keys, inp.names, picks,
                                             hib[metric], inp.scene_types, metric, n_resamples, seed, confidence)
    verdict["by_type"] = (type_breakdown(data[mi], inp.keys, inp.names, picks, hib[metric], inp.scene_types, metric)
                          if inp.scene_types and c else None)
    return verdict


def sentence(v: Mapping[str, Any]) -> str:
    """One-sentence plain-language verdict."""
    c, metric = v["n_checkpoints"], v["metric"]
    if c < 2:
        return f"Only {c} checkpoint(s) with results: nothing to compare."
    if v["best"] is None:
        return (f"{metric} is not applicable on any of the {v['n_scenarios']} scenes (undefined for every "
                "checkpoint, as where a scene lacks the map information it needs): no checkpoint is best by it.")
    me = v["rules"].get("max_entropy")
    corr = v["correlations"][metric]

    def num(x: float | None, fmt: str = ".2f") -> str:
        return "n/a" if x is None else format(x, fmt)

    parts = []
    if me is not None:
        verdict = ("the best" if me["rank"] == 1 else f"rank {me['rank']} of {c}") + (
            " so far" if (v.get("completeness") or {}).get("line") else "")
        parts.append(
            f"The max-entropy checkpoint ({me['name']}) is {verdict} by {metric} (regret {num(me['regret'], '.3g')})"
        )
    else:
        parts.append("No checkpoint has an entropy")
    if c < MIN_CORR or corr.get("spearman") is None:
        parts.append(f"no rank correlation with {c} distinct checkpoint(s) (needs {MIN_CORR})" if c < MIN_CORR
                     else f"entropy vs {metric} Spearman undefined (a constant)")
    else:
        lo, hi = corr["spearman_ci"]
        parts.append(f"entropy vs {metric} Spearman {num(corr['spearman'])} [{num(lo)}, {num(hi)}]")
        parts.append(
            "entropy tells more than the training step" if v["entropy_beats_step"]
            else "entropy does not tell more than the training step"
        )
    partial = v.get("completeness") or {}
    head = (partial.get("line", "") + " ") if partial.get("line") else ""
    return head + "; ".join(parts) + "."


def verdict_input_from_rows(
    keys: Sequence[str],
    names: Sequence[str],
    episodes: Sequence[int],
    entropy: Sequence[float],
    train_reward: Sequence[float],
    roles: Sequence[Sequence[str]],
    metrics: Sequence[Mapping[str, np.ndarray]],
    metric_names: Sequence[str],
    declared: Sequence[str] = (),
    after_episode: int = 0,
    scene_types: Sequence[Sequence[str]] = (),
) -> VerdictInput:
    """Build a :class:`VerdictInput` from per-checkpoint metric dicts (each ``[S]``, same scenario order;
    ``scene_types``: the S scenes' types, or empty)."""
    return VerdictInput(
        keys=tuple(keys),
        names=tuple(names),
        episodes=np.asarray(episodes, dtype=np.int64),
        entropy=np.asarray(entropy, dtype=np.float64),
        train_reward=np.asarray(train_reward, dtype=np.float64),
        roles=tuple(tuple(r) for r in roles),
        metrics={m: np.stack([np.asarray(d[m], dtype=np.float64) for d in metrics]) for m in metric_names},
        declared=tuple(declared),
        after_episode=int(after_episode),
        scene_types=tuple(tuple(t) for t in scene_types),
    )
