"""A verdict that survives other traffic: one run's ranking with logged agents beside its ranking with IDM agents.

``sim.evaluate --agents log`` and ``--agents idm`` are two experiments, two results files of one run
(``results.h5`` and ``results.agents-idm.h5``, :func:`sim.results.identity.run_results_path`). This module puts
their checkpoint rankings side by side (``python -m sim.across A.h5 B.h5 --compare-traffic``, the dashboard's
across view): whether the best checkpoint changes, the rank correlation between the two rankings of the
checkpoints' means (Spearman's rho, ``scipy.stats.spearmanr``, and Kendall's tau-b, ``scipy.stats.kendalltau``,
with their two-sided p-values; undefined below 3 checkpoints), and each selection rule's pick and regret under
both (the rules and regret of :func:`sim.selection.report.build_verdict`; regret = best mean minus the pick's, sign
flipped for lower-is-better metrics). Both files are judged on the same checkpoints (those both hold) and the
same scenes (those both hold with the same content).

Torch-free (h5py, numpy, scipy).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.results.identity import Experiment, difference, results_files
from sim.selection.across import AcrossError
from sim.selection.verdict import MIN_CHECKPOINTS

COMPARED_EXCEPT_AGENTS = ("metrics_version", "scenario_set", "source")


@dataclass(frozen=True)
class RuleUnder:
    """One selection rule under both traffic models.

    Attributes:
        rule: ``max_entropy``, ``last``, ``best_reward``, ``bc`` or ``random`` (expected regret, no pick).
        pick_a, pick_b: the picked checkpoint's name under each model ("" for random, or a rule that picks
            nothing). regret_a, regret_b: its regret under each (metric units, >= 0; None: the rule picks nothing).
    """

    rule: str
    pick_a: str
    regret_a: float | None
    pick_b: str
    regret_b: float | None


@dataclass(frozen=True)
class TrafficComparison:
    """Two rankings of one run's checkpoints, under two models of the other traffic.

    Attributes:
        metric: what ranks the checkpoints. higher_is_better: its direction.
        labels: the two models (``agents log``, ``agents idm``). files: the two results files.
        n_scenes: scenes both hold (same content). names: checkpoints both hold (display names).
        values_a, values_b: each checkpoint's mean of ``metric`` over those scenes, under each model.
        best_a, best_b: the best checkpoint under each. pick_changes: ``best_a != best_b``.
        spearman, spearman_p, kendall, kendall_p: rank correlation of ``values_a`` and ``values_b`` across the
            checkpoints and its two-sided p-value (None below 3 checkpoints or for a constant ranking).
        rules: :class:`RuleUnder` per rule.
    """

    metric: str
    higher_is_better: bool
    labels: tuple[str, str]
    files: tuple[str, str]
    n_scenes: int
    names: tuple[str, ...]
    values_a: tuple[float, ...]
    values_b: tuple[float, ...]
    best_a: str
    best_b: str
    pick_changes: bool
    spearman: float | None
    spearman_p: float | None
    kendall: float | None
    kendall_p: float | None
    rules: tuple[RuleUnder, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (``rules`` keyed by rule name)."""
        d = asdict(self)
        d["rules"] = {r["rule"]: {k: v for k, v in r.items() if k != "rule"} for r in d["rules"]}
        return d


