"""The field's statistics (sim/selection/stats.py) against independent oracles."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import mannwhitneyu, trim_mean

from sim.selection.stats import (
    MIN_TYPE_SCENES,
    POOLED_STRATUM,
    field_statistics,
    iqm,
    performance_profile,
    probability_of_improvement,
    strata,
    stratified_bootstrap,
    type_best_label,
    type_breakdown,
)

FLOATS = st.floats(-100, 100, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12).flatmap(lambda q: arrays(np.float64, 4 * q, elements=FLOATS)))
def test_iqm_is_the_mean_of_the_sorted_middle_half(x):
    n = len(x)
    brute = np.sort(x)[n // 4: n - n // 4].mean()
    assert iqm(x) == pytest.approx(brute, rel=1e-9, abs=1e-9)
    assert iqm(x) == pytest.approx(trim_mean(x, 0.25), rel=1e-9, abs=1e-9)
    assert iqm(np.stack([x, x + 1.0]), axis=-1)[1] == pytest.approx(brute + 1.0, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 6), st.data())
def test_probability_of_improvement_is_the_mann_whitney_statistic_per_scene(rx, ry, n, data):
    ints = st.integers(0, 4)  # few values: many ties
    x = data.draw(arrays(np.float64, (rx, n), elements=ints))
    y = data.draw(arrays(np.float64, (ry, n), elements=ints))
    oracle = np.mean([mannwhitneyu(x[:, k], y[:, k], alternative="greater").statistic / (rx * ry)
                      for k in range(n)])
    p = float(probability_of_improvement(x, y))
    assert p == pytest.approx(oracle, abs=1e-12)
    assert p + float(probability_of_improvement(y, x)) == pytest.approx(1.0, abs=1e-12)


def test_probability_of_improvement_matches_rliable():
    metrics = pytest.importorskip("rliable.metrics")
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 5, (3, 7)).astype(float), rng.integers(0, 5, (4, 7)).astype(float)
    assert float(probability_of_improvement(x, y)) == pytest.approx(metrics.probability_of_improvement(x, y))
    assert float(iqm(x.ravel())) == pytest.approx(metrics.aggregate_iqm(x))


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (3, 9), elements=st.floats(0, 1, allow_nan=False)),
       arrays(np.float64, 5, elements=st.floats(-0.1, 1.1, allow_nan=False)))
def test_performance_profile_against_brute_force(scores, thresholds):
    prof = performance_profile(scores, thresholds)
    for c in range(scores.shape[0]):
        for k, t in enumerate(thresholds):
            assert prof[c, k] == sum(s > t for s in scores[c]) / scores.shape[1]


def test_strata_pool_single_scene_types():
    types = [("starting_left_turn",), ("starting_left_turn", "traversing_intersection"), ("stationary",),
             ("changing_lane",), ("following_lane_with_lead",), ("following_lane_with_lead",), ()]
    got = strata(types)
    assert got[:2] == ["starting_left_turn"] * 2
    assert got[2] == got[3] == got[6] == POOLED_STRATUM
    # a lone single-scene type joins the largest stratum instead of forming a stratum of one
    assert strata([("a",), ("b",), ("b",), ("c",), ("c",), ("c",)])[0] == "c"


def test_stratified_bootstrap_keeps_every_strata_count():
    """Each resample draws exactly as many scenes from each stratum as it has: the count of stratum-A scenes
    in a resample is constant (a plain bootstrap would spread it)."""
    groups = ["A"] * 4 + ["B"] * 9 + ["C"] * 3
    is_a = np.array([g == "A" for g in groups])

    def count_a(idx):
        return is_a[idx].sum(-1)[None].astype(float)

    lo, hi = stratified_bootstrap(count_a, groups, 1, 199, 0, 0.95)
    assert lo[0] == hi[0] == 4
    lo, hi = stratified_bootstrap(count_a, ["all"] * len(groups), 1, 199, 0, 0.95)
    assert lo[0] < 4 < hi[0]


def _picks(**kw):
    base = {"max_entropy": None, "last": None, "best_reward": None, "bc": None}
    base.update(kw)
    return base


def test_field_statistics_dominance_direction_and_seed():
    rng = np.random.default_rng(0)
    pick = rng.uniform(0, 0.8, 24)
    vals = np.stack([pick, pick + 0.1, pick - 0.05 * (np.arange(24) % 2)])  # 1 beats the pick everywhere
    types = [("following_lane_with_lead",)] * 12 + [("starting_left_turn",)] * 12
    picks = _picks(max_entropy=0, last=1, bc=2)
    s = field_statistics(vals, ["a", "b", "c"], ["a", "b", "c"], picks, True, types, "score", n_resamples=199)
    cp = {e["key"]: e for e in s["checkpoints"]}
    assert cp["b"]["poi_over_pick"] == 1.0 and cp["b"]["poi_ci"] == [1.0, 1.0]
    assert cp["a"]["poi_over_pick"] == 0.5
    assert cp["c"]["poi_over_pick"] == pytest.approx(0.25)  # loses on half the scenes, ties the others
    assert cp["b"]["iqm"] == pytest.approx(trim_mean(pick + 0.1, 0.25))
    lo, hi = cp["b"]["iqm_ci"]
    assert lo <= cp["b"]["iqm"] <= hi
    assert s["rules_over_last"]["max_entropy"]["poi"] == 0.0  # the pick never beats last
    assert s["rules_over_last"]["best_reward"] is None
    assert s["strata"] == {"starting_left_turn": 12, "following_lane_with_lead": 12}
    # a lower-is-better metric: improvement is a smaller value
    s_low = field_statistics(vals, ["a", "b", "c"], ["a", "b", "c"], picks, False, types, "ade", n_resamples=199)
    assert {e["key"]: e for e in s_low["checkpoints"]}["b"]["poi_over_pick"] == 0.0
    again = field_statistics(vals, ["a", "b", "c"], ["a", "b", "c"], picks, True, types, "score", n_resamples=199)
    assert again == s
    fr = np.asarray(s["profile"]["fractions"]["b"])
    assert np.all(np.diff(fr) <= 0) and fr[0] <= 1.0


def test_type_breakdown_per_type_verdict_and_minimum():
    n_a, n_b, n_few = 6, MIN_TYPE_SCENES, MIN_TYPE_SCENES - 1
    types = [("following_lane_with_lead",)] * n_a + [("starting_left_turn",)] * n_b + [("stationary",)] * n_few
    a = np.r_[np.full(n_a, 0.9), np.full(n_b, 0.5), np.full(n_few, 0.7)]
    b = np.r_[np.full(n_a, 0.6), np.full(n_b, 0.58), np.full(n_few, 0.9)]
    out = type_breakdown(np.stack([a, b]), ["a", "b"], ["ep1", "ep2"], _picks(max_entropy=0, last=1), True,
                         types, "score")
    rows = {r["type"]: r for r in out["types"]}
    assert rows["following_lane_with_lead"]["rules"]["max_entropy"]["rank"] == 1
    left = rows["starting_left_turn"]["rules"]["max_entropy"]
    assert left["rank"] == 2 and left["regret"] == pytest.approx(0.08)
    assert rows["stationary"]["n"] == n_few and not rows["stationary"]["judged"] and "rules" not in rows["stationary"]
    s = out["sentence"]
    assert "picks the best on following_lane_with_lead (n=6)" in s and "regret 0.08 on starting_left_turn" in s
    assert f"fewer than {MIN_TYPE_SCENES} scenes: stationary ({n_few})" in s


def test_a_type_where_the_metric_is_undefined_reads_not_applicable():
    """A map-rule metric NaN on every scene of a type (enough scenes): the row is judged but has no best; the CLI's
    table and the dashboard's say "not applicable" (they used to read row["best"] and stop)."""
    import io

    from rich.console import Console

    from dashboard.stats_view import type_table
    from sim.selection.report import print_statistics

    n = MIN_TYPE_SCENES
    types = [("following_lane_with_lead",)] * n + [("stationary",)] * (n - 1)
    v = np.r_[np.full(n, np.nan), np.full(n - 1, 1.0)]
    out = type_breakdown(np.stack([v, v]), ["a", "b"], ["ep1", "ep2"], _picks(max_entropy=0, last=1), True, types,
                         "traffic_light_compliance")
    rows = {r["type"]: r for r in out["types"]}
    assert rows["following_lane_with_lead"]["judged"] and "best" not in rows["following_lane_with_lead"]
    assert [type_best_label(r) for r in out["types"]] == ["not applicable", "too few scenes"]
    buf = io.StringIO()
    print_statistics(Console(file=buf, width=200), {"by_type": out})
    assert "not applicable" in buf.getvalue() and "too few scenes" in buf.getvalue()
    assert type_table(out)["best"] == ["not applicable", "too few scenes"]


