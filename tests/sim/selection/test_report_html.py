"""``python -m sim.report``: one self-contained HTML report of an evaluated run (issue "Users' data ... plug in")."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import numpy as np
import pytest

from benchmarks.fixture_runs import FixtureSpec, write_run
from sim.metrics.catalogue import SPECS, TABLE_METRICS
from sim.report import main
from sim.results.reader import read_checkpoints, read_scenarios, read_verdict
from sim.selection.report import metric_interval
from sim.selection.report_html import build_report
from sim.selection.stats import type_table_rows


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("runs"), FixtureSpec(n_checkpoints=6, n_scenes=16))


def test_report_is_self_contained_and_holds_the_verdict_table_and_figures(run):
    text = build_report(run)
    p = _Tags()
    p.feed(text)
    tags = [t for t, _ in p.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags  # no server, nothing fetched
    assert not any("src" in a or "href" in a for _, a in p.tags)
    assert tags.count("svg") == 1 + len(TABLE_METRICS)  # entropy + judged metric, then one per table metric
    verdict = read_verdict(run / "results.h5")
    import html

    assert html.escape(verdict["sentence"]) in text
    ids = [s.id for s in read_scenarios(run / "results.h5")]
    for s in read_checkpoints(run / "results.h5"):
        if s.attrs.get("kind") != "checkpoint":
            continue
        assert s.attrs["name"] in text
        for m in TABLE_METRICS:
            mean, lo, hi = metric_interval(m, np.asarray(s.rows.select(ids).metrics[m], dtype=np.float64))
            cell = "n/a" if math.isnan(mean) else f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"
            assert cell in text, (s.attrs["name"], m)
    for m in TABLE_METRICS:
        assert SPECS[m].label in text
    # the verdict per scenario type, as the CLI and the dashboard show it (the stored verdict's by_type)
    header, rows = type_table_rows(verdict["by_type"])
    assert rows and "No per-scenario-type breakdown" not in text
    for row in rows:
        assert "".join(f"<td>{html.escape(str(c))}</td>" for c in row[:3]) in text, row
    assert html.escape(verdict["by_type"]["sentence"]) in text
    # the report card: each rule's pick with its value and regret in the card's decimals (as the CLI and dashboard)
    for rule, e in verdict["rules"].items():
        if e and rule != "random":
            row = (rule, e["name"], e["episode"], f"{e['value']:.4f}", e["rank"], f"{e['regret']:.4f}")
            assert "".join(f"<td>{html.escape(str(c))}</td>" for c in row) in text, row


def test_cli_writes_the_file_and_says_so(run, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main([str(run), "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert str(out) in line and "KiB" in line and len(line.splitlines()) == 1
    assert out.read_text().startswith("<!doctype html>")


@pytest.mark.parametrize("case", ["no_run", "unwritable"])
def test_cli_bad_input_is_one_line_exit_2_nothing_written(run, tmp_path, capsys, case):
    if case == "no_run":
        argv = [str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")]
    else:
        argv = [str(run), "--out", str(tmp_path / "missing-dir" / "r.html")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "missing-dir").exists()


def test_a_plugin_runs_report_names_its_step_unit(tmp_path):
    """SB3 checkpoints are counted in environment steps: the report's tables (and figure axes) say so, as the
    dashboard does (they said "episode" for every run); a project run keeps "episode"."""
    sb3 = write_run(tmp_path, FixtureSpec(name="sb3", n_checkpoints=4, n_scenes=8, agent="sb3"), link_latest=False)
    text = build_report(sb3)
    assert text.count("<th>environment step</th>") == 2 and "<th>episode</th>" not in text
    own = build_report(write_run(tmp_path, FixtureSpec(name="own", n_checkpoints=4, n_scenes=8),
                                 link_latest=False))
    assert own.count("<th>episode</th>") == 2 and "environment step" not in own


def test_the_report_ranks_every_training_signal_when_the_file_holds_them(run, tmp_path):
    """The training-signal ranking (``sim.evaluate --signals``; a project run judges its entropy_history.json):
    the headline sentence and one row per signal with each rule's place in the stored ranking; without one, a
    pointer to the flag."""
    import html

    from sim.evaluate import main as evaluate
    from sim.results.reader import read_signal_verdict
    from tests.sim.evaluation.test_evaluate_support import make_run, write_scenes

    assert "No training signals judged in this results file" in build_report(run)
    judged = make_run(tmp_path, episodes=(0, 50, 100, 150), rewards=[0.0, 3.0, 1.0, 2.0])
    write_scenes(tmp_path / "scenes.npz", 5, num_steps=30)
    assert evaluate(["--run", str(judged), "--scenarios", str(tmp_path / "scenes.npz"), "--no-progress",
                     "--n-resamples", "50"]) == 0
    v = read_signal_verdict(judged / "results.h5")
    text = build_report(judged)
    assert "No training signals judged" not in text and "<b>Max entropy</b> (<code>entropy</code>) ranks" in text
    n = len(v["ranking"])
    place = {(j["signal"], j["rule"]): i for i, j in enumerate(v["ranking"], 1)}
    for signal in dict.fromkeys(j["signal"] for j in v["ranking"]):
        shown = signal + (" (headline)" if signal == "entropy" else "")
        j = next(j for j in v["ranking"] if j["signal"] == signal)
        row = "".join(f"<td>{html.escape(str(c))}</td>" for c in (shown, f"{place[(signal, 'max')]} of {n}",
                                                                 f"{j['regret_max']:.4f}"))
        assert row in text, row
