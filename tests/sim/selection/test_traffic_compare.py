"""One run under logged and IDM traffic: its own results file per agents model, and the two rankings side by side
(``python -m sim.across RUN --compare-traffic``) against direct computations from the stored rows."""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.across import main as across
from sim.evaluate import main as evaluate
from sim.evaluation.settings import eval_settings
from sim.results.identity import Experiment, run_results_path
from sim.results.reader import read_checkpoints, read_root_attrs
from sim.results.store import ResultsWriter
from sim.selection.traffic_compare import compare_rankings, traffic_pair
from tests.sim.evaluation.test_evaluate_support import make_run, write_scenes

ARGS = ["--no-progress", "--n-resamples", "50"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("traffic")
    run = make_run(root, episodes=(0, 50, 100, 150), speeds=[5.0, 9.0, 13.0, 17.0])
    write_scenes(root / "scenes.npz", 4, num_steps=30)
    return root, run


def _means(path: Path, ids) -> dict[str, float]:
    return {s.attrs["name"]: float(np.mean(s.rows.select(ids).metrics["score"])) for s in read_checkpoints(path)
            if s.attrs["kind"] == "checkpoint"}


def test_idm_gets_its_own_file_and_the_rankings_are_compared(work, capsys):
    root, run = work
    sc = ["--scenarios", str(root / "scenes.npz"), *ARGS]
    assert evaluate(["--run", str(run), *sc]) == 0
    assert evaluate(["--run", str(run), *sc, "--agents", "idm"]) == 0  # refused before: now its own file
    out = capsys.readouterr().out
    idm = run / "results.agents-idm.h5"
    assert f"Results: {idm}" in out
    assert json.loads(read_root_attrs(idm)[0]["settings"])["agents"] == "idm"
    assert traffic_pair(run) == (run / "results.h5", idm)
    js = root / "t.json"
    assert across([str(run), "--compare-traffic", "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "Traffic: agents log vs agents idm" in text and "rank correlation" in text
    doc = json.loads(js.read_text())["traffic"]
    ids = sorted(read_checkpoints(idm)[0].rows.scenario_ids)
    ma, mb = _means(run / "results.h5", ids), _means(idm, ids)
    names = doc["names"]
    assert sorted(names) == sorted(ma) and doc["n_scenes"] == 4
    assert doc["values_a"] == pytest.approx([ma[n] for n in names])
    assert doc["values_b"] == pytest.approx([mb[n] for n in names])
    assert doc["best_a"] == max(ma, key=ma.get) and doc["best_b"] == max(mb, key=mb.get)
    assert doc["pick_changes"] == (doc["best_a"] != doc["best_b"])
    for rule in ("max_entropy", "last", "best_reward", "bc"):  # every rule's regret under both, from the means
        e = doc["rules"][rule]
        assert e["regret_a"] == pytest.approx(max(ma.values()) - ma[e["pick_a"]], abs=1e-12)
        assert e["regret_b"] == pytest.approx(max(mb.values()) - mb[e["pick_b"]], abs=1e-12)
        assert e["pick_a"] == e["pick_b"]  # a training-signal rule picks the same checkpoint under any traffic
    assert doc["rules"]["last"]["pick_a"] == "ep00150.pt"
    files = [str(run / "results.h5"), str(idm)]
    assert across([*files, "--compare-traffic"]) == 0  # the two files named directly: the same comparison
    assert f"best under agents log: {doc['best_a']}" in capsys.readouterr().out


def test_pairs_that_differ_otherwise_are_refused_in_one_line(work, tmp_path, capsys):
    root, run = work
    other = make_run(tmp_path, name="other", episodes=(0, 50, 100))
    sc = ["--scenarios", str(root / "scenes.npz"), *ARGS, "--max-scenarios", "2"]
    assert evaluate(["--run", str(other), *sc]) == 0
    capsys.readouterr()
    cases = [([str(run / "results.h5"), str(other / "results.h5")], "another run"),
             ([str(run / "results.h5"), str(run / "results.h5")], "evaluated with agents log like"),
             ([str(other)], "no results file beside results.h5 that differs only in --agents"),
             ([str(run / "results.h5")], "takes one run folder or its two results files"),
             ([str(run), str(other)], f"give one run folder or two results files, not {run} and {other}")]
    for argv, want in cases:
        assert across([*argv, "--compare-traffic"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and want in err, err


def _hold(path: Path, scenario_set: str, agents: str) -> None:
    e = Experiment("/runs/r", scenario_set, tuple(sorted(eval_settings(agents, "kinematic").items())), "1")
    w = ResultsWriter(path)
    with w.lock():
        w.prepare([], e.to_attrs())


def test_default_output_per_agents_model(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    assert run_results_path(run, "procedural:test", "idm") == run / "results.h5"  # nothing yet: the run's file
    _hold(run / "results.h5", "procedural:test", "log")
    assert run_results_path(run, "procedural:test", "log") == run / "results.h5"
    assert run_results_path(run, "procedural:test", "idm") == run / "results.agents-idm.h5"
    assert run_results_path(run, "procedural:val", "idm") == run / "results.procedural-val.agents-idm.h5"
    assert run_results_path(run, "procedural:test", "log", 4) == run / "results.rollouts-4.h5"
    _hold(run / "results.agents-idm.h5", "procedural:val", "idm")  # the name holds another experiment: a tag
    got = run_results_path(run, "procedural:test", "idm")
    assert got.name.startswith("results.agents-idm-") and got.suffix == ".h5" and got != run / "results.h5"
    run2 = tmp_path / "r2"
    run2.mkdir()
    _hold(run2 / "results.h5", "procedural:test", "idm")
    assert run_results_path(run2, "procedural:test", "log") == run2 / "results.agents-log.h5"


# --- the comparison against independent computations -----------------------------------------------------------


def _spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _kendall(a, b) -> float:
    s = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in combinations(range(len(a)), 2))
    return s / math.comb(len(a), 2)


distinct = st.lists(st.integers(0, 10_000), min_size=3, max_size=9, unique=True)


@given(distinct.flatmap(lambda a: st.tuples(st.just(a), st.permutations(a))), st.booleans())
@settings(max_examples=80, deadline=None)
def test_compare_rankings_matches_direct_computation(ab, hib):
    a, b = (np.asarray(x, dtype=np.float64) / 1000 for x in ab)
    names = [f"c{i}" for i in range(len(a))]
    sign = 1 if hib else -1
    best_a, best_b = names[int(np.argmax(sign * a))], names[int(np.argmax(sign * b))]
    rules = {"last": (names[-1], 0.0)}
    c = compare_rankings(names, a.tolist(), b.tolist(), metric="m", higher_is_better=hib, rules_a=rules, rules_b=rules)
    assert (c.best_a, c.best_b, c.pick_changes) == (best_a, best_b, best_a != best_b)
    assert c.spearman == pytest.approx(_spearman(a, b), abs=1e-9)
    assert c.kendall == pytest.approx(_kendall(a, b), abs=1e-9)
    assert 0 <= c.spearman_p <= 1 and 0 <= c.kendall_p <= 1
    assert c.rules[0].pick_a == names[-1]


def test_too_few_or_constant_rankings_have_no_correlation():
    c = compare_rankings(["a", "b"], [1.0, 2.0], [2.0, 1.0], metric="m", higher_is_better=True, rules_a={}, rules_b={})
    assert c.spearman is None and c.kendall is None and c.pick_changes
    c = compare_rankings(["a", "b", "c"], [1.0, 1.0, 1.0], [2.0, 1.0, 0.0], metric="m", higher_is_better=True,
                         rules_a={}, rules_b={})
    assert c.spearman is None and c.best_a == "a"
    with pytest.raises(ValueError, match="one value per checkpoint"):
        compare_rankings(["a"], [1.0, 2.0], [1.0], metric="m", higher_is_better=True, rules_a={}, rules_b={})


def test_dashboard_table_lists_both_rankings_and_each_rule():
    pytest.importorskip("streamlit")
    from dashboard.across_view import traffic_frame

    rules = {"last": ("c", 0.5), "random": ("", 0.25)}
    c = compare_rankings(["a", "b", "c"], [0.9, 0.5, 0.4], [0.3, 0.8, 0.2], metric="score", higher_is_better=True,
                         rules_a=rules, rules_b={"last": ("c", 0.6), "random": ("", 0.3)},
                         labels=("agents log", "agents idm"))
    f = traffic_frame(c)
    assert list(f.columns) == ["checkpoint / rule", "agents log", "rank agents log", "agents idm", "rank agents idm"]
    assert f["checkpoint / rule"].tolist()[:3] == ["a", "b", "c"]  # best first under logged traffic
    assert f["rank agents idm"].tolist()[:3] == [2, 1, 3]
    assert f["agents idm"].tolist()[3:] == [0.6, 0.3] and f["checkpoint / rule"].tolist()[3] == "rule last: c | c"


def test_dashboard_across_view_shows_the_traffic_table(tmp_path, monkeypatch):
    pytest.importorskip("streamlit.testing.v1")
    from tests.dashboard_helpers import open_app, page_text

    write_scenes(tmp_path / "scenes.npz", 3, num_steps=30)
    monkeypatch.chdir(tmp_path)
    ev = ["--scenarios", "scenes.npz", *ARGS]
    for i in range(2):
        run = make_run(tmp_path, name=f"seed{i}", episodes=(0, 50, 100), seed=i)
        assert evaluate(["--run", str(run), *ev]) == 0
    assert evaluate(["--run", str(tmp_path / "out" / "seed0"), *ev, "--agents", "idm"]) == 0
    at = open_app(tmp_path / "out", monkeypatch, run="seed0", overlay="seed1", view="Runs overlaid")
    assert not at.exception
    assert "seed0: agents log vs agents idm" in page_text(at)
    tables = [d.value for d in at.dataframe if "checkpoint / rule" in d.value.columns]
    assert len(tables) == 1 and {"agents log", "agents idm"} <= set(tables[0].columns)
    assert "rule last: ep00100.pt | ep00100.pt" in tables[0]["checkpoint / rule"].tolist()
