"""The dashboard answers first: the verdict and the report card above the charts (AppTest), a plug-in (SB3) run in its
own units and without the project-run notes, a one-checkpoint run, the HTML report built only when asked."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit.testing.v1")

from scipy import stats  # noqa: E402

from benchmarks.fixture_runs import SB3_STEPS, FixtureSpec, write_run  # noqa: E402
from sim.results.reader import read_summary, read_verdict  # noqa: E402
from tests.dashboard_helpers import open_app, page_text  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("answer")
    write_run(root, FixtureSpec(name="proj", n_checkpoints=8, n_scenes=40, seed=3), link_latest=False)
    write_run(root, FixtureSpec(name="sb3", n_checkpoints=6, n_scenes=30, agent="sb3", seed=4), link_latest=False)
    write_run(root, FixtureSpec(name="one", n_checkpoints=1, n_scenes=12, seed=5), link_latest=False)
    return root


def in_order(block) -> list:
    """Every element of an AppTest block, depth first, in page order."""
    out = []
    for child in getattr(block, "children", {}).values():
        if hasattr(child, "children") and getattr(child, "type", "") != "plotly_chart":
            out += in_order(child)
        else:
            out.append(child)
    return out


def chart_titles(at) -> list[str]:
    import json

    return [json.loads(e.proto.spec)["layout"].get("title", {}).get("text", "")
            for e in in_order(at.main) if getattr(e, "type", "") == "plotly_chart"]


def test_verdict_and_card_come_before_the_charts(runs, monkeypatch):
    at = open_app(runs, monkeypatch, run="proj")
    assert not at.exception
    els = in_order(at.main)
    kinds = [getattr(e, "type", "") for e in els]
    first_chart = kinds.index("plotly_chart")
    texts = [str(getattr(e, "value", "")) for e in els[:first_chart]]
    verdict = next(t for t in texts if t.startswith("**Verdict**"))
    card = next(t for t in texts if t.startswith("| rule | pick | score (rank) | regret |"))  # names hold the step
    # the sentence: the max-entropy pick, its rank and regret, the interval and the step comparison
    v = read_verdict(runs / "proj" / "results.h5")
    me = v["rules"]["max_entropy"]
    assert f"picks **{me['name']}** (episode {me['episode']}): rank {me['rank']} of {v['n_checkpoints']}" in verdict
    assert ("better than the training step does" in verdict) and (
        ("no better" in verdict) != bool(v["entropy_beats_step"]))
    # the interval: normal approximation of the mean paired per-scene difference, recomputed here with scipy
    summ = read_summary(runs / "proj" / "results.h5")
    d = summ.checkpoints[v["best"]["key"]].metrics["score"] - summ.checkpoints[me["key"]].metrics["score"]
    if me["key"] != v["best"]["key"]:
        lo, hi = stats.norm.interval(0.95, loc=d.mean(), scale=d.std(ddof=1) / math.sqrt(d.size))
        m = re.search(r"regret ([\d.]+) \(95 % CI ([-\d.e]+) to ([-\d.e]+) over (\d+) scenes\)", verdict)
        assert m, verdict
        assert float(m[1]) == pytest.approx(me["regret"], rel=1e-3)
        assert float(m[2]) == pytest.approx(lo, rel=2e-3, abs=1e-4)
        assert float(m[3]) == pytest.approx(hi, rel=2e-3, abs=1e-4)
        assert int(m[4]) == d.size
    # the card: each rule's pick, rank and regret as the stored verdict has them
    for rule, label in (("max_entropy", "Max entropy"), ("last", "Last"), ("best_reward", "Best training reward")):
        e = v["rules"][rule]
        assert f"| {label} | {e['name']} | {e['value']:.4f} ({e['rank']}/{v['n_checkpoints']}) | " \
               f"{e['regret']:.4f} |" in card


def test_a_plugin_run_in_its_own_units_without_the_project_notes(runs, monkeypatch):
    at = open_app(runs, monkeypatch, run="sb3")
    assert not at.exception
    text = page_text(at)
    assert "entropy_history.json" not in text and "python -m training.train" not in text
    assert "log-std" not in text  # the project's policy note does not apply to a foreign trainer's policy
    verdict = next(str(m.value) for m in at.markdown if str(m.value).startswith("**Verdict**"))
    assert "(environment step " in verdict and "episode" not in verdict
    import json

    specs = [json.loads(e.proto.spec) for e in in_order(at.main) if getattr(e, "type", "") == "plotly_chart"]
    ent = next(s for s in specs if "entropy over training" in s["layout"]["title"]["text"])
    met = next(s for s in specs if "Closed loop per checkpoint" in s["layout"]["title"]["text"])
    assert ent["layout"]["xaxis"]["title"]["text"] == "environment step"
    assert met["layout"]["xaxis"]["title"]["text"] == "environment step"
    names = [t.get("name", "") for t in ent["data"]]
    assert not any(".pt" in n for n in names), names  # no role-file names on foreign checkpoints
    last = f"rl_model_{SB3_STEPS * 6}_steps.zip"
    assert f"last (highest step): {last}" in names
    assert any("environment step" in c.value for c in at.caption)  # the selection caption


def test_a_plugin_run_without_logged_entropy_says_so_in_the_selection_caption(runs, tmp_path, monkeypatch):
    """A plug-in run evaluated without ``--signals`` stores no entropy: the selection caption says so instead of
    "entropy nan nats"."""
    import math
    import shutil

    from sim.results.reader import read_checkpoints
    from sim.results.store import ResultsWriter

    shutil.copytree(runs / "sb3", tmp_path / "sb3")
    res = tmp_path / "sb3" / "results.h5"
    keys = [s.key for s in read_checkpoints(res) if s.attrs.get("kind") == "checkpoint"]
    ResultsWriter(res).set_checkpoint_attrs({k: {"entropy": math.nan} for k in keys})
    at = open_app(tmp_path, monkeypatch, run="sb3")
    assert not at.exception
    selected = [c.value for c in at.caption if c.value.startswith("Selected:")]
    assert selected and "no entropy logged" in selected[0] and "nan" not in selected[0], selected


def test_one_checkpoint_cannot_be_ranked(runs, monkeypatch):
    at = open_app(runs, monkeypatch, run="one")
    assert not at.exception
    text = page_text(at)
    assert "One checkpoint cannot be ranked" in text
    assert "than the training step" not in text


def test_html_report_is_built_only_when_asked(runs, monkeypatch):
    at = open_app(runs, monkeypatch, run="proj")
    assert "_html_report" not in at.session_state  # not on the first paint
    at.button(key="prep_html").click().run()
    assert not at.exception
    path, _, doc = at.session_state["_html_report"]
    assert path == str(runs / "proj" / "results.h5")
    assert doc.lstrip().lower().startswith("<!doctype html>") and "</html>" in doc
    assert read_verdict(runs / "proj" / "results.h5")["sentence"].split("(")[0] in doc
    assert len(at.get("download_button")) >= 2  # the report card's CSV and the HTML report


def test_paired_regret_is_the_mean_of_the_differences():
    from dashboard.answer import paired_regret

    rng = np.random.default_rng(0)
    a, b = rng.normal(0.8, 0.1, 50), rng.normal(0.7, 0.1, 50)
    m, lo, hi, n = paired_regret(a, b, "score")
    assert m == pytest.approx(float(np.mean(a - b))) and n == 50 and lo < m < hi
    m2, lo2, hi2, _ = paired_regret(a, b, "ade")  # lower is better: the sign flips
    assert (m2, lo2, hi2) == pytest.approx((-m, -hi, -lo))


def test_a_plugin_run_without_entropy_says_how_to_get_it(runs):
    import dataclasses

    from dashboard import data, run_roles
    from dashboard.answer import build_answer
    from dashboard.run_kind import run_kind
    from dashboard.table import Rows

    summ = read_summary(runs / "sb3" / "results.h5")
    rows = data.checkpoint_rows(summ)
    nan = (math.nan,) * len(rows)
    rows = Rows(rows.keys, {**rows.cols, "entropy": nan, "train_reward": nan})  # evaluated without --signals
    rows, rr = run_roles.apply_run_roles(rows, runs / "sb3", summ.attrs)
    kind = run_kind(summ)
    ans = build_answer(rows, "score", None, rr, lambda k, m: data.per_scene_matrix(summ, k, m), kind)
    assert "No evaluated checkpoint has an entropy" in ans.sentence and "--signals LOG" in ans.sentence
    assert [r["rule"] for r in ans.card] == ["Last"]  # the rules that still pick
    own = build_answer(rows, "score", None, rr, lambda k, m: data.per_scene_matrix(summ, k, m),
                       dataclasses.replace(kind, agent="own", step_unit="episode"))
    assert "--signals" not in own.sentence


def test_the_card_keeps_the_step_column_where_a_name_does_not_hold_its_step():
    """The card fits a 700 px window by leaving out the step column, but only where every pick's name holds its
    step: a plug-in's own file names (``policy_final.zip``) keep it."""
    from dashboard.answer import card_markdown
    from dashboard.run_kind import RunKind

    kind = RunKind(agent="sb3", step_unit="timestep")
    row = {"rule": "Last", "value": 0.81234, "rank": 2, "of": 5, "regret": 0.0123}
    named = card_markdown([{**row, "checkpoint": "rl_model_4000_steps.zip", "episode": 4000}], "score", kind)
    assert named.splitlines()[0] == "| rule | pick | score (rank) | regret |"
    same = card_markdown([{**row, "checkpoint": "ep00050.pt = bc.pt", "episode": 50}], "score", kind)
    assert same.splitlines()[0] == "| rule | pick | score (rank) | regret |"  # one policy's files: the first names it
    assert "| Last | rl_model_4000_steps.zip | 0.8123 (2/5) | 0.0123 |" in named
    own = card_markdown([{**row, "checkpoint": "policy_final.zip", "episode": 4000}], "score", kind)
    assert own.splitlines()[0] == "| rule | pick | timestep | score (rank) | regret |"
    assert "| Last | policy_final.zip | 4000 | 0.8123 (2/5) | 0.0123 |" in own
    # a step that merely appears in the name is not its step: an unknown step (-1) in ckpt-10.pt, step 2 in policy_v2
    for name, step in (("ckpt-10.pt", -1), ("policy_v2.ts", 2)):
        shown = card_markdown([{**row, "checkpoint": name, "episode": step}], "score", kind)
        assert shown.splitlines()[0] == "| rule | pick | timestep | score (rank) | regret |", name


