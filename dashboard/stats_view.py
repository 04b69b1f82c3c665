"""The "Statistics" view: the field's statistics and the verdict per scenario type, as stored with the verdict.

Reads the verdict's ``statistics`` and ``by_type`` entries (:mod:`sim.selection.stats`, written by
``python -m sim.evaluate``; ``docs/metrics.md``, "The field's statistics"): a performance-profile plot
(:func:`dashboard.figures.profile_figure`), the probability of improvement of each checkpoint over the pick and
of each rule over ``last``, IQM with its stratified interval, and the per-type table with its sentence. The table
builders are pure (dicts of lists); only :func:`stats_view` draws. Torch-free, pandas-free.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import figures
from dashboard.table import shown
from sim.selection.stats import type_table_rows

EVAL_CMD = "python -m sim.evaluate --run RUN_DIR"


def _ci(x: Any, ci: Any, fmt: str) -> str:
    if x is None:
        return "n/a"
    lo, hi = (ci or (None, None))[:2]
    return format(x, fmt) + ("" if lo is None or hi is None else f" [{lo:{fmt}}, {hi:{fmt}}]")


def poi_table(stats: dict) -> dict[str, list]:
    """Per checkpoint: IQM with its interval and P(better than the pick) with its interval (pick first)."""
    pick = stats.get("pick")
    rows = sorted(stats.get("checkpoints") or (), key=lambda e: e["key"] != pick)
    cols: dict[str, list] = {"checkpoint": [], "IQM [95% interval]": [], "P(better than the pick)": []}
    for e in rows:
        cols["checkpoint"].append(e["name"] + (" (pick)" if e["key"] == pick else ""))
        cols["IQM [95% interval]"].append(_ci(e.get("iqm"), e.get("iqm_ci"), ".3f"))
        cols["P(better than the pick)"].append("-" if e["key"] == pick else
                                               _ci(e.get("poi_over_pick"), e.get("poi_ci"), ".2f"))
    return cols


def rules_table(stats: dict) -> dict[str, list]:
    """Per selection rule: its pick and P(its pick is better than last's on a scene)."""
    names = {e["key"]: e["name"] for e in stats.get("checkpoints") or ()}
    cols: dict[str, list] = {"rule": [], "picks": [], "P(better than last)": []}
    for rule, e in (stats.get("rules_over_last") or {}).items():
        cols["rule"].append(rule)
        cols["picks"].append("n/a" if e is None else names.get(e["key"], e["key"]))
        cols["P(better than last)"].append("n/a" if e is None else _ci(e.get("poi"), e.get("ci"), ".2f"))
    return cols


def type_table(by_type: dict) -> dict[str, list]:
    """Per scenario type: scenes, best checkpoint, each rule's regret (rank), as columns
    (:func:`sim.selection.stats.type_table_rows`, the CLI's and the HTML report's table)."""
    header, rows = type_table_rows(by_type)
    return {h: [row[i] for row in rows] for i, h in enumerate(header)}


def stats_view(verdict: dict | None, metric: str) -> None:
    """Draw the view from a run's stored verdict (a note when it has no statistics: an older results file)."""
    stats = (verdict or {}).get("statistics")
    if not stats:
        st.info(f"No statistics stored with this run's verdict (written before they existed). Re-run `{EVAL_CMD}`: "
                "the stored rows are reused, only the verdict is recomputed.")
        return
    if stats.get("metric") != metric:
        st.caption(f"Judged by **{stats.get('metric')}**, the metric of the stored verdict (the sidebar shows "
                   f"{metric}); `{EVAL_CMD} --metric {metric}` stores the statistics by {metric}.")
    strata = stats.get("strata") or {}
    st.caption(f"{stats.get('n_scenes', 0)} scenes; intervals: {int(100 * stats.get('confidence', 0.95))} % "
               f"stratified bootstrap ({stats.get('n_resamples')} resamples) within {len(strata)} strata of "
               "scenario type: " + ", ".join(f"{k} {v}" for k, v in strata.items()))
    st.plotly_chart(figures.profile_figure(stats), key="profile_chart")
    left, right = st.columns(2)
    with left:
        st.markdown("**Probability of improvement over the pick** (rliable; on a random scene, ties half)")
        st.dataframe(shown(poi_table(stats)), hide_index=True)
    with right:
        st.markdown("**Each rule over `last`**")
        st.dataframe(shown(rules_table(stats)), hide_index=True)
    by_type = (verdict or {}).get("by_type")
    if by_type and by_type.get("types"):
        st.markdown(f"**Per scenario type** (regret by {by_type.get('metric')}; no verdict below "
                    f"{by_type.get('min_scenes')} scenes)")
        st.dataframe(shown(type_table(by_type)), hide_index=True)
        st.write(by_type.get("sentence", ""))
    else:
        st.caption("No scenario types stored for these scenes (a results file written before types).")
