"""The dashboard's "Training signals" view (AppTest) on a results file written by ``sim.evaluate --signals``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("streamlit.testing.v1")

from benchmarks.fixture_runs import FixtureSpec, write_run  # noqa: E402
from sim.evaluate import main  # noqa: E402
from sim.results.reader import read_signal_verdict  # noqa: E402
from tests.dashboard_helpers import open_app  # noqa: E402
from tests.sim.evaluation.test_evaluate_support import make_run, write_scenes  # noqa: E402


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
    # one row per signal (both rules on it), the headline first (the table used to list each rule on its own row)
    signals = list(dict.fromkeys(j["signal"] for j in v["ranking"]))
    assert list(table["signal"])[0] == "entropy (headline)" and len(table) == len(signals)
    assert set(table["signal"]) == {"entropy (headline)", *(s for s in signals if s != "entropy")}
    assert set(table["signal"]) >= {"entropy (headline)", "approx_kl", "value_loss", "train_reward", "training step"}
    place = {(j["signal"], j["rule"]): i for i, j in enumerate(v["ranking"], 1)}
    for _, row in table.iterrows():
        name = row["signal"].removesuffix(" (headline)")
        j = next(j for j in v["ranking"] if j["signal"] == name)
        for r in ("max", "min"):
            assert row[f"{r}: rank"] == f"{place[(name, r)]} of {len(v['ranking'])}"
            # picks are shown by file name, and the regret columns are the stored ones
            assert row[f"{r}: picks"] == v["checkpoint_names"][j[f"pick_{r}"]]
            assert row[f"{r}: regret"] == round(j[f"regret_{r}"], 4)


def test_signal_view_without_a_stored_verdict(runs, monkeypatch):
    at = open_app(runs, monkeypatch, run="fixture", view="Training signals")
    assert not at.exception
    assert any("No training signals judged for this run yet" in i.value for i in at.info)


@pytest.mark.parametrize("stored", ["{not json", '[1, 2]', '{"metric": "score", "ranking": [{"signal": "x"}]}'])
def test_a_malformed_signal_verdict_is_one_line_in_the_view_and_the_report(runs, tmp_path, monkeypatch, stored):
    """A ``signals_json`` that is not JSON, or not a signal verdict (a list; entries without their regrets and
    picks), was a KeyError / AttributeError traceback in the report and the view; now the reader refuses it in one
    line naming the file, the view shows that line, and the report is written with it in the section."""
    import shutil

    import h5py

    from sim.results.errors import ResultsError
    from sim.selection.report_html import build_report

    out = tmp_path / "out"
    shutil.copytree(runs / "run1", out / "bad")
    res = out / "bad" / "results.h5"
    with h5py.File(res, "a") as f:
        f["verdict"].attrs["signals_json"] = stored
    with pytest.raises(ResultsError) as e:
        read_signal_verdict(res)
    assert str(res) in str(e.value) and len(str(e.value).splitlines()) == 1
    text = build_report(out / "bad")
    assert "Unreadable: " in text and "<h2>Verdict</h2>" in text
    at = open_app(out, monkeypatch, run="bad", view="Training signals")
    assert not at.exception
    assert any(str(res) in x.value and "unreadable signal verdict" in x.value for x in at.error)