def test_a_file_of_older_metric_definitions_is_labelled(tmp_path):
    """docs/metrics.md: a results file of an older metric version is read and labelled (never mixed): the
    dashboard's run problems carry a warning naming both versions; the current version carries none."""
    from dashboard.data import older_metrics_line
    from sim.metrics.catalogue import METRICS_VERSION
    from sim.results.identity import Experiment
    from sim.results.reader import ResultsSummary

    def summary(version: str) -> ResultsSummary:
        e = Experiment("/runs/r", "procedural:test", (), version)
        return ResultsSummary(tmp_path / "results.h5", 2, {}, (), {}, None, experiment=e)

    assert older_metrics_line(summary(str(METRICS_VERSION))) is None
    line = older_metrics_line(summary(str(METRICS_VERSION - 1)))
    assert f"metrics of version {METRICS_VERSION - 1}; this tool computes version {METRICS_VERSION}" in line
    assert "written before versions" in older_metrics_line(summary(""))
    assert "newer definitions (update the tool)" in older_metrics_line(summary(str(METRICS_VERSION + 1)))


def test_the_sentence_says_when_the_metric_applies_nowhere_or_scene_counts_differ(runs):
    """A metric undefined for every evaluated checkpoint (a map rule on scenes without that map information) is
    said to be not applicable, not "no checkpoint evaluated yet"; checkpoints with results on different numbers of
    scenes (an evaluation still running) get a warning that the ranks compare means over different scenes."""
    from dataclasses import replace

    from dashboard import data, run_roles
    from dashboard.answer import NO_CHECKPOINT, NOT_APPLICABLE, UNEQUAL_SCENES, build_answer
    from dashboard.run_kind import run_kind

    summary = read_summary(runs / "proj" / "results.h5")
    rows, rr = run_roles.apply_run_roles(data.checkpoint_rows(summary), runs / "proj", summary.attrs)

    def answer(r, metric="score"):
        return build_answer(r, metric, summary.verdict, rr, lambda k, m: data.per_scene_matrix(summary, k, m),
                            run_kind(summary)).sentence

    plain = answer(rows)
    assert "rank" in plain and "different numbers of scenes" not in plain
    nan = replace(rows, cols={**rows.cols, "score": tuple(math.nan for _ in rows.keys)})
    assert answer(nan) == NOT_APPLICABLE.format(metric="score") != NO_CHECKPOINT
    counts = tuple(40 if i % 2 else 200 for i in range(len(rows.keys)))
    uneven = replace(rows, cols={**rows.cols, "n": counts})
    assert answer(uneven) == plain + UNEQUAL_SCENES.format(lo=40, hi=200)
