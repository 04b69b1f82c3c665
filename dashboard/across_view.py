"""The verdict across seeds in the dashboard: table, figure (each seed's pick marked) and exports.

Shown when several runs are selected. Data: :func:`sim.selection.across_data.load_seed` per run (the same code
as ``python -m sim.across``), cached on the results files' modification times; math
:func:`sim.selection.across.compare_runs`. The figure is drawn with matplotlib so the same figure is shown and
exported as PNG and SVG for a paper (``kaleido``, plotly's static export, is not a dependency).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard.table import shown
from sim.selection.across import AcrossError, AcrossVerdict, SeedResult, compare_runs
from sim.selection.traffic_compare import TrafficComparison


def across_frame(v: AcrossVerdict) -> pd.DataFrame:
    """One row per rule: mean regret with its seed-bootstrap interval, p(best), mean rank, each seed's pick."""
    rows = []
    for r in v.rules:
        row = {"rule": r.rule, "seeds": r.n_seeds, "mean_regret": r.mean_regret, "regret_lo": r.mean_regret_ci[0],
               "regret_hi": r.mean_regret_ci[1], "p_best": r.p_best, "mean_rank": r.mean_rank}
        row.update({f"pick {run}": pick or "-" for run, pick in zip(v.runs, r.picks, strict=True)})
        rows.append(row)
    return pd.DataFrame(rows)


SEED_MARKERS = "osD^vPXhp<>"  # one per seed; never the star, which marks a pick that is its seed's best
BEST_MARKER = "*"
LABEL_ROOM = 0.45  # fraction of the regret span added right of the largest regret for the picks' names


def traffic_frame(c: TrafficComparison) -> pd.DataFrame:
    """One row per checkpoint: its mean and rank under each traffic model (``sim.selection.traffic_compare``), best
    first under the first model; then one row per selection rule with its pick and regret under both."""
    sign = 1.0 if c.higher_is_better else -1.0
    a, b = c.labels
    rank_b = {n: r + 1 for r, n in enumerate(sorted(c.names, key=lambda n: -sign * c.values_b[c.names.index(n)]))}
    order = sorted(range(len(c.names)), key=lambda i: -sign * c.values_a[i])
    rows = [{"checkpoint / rule": c.names[i], a: c.values_a[i], f"rank {a}": r + 1, b: c.values_b[i],
             f"rank {b}": rank_b[c.names[i]]} for r, i in enumerate(order)]
    rows += [{"checkpoint / rule": f"rule {ru.rule}: {ru.pick_a or '-'} | {ru.pick_b or '-'}",
              a: ru.regret_a, f"rank {a}": None, b: ru.regret_b, f"rank {b}": None} for ru in c.rules]
    return pd.DataFrame(rows)


@st.cache_data(show_spinner=False, max_entries=16)
def _traffic(path: str, key: tuple, metric: str) -> tuple[TrafficComparison | None, str | None]:
    from sim.selection.traffic_compare import load_traffic, traffic_pair

    pair = traffic_pair(path)
    if pair is None:
        return None, None
    try:
        return load_traffic(pair[0], pair[1], metric), None
    except AcrossError as e:
        return None, str(e)


def traffic_section(label: str, run: Path, metric: str) -> None:
    """The run's rankings under logged and IDM traffic side by side, when it has both results files
    (``results.h5`` and ``results.agents-idm.h5``; :func:`sim.selection.traffic_compare.traffic_pair`); else nothing."""
    from dashboard.data import file_key
    from sim.results.identity import results_files

    c, err = _traffic(str(run), tuple(file_key(p) for p in results_files(run)), metric)
    if err:
        st.warning(err)
    if c is None:
        return
    rho = "n/a" if c.spearman is None else f"{c.spearman:.2f}"
    tau = "n/a" if c.kendall is None else f"{c.kendall:.2f}"
    held = f"the pick changes: {c.best_a} -> {c.best_b}" if c.pick_changes else f"the pick holds: {c.best_a}"
    st.markdown(f"**{label}: {c.labels[0]} vs {c.labels[1]}** ({c.n_scenes} scenes, {metric}; rule rows: regret): "
                f"{held}; rank correlation Spearman {rho}, Kendall {tau}")
    st.dataframe(traffic_frame(c), hide_index=True, width="stretch")


