"""Intervals of means and rates, the verdict over stored results, and the CLI's summary tables.

One interval method per kind of number, used by the CLI and the dashboard (``docs/metrics.md``, "Statistics"):

- means of continuous metrics (m, s, fractions such as ``score``): the normal-approximation 95 % interval of
  the mean over scenarios (NaN ignored), ``mean +- z_{0.975} * sd / sqrt(n)`` with the sample sd (ddof 1).
  With fewer than about 30 scenes it is narrower than a Student-t interval;
- rates of 0/1 metrics (catalogue unit ``bool``: collision, offroad, comfortable, ttc_ok, ...): the Wilson
  score interval (the same numbers as ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``; a test
  checks), always within [0, 1] and not collapsed at 0 or 1.

Both quantiles come from the standard library (``statistics.NormalDist``), so the dashboard's first paint
needs no scipy. Rank correlations use the verdict's paired scenario bootstrap instead; the field's statistics
(IQM, probability of improvement, per scenario type: :mod:`sim.selection.stats`) come with the verdict and are
printed by :func:`print_statistics`. Torch-free; rich is imported only when printing.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from sim.metrics.catalogue import CARD_DECIMALS, JUDGED_METRICS, SPECS, TABLE_METRICS
from sim.results.reader import StoredCheckpoint
from sim.selection.stats import type_table_rows
from sim.selection.verdict import RULE_ROLES, RULES, Verdict, completeness, compute_verdict, verdict_input_from_rows

PIPED_WIDTH = 150
"""Characters per line of the printed tables when stdout is not a terminal (a pipe, a file, CI): the classic wide
terminal, where the closed-loop table fits with its intervals wrapped under the means; ``COLUMNS`` overrides it."""


def console_width(stream=None) -> int | None:
    """Width for ``rich.console.Console``: None on a terminal (rich measures it), else ``COLUMNS`` when set to a
    number >= 40, else :data:`PIPED_WIDTH`."""
    stream = stream if stream is not None else sys.stdout
    if hasattr(stream, "isatty") and stream.isatty():
        return None
    cols = os.environ.get("COLUMNS", "").strip()
    return int(cols) if cols.isdigit() and int(cols) >= 40 else PIPED_WIDTH


def mean_interval(v: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and normal-approximation interval of the mean of ``v`` (NaN ignored; see the module docstring).

    Returns:
        ``(mean, low, high)``; all NaN when no finite value; low = high = mean for one value or a constant.
    """
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size < 2 or np.all(v == v[0]):
        return m, m, m
    h = NormalDist().inv_cdf(0.5 + level / 2) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return m, m - h, m + h