def _finite(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def rank_correlations(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, ...]:
    """(spearman, p, kendall tau-b, p) of two rankings ``[C]``; all None below 3 or when either is constant."""
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size < MIN_CHECKPOINTS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None, None, None
    rho = stats.spearmanr(x, y)
    tau = stats.kendalltau(x, y)
    return _finite(rho.statistic), _finite(rho.pvalue), _finite(tau.statistic), _finite(tau.pvalue)


def compare_rankings(names: Sequence[str], values_a: Sequence[float], values_b: Sequence[float], *, metric: str,
                     higher_is_better: bool, rules_a: Mapping[str, tuple[str, float | None]],
                     rules_b: Mapping[str, tuple[str, float | None]], labels: tuple[str, str] = ("a", "b"),
                     files: tuple[str, str] = ("", ""), n_scenes: int = 0) -> TrafficComparison:
    """Put two rankings of the same checkpoints side by side.

    Args:
        names: C checkpoint names. values_a, values_b: ``[C]`` means under each model (NaN: ranked last).
        rules_a, rules_b: rule -> (picked name, regret) under each model.

    Raises:
        ValueError: lengths differ or no checkpoint.
    """
    if not names or not len(names) == len(values_a) == len(values_b):
        raise ValueError(f"need one value per checkpoint under both models, got {len(names)}, {len(values_a)}, "
                         f"{len(values_b)}")
    sign = 1.0 if higher_is_better else -1.0

    def best(v: Sequence[float]) -> str:
        s = np.where(np.isnan(np.asarray(v, dtype=np.float64)), -np.inf, sign * np.asarray(v, dtype=np.float64))
        return names[int(np.argmax(s))]

    ba, bb = best(values_a), best(values_b)
    rho, rho_p, tau, tau_p = rank_correlations(values_a, values_b)
    rules = tuple(RuleUnder(r, rules_a.get(r, ("", None))[0], rules_a.get(r, ("", None))[1],
                            rules_b.get(r, ("", None))[0], rules_b.get(r, ("", None))[1])
                  for r in dict.fromkeys([*rules_a, *rules_b]))
    return TrafficComparison(metric, higher_is_better, labels, files, int(n_scenes), tuple(names),
                             tuple(float(x) for x in values_a), tuple(float(x) for x in values_b), ba, bb, ba != bb,
                             rho, rho_p, tau, tau_p, rules)


def _rule_picks(verdict: Mapping[str, Any]) -> dict[str, tuple[str, float | None]]:
    out: dict[str, tuple[str, float | None]] = {}
    for rule, e in (verdict.get("rules") or {}).items():
        if e is None:
            out[rule] = ("", None)
        elif rule == "random":
            out[rule] = ("", _finite(e.get("expected_regret")))
        else:
            out[rule] = (str(e.get("name", "")), _finite(e.get("regret")))
    return out


def _agents(e: Experiment) -> str:
    return str(dict(e.settings).get("agents") or "?")


def check_pair(a: Experiment, b: Experiment, path_a: Path, path_b: Path) -> None:
    """Refuse two files that are not one run's experiments differing only in the other agents' model.

    Raises:
        AcrossError: one line naming the second file and what differs.
    """
    d = difference(a, b, COMPARED_EXCEPT_AGENTS)
    if d is None:
        sa, sb = dict(a.settings), dict(b.settings)
        for k in sorted(set(sa) | set(sb)):
            if k != "agents" and sa.get(k) != sb.get(k):
                d_what, d_a, d_b = f"setting {k}", str(sa.get(k)), str(sb.get(k))
                break
        else:
            if _agents(a) == _agents(b):
                raise AcrossError(f"{path_b}: evaluated with agents {_agents(b)} like {path_a}; --compare-traffic "
                                  "compares a run's results with --agents log and --agents idm")
            return
    else:
        d_what, d_a, d_b = d.what, d.stored, d.given
    raise AcrossError(f"{path_b}: another {d_what} than {path_a} ({d_b} vs {d_a}); --compare-traffic compares one "
                      "run's results files that differ only in --agents")


def load_traffic(path_a: str | Path, path_b: str | Path, metric: str = "score") -> TrafficComparison:
    """Compare one run's two results files that differ only in ``--agents`` (:func:`compare_rankings`).

    Raises:
        AcrossError: unreadable files, another run / scenario set / setting, no common checkpoints or scenes.
    """
    from sim.metrics.catalogue import higher_is_better
    from sim.results.errors import ResultsError
    from sim.results.reader import read_checkpoints, read_experiment, read_root_attrs
    from sim.results.run_folder import select_after
    from sim.selection.report import build_verdict

    pa, pb = Path(path_a), Path(path_b)
    try:
        (ea, _), (eb, _) = read_experiment(pa), read_experiment(pb)
        if ea is None or eb is None:
            raise AcrossError(f"{pa if ea is None else pb}: no such results file")
        check_pair(ea, eb, pa, pb)
        (attrs_a, _), (attrs_b, _) = read_root_attrs(pa), read_root_attrs(pb)
        sa, sb = read_checkpoints(pa), read_checkpoints(pb)
    except ResultsError as e:
        raise AcrossError(str(e)) from None
    cks_a = {s.key: s for s in sa if s.record.kind == "checkpoint"}
    cks_b = {s.key: s for s in sb if s.record.kind == "checkpoint"}
    keys = sorted(set(cks_a) & set(cks_b))
    if not keys:
        raise AcrossError(f"{pb}: no checkpoint results in common with {pa}; evaluate the same run with both --agents")
    dig_a, dig_b = (json.loads(x.get("scene_digests") or "{}") for x in (attrs_a, attrs_b))
    ids = set.intersection(*(set(s.rows.scenario_ids) for k in keys for s in (cks_a[k], cks_b[k])))
    ids = sorted(i for i in ids if dig_a.get(i, "") == dig_b.get(i, ""))
    if not ids:
        raise AcrossError(f"{pb}: no scene in common with {pa} (same id and content)")
    if any(metric not in cks_a[k].rows.metrics or metric not in cks_b[k].rows.metrics for k in keys):
        raise AcrossError(f"{pb}: no metric {metric!r} in the stored rows")
    verdicts = []
    for attrs, cks in ((attrs_a, cks_a), (attrs_b, cks_b)):
        exp = json.loads(attrs["comparison_set"]) if "comparison_set" in attrs else None
        exp = [e for e in exp if e.get("key") in keys] if exp is not None else None
        run_dir = Path(str(attrs.get("run_dir") or pa.parent))
        verdicts.append(build_verdict([cks[k] for k in keys], ids, metric, 0, 0, expected=exp,
                                      after_episode=select_after(run_dir)))
    mean = {k: (float(np.nanmean(cks_a[k].rows.select(ids).metrics[metric])),
                float(np.nanmean(cks_b[k].rows.select(ids).metrics[metric]))) for k in keys}
    return compare_rankings([cks_a[k].record.name for k in keys], [mean[k][0] for k in keys],
                            [mean[k][1] for k in keys], metric=metric, higher_is_better=higher_is_better(metric),
                            rules_a=_rule_picks(verdicts[0]), rules_b=_rule_picks(verdicts[1]),
                            labels=(f"agents {_agents(ea)}", f"agents {_agents(eb)}"), files=(str(pa), str(pb)),
                            n_scenes=len(ids))


def traffic_pair(folder: str | Path) -> tuple[Path, Path] | None:
    """A run folder's ``results.h5`` and the one results file beside it of the same run and scenario set that
    differs only in ``--agents`` (``results.agents-idm.h5``); None when there is no such file (or several)."""
    from sim.results.errors import ResultsError
    from sim.results.reader import read_experiment

    files = results_files(Path(folder))
    if len(files) < 2:
        return None
    try:
        first, _ = read_experiment(files[0])
        others = []
        for p in files[1:]:
            e, _ = read_experiment(p)
            if first is not None and e is not None:
                try:
                    check_pair(first, e, files[0], p)
                    others.append(p)
                except AcrossError:
                    pass
    except ResultsError:
        return None
    return (files[0], others[0]) if len(others) == 1 else None


def format_traffic(c: TrafficComparison) -> str:
    """The side-by-side rankings as plain text: one row per checkpoint, one per rule."""

    def num(x: float | None, fmt: str = ".3f") -> str:
        return "n/a" if x is None or not math.isfinite(x) else format(x, fmt)

    a, b = c.labels
    order = sorted(range(len(c.names)), key=lambda i: -(c.values_a[i] if c.higher_is_better else -c.values_a[i]))
    rank_b = {i: r + 1 for r, i in enumerate(sorted(range(len(c.names)),
              key=lambda i: -(c.values_b[i] if c.higher_is_better else -c.values_b[i])))}
    w = max(12, *(len(n) for n in c.names))
    lines = [f"Traffic: {a} vs {b}, metric {c.metric}, {len(c.names)} checkpoints x {c.n_scenes} scenes "
             f"({c.files[0]} | {c.files[1]})",
             f"{'checkpoint':<{w}} {a:>14} {'rank':>4} {b:>14} {'rank':>4}"]
    for r, i in enumerate(order):
        lines.append(f"{c.names[i]:<{w}} {num(c.values_a[i]):>14} {r + 1:>4} {num(c.values_b[i]):>14} {rank_b[i]:>4}")
    change = f"the pick changes: {c.best_a} -> {c.best_b}" if c.pick_changes else f"the pick holds: {c.best_a}"
    lines.append(f"best under {a}: {c.best_a}; under {b}: {c.best_b} ({change})")
    lines.append(f"rank correlation across checkpoints: Spearman {num(c.spearman, '.2f')} (p {num(c.spearman_p)}), "
                 f"Kendall {num(c.kendall, '.2f')} (p {num(c.kendall_p)})")
    lines.append(f"{'rule':<14} {'pick ' + a:>{w + 5}} {'regret':>8} {'pick ' + b:>{w + 5}} {'regret':>8}")
    for ru in c.rules:
        lines.append(f"{ru.rule:<14} {ru.pick_a or '-':>{w + 5}} {num(ru.regret_a, '.4f'):>8} "
                     f"{ru.pick_b or '-':>{w + 5}} {num(ru.regret_b, '.4f'):>8}")
    return "\n".join(lines)
