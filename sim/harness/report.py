"""Intervals of means, the verdict over stored results, and the CLI's summary tables.

One interval method for means, used by the CLI and the dashboard: the normal-approximation 95 % interval of
the mean over scenarios (NaN ignored), ``mean +- z_{0.975} * sd / sqrt(n)`` with the sample sd (ddof 1); the
quantile comes from the standard library (``statistics.NormalDist``), so the dashboard's first paint needs no
scipy. With fewer than about 30 scenes it is narrower than a Student-t interval. Rank correlations use the
verdict's paired scenario bootstrap instead. Torch-free; rich is imported only when printing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from sim.harness.reader import StoredCheckpoint
from sim.harness.verdict import Verdict, compute_verdict, verdict_input_from_rows
from sim.metric_catalogue import JUDGED_METRICS, SPECS, TABLE_METRICS


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


def summary_rows(stored: Sequence[StoredCheckpoint], ids: Sequence[str]) -> list[dict[str, Any]]:
    """Per-row means and 95% intervals over ``ids`` of the table metrics."""
    out = []
    for s in stored:
        rows = s.rows.select(ids)
        r = {"key": s.key, "name": s.attrs.get("name", s.key), "kind": s.attrs.get("kind", ""),
             "episode": int(s.attrs.get("episode", -1)), "entropy": float(s.attrs.get("entropy", math.nan)),
             "roles": s.roles}
        for m in TABLE_METRICS:
            r[m] = mean_interval(np.asarray(rows.metrics[m], dtype=np.float64))
        out.append(r)
    return out


def _cell(mean: float, lo: float, hi: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f} ±{max(hi - mean, mean - lo):.3f}"


def print_summary(console, rows: Sequence[dict[str, Any]], verdict: Verdict | None,
                  skipped: Sequence[Any] = ()) -> None:
    """Rich table per checkpoint (mean ± 95% CI half-width over scenarios), the verdict, the skipped scenes."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="Closed loop: mean ±95% CI (normal approximation) over scenarios")
    t.add_column("checkpoint", no_wrap=True)
    for col in ("episode", "entropy", "roles"):
        t.add_column(col)
    for m in TABLE_METRICS:
        t.add_column(SPECS[m].axis_title if SPECS[m].unit != "fraction" else SPECS[m].label, justify="right",
                     no_wrap=True)
    for r in rows:
        roles = ",".join(x for x in r["roles"] if x != "candidate")
        cells = [r["name"], "-" if r["episode"] < 0 else str(r["episode"]),
                 "-" if math.isnan(r["entropy"]) else f"{r['entropy']:.3f}", roles]
        cells += [_cell(*r[m]) for m in TABLE_METRICS]
        t.add_row(*cells, style="dim" if r["kind"] == "baseline" else None)
    console.print(t)
    if skipped:
        console.print(f"[bold]Skipped scenes ({len(skipped)}):[/bold]")
        for s in skipped:
            console.print("  " + escape(s.line()))
    if verdict is None:
        return
    if verdict.get("rules"):
        rt = Table(title=f"Selection rules (best checkpoint by {verdict['metric']})")
        for col in ("rule", "picks", "episode", verdict["metric"], "rank", "regret"):
            rt.add_column(col)
        for name, e in verdict["rules"].items():
            if e is None:
                rt.add_row(name, "n/a", "", "", "", "")
            elif name == "random":
                rt.add_row(name, "uniform", "", f"{e['value']:.3f}", "", f"{e['expected_regret']:.3f} (expected)")
            else:
                rt.add_row(name, e["name"], str(e["episode"]), f"{e['value']:.3f}", str(e["rank"]),
                           f"{e['regret']:.3f}")
        console.print(rt)
    console.print(f"[bold]Verdict:[/bold] {escape(verdict['sentence'])}")


def build_verdict(stored: Sequence[StoredCheckpoint], ids: Sequence[str], metric: str, n_resamples: int,
                  seed: int) -> Verdict:
    """Verdict over the stored checkpoints (not baselines) that cover every scenario ``ids``."""
    cps = [s for s in stored if s.attrs.get("kind") == "checkpoint" and set(ids) <= set(s.rows.scenario_ids)]
    if not cps:
        return {"metric": metric, "n_checkpoints": 0, "n_scenarios": len(ids), "rules": {}, "best": None,
                "correlations": {}, "step_correlations": {}, "entropy_beats_step": False,
                "sentence": "No checkpoint results: nothing to judge."}
    names = [m for m in JUDGED_METRICS if all(m in s.rows.metrics for s in cps)]
    inp = verdict_input_from_rows(
        keys=[s.key for s in cps],
        names=[s.attrs.get("name", s.key) for s in cps],
        episodes=[int(s.attrs.get("episode", -1)) for s in cps],
        entropy=[float(s.attrs.get("entropy", math.nan)) for s in cps],
        train_reward=[float(s.attrs.get("train_reward", math.nan)) for s in cps],
        roles=[s.roles for s in cps],
        metrics=[s.rows.select(ids).metrics for s in cps],
        metric_names=names,
    )
    return compute_verdict(inp, metric=metric, n_resamples=n_resamples, seed=seed)
