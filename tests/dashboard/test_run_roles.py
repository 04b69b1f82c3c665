"""Issue 12 in the dashboard (AppTest over real runs evaluated by the real CLI): roles from the run's files,
partial sets said, one pick per rule in every view, the across-seeds view and its exports, workflow messages."""

from __future__ import annotations

import json
import re
import sys

import h5py
import pytest

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from sim.evaluate import main as evaluate  # noqa: E402
from sim.results.reader import read_checkpoints  # noqa: E402
from tests.dashboard_helpers import open_app, page_text  # noqa: E402
from tests.sim.evaluation.test_evaluate_support import make_run, write_scenes  # noqa: E402

EV = ["--scenarios", "scenes.npz", "--no-progress", "--n-resamples", "50", "--batch-size", "8"]
LOG_STDS = [-0.9, -0.5, -0.7, -1.1]  # highest entropy at ep00050: best_entropy.pt copies it


def _legend(at: AppTest) -> list[str]:
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return [t.get("name", "") for t in spec["data"]]


@pytest.fixture()
def evaluated(tmp_path, monkeypatch):
    run = make_run(tmp_path, log_stds=LOG_STDS, rewards=[0.0, 1.0, 3.0, 2.0])
    write_scenes(tmp_path / "scenes.npz", 4, num_steps=30)
    monkeypatch.chdir(tmp_path)
    assert evaluate(["--run", str(run), *EV]) == 0
    return run


def test_partial_results_never_make_up_roles(evaluated, monkeypatch):
    """As after Ctrl-C: best_entropy.pt's policy has no results yet."""
    key = next(s.key for s in read_checkpoints(evaluated / "results.h5") if "best_entropy" in s.roles)
    with h5py.File(evaluated / "results.h5", "r+") as f:
        del f["checkpoints"][key]
    at = open_app(evaluated.parent, monkeypatch)
    assert not at.exception
    text = page_text(at)
    assert "Partial comparison set: 3 of 4 checkpoints" in text and "4 (checkpoint, scene) pair(s)" in text
    assert "Not evaluated yet: best_entropy.pt" in text
    assert "it is the best checkpoint" not in text
    assert not any(n.startswith("best_entropy.pt") for n in _legend(at))  # no stand-in mark
    assert any(n.startswith("last.pt: ep00150.pt") for n in _legend(at))
    assert not any(n.startswith("truly best") for n in _legend(at))


def _whatif_pick(at: AppTest) -> str:
    line = next(str(m.value) for m in at.markdown if str(m.value).startswith("pick: **"))
    return line.split("**")[1]


def test_without_best_entropy_pt_every_view_names_the_same_pick(evaluated, monkeypatch):
    (evaluated / "best_entropy.pt").unlink()
    at = open_app(evaluated.parent, monkeypatch)
    assert not at.exception
    chart = next(n for n in _legend(at) if n.startswith("max entropy (rule"))
    cards = [str(m.value) for m in at.markdown if "Max entropy picks" in str(m.value)]  # the verdict, the card
    assert chart.endswith(": ep00050.pt") and not any(n.startswith("best_entropy.pt") for n in _legend(at))
    assert len(cards) >= 2 and all(re.search(r"Max entropy picks (\*\*)?ep00050\.pt\b", c) for c in cards), cards
    at.session_state["view"] = "What-if rule"  # the what-if editor's own tab
    assert _whatif_pick(at.run()) == "ep00050.pt"


def test_csv_roles_are_plain_names(evaluated, monkeypatch):
    at = open_app(evaluated.parent, monkeypatch)
    at.session_state["view"] = "Checkpoint table"
    at.run()
    df = at.dataframe[0].value
    assert set(df["roles"]) == {"bc", "best_entropy", "best_reward", "last"}


def test_no_results_names_the_exact_command_and_runs_dir_mistakes(tmp_path, monkeypatch):
    run = make_run(tmp_path, log_stds=LOG_STDS)
    at = open_app(tmp_path / "out", monkeypatch)
    assert f"python -m sim.evaluate --run {run}" in page_text(at)
    at = open_app(run, monkeypatch)
    assert "is a single run folder" in page_text(at) and f"--runs-dir {run.parent}" in page_text(at)
    f = tmp_path / "afile"
    f.write_text("x")
    assert "is a file, not a folder of runs" in page_text(open_app(f, monkeypatch))
    assert "no such folder" in page_text(open_app(tmp_path / "missing", monkeypatch))


def test_across_seeds_view_with_exports(tmp_path, monkeypatch):
    write_scenes(tmp_path / "scenes.npz", 4, num_steps=30)
    monkeypatch.chdir(tmp_path)
    for i, speeds in enumerate(([6.0, 8.0, 10.0, 12.0], [12.0, 10.0, 8.0, 6.0], [9.0, 11.0, 7.0, 8.0])):
        run = make_run(tmp_path, name=f"seed{i}", speeds=speeds, log_stds=LOG_STDS, seed=i)
        assert evaluate(["--run", str(run), *EV]) == 0
    at = open_app(tmp_path / "out", monkeypatch, run="seed0", overlay="seed1,seed2", view="Runs overlaid")
    assert not at.exception
    assert "Across seeds: 3 runs" in [str(s.value) for s in at.subheader]
    table = at.dataframe[0].value
    assert list(table["rule"])[:1] and {"max_entropy", "last", "best_reward", "bc", "random"} <= set(table["rule"])
    assert {"pick seed0", "pick seed1", "pick seed2"} <= set(table.columns)
    assert (table.loc[table["rule"] == "max_entropy", "pick seed0"] == "ep00050.pt").all()
    labels = [b.proto.label for b in at.get("download_button")]
    assert {"CSV: across seeds", "PNG: figure", "SVG: figure"} <= set(labels)
    assert at.get("imgs") or at.get("image")


def test_per_dimension_lines_are_labelled_and_the_replay_opens_on_the_ego(evaluated):
    from dashboard import data, figures
    from sim.results.reader import read_ego_traj, read_scene, read_summary

    summary = read_summary(evaluated / "results.h5")
    ck = data.checkpoint_frame(summary)
    fig = figures.per_dim_figure(ck)
    named = [t.name for t in fig.data if t.showlegend is not False]
    assert fig.layout.showlegend and named[:3] == ["wp1 x", "wp1 y", "wp2 x"]
    key = next(iter(summary.checkpoints))
    scene = read_scene(evaluated / "results.h5", int(summary.checkpoints[key].scenario[0]))
    ego = read_ego_traj(evaluated / "results.h5", key, [0])[0]
    rep = figures.replay_figure(scene, ego)
    (x0, x1), (y0, y1) = rep.layout.xaxis.range, rep.layout.yaxis.range
    path = scene.log_ego[:, :2]
    assert x0 <= path[:, 0].min() and path[:, 0].max() <= x1 and y0 <= path[:, 1].min() <= path[:, 1].max() <= y1
    road = max(float(p[:, 0].max()) for p in scene.map["drivable"])  # the map reaches well beyond the ego's path
    assert x1 < road and (x1 - x0) < 3 * (path[:, 0].max() - path[:, 0].min() + 60)


def test_dashboard_modules_stay_torch_free():
    import subprocess

    code = ("import sys, dashboard.run_roles, dashboard.across_view, dashboard.data, dashboard.rules, "
            "dashboard.figures, sim.selection.across_data; print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