def test_stats_module_imports_no_torch():
    code = "import sys, sim.selection.stats; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[3]))


def test_across_seeds_probability_of_improvement_over_last():
    """Seeds as runs, scenes as tasks: the brute-force mean over scenes of the pairwise win rate over seeds."""
    from sim.selection.across import RulePick, SeedResult, compare_runs, format_table

    rng = np.random.default_rng(5)
    n_seeds, n = 3, 8
    me = rng.integers(0, 3, (n_seeds, n)).astype(float)
    last = rng.integers(0, 3, (n_seeds, n)).astype(float)
    seeds = [SeedResult(run=f"s{i}", metric="score", n_checkpoints=3, scenario_digest="d", settings_digest="c",
                        picks={"max_entropy": RulePick("a", 1, 0.0), "last": RulePick("b", 2, 0.1)},
                        pick_scores={"max_entropy": tuple(me[i]), "last": tuple(last[i])}) for i in range(n_seeds)]
    brute = np.mean([np.mean([(me[i, k] > last[j, k]) + 0.5 * (me[i, k] == last[j, k])
                              for i in range(n_seeds) for j in range(n_seeds)]) for k in range(n)])
    v = compare_runs(seeds, n_resamples=499)
    r = v.rule("max_entropy")
    assert r.poi_over_last == pytest.approx(brute)
    lo, hi = r.poi_over_last_ci
    assert 0.0 <= lo <= hi <= 1.0
    assert v.rule("last").poi_over_last is None
    assert "P(>last)" in format_table(v) and v.to_json()["rules"]["max_entropy"]["poi_over_last"] == r.poi_over_last
    # a run without per-scene values: no probability, never a partial one
    seeds[1] = SeedResult(**{**seeds[1].__dict__, "pick_scores": {}})
    assert compare_runs(seeds, n_resamples=99).rule("max_entropy").poi_over_last is None


