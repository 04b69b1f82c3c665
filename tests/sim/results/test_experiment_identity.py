"""One experiment per results file: the identity's one home (``sim/results/identity.py``), the refusals of
``sim.evaluate`` and ``sim.across``, the per-set files and the dashboard's loader, end to end through the CLIs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.results.errors import EvaluationError
from sim.results.identity import (
    COMPARED,
    Experiment,
    canonical_scenario_set,
    check_experiment,
    difference,
    mix_notes,
    results_files,
    results_name,
    run_results_path,
    set_slug,
)
from sim.results.reader import read_experiment, read_summary
from sim.results.run_folder import RESULTS_NAME
from sim.results.schema import CheckpointAttrs, CheckpointRows, parts_dir
from sim.results.store import ResultsWriter
from sim.selection.across import AcrossError, RulePick, SeedResult, compare_runs

# --- the comparison against a field-by-field oracle ---------------------------------------------------------------

_text = st.sampled_from(["", "a", "b"])
_settings = st.one_of(st.just(()), st.fixed_dictionaries(
    {"agents": st.sampled_from(["log", "idm"]), "backend": st.sampled_from(["kinematic", "carla"])}).map(
    lambda d: tuple(sorted(d.items()))))
experiments = st.builds(Experiment, source=_text, scenario_set=_text, settings=_settings,
                        metrics_version=st.sampled_from(["", "1", "2"]))


def _oracle_same(a: Experiment, b: Experiment) -> bool:
    """Independent statement of the rule: recorded values equal, an unrecorded one matches anything."""
    plain = all(not x or not y or x == y for x, y in ((a.source, b.source), (a.scenario_set, b.scenario_set),
                                                      (a.metrics_version, b.metrics_version)))
    return plain and (not a.settings or not b.settings or dict(a.settings) == dict(b.settings))


@settings(max_examples=300, deadline=None)
@given(experiments, experiments)
def test_difference_agrees_with_the_field_by_field_rule_and_is_symmetric(a, b):
    d = difference(a, b)
    assert (d is None) == _oracle_same(a, b)
    assert (difference(b, a) is None) == (d is None)
    assert difference(a, a) is None
    if d is not None:
        assert d.field in COMPARED and d.stored != d.given
        back = difference(b, a)
        assert (back.field, back.stored, back.given) == (d.field, d.given, d.stored)


@settings(max_examples=100, deadline=None)
@given(experiments)
def test_attributes_round_trip_through_the_store_and_the_reader(tmp_path_factory, e):
    out = tmp_path_factory.mktemp("rt") / RESULTS_NAME
    w = ResultsWriter(out)
    with w.lock():
        w.prepare([], e.to_attrs())
    back, notes = read_experiment(out)
    assert notes == ()
    assert back == Experiment(e.source, e.scenario_set, e.settings, e.metrics_version, e.scenario_digest)
    assert back.settings_digest == e.settings_digest


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=30).filter(lambda s: s.strip() and "\x00" not in s))
def test_set_file_names_are_plain_distinct_from_results_h5_and_listed(tmp_path_factory, spec):
    name = results_name(spec)
    assert name != RESULTS_NAME and name.startswith("results.") and name.endswith(".h5")
    assert "/" not in name and all(c.isalnum() or c in "-_." for c in name)
    folder = tmp_path_factory.mktemp("names")
    (folder / name).write_bytes(b"")
    (folder / RESULTS_NAME).write_bytes(b"")
    parts_dir(folder / RESULTS_NAME).mkdir()
    assert results_files(folder) == [folder / RESULTS_NAME, folder / name]


def test_slugs_and_canonical_sets(tmp_path, monkeypatch):
    assert set_slug("procedural:val") == "procedural-val"
    assert set_slug("/data/waymo_logs/") == "waymo_logs" and set_slug("scenes.npz") == "scenes"
    assert canonical_scenario_set("procedural") == canonical_scenario_set("procedural:test") == "procedural:test"
    (tmp_path / "s.npz").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert canonical_scenario_set("s.npz") == str((tmp_path / "s.npz").resolve())
    assert canonical_scenario_set("") == ""


def _file(path: Path, attrs: dict) -> None:
    w = ResultsWriter(path)
    with w.lock():
        w.prepare([], attrs)


def test_run_results_path_keeps_one_set_per_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    a, b = tmp_path / "a.npz", tmp_path / "logs"
    a.write_bytes(b"")
    b.mkdir()
    assert run_results_path(run, str(a)) == run / RESULTS_NAME  # nothing yet: the run's file
    _file(run / RESULTS_NAME, Experiment(str(run), str(a.resolve())).to_attrs())
    assert run_results_path(run, str(a)) == run / RESULTS_NAME  # the same set: resume there
    assert run_results_path(run, str(b)) == run / "results.logs.h5"  # another set: its own file
    _file(run / "results.logs.h5", Experiment(str(run), "elsewhere/logs").to_attrs())  # same name, other set
    other = run_results_path(run, str(b))
    assert other.parent == run and other.name.startswith("results.logs-") and other.name.endswith(".h5")


def test_check_experiment_refuses_each_difference_in_one_line_naming_the_out(tmp_path):
    out = tmp_path / "s1" / RESULTS_NAME
    (tmp_path / "s0").mkdir()
    stored = Experiment(str(tmp_path / "s1"), "procedural:test", (("agents", "log"),), "1")
    attrs = stored.to_attrs()
    cases = {"run": (Experiment(str(tmp_path / "s0"), "procedural:test", stored.settings, "1"),
                     str(tmp_path / "s0" / RESULTS_NAME)),
             "scenario set": (Experiment(stored.source, "/x/logs", stored.settings, "1"), "results.logs.h5"),
             "metric version": (Experiment(stored.source, "procedural:test", stored.settings, "2"),
                                "results-metrics-v2.h5"),
             "agents": (Experiment(stored.source, "procedural:test", (("agents", "idm"),), "1"), "results-idm.h5")}
    for word, (call, suggested) in cases.items():
        with pytest.raises(EvaluationError) as e:
            check_experiment(out, attrs, True, call, {})
        line = str(e.value)
        assert "\n" not in line and word in line and f"--out {suggested}" in line.replace(str(out.parent) + "/", "")
    check_experiment(out, attrs, True, Experiment("", "procedural:test", stored.settings, "1"), {})  # baselines
    # --rollouts unset in the stored file (None) reads as the command line spells it: 0
    unset = Experiment(stored.source, "procedural:test", (("agents", "log"), ("rollouts", None)), "1")
    call = Experiment(stored.source, "procedural:test", (("agents", "log"), ("rollouts", 2)), "1")
    with pytest.raises(EvaluationError, match="holds results with rollouts=0, this call has rollouts=2; .*"
                                              "results-rollouts-2.h5"):
        check_experiment(out, unset.to_attrs(), True, call, {})


# --- files of older tools that already mix ------------------------------------------------------------------------

def _legacy(path: Path, run_dirs: list[Path], suite: str, first_suite: str) -> None:
    """A file as the tool before the experiment identity wrote it (run_dir / suite of the last call)."""
    from tests.sim.evaluation.test_evaluate_support import straight_scene

    w = ResultsWriter(path)
    scene = straight_scene(0, num_steps=12, init_step=2)
    settings = {"agents": "log", "backend": "kinematic", "metrics_version": 1}
    root = {"backend": "kinematic", "suite": suite, "run_dir": str(run_dirs[-1]), "settings": json.dumps(settings),
            "config": json.dumps({"scenarios": first_suite, "agent": "own"})}
    rows = CheckpointRows((scene.id,), {"score": np.array([0.5])}, np.zeros((1, 12, 4), np.float32))
    with w.lock():
        w.prepare([], root)
        for i, rd in enumerate(run_dirs):
            attrs = CheckpointAttrs(name=f"ep{i}.pt", kind="checkpoint", path=str(rd / "checkpoints" / f"ep{i}.pt"),
                                    roles=("candidate",), episode=i)
            w.commit(f"{i:016x}", attrs, rows, [scene], root)


def test_older_files_that_mix_runs_or_sets_are_read_and_flagged(tmp_path):
    mixed_runs, mixed_sets, clean = tmp_path / "r.h5", tmp_path / "s.h5", tmp_path / "c.h5"
    _legacy(mixed_runs, [tmp_path / "s1", tmp_path / "s0"], "procedural:test", "procedural:test")
    _legacy(mixed_sets, [tmp_path / "s1"], "/data/logs", "procedural:test")
    _legacy(clean, [tmp_path / "s1", tmp_path / "s1"], "procedural", "procedural:test")
    for path, word in ((mixed_runs, "2 runs"), (mixed_sets, "two scenario sets")):
        s = read_summary(path)
        assert len(s.checkpoints) >= 1 and len(s.warnings) == 1 and word in s.warnings[0]
        assert read_experiment(path)[1] and not read_experiment(path)[0].recorded
    assert read_summary(clean).warnings == ()
    from dashboard import data

    run = tmp_path / "runs" / "s1"
    run.mkdir(parents=True)
    _legacy(run / RESULTS_NAME, [tmp_path / "s1", tmp_path / "s0"], "procedural:test", "procedural:test")
    shown = data.load_run(next(r for r in data.list_runs(run.parent) if r.name == "s1"))
    assert [m for lvl, m in shown.problems if lvl == "warning" and "2 runs" in m and "not one experiment" in m]
    call = Experiment(str(tmp_path / "s1"), "procedural:test", (("agents", "log"),), "1")
    for path in (mixed_runs, mixed_sets):  # nothing more is added to a file that already pools
        from sim.results.reader import read_root_attrs

        attrs, has_rows = read_root_attrs(path)
        with pytest.raises(EvaluationError, match="pool.*give --out "):
            check_experiment(path, attrs, has_rows, call, {}, read_experiment(path)[1])
    assert mix_notes({"experiment_source": "x", "suite": "b", "config": {"scenarios": "a"}},
                     [("checkpoint", "/a/x.pt"), ("checkpoint", "/b/x.pt")]) == ()


def test_across_refuses_another_metric_version_and_an_older_mixed_file(tmp_path, capsys):
    def seed(run, version):
        return SeedResult(run=run, metric="score", n_checkpoints=2, scenario_digest="d", settings_digest="c",
                          picks={"last": RulePick("ep1", 1, 0.0)},
                          experiment=Experiment(run, "procedural:test", (), version))

    compare_runs([seed("s0", "1"), seed("s1", "1")], n_resamples=50)
    with pytest.raises(AcrossError, match=r"s1: evaluated with another metric version \(2 vs 1\) than s0;"):
        compare_runs([seed("s0", "1"), seed("s1", "2")], n_resamples=50)
    from sim.across import main

    _legacy(tmp_path / "mixed.h5", [tmp_path / "s1", tmp_path / "s0"], "procedural:test", "procedural:test")
    capsys.readouterr()
    assert main([str(tmp_path / "mixed.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 runs" in err and "python -m sim.evaluate --run" in err


# --- the two flows of issue 21, end to end through the CLIs -------------------------------------------------------

EV = ["--no-progress", "--n-resamples", "50", "--batch-size", "4"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def work(tmp_path, monkeypatch):
    from tests.sim.evaluation.test_evaluate_support import make_run, write_scenes

    s0 = make_run(tmp_path, episodes=(0, 50), name="s0", seed=0)
    s1 = make_run(tmp_path, episodes=(0, 50), name="s1", seed=1, speeds=[9.0, 7.0])  # out/latest -> s1
    write_scenes(tmp_path / "scenes.npz", 3, num_steps=25)
    (tmp_path / "logs").mkdir()
    write_scenes(tmp_path / "logs" / "real.npz", 2, num_steps=25, start=20)
    monkeypatch.chdir(tmp_path)
    return s0, s1


def test_another_scenario_set_gets_its_own_file_and_the_dashboard_never_pools_them(work, capsys):
    from dashboard import data
    from sim.evaluate import main

    _, s1 = work
    assert main(["--ckpt", "best_entropy.pt", "--scenarios", "scenes.npz", *EV]) == 0
    first = _sha(s1 / RESULTS_NAME)
    capsys.readouterr()
    assert main(["--ckpt", "best_entropy.pt", "--scenarios", "logs", *EV]) == 0
    printed = capsys.readouterr().out
    own = s1 / "results.logs.h5"
    assert f"own results file: {own}" in " ".join(printed.split())
    assert _sha(s1 / RESULTS_NAME) == first  # the first set's file is not touched
    ref = next(r for r in data.list_runs(s1.parent) if r.name == "s1")
    sets = data.result_sets(ref)
    assert [s.path for s in sets] == [s1 / RESULTS_NAME, own]
    assert "logs" in sets[1].label and "scenes" in sets[0].label
    ids = []
    for s, n in zip(sets, (3, 2), strict=True):
        run = data.load_run(ref, s.path.name)
        assert run.results_path == s.path and not [m for lvl, m in run.problems if lvl == "warning" and "pool" in m]
        assert {c.n for c in run.summary.checkpoints.values()} == {n}  # each set alone, never pooled
        ids.append({i for c in run.summary.checkpoints.values() for i in c.scenario_id})
    assert not ids[0] & ids[1]
    _dashboard_switches_sets(s1.parent, [3, 2])
    # the explicit --out of the first set's file with the other set is refused, naming the set's own file
    capsys.readouterr()  # (Streamlit's note that its cache runs without a server)
    assert main(["--run", str(s1), "--scenarios", "logs", "--out", str(s1 / RESULTS_NAME), *EV]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--out {own}" in err and "scenario set" in err
    assert _sha(s1 / RESULTS_NAME) == first


def _dashboard_switches_sets(runs_dir: Path, sizes: list[int]) -> None:
    """The app's scenario-set picker: one file at a time, the checkpoint table's scene counts are that set's."""
    import sys

    from streamlit.testing.v1 import AppTest

    from tests.dashboard_helpers import APP

    argv = sys.argv
    sys.argv = ["app.py", "--runs-dir", str(runs_dir)]
    try:
        at = AppTest.from_file(APP, default_timeout=90)
        at.query_params["run"], at.query_params["view"] = "s1", "Checkpoint table"
        at.run()
        picker = next(w for w in at.selectbox if w.label == "scenario set")
        names = [RESULTS_NAME, "results.logs.h5"]
        assert picker.options == ["scenes (results.h5)", "logs (results.logs.h5)"] and picker.value == RESULTS_NAME
        for name, n in zip(names, sizes, strict=True):
            next(w for w in at.selectbox if w.label == "scenario set").set_value(name)
            at.run()
            assert not at.exception
            assert set(at.dataframe[0].value["n"]) == {n}
    finally:
        sys.argv = argv


