"""dashboard/app.py under Streamlit's AppTest over fixture runs: views, linking, URL state, empty/broken states."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from benchmarks.fixture_runs import FixtureSpec, write_run  # noqa: E402
from sim.results.reader import read_summary  # noqa: E402
from tests.dashboard_helpers import APP, open_app, page_text  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    write_run(root, FixtureSpec(name="run-b", seed=1, n_checkpoints=6, n_scenes=12))
    write_run(root, FixtureSpec(name="run-a", seed=0, n_checkpoints=8, n_scenes=16))  # latest
    return root


def test_an_undefined_stored_correlation_is_drawn_without_one(tmp_path, monkeypatch):
    """A verdict over too few scenes stores a rank correlation it cannot define as null (JSON): the scatter is drawn
    without the correlation in its title, not a raw exception."""
    from sim.results.reader import read_verdict
    from sim.results.store import ResultsWriter

    write_run(tmp_path, FixtureSpec(name="few", seed=0, n_checkpoints=4, n_scenes=2))
    res = tmp_path / "few" / "results.h5"
    verdict = read_verdict(res)
    verdict["correlations"]["score"].update(spearman=None, spearman_ci=[None, None], kendall_ci=[None, None])
    ResultsWriter(res).write_verdict(verdict)
    at = open_app(tmp_path, monkeypatch)
    open_view(at, "Entropy vs metrics")
    assert not at.exception
    scatter = next(s for s in chart_specs(at) if "entropy vs score" in title(s))
    assert "Spearman" not in title(scatter)


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def title(spec: dict) -> str:
    t = spec["layout"].get("title", {})
    return str(t.get("text", "")) if isinstance(t, dict) else str(t)


def open_view(at: AppTest, view: str) -> AppTest:
    at.session_state["view"] = view
    return at.run()


def test_opens_on_latest_with_every_view(runs, monkeypatch):
    at = open_app(runs, monkeypatch)
    assert not at.exception
    assert at.selectbox(key="run").value == "run-a"
    assert at.query_params["run"] in ("run-a", ["run-a"])
    specs = chart_specs(at)
    titles = " ".join(title(s) for s in specs)
    for want in ("entropy over training", "Closed loop per checkpoint"):
        assert want in titles
    ent = next(s for s in specs if "entropy over training" in title(s))
    assert ent["layout"]["yaxis"]["type"] == "linear"  # entropy goes negative: never a log axis
    assert any(sh.get("y0") == 0 and sh.get("y1") == 0 for sh in ent["layout"]["shapes"])  # the H = 0 line
    summ = read_summary(runs / "run-a" / "results.h5")
    best_ent = next(c for c in summ.checkpoints.values() if "best_entropy" in c.roles)
    assert at.session_state["sel_ckpt"] == best_ent.key  # starts on the checkpoint the rule picked
    assert "state-independent" in page_text(at)
    assert "Verdict" in page_text(at)  # the report card is the default tab
    from sim.metrics.catalogue import METRICS_VERSION

    assert f"Metrics version {METRICS_VERSION}" in page_text(at)  # the file's metric definitions, labelled
    assert not any(s.get("frames") for s in specs)  # the replay is not built until its tab opens
    open_view(at, "Entropy vs metrics")
    assert not at.exception and "entropy vs score" in " ".join(title(s) for s in chart_specs(at))
    corr = at.dataframe[0].value  # stored correlations: intervals as the tables write them, not raw lists
    assert all(isinstance(v, str) and (v == "n/a" or v.startswith("[")) for v in corr["spearman_ci"])
    open_view(at, "Scenarios & replay")
    assert not at.exception and any(s.get("frames") for s in chart_specs(at))  # the replay is animated
    assert len(at.dataframe[0].value) == 16
    assert not {"pos", "row"} & set(at.dataframe[0].value.columns)  # internal row numbers are not shown
    at.multiselect(key="f_family").set_value(["merge"]).run()
    assert set(at.dataframe[0].value["family"]) == {"merge"}
    assert at.query_params["f_family"] in ("merge", ["merge"])
    open_view(at, "Runs overlaid")
    at.multiselect(key="overlay").set_value(["run-b"]).run()
    assert not at.exception and at.query_params["overlay"] in ("run-b", ["run-b"])
    assert sum(1 for s in chart_specs(at) if len(s["data"]) >= 6) >= 1  # 2 runs x (entropy, band, mean)
    open_view(at, "Checkpoint table")
    assert not at.exception and len(at.dataframe[0].value) == 10  # 8 checkpoints + 2 baselines


def test_click_on_checkpoint_selects_it_everywhere(runs, monkeypatch):
    at = open_view(open_app(runs, monkeypatch), "Scenarios & replay")
    summ = read_summary(runs / "run-a" / "results.h5")
    last = next(c for c in summ.checkpoints.values() if "last" in c.roles)
    assert at.session_state["sel_ckpt"] != last.key
    at.session_state["entropy_chart"] = {"selection": {"points": [{"customdata": last.key, "curve_number": 2}],
                                                       "point_indices": [7], "box": [], "lasso": []}}
    at.run()
    assert not at.exception
    assert at.session_state["sel_ckpt"] == last.key
    assert at.selectbox(key="ckpt_pick").value == last.key
    assert at.query_params["ckpt"] in (last.key, [last.key])
    assert f"Selected: **{last.name}**" in page_text(at)
    met = next(s for s in chart_specs(at) if "Closed loop" in title(s))
    rings = [t for t in met["data"] if t.get("customdata") == [last.key]]
    assert rings and rings[0]["x"] == [last.episode]
    # the per-scenario table now shows the clicked checkpoint's rows
    table = at.dataframe[-1].value
    np.testing.assert_allclose(table["score"].to_numpy(), last.metrics["score"], rtol=5e-4)  # shown to 4 digits


def test_run_picker_and_url_round_trip(runs, monkeypatch):
    at = open_app(runs, monkeypatch)
    at.selectbox(key="run").set_value("run-b").run()
    assert not at.exception
    b = read_summary(runs / "run-b" / "results.h5")
    assert at.session_state["sel_ckpt"] in b.checkpoints
    assert at.query_params["run"] in ("run-b", ["run-b"])
    key = [k for k, c in b.checkpoints.items() if c.kind == "checkpoint"][2]
    at2 = open_app(runs, monkeypatch, run="run-b", metric="ade", ckpt=key, window="5", mode="min", view="What-if rule")
    assert not at2.exception
    assert at2.selectbox(key="run").value == "run-b" and at2.selectbox(key="metric").value == "ade"
    assert at2.session_state["sel_ckpt"] == key and at2.session_state["window"] == 5
    assert at2.radio(key="mode").value == "min"
    at3 = open_app(runs, monkeypatch, run="run-b", ckpt=key, view="Scenarios & replay", f_family="merge,lane_change")
    assert not at3.exception
    assert at3.selectbox(key="ckpt_pick").value == key  # the shared link opens the same tab and filters
    assert set(at3.dataframe[0].value["family"]) <= {"merge", "lane_change"} and len(at3.dataframe[0].value)



def test_a_link_to_a_run_or_metric_that_does_not_exist_says_what_it_shows(runs, monkeypatch):
    at = open_app(runs, monkeypatch, run="gone", metric="bogus")
    assert not at.exception
    warnings = [str(w.value) for w in at.warning]
    assert "Run `gone` is not in the runs folder (deleted or renamed?): showing `run-a`." in warnings
    assert "Metric `bogus` is not one of the closed-loop metrics: showing `score`." in warnings
    assert at.selectbox(key="run").value == "run-a" and at.selectbox(key="metric").value == "score"
    ok = open_app(runs, monkeypatch, run="run-b")
    assert not any("is not in the runs folder" in str(w.value) for w in ok.warning)


def test_what_if_rule_pick(runs, monkeypatch):
    at = open_app(runs, monkeypatch, mode="min", window="1", view="What-if rule")
    summ = read_summary(runs / "run-a" / "results.h5")
    cks = [c for c in summ.checkpoints.values() if c.kind == "checkpoint"]
    lowest = min(cks, key=lambda c: c.entropy)
    metrics = {m.label: m.value for m in at.metric}
    best = max(cks, key=lambda c: c.mean("score"))
    assert f"pick: **{lowest.name}**" in page_text(at) and f"truly best: **{best.name}**" in page_text(at)
    assert float(metrics["regret"]) == pytest.approx(best.mean("score") - lowest.mean("score"), rel=1e-2)
    rank = 1 + sum(c.mean("score") > lowest.mean("score") for c in cks)
    assert metrics["rank by score"] == f"{rank} / {len(cks)}"


def test_no_runs(tmp_path, monkeypatch):
    at = open_app(tmp_path / "nothing", monkeypatch)
    assert not at.exception
    assert "python -m training.train" in page_text(at)


def test_run_without_results_and_without_history(tmp_path, monkeypatch):
    write_run(tmp_path, FixtureSpec(name="r1", with_results=False))
    at = open_app(tmp_path, monkeypatch)
    assert not at.exception
    assert "python -m sim.evaluate" in page_text(at)
    assert at.get("plotly_chart")  # the entropy curve from the history still shows
    write_run(tmp_path, FixtureSpec(name="r2", with_history=False, with_verdict=False))
    at = open_app(tmp_path, monkeypatch, run="r2", view="What-if rule")
    assert not at.exception
    assert "entropy_history.json" in page_text(at) and "python -m training.train" in page_text(at)
    assert any(m.label == "regret" for m in at.metric)  # computed from results alone (no stored verdict)


def test_empty_chart_frames_never_stay(runs, tmp_path, monkeypatch):
    """The first run sends two empty chart frames before loading (dashboard.frame); the run replaces or clears
    both: the real charts with results, the entropy curve alone without, nothing without runs."""

    def frames(at: AppTest) -> list[dict]:
        return [s for s in chart_specs(at) if not any(len(t.get("x") or ()) for t in s["data"])]

    at = open_app(runs, monkeypatch)
    assert not at.exception and len(chart_specs(at)) == 2 and not frames(at)
    write_run(tmp_path, FixtureSpec(name="r1", with_results=False))
    at = open_app(tmp_path, monkeypatch)
    assert not at.exception and len(chart_specs(at)) == 1 and not frames(at)
    at = open_app(tmp_path / "nothing", monkeypatch)
    assert not at.exception and not at.get("plotly_chart")


def test_tab_widgets_keep_their_values_after_leaving_their_tab(runs, monkeypatch):
    """The what-if editor lives in its own tab: its choices survive a visit to another tab (and stay in the URL)."""
    at = open_app(runs, monkeypatch)  # the session starts on the default tab, without the editor
    open_view(at, "What-if rule").radio(key="mode").set_value("min").run()
    at.slider(key="window").set_value(7).run()
    open_view(at, "Checkpoint table")
    assert at.query_params["mode"] in ("min", ["min"]) and at.query_params["window"] in ("7", ["7"])
    open_view(at, "What-if rule")
    assert at.radio(key="mode").value == "min" and at.slider(key="window").value == 7


def test_a_fault_while_loading_keeps_the_run_picker(tmp_path, monkeypatch):
    """A bad value in a run's files, or an unforeseen fault while reading it, leaves the sidebar's run picker
    usable and no empty chart frame."""
    run = write_run(tmp_path, FixtureSpec(name="r1"))
    hist = run / "entropy_history.json"
    good = json.loads(hist.read_text())
    for bad, shown in (("auto", "'auto'"), (float("nan"), "nan"), (float("inf"), "inf")):  # hand-edited
        hist.write_text(json.dumps({**good, "select_after": bad}))
        at = open_app(tmp_path, monkeypatch)
        assert not at.exception and len(at.get("plotly_chart")) == 2
        assert f"'select_after' is {shown}" in page_text(at)

    def boom(*args, **kwargs):
        raise RuntimeError("unforeseen")

    monkeypatch.setattr("dashboard.figures.entropy_figure", boom)
    at = open_app(tmp_path, monkeypatch)
    assert at.exception and "unforeseen" in str(at.exception[0].value)
    assert at.selectbox(key="run").value == "r1" and not at.get("plotly_chart")


def test_the_page_frame_loads_before_numpy():
    """dashboard.frame is sent before the dashboard's heavy imports: importing it must not pull them in."""
    code = ("import sys; import dashboard.frame; "
            "bad = [m for m in ('numpy', 'h5py', 'pandas') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(APP).parents[1])


def test_corrupt_files(tmp_path, monkeypatch):
    run = write_run(tmp_path, FixtureSpec(name="r1"))
    (run / "results.h5").write_bytes(b"\x00garbage" * 100)
    (run / "entropy_history.json").write_text("{not json")
    at = open_app(tmp_path, monkeypatch)
    assert not at.exception
    t = page_text(at)
    assert "results.h5" in t and "python -m sim.evaluate" in t
    assert "entropy_history.json" in t and "python -m training.train" in t


def test_state_dependent_log_std_has_no_warning(tmp_path, monkeypatch):
    write_run(tmp_path, FixtureSpec(name="r1", state_dependent_log_std=True, n_scenes=6))
    at = open_app(tmp_path, monkeypatch)
    assert not at.exception
    assert "state-independent" not in page_text(at)


def test_results_without_any_checkpoint_yet(tmp_path, monkeypatch):
    run = write_run(tmp_path, FixtureSpec(name="r1", n_scenes=4))
    with h5py.File(run / "results.h5", "a") as f:  # an evaluation that has written its scenes, no checkpoint yet
        del f["checkpoints"]
        del f["verdict"]
    at = open_app(tmp_path, monkeypatch)
    assert not at.exception
    assert "no checkpoint evaluated yet" in page_text(at) and "python -m sim.evaluate" in page_text(at)
    assert at.get("plotly_chart")  # the entropy history still shows


def test_dashboard_never_imports_torch(runs):
    code = ("import sys\nfrom streamlit.testing.v1 import AppTest\n"
            f"sys.argv = ['app.py', '--runs-dir', {str(runs)!r}]\n"
            f"at = AppTest.from_file({APP!r}, default_timeout=60)\n"
            "at.session_state['view'] = 'Scenarios & replay'\nat.run()\nassert not at.exception\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "NO-TORCH" in out.stdout, out.stdout + out.stderr[-2000:]


def test_skipped_scenes_are_listed(tmp_path, monkeypatch):
    from scenarios.loading import SkippedScene
    from sim.results.store import ResultsWriter

    run = write_run(tmp_path, FixtureSpec(name="r1", n_scenes=4))
    ResultsWriter(run / "results.h5").write_skipped([SkippedScene("logs/bad.pkl", "", "truncated pickle")])
    at = open_app(tmp_path, monkeypatch)
    assert not at.exception
    (exp,) = [e for e in at.expander if "skipped by sim.evaluate" in e.label]
    assert exp.label.startswith("1 scene(s)")
    df = exp.dataframe[0].value
    assert list(df.columns) == ["file", "scene_id", "reason"] and df.iloc[0]["reason"] == "truncated pickle"