def _stored_stats():
    rng = np.random.default_rng(1)
    vals = rng.uniform(0, 1, (3, 16))
    types = [("following_lane_with_lead",)] * 8 + [("starting_left_turn",)] * 8
    picks = _picks(max_entropy=1, last=2)
    keys = ["k0", "k1", "k2"]
    return (vals, field_statistics(vals, keys, ["ep0", "ep1", "ep2"], picks, True, types, "score", n_resamples=99),
            type_breakdown(vals, keys, ["ep0", "ep1", "ep2"], picks, True, types, "score"))


def test_profile_figure_and_view_tables():
    from dashboard.figures import profile_figure
    from dashboard.stats_view import poi_table, rules_table, type_table

    vals, s, bt = _stored_stats()
    fig = profile_figure(s, selected="k0")
    assert [t.customdata[0] for t in fig.data] == ["k0", "k1", "k2"]
    for t, row in zip(fig.data, vals, strict=True):  # each curve is the brute-force fraction above each threshold
        assert list(t.y) == [float(np.mean(row > x)) for x in t.x]
    assert fig.data[1].line.dash == "dash" and "(pick)" in fig.data[1].name and fig.data[0].line.width == 4
    pt = poi_table(s)
    assert pt["checkpoint"][0] == "ep1 (pick)" and pt["P(better than the pick)"][0] == "-"
    assert pt["P(better than the pick)"][1].startswith(f"{s['checkpoints'][0]['poi_over_pick']:.2f}")
    rt = rules_table(s)
    assert rt["rule"] == ["max_entropy", "best_reward", "bc"] and rt["P(better than last)"][1] == "n/a"
    tt = type_table(bt)
    assert tt["type"] == ["starting_left_turn", "following_lane_with_lead"] and tt["scenes"] == [8, 8]
    assert all(c.endswith(")") for c in tt["max_entropy"])


def test_statistics_tab_in_the_app(tmp_path, monkeypatch):
    pytest.importorskip("streamlit.testing.v1")
    from benchmarks.fixture_runs import FixtureSpec, write_run
    from tests.dashboard_helpers import open_app, page_text

    write_run(tmp_path / "out", FixtureSpec(name="fx", n_checkpoints=4, n_scenes=8))
    at = open_app(tmp_path / "out", monkeypatch, run="fx", view="Statistics")
    assert not at.exception
    charts = [c for c in at.get("plotly_chart") if "performance profile" in c.proto.spec]
    assert len(charts) == 1
    tables = [d.value for d in at.dataframe]
    assert any("P(better than the pick)" in t.columns for t in tables)
    assert "stratified bootstrap" in page_text(at)
