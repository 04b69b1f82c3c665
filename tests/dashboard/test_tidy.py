"""What the dashboard's tables and figures say, checked without a browser: floats shown to 4 significant digits, the
failure class of a scene, the replay title, the signal ranking (one row per signal, headline first), the across-seeds
figure's legend and labels, the H = 0 note of figures with subplot titles."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard import data, figures
from dashboard.table import round_sig, shown

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@given(finite)
def test_round_sig_keeps_four_significant_digits(x):
    from decimal import Decimal

    r = round_sig(x)
    assert len(Decimal(repr(r)).normalize().as_tuple().digits) <= 4  # what the table prints: at most 4 digits
    assert abs(r - x) <= 5e-4 * abs(x) * (1 + 1e-9)  # and the nearest such number


def test_shown_formats_every_float_column():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"name": ["a", "b"], "n": [3, 4], "v": [-0.9151515151515152, 69.04213]})
    out = shown(df)
    assert out["v"].tolist() == [-0.9152, 69.04] and out["n"].tolist() == [3, 4] and out["name"].tolist() == ["a", "b"]
    assert df["v"].tolist()[0] == -0.9151515151515152  # a copy: the export keeps full precision
    d = shown({"x": [1.23456789, math.nan, "n/a"], "k": [1, 2, 3]})
    assert d["x"][0] == 1.235 and math.isnan(d["x"][1]) and d["x"][2] == "n/a" and d["k"] == [1, 2, 3]


def oracle_failure(m: dict[str, float]) -> str:
    """The failure class written out as plain if-statements, most severe first."""
    if m.get("collision_at_fault", 0) > 0.5:
        return "at-fault collision"
    if m.get("collision", 0) > 0.5:
        return "collision"
    if m.get("offroad", 0) > 0.5:
        return "offroad"
    if m.get("progress", 1) < data.NO_PROGRESS:
        return "no progress"
    if m.get("ade", 0) > data.LARGE_ADE:
        return "large ADE"
    if m.get("progress", 1) < data.LOW_PROGRESS:
        return "low progress"
    if m.get("ttc_ok", 1) < 0.5:
        return "low TTC"
    if m.get("comfortable", 1) < 0.5:
        return "uncomfortable"
    return "ok"


scene = st.fixed_dictionaries({
    "collision_at_fault": st.sampled_from([0.0, 1.0]), "collision": st.sampled_from([0.0, 1.0]),
    "offroad": st.sampled_from([0.0, 1.0]), "progress": st.floats(0, 1), "ade": st.floats(0, 200),
    "ttc_ok": st.sampled_from([0.0, 1.0]), "comfortable": st.sampled_from([0.0, 1.0])})


@settings(max_examples=200)
@given(st.lists(scene, min_size=1, max_size=20))
def test_failure_kind_matches_an_independent_reading(scenes):
    metrics = {k: np.array([s[k] for s in scenes]) for k in scenes[0]}
    assert data.failure_kind(metrics).tolist() == [oracle_failure(s) for s in scenes]


def test_a_scene_far_from_its_log_is_not_ok():
    m = {"ade": np.array([69.0, 1.0, 1.0]), "progress": np.array([0.25, 0.25, 0.9]), "collision": np.zeros(3),
         "offroad": np.zeros(3), "comfortable": np.ones(3), "ttc_ok": np.ones(3)}
    assert data.failure_kind(m).tolist() == ["large ADE", "low progress", "ok"]


def test_replay_title_says_each_thing_once():
    info = SimpleNamespace(id="waymo-1234", family="waymo", source="waymo")
    assert figures.replay_title(info) == "waymo-1234"
    info = SimpleNamespace(id="scene-7", family="merge", source="waymo")
    assert figures.replay_title(info) == "scene-7 (merge, waymo)"
    info = SimpleNamespace(id="scene-7", family="commonroad", source="commonroad")
    assert figures.replay_title(info) == "scene-7 (commonroad)"


def test_offscale_note_sits_inside_the_plot_when_subplot_titles_are_above_it():
    pd = pytest.importorskip("pandas")
    ck = pd.DataFrame({"name": ["a", "b"], "kind": "checkpoint", "episode": [0, 10], "entropy": [14.70, 14.71],
                       "score": [0.5, 0.6], "score_lo": [0.4, 0.5], "score_hi": [0.6, 0.7]}, index=["k1", "k2"])
    fig = figures.overlay_figure({"r1": ck}, "score")
    note = next(a for a in fig.layout.annotations if "off-scale" in a.text)
    titles = [a for a in fig.layout.annotations if "off-scale" not in a.text]
    # every value is above zero: the note points down from inside the bottom edge, far from the titles on top
    assert note.y == 0 and note.yanchor == "bottom" and note.yref.endswith("domain")
    assert all(t.yanchor == "bottom" and t.y >= 0.99 for t in titles)


def test_signal_ranking_one_row_per_signal_headline_first():
    from dashboard.signals_view import ranking_table
    from sim.selection.signal_verdict import judge_signals

    rng = np.random.default_rng(1)
    c, s = 6, 20
    metric = rng.normal(0, 1, (c, s)) + np.linspace(0, 1, c)[:, None]
    sig = {"entropy": rng.normal(0, 1, c), "kl": rng.normal(0, 1, c), "loss": np.linspace(3, 1, c)}
    v = judge_signals(metric, sig, [f"k{i}" for i in range(c)], headline="entropy", steps=list(range(c)),
                      n_resamples=50).to_dict()
    t = ranking_table(v)
    assert t["signal"][0] == "entropy (headline)"
    assert sorted(t["signal"]) == sorted(["entropy (headline)", "kl", "loss", "training step"])  # each once
    n = len(v["ranking"])
    places = {(j["signal"], j["rule"]): i for i, j in enumerate(v["ranking"], 1)}
    for row, name in enumerate(t["signal"]):
        name = name.removesuffix(" (headline)")
        for r in ("max", "min"):
            assert t[f"{r}: rank"][row] == f"{places[(name, r)]} of {n}"
    better = [min(places[(x.removesuffix(' (headline)'), r)] for r in ("max", "min")) for x in t["signal"][1:]]
    assert better == sorted(better)  # after the headline, ordered by each signal's better rank


def test_across_figure_legend_covers_no_marker_and_labels_stay_inside(tmp_path):
    from benchmarks.fixture_runs import FixtureSpec, write_run
    from dashboard.across_view import BEST_MARKER, across_figure
    from sim.selection.across import compare_runs
    from sim.selection.across_data import load_seed

    seeds = []
    for sd in (1, 2, 3):
        write_run(tmp_path, FixtureSpec(name=f"seed{sd}", seed=sd, n_checkpoints=6, n_scenes=20), link_latest=False)
        seeds.append(load_seed(tmp_path / f"seed{sd}", "score", f"seed{sd}"))
    fig = across_figure(compare_runs(seeds, n_resamples=50), seeds)
    fig.canvas.draw()
    ax = fig.axes[0]
    r = fig.canvas.get_renderer()
    legend = ax.get_legend()
    box = legend.get_window_extent(r)
    pts = [ax.transData.transform(xy) for ln in ax.get_lines() if ln.get_marker() not in ("None", None, "")
           for xy in ln.get_xydata()]
    assert pts and not any(box.contains(x, y) for x, y in pts)  # the legend covers no marker
    labels = {t.get_text(): h for t, h in zip(legend.get_texts(), legend.legend_handles)}
    assert all(labels[f"seed{sd}"].get_marker() != BEST_MARKER for sd in (1, 2, 3))  # a seed is never the star
    assert labels["pick is its seed's best"].get_marker() == BEST_MARKER
    inner = ax.get_window_extent(r)
    for t in ax.texts:  # every pick's name within the axes
        e = t.get_window_extent(r)
        assert inner.x0 - 1 <= e.x0 and e.x1 <= inner.x1 + 1, t.get_text()
    import matplotlib.pyplot as plt

    plt.close(fig)