def rate_interval(v: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Rate of a 0/1 metric and its Wilson score interval (NaN ignored).

    Returns:
        ``(rate, low, high)`` with ``0 <= low <= rate <= high <= 1``; all NaN when no finite value.
    """
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return math.nan, math.nan, math.nan
    p = float((v > 0.5).sum()) / n
    z = NormalDist().inv_cdf(0.5 + level / 2)
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))  # rounding never crosses p


def metric_interval(metric: str, v: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """The interval of ``metric`` over scenarios: Wilson for 0/1 metrics, else :func:`mean_interval` kept within the
    values the metric can take (``MetricSpec.bounds``: a normal interval over a few scenes can reach below 0 m)."""
    spec = SPECS.get(metric)
    if spec is not None and spec.unit == "bool":
        return rate_interval(v, level)
    m, lo, hi = mean_interval(v, level)
    if spec is None or math.isnan(m):
        return m, lo, hi
    return m, max(lo, spec.bounds[0]), min(hi, spec.bounds[1])


def summary_rows(stored: Sequence[StoredCheckpoint], ids: Sequence[str]) -> list[dict[str, Any]]:
    """Per-row means and 95% intervals over ``ids`` of the table metrics."""
    out = []
    for s in stored:
        rows = s.rows.select(ids)
        rec = s.record
        r = {"key": s.key, "name": rec.name, "kind": rec.kind, "episode": rec.episode, "entropy": rec.entropy,
             "roles": rec.roles}
        for m in TABLE_METRICS:
            r[m] = metric_interval(m, np.asarray(rows.metrics[m], dtype=np.float64))
        out.append(r)
    return out


def _cell(mean: float, lo: float, hi: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def print_summary(console, rows: Sequence[dict[str, Any]], verdict: Verdict | None,
                  skipped: Sequence[Any] = (), run: str = "", unit: str = "episode") -> None:
    """Rich tables of one run: per checkpoint (mean or rate with its 95% interval over scenarios), the
    selection rules, the verdict, the skipped scenes. Every table has a ``run`` column; the step column is titled
    ``unit``, what the checkpoints' step counts (:func:`sim.results.run_folder.step_unit`)."""
    from rich.markup import escape
    from rich.table import Table

    run = run or "-"
    t = Table(title=f"Closed loop, run {run}: mean [95% interval] over scenarios "
                    "(means: normal approximation, within the metric's range; rates: Wilson)")
    # the columns that say which checkpoint a row is never shrink: intervals wrap onto a second line instead
    t.add_column("run", no_wrap=True, min_width=min(len(run), 24), overflow="fold")
    t.add_column("checkpoint", no_wrap=True, min_width=10, overflow="fold")
    t.add_column(unit, min_width=max(7, *(len(w) for w in unit.split())), justify="right")  # wraps between words
    t.add_column("entropy", no_wrap=True, min_width=7, justify="right")
    t.add_column("roles", min_width=12, overflow="fold")
    for m in TABLE_METRICS:
        t.add_column(SPECS[m].axis_title if SPECS[m].unit != "fraction" else SPECS[m].label, justify="right",
                     min_width=8)
    for r in rows:
        roles = ",".join(x for x in r["roles"] if x != "candidate")
        cells = [run, r["name"], "-" if r["episode"] < 0 else str(r["episode"]),
                 "-" if math.isnan(r["entropy"]) else f"{r['entropy']:.3f}", roles]
        cells += [_cell(*r[m]) for m in TABLE_METRICS]
        t.add_row(*cells, style="dim" if r["kind"] == "baseline" else None)
    console.print(t)
    if skipped:
        kinds = {"checkpoints" if s.line().startswith("skipped checkpoint ") else "scenes" for s in skipped}
        console.print(f"[bold]Skipped {kinds.pop() + ' ' if len(kinds) == 1 else ''}({len(skipped)}):[/bold]")
        for s in skipped:
            console.print("  " + escape(s.line()))
    if verdict is None:
        return
    if verdict.get("rules"):
        rt = Table(title=f"Selection rules, run {run} (best checkpoint by {verdict['metric']})")
        for col in ("run", "rule", "picks", unit, verdict["metric"], "rank", "regret"):
            rt.add_column(col)
        for name, e in verdict["rules"].items():
            if e is None:
                rt.add_row(run, name, "not evaluated yet" if name in (verdict.get("unevaluated_roles") or ())
                           else "n/a", "", "", "", "")
            elif name == "random":
                rt.add_row(run, name, "uniform", "", f"{e['value']:.{CARD_DECIMALS}f}", "",
                           f"{e['expected_regret']:.{CARD_DECIMALS}f} (expected)")
            else:
                rt.add_row(run, name, e["name"], str(e["episode"]), f"{e['value']:.{CARD_DECIMALS}f}", str(e["rank"]),
                           f"{e['regret']:.{CARD_DECIMALS}f}")
        console.print(rt)
    console.print(f"[bold]Verdict ({escape(run)}):[/bold] {escape(verdict['sentence'])}")
    print_statistics(console, verdict, run)


def _ci_cell(x: float | None, ci: Sequence[float | None] | None, fmt: str = ".3f") -> str:
    if x is None:
        return "n/a"
    lo, hi = ci or (None, None)
    return f"{x:{fmt}}" + ("" if lo is None or hi is None else f" [{lo:{fmt}}, {hi:{fmt}}]")


def print_statistics(console, verdict: Mapping[str, Any], run: str = "-") -> None:
    """The field's statistics of a verdict (``statistics``, ``by_type``; absent in older files: nothing printed):
    per checkpoint the IQM with its stratified interval and the probability of improvement over the pick, each
    rule's probability of improvement over ``last``, and the per-type table with its sentence."""
    from rich.markup import escape
    from rich.table import Table

    st = verdict.get("statistics")
    if st and st.get("checkpoints"):
        pick = st.get("pick")
        names = {e["key"]: e["name"] for e in st["checkpoints"]}
        t = Table(title=f"Statistics, run {run}: {st['metric']} over {st['n_scenes']} scenes, "
                        f"{int(st['confidence'] * 100)}% stratified bootstrap by scenario type "
                        f"({len(st['strata'])} strata)")
        for col in ("checkpoint", "IQM [interval]", f"P(better than {names.get(pick, 'the pick')})"):
            t.add_column(escape(col))
        for e in st["checkpoints"]:
            t.add_row(e["name"] + (" (pick)" if e["key"] == pick else ""), _ci_cell(e["iqm"], e["iqm_ci"]),
                      "-" if e["key"] == pick else _ci_cell(e["poi_over_pick"], e["poi_ci"], ".2f"))
        console.print(t)
        over = [f"{r} {_ci_cell(e['poi'], e['ci'], '.2f')}" for r, e in st["rules_over_last"].items() if e]
        if over:
            console.print("P(rule's pick better than last's) on a scene: " + escape("; ".join(over)))
    bt = verdict.get("by_type")
    if not bt or not bt.get("types"):
        return
    header, rows = type_table_rows(bt)
    t = Table(title=f"Per scenario type, run {run}: regret by {bt['metric']} (rank); no verdict below "
                    f"{bt['min_scenes']} scenes")
    for col in header:
        t.add_column(col)
    for row in rows:
        t.add_row(*(str(c) for c in row))
    console.print(t)
    console.print(escape(bt["sentence"]))


def build_verdict(stored: Sequence[StoredCheckpoint], ids: Sequence[str], metric: str, n_resamples: int,
                  seed: int, expected: Sequence[Mapping[str, Any]] | None = None, after_episode: int = 0,
                  types: Mapping[str, Sequence[str]] | None = None) -> Verdict:
    """Verdict over the stored checkpoints (not baselines) that cover every scenario ``ids``.

    Args:
        expected: the run's comparison set (``comparison_set`` entries: ``key``, ``roles``...); when given, only
            its checkpoints are judged, a missing part is said (``completeness``), and a role the run declares
            but whose checkpoint has no results yet picks nothing (never a stand-in).
        after_episode: the trainer's ``select_after`` (max-entropy fallback when the run has no role file).
        types: scenario id -> its scenario types (``ScenarioInfo.types``); the statistics' strata and the verdict
            per type. None, or a scene without types: no per-type verdict.
    """
    declared: list[str] = []
    comp = None
    if expected is not None:
        keys = {e["key"] for e in expected}
        stored = [s for s in stored if s.record.kind != "checkpoint" or s.key in keys]
        declared = sorted({r for e in expected for r in e.get("roles", ()) if r != "candidate"})
        comp = completeness(keys, {s.key: s.rows.scenario_ids for s in stored}, ids)
    cps = [s for s in stored if s.record.kind == "checkpoint" and set(ids) <= set(s.rows.scenario_ids)]
    if not cps:
        return {"metric": metric, "n_checkpoints": 0, "n_scenarios": len(ids), "rules": {}, "best": None,
                "correlations": {}, "step_correlations": {}, "entropy_beats_step": False,
                "sentence": "No checkpoint results: nothing to judge."}
    names = [m for m in JUDGED_METRICS if all(m in s.rows.metrics for s in cps)]
    inp = verdict_input_from_rows(
        keys=[s.key for s in cps],
        names=[s.record.name for s in cps],
        episodes=[s.record.episode for s in cps],
        entropy=[s.record.entropy for s in cps],
        train_reward=[s.record.train_reward for s in cps],
        roles=[s.roles for s in cps],
        metrics=[s.rows.select(ids).metrics for s in cps],
        metric_names=names,
        declared=declared,
        after_episode=after_episode,
        scene_types=[tuple(types[i]) for i in ids] if types and all(types.get(i) for i in ids) else (),
    )
    v = compute_verdict(inp, metric=metric, n_resamples=n_resamples, seed=seed, comp=comp)
    v["unevaluated_roles"] = [r for r in RULES if v["rules"].get(r) is None and RULE_ROLES[r] in declared
                              and v["best"] is not None]  # no best: the metric is undefined, not the pick missing
    return v