def across_figure(v: AcrossVerdict, seeds: Sequence[SeedResult]):
    """Matplotlib figure: per rule, each seed's regret (one marker per seed, labelled with its pick; a filled
    star where the pick is the seed's best checkpoint) and the mean with its seed-bootstrap interval.

    The legend (one entry per seed with its own marker, and the star) sits outside the axes, right of them, so it
    covers no marker; the x range leaves room for the picks' names and they are clipped to the axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(9, 0.6 * len(v.rules) + 1.6), dpi=110)
    xs = [0.0]
    for y, r in enumerate(v.rules):
        for j, s in enumerate(seeds):
            p = s.picks.get(r.rule)
            if p is None:
                continue
            best = p.rank == 1
            yy = y + (j - (len(seeds) - 1) / 2) * 0.12
            xs.append(p.regret)
            ax.plot(p.regret, yy, marker=BEST_MARKER if best else SEED_MARKERS[j % len(SEED_MARKERS)],
                    ms=11 if best else 7, color=f"C{j}", ls="none")
            if p.name:
                ax.annotate(p.name, (p.regret, yy), fontsize=6, xytext=(4, 0), textcoords="offset points",
                            va="center", color=f"C{j}", clip_on=True)
        if r.mean_regret is not None:
            lo, hi = r.mean_regret_ci
            ax.plot([r.mean_regret], [y], "k|", ms=16)
            xs.append(r.mean_regret)
            if lo is not None and hi is not None:
                ax.plot([lo, hi], [y, y], "k-", lw=1)
                xs += [lo, hi]
    lo_x, hi_x = min(xs), max(xs)
    span = max(hi_x - lo_x, 1e-9)
    ax.set_xlim(lo_x - 0.05 * span, hi_x + LABEL_ROOM * span)
    ax.set_yticks(range(len(v.rules)), [r.rule for r in v.rules])
    ax.set_ylim(len(v.rules) - 0.5, -0.5)  # first rule on top
    ax.set_xlabel(f"regret by {v.metric} (best minus pick; 0 is best)")
    ax.set_title(f"Selection rules across {len(v.runs)} runs", fontsize=9)
    handles = [Line2D([], [], marker=SEED_MARKERS[j % len(SEED_MARKERS)], color=f"C{j}", ls="none", ms=7,
                      label=s.run) for j, s in enumerate(seeds)]
    handles.append(Line2D([], [], marker=BEST_MARKER, color="0.3", ls="none", ms=11, label="pick is its seed's best"))
    handles.append(Line2D([], [], marker="|", color="k", ls="-", lw=1, ms=12, label="mean, 95 % interval"))
    ax.legend(handles=handles, fontsize=7, title="run", title_fontsize=7, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def figure_bytes(fig, fmt: str) -> bytes:
    """The figure as ``png`` or ``svg`` bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    return buf.getvalue()


@st.cache_data(show_spinner=False, max_entries=32)
def _load(path: str, key: tuple[int, int], metric: str, label: str) -> tuple[SeedResult | None, str | None]:
    from sim.selection.across_data import load_seed

    try:
        return load_seed(path, metric, label), None
    except AcrossError as e:
        return None, str(e)


def across_section(runs: Sequence[tuple[str, Path]], metric: str) -> None:
    """The across-seeds view of ``runs`` ((label, run folder) pairs, at least two), then, for each run evaluated
    under logged and IDM traffic, :func:`traffic_section`."""
    st.subheader(f"Across seeds: {len(runs)} runs")
    _across_tables(runs, metric)
    for label, path in runs:  # a run evaluated under logged and IDM traffic: its two rankings side by side
        traffic_section(label, Path(path), metric)


def _across_tables(runs: Sequence[tuple[str, Path]], metric: str) -> None:
    from dashboard.data import file_key
    from sim.results.run_folder import RESULTS_NAME

    seeds, errors = [], []
    for label, path in runs:
        s, err = _load(str(path), file_key(path / RESULTS_NAME), metric, label)
        (errors.append(err) if err else seeds.append(s))
    for e in errors:
        st.warning(e)
    if len(seeds) < 2:
        st.info("Select at least two evaluated runs (sidebar: 'overlay runs / seeds') for the verdict across seeds.")
        return
    try:
        v = compare_runs(seeds, n_resamples=2000)
    except AcrossError as e:
        st.warning(str(e))
        return
    table = across_frame(v)
    st.dataframe(shown(table), hide_index=True, width="stretch")
    lo, hi = v.spearman_ci
    if v.spearman_mean is not None:
        st.caption(f"entropy vs {metric} Spearman per seed: "
                   + ", ".join("n/a" if x is None else f"{x:.2f}" for x in v.spearman_per_seed)
                   + f"; mean {v.spearman_mean:.2f}" + ("" if lo is None else f" [{lo:.2f}, {hi:.2f}]"))
    fig = across_figure(v, seeds)
    png, svg = figure_bytes(fig, "png"), figure_bytes(fig, "svg")
    import matplotlib.pyplot as plt

    plt.close(fig)
    st.image(png)
    c1, c2, c3 = st.columns(3)
    c1.download_button("CSV: across seeds", table.to_csv(index=False), "across_seeds.csv", "text/csv", key="dl_across")
    c2.download_button("PNG: figure", png, "across_seeds.png", "image/png", key="dl_across_png")
    c3.download_button("SVG: figure", svg, "across_seeds.svg", "image/svg+xml", key="dl_across_svg")
