"""Pure figure builders (dashboard/figures.py) checked against independent oracles (scipy, shapely)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from shapely.geometry import Polygon

from benchmarks.fixture_runs import FixtureSpec, write_run
from dashboard import figures
from dashboard.data import checkpoint_frame
from sim.results.reader import read_ego_traj, read_scene, read_summary


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("runs"), FixtureSpec(n_checkpoints=6, n_scenes=8, steps=30))


@pytest.fixture(scope="module")
def ck(run):
    return checkpoint_frame(read_summary(run / "results.h5"))


def test_entropy_figure(ck):
    cands = ck[ck["kind"] == "checkpoint"].sort_values("episode")
    hist = {"episodes": [0, 1, 2, 3], "entropy": [1.0, -0.5, -2.0, -3.0]}
    marks = {"best_entropy": cands.index[0], "last": cands.index[-1], "best": cands.index[2]}
    fig = figures.entropy_figure(ck, "ade", hist, window=2, marks=marks, selected=cands.index[3])
    assert fig.layout.yaxis.type == "linear"
    assert any(s.y0 == 0 and s.y1 == 0 for s in fig.layout.shapes)
    raw, sm, pts = fig.data[0], fig.data[1], fig.data[2]
    np.testing.assert_allclose(raw.y, hist["entropy"])
    np.testing.assert_allclose(sm.y, [1.0, 0.25, -1.25, -2.5])  # trailing mean of 2
    assert list(pts.customdata) == list(cands.index)  # clicks carry the checkpoint key
    np.testing.assert_allclose(pts.marker.color, cands["ade"])
    assert pts.marker.colorscale[0][1] != figures.entropy_figure(ck, "score").data[0].marker.colorscale[0][1]
    names = " ".join(t.name for t in fig.data)
    assert "best_entropy.pt" in names and "last.pt" in names and "truly best" in names and "selected" in names


def test_zero_line_only_when_zero_is_near():
    far = pd.DataFrame({"name": ["a", "b"], "kind": "checkpoint", "episode": [0, 10], "entropy": [14.70, 14.71],
                        "score": [0.1, 0.2]}, index=["k0", "k1"])
    fig = figures.entropy_figure(far, "score")
    assert not fig.layout.shapes and "off-scale" in fig.layout.annotations[0].text  # the curve is not squashed
    near = far.assign(entropy=[0.5, -0.3])
    fig = figures.entropy_figure(near, "score")
    assert [(s.y0, s.y1) for s in fig.layout.shapes] == [(0, 0)]
    assert figures.zero_near([0.2, 2.0]) and figures.zero_near([])
    assert not figures.zero_near([1.0, 2.0]) and not figures.zero_near([10.0, 11.0])
    # the entropy-vs-metric scatter (entropy on x) likewise: no H = 0 line that squashes the points into one corner
    band = far.assign(entropy=[-2.7, -1.3], score_lo=[0.05, 0.15], score_hi=[0.15, 0.25])
    fig = figures.scatter_figure(band, "score")
    assert not fig.layout.shapes and "every entropy is below it" in fig.layout.annotations[0].text
    fig = figures.scatter_figure(band.assign(entropy=[-0.3, 0.4]), "score")
    assert [(s.x0, s.x1) for s in fig.layout.shapes] == [(0, 0)]


def test_per_dim_sigma_matches_gaussian_entropy(ck):
    fig = figures.per_dim_figure(ck)
    ent_traces = [t for t in fig.data if t.xaxis in (None, "x")]
    sig_traces = [t for t in fig.data if t.xaxis == "x2"]
    assert ent_traces and len(ent_traces) == len(sig_traces)
    for h_tr, s_tr in zip(ent_traces, sig_traces):
        for h, s in zip(h_tr.y, s_tr.y):
            assert stats.norm(scale=s).entropy() == pytest.approx(h, abs=1e-4)  # H = 0.5 ln(2 pi e sigma^2)


def test_metrics_figure_error_bars(ck):
    fig = figures.metrics_figure(ck, ["ade", "score", "nope"], selected=None, best=None)
    assert len([t for t in fig.data if t.error_y.array is not None]) == 2
    tr = fig.data[0]
    c = ck[ck["kind"] == "checkpoint"].sort_values("episode")
    np.testing.assert_allclose(np.asarray(tr.y) + np.asarray(tr.error_y.array), c["ade_hi"])
    np.testing.assert_allclose(np.asarray(tr.y) - np.asarray(tr.error_y.arrayminus), c["ade_lo"])
    assert len([s for s in fig.layout.shapes if s.line.dash == "dot"]) == 4  # 2 baselines x 2 metrics


def test_scatter_title_has_correlations(ck):
    corr = {"spearman": 0.5, "spearman_lo": 0.1, "spearman_hi": 0.8, "kendall": 0.4, "kendall_lo": 0.0,
            "kendall_hi": 0.7, "n": 6}
    fig = figures.scatter_figure(ck, "score", corr)
    assert "Spearman +0.50 [+0.10, +0.80]" in fig.layout.title.text and "Kendall +0.40" in fig.layout.title.text
    assert fig.layout.xaxis.type == "linear"


def test_replay_boxes_and_frames(run):
    scene = read_scene(run / "results.h5", 1)
    summ = read_summary(run / "results.h5")
    key = next(iter(summ.checkpoints))
    ego = read_ego_traj(run / "results.h5", key, [1])[0]
    fig = figures.replay_figure(scene, ego, stride=2)
    assert len(fig.frames) == math.ceil(scene.agents.shape[1] / 2)
    # ego box of frame 0: an oriented rectangle of the ego's length x width centred on the closed-loop position
    xs, ys = fig.frames[0].data[2].x, fig.frames[0].data[2].y
    poly = Polygon(list(zip(xs[:4], ys[:4])))
    assert poly.area == pytest.approx(scene.agents[0, 0, 3] * scene.agents[0, 0, 4], rel=1e-5)
    assert poly.centroid.x == pytest.approx(ego[0, 0], abs=1e-4)
    assert poly.centroid.y == pytest.approx(ego[0, 1], abs=1e-4)
    # agents valid at step t are drawn, invalid ones are not (the fixture drops the last agent halfway)
    n_box = lambda tr: sum(1 for v in tr.x if v is None)  # noqa: E731
    T = scene.agents.shape[1]
    assert n_box(fig.frames[0].data[0]) == int(scene.valid[1:, 0].sum())
    assert n_box(fig.frames[-1].data[0]) == int(scene.valid[1:, (T - 1) // 2 * 2].sum())


def test_overlay_bands(ck):
    fig = figures.overlay_figure({"a": ck, "b": ck}, "score")
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 2
    c = ck[ck["kind"] == "checkpoint"].sort_values("episode")
    np.testing.assert_allclose(bands[0].y[: len(c)], c["score_hi"])


@pytest.mark.parametrize("metrics", [["score"], ["ade", "fde"], ["ade", "fde", "collision", "offroad", "score"]])
def test_metrics_figure_layout_is_make_subplots(ck, metrics):
    """The closed-loop figure is built from plain dicts (cheap at first paint); its rows and titles are where
    plotly's make_subplots puts them (the oracle), and every row shares ONE x axis drawn under the last row."""
    from plotly.subplots import make_subplots

    fig = figures.metrics_figure(ck, metrics, selected=ck.index[0], best=ck.index[1])
    n = len(metrics)
    ref = make_subplots(rows=n, cols=1, shared_xaxes=True, vertical_spacing=figures.METRICS_SPACING,
                        subplot_titles=[f"{m} (x)" for m in metrics])
    for i in range(1, n + 1):
        ax = f"yaxis{'' if i == 1 else i}"
        assert fig.layout[ax].anchor == "x"
        np.testing.assert_allclose(fig.layout[ax].domain, ref.layout[ax].domain, atol=1e-12)
    assert not any(k.startswith("xaxis") and k != "xaxis" for k in fig.layout.to_plotly_json())
    assert fig.layout.xaxis.anchor == f"y{'' if n == 1 else n}" and fig.layout.xaxis.title.text == "episode"
    np.testing.assert_allclose(fig.layout.xaxis.domain, ref.layout[f"xaxis{'' if n == 1 else n}"].domain)
    np.testing.assert_allclose([a.y for a in fig.layout.annotations[:n]], [a.y for a in ref.layout.annotations])
    assert [a.text.split(" ")[0] for a in fig.layout.annotations[:n]] == metrics
    mains = [t for t in fig.data if t.error_y.array is not None]
    assert [(t.name, t.xaxis, t.yaxis) for t in mains] == [
        (m, "x", f"y{'' if i == 1 else i}") for i, m in enumerate(metrics, start=1)]
    assert {t.xaxis for t in fig.data} == {"x"}