def test_another_runs_results_are_refused_untouched_naming_the_out_to_use(work, capsys):
    from sim.across import main as across
    from sim.evaluate import main

    s0, s1 = work
    assert main(["--run", str(s1), "--scenarios", "scenes.npz", *EV]) == 0
    target = s1 / RESULTS_NAME
    before = (_sha(target), sorted(p.name for p in parts_dir(target).iterdir()))
    capsys.readouterr()
    assert main(["--run", str(s0), "--scenarios", "scenes.npz", "--out", str(target), *EV]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"--out {s0.resolve() / RESULTS_NAME}" in err and "run" in err
    assert (_sha(target), sorted(p.name for p in parts_dir(target).iterdir())) == before
    assert not (s0 / RESULTS_NAME).exists()
    # the run's own file then, and across two runs evaluated alike
    assert main(["--run", str(s0), "--scenarios", "scenes.npz", "--out", str(s0.resolve() / RESULTS_NAME), *EV]) == 0
    assert read_experiment(target)[0].source == str(s1.resolve())
    assert read_experiment(s0 / RESULTS_NAME)[0].source == str(s0.resolve())
    capsys.readouterr()
    assert across([str(s0), str(s1), "--n-resamples", "50"]) == 0


def test_across_names_every_difference_in_its_one_line():
    """Runs that differ in scene set and in a setting: one line naming both (a user fixing only the first would be
    refused again), the setting by name as the command line spells it (--rollouts unset is 0)."""
    def seed(run, digest, rollouts):
        settings = (("agents", "log"),) + ((("rollouts", rollouts),) if rollouts is not None else ())
        return SeedResult(run=run, metric="score", n_checkpoints=2, scenario_digest=digest,
                          settings_digest=str(rollouts), picks={"last": RulePick("ep1", 1, 0.0)},
                          experiment=Experiment(run, "procedural:test", settings, "3"))

    with pytest.raises(AcrossError) as e:
        compare_runs([seed("s0", "d12", None), seed("s1", "d54", 2)], n_resamples=50)
    assert str(e.value) == ("s1: evaluated with another scenario set (d54 vs d12) and other evaluation settings "
                            "(rollouts 2 vs 0) than s0; evaluate both runs the same way")


def test_the_out_a_refusal_suggests_pastes_as_one_argument(tmp_path):
    """A run folder with a space: the suggested ``--out`` is shell-quoted, so pasting it gives one argument."""
    import shlex

    run = tmp_path / "my runs" / "s 1"
    out = run / RESULTS_NAME
    stored = Experiment(str(run), "procedural:test", (("agents", "log"),), "1")
    call = Experiment(str(run), "procedural:test", (("agents", "idm"),), "1")
    with pytest.raises(EvaluationError) as e:
        check_experiment(out, stored.to_attrs(), True, call, {})
    words = shlex.split(str(e.value).split("give ", 1)[1])
    assert words == ["--out", str(run / "results-idm.h5")]
