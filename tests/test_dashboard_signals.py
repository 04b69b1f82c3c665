"""The dashboard's "Training signals" view (AppTest) on a results file written by ``sim.evaluate --signals``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("streamlit.testing.v1")

from dashboard.fixtures import FixtureSpec, write_run  # noqa: E402
from dashboard.signals_view import headline_sentence, ranking_table  # noqa: E402
from sim.evaluate import main  # noqa: E402
from sim.harness.reader import read_signal_verdict  # noqa: E402
from tests.dashboard_helpers import open_app  # noqa: E402
from tests.test_evaluate_support import make_run, write_scenes  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """out/run1: a real run evaluated by the CLI (its entropy_history.json with PPO statistics judged);
    out/fixture: a run whose results hold no signal verdict."""
    root = tmp_path_factory.mktemp("sig")
    run = make_run(root, episodes=(0, 50, 100, 150, 200), rewards=[0.0, 3.0, 1.0, 2.0, 2.5])
    hist = json.loads((run / "entropy_history.json").read_text())
    hist["approx_kl"] = [0.0, 0.02, 0.01, 0.03, 0.015]
    hist["value_loss"] = [5.0, 3.0, 2.0, 2.5, 1.0]
    (run / "entropy_history.json").write_text(json.dumps(hist))
    write_scenes(root / "scenes.npz", 6, num_steps=30)
    assert main(["--run", str(run), "--scenarios", str(root / "scenes.npz"), "--no-progress",
                 "--n-resamples", "100"]) == 0
    write_run(root / "out", FixtureSpec(name="fixture", n_checkpoints=4, n_scenes=5), link_latest=False)
    return root / "out"


def test_signal_view_shows_the_stored_ranking(runs, monkeypatch):
    v = read_signal_verdict(runs / "run1" / "results.h5")
    at = open_app(runs, monkeypatch, run="run1", view="Training signals")
    assert not at.exception
    assert any("Which training signal picks the best checkpoint?" in h.value for h in at.subheader)
    md = " ".join(m.value for m in at.markdown)
    assert "**Max entropy** (`entropy`) ranks" in md
    table = at.dataframe[0].value
    assert list(table["signal"]) == [j["signal"] + (" (headline)" if j["headline"] else "") for j in v["ranking"]]
    assert set(table["signal"]) >= {"entropy (headline)", "approx_kl", "value_loss", "train_reward", "training step"}
    assert list(table["rank"]) == list(range(1, len(v["ranking"]) + 1))
    # picks are shown by file name, and the regret column is the stored one
    assert set(table["picks"]) <= set(v["checkpoint_names"].values())
    assert list(table["regret"]) == [round(j["regret"], 4) for j in v["ranking"]]


def test_signal_view_without_a_stored_verdict(runs, monkeypatch):
    at = open_app(runs, monkeypatch, run="fixture", view="Training signals")
    assert not at.exception
    assert any("No training signals judged for this run yet" in i.value for i in at.info)


def test_headline_sentence_and_table_from_a_verdict():
    v = {"metric": "score", "checkpoint_names": {"a": "a.zip", "b": "b.zip"}, "ranking": [
        {"signal": "train/approx_kl", "headline": False, "pick_max": "a", "pick_min": "b", "rule": "min",
         "regret": 0.0, "regret_max": 0.2, "regret_min": 0.0, "spearman": None, "spearman_ci": None,
         "n_checkpoints": 2},
        {"signal": "entropy (-train/entropy_loss)", "headline": True, "pick_max": "a", "pick_min": "b",
         "rule": "max", "regret": 0.2, "regret_max": 0.2, "regret_min": 0.0, "spearman": 0.5,
         "spearman_ci": [-0.1, 0.9], "n_checkpoints": 2}]}
    s = headline_sentence(v)
    assert "ranks **2 of 2**" in s and "**a.zip**" in s and "regret 0.2" in s and "[-0.10, +0.90]" in s
    assert "Lowest regret: pick the min of `train/approx_kl`" in s
    t = ranking_table(v)
    assert t["picks"] == ["b.zip", "a.zip"] and t["spearman"] == ["n/a", "+0.50"]
    assert t["rule"] == ["pick the min", "pick the max"]
