"""``python -m sim.evaluate`` end to end on a real run layout: resolution, comparison set, resume, bad input."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from policy.checkpoint import read_checkpoint
from sim.evaluate import main
from sim.results.reader import read_checkpoints, read_summary, read_verdict
from sim.results.schema import SCHEMA_VERSION
from tests.sim.evaluation.test_evaluate_support import expected_entropy, make_run, write_scenes

LOG_STDS = [-0.5, -0.9, -0.7, -1.1]  # entropy highest at ep00000, then ep00100, ep00050, ep00150


@pytest.fixture()
def work(tmp_path, monkeypatch):
    """A run under tmp/out (out/latest -> run1) and 5 scenes in tmp/scenes.npz; cwd = tmp."""
    run = make_run(tmp_path, episodes=(0, 50, 100, 150), log_stds=LOG_STDS, rewards=[0.0, 3.0, 1.0, 2.0])
    write_scenes(tmp_path / "scenes.npz", 5, num_steps=30)
    monkeypatch.chdir(tmp_path)
    return run


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


ARGS = ["--scenarios", "scenes.npz", "--no-progress", "--n-resamples", "200", "--batch-size", "4"]


def test_bare_name_evaluates_the_runs_comparison_set(work, capsys):
    assert main(["--ckpt", "best_entropy.pt", "--baseline", "log-replay", *ARGS]) == 0
    out = capsys.readouterr().out
    assert f"best_entropy.pt -> {work / 'best_entropy.pt'}" in out
    assert "whole comparison set" in out and "Verdict (run1):" in out
    res = work / "results.h5"
    stored = {s.attrs["name"]: s for s in read_checkpoints(res)}
    # 8 files, 4 distinct weights: role files merged into their episode file
    assert sorted(stored) == ["ep00000.pt", "ep00050.pt", "ep00100.pt", "ep00150.pt", "log-replay"]
    assert set(stored["ep00000.pt"].roles) == {"candidate", "best_entropy", "bc"}
    assert set(stored["ep00050.pt"].roles) == {"candidate", "best_reward"}
    assert set(stored["ep00150.pt"].roles) == {"candidate", "last"}
    for j, name in enumerate(["ep00000.pt", "ep00050.pt", "ep00100.pt", "ep00150.pt"]):
        assert stored[name].attrs["entropy"] == pytest.approx(expected_entropy(LOG_STDS[j]), abs=1e-4)
        assert len(stored[name].rows.scenario_ids) == 5
    np.testing.assert_array_equal(stored["log-replay"].rows.metrics["ade"], 0.0)
    # the stored verdict is the one recomputed from the stored rows (baselines excluded)
    v = read_verdict(res)
    cps = [stored[n] for n in ["ep00000.pt", "ep00050.pt", "ep00100.pt", "ep00150.pt"]]
    means = np.array([s.rows.metrics["score"].mean() for s in cps])
    from scipy import stats

    ent = [s.attrs["entropy"] for s in cps]
    rho = stats.spearmanr(ent, means).statistic
    got = v["correlations"]["score"]["spearman"]
    assert (got is None and math.isnan(rho)) or got == pytest.approx(rho)
    assert v["n_checkpoints"] == 4 and v["rules"]["max_entropy"]["name"] == "ep00000.pt"
    assert v["rules"]["best_reward"]["name"] == "ep00050.pt" and v["rules"]["last"]["name"] == "ep00150.pt"
    s = read_summary(res)
    assert s.schema_version == SCHEMA_VERSION and s.attrs["backend"] == "kinematic"
    assert s.attrs["run_dir"] == str(work) and s.attrs["config"]["ckpt"] == ["best_entropy.pt"]


def test_resume_skips_done_pairs_and_extends_to_new_scenes(work, capsys):
    assert main(["--run", str(work), *ARGS, "--max-scenarios", "3"]) == 0
    first = {s.key: s for s in read_checkpoints(work / "results.h5", with_traj=True)}
    assert all(len(s.rows.scenario_ids) == 3 for s in first.values())
    capsys.readouterr()
    assert main(["--run", str(work), *ARGS]) == 0
    out = capsys.readouterr().out
    assert "Resuming: 12 (checkpoint, scenario) pairs" in out
    second = {s.key: s for s in read_checkpoints(work / "results.h5", with_traj=True)}
    assert second.keys() == first.keys()
    for k, s in second.items():
        assert len(s.rows.scenario_ids) == 5
        assert s.rows.scenario_ids[:3] == first[k].rows.scenario_ids
        np.testing.assert_array_equal(s.rows.metrics["ade"][:3], first[k].rows.metrics["ade"])
    capsys.readouterr()
    assert main(["--run", str(work), *ARGS]) == 0
    assert "Resuming: 20 (checkpoint, scenario) pairs" in capsys.readouterr().out


def test_only_evaluates_just_the_given_files(work, capsys):
    assert main(["--ckpt", "checkpoints/ep0005*.pt", "--only", "--out", "only.h5", *ARGS]) == 0
    assert [s.attrs["name"] for s in read_checkpoints(work.parent.parent / "only.h5")] == ["ep00050.pt"]
    assert "whole comparison set" not in capsys.readouterr().out


def _corrupt(work: Path) -> list[str]:
    bad = work / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 100)
    return ["--ckpt", str(bad), "--only"]


def _other_architecture(work: Path) -> list[str]:
    obj = read_checkpoint(work / "checkpoints" / "ep00050.pt")
    obj["config"]["policy"]["hidden"] = 64  # weights are 32 wide
    torch.save(obj, work / "other.pt")
    return ["--ckpt", str(work / "other.pt"), "--only"]


def _empty_folder(work: Path) -> list[str]:
    (work.parent.parent / "empty").mkdir()
    return ["--ckpt", "last.pt", "--scenarios", "empty"]


def _newer_schema(work: Path) -> list[str]:
    with h5py.File(work / "results.h5", "a") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    return ["--ckpt", "last.pt"]


def _unwritable(work: Path) -> list[str]:
    (work.parent.parent / "blocker").write_text("a file, not a folder")
    return ["--ckpt", "last.pt", "--out", "blocker/results.h5"]


BAD = {
    "missing": lambda w: ["--ckpt", "nope.pt"],
    "corrupt": _corrupt,
    "other-architecture": _other_architecture,
    "empty-folder": _empty_folder,
    "unknown-suite": lambda w: ["--ckpt", "last.pt", "--scenarios", "no-such-suite:test"],
    "unwritable": _unwritable,
    "newer-schema": _newer_schema,
    "no-input": lambda w: [],
    "unknown-metric": lambda w: ["--ckpt", "last.pt", "--metric", "speed"],
    "carla-unreachable": lambda w: ["--ckpt", "last.pt", "--backend", "carla", "--carla-host", "127.0.0.1",
                                    "--carla-port", "1"],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_nonzero_and_loses_nothing(work, capsys, case):
    assert main(["--run", str(work), *ARGS, "--max-scenarios", "2"]) == 0
    res = work / "results.h5"
    capsys.readouterr()
    args = BAD[case](work)
    before = _digest(res)
    argv = [a for a in ARGS if a not in ("scenes.npz",)] if "--scenarios" in args else ARGS
    if "--scenarios" in args:
        argv = [a for a in argv if a != "--scenarios"]
    code = main([*args, *argv])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    assert _digest(res) == before
    assert not list(work.glob(".results.h5.*.tmp"))


def test_ckpt_resolution_prefers_the_working_directory_then_latest(work, tmp_path):
    from sim.evaluation.candidates import resolve_ckpt, run_dir_of
    from sim.results.errors import EvaluationError

    said = []
    (work.parent.parent / "last.pt").write_bytes((work / "last.pt").read_bytes())
    assert resolve_ckpt(["last.pt"], log=said.append) == [Path("last.pt")] and not said  # ./last.pt wins
    assert resolve_ckpt(["bc.pt"], log=said.append) == [Path("out/latest/bc.pt")]
    assert said == [f"bc.pt -> {work / 'bc.pt'}"]
    assert resolve_ckpt(["ep00100.pt"], log=said.append) == [Path("out/latest/checkpoints/ep00100.pt")]
    assert [p.name for p in resolve_ckpt(["checkpoints/ep*.pt"], log=said.append)] == [
        "ep00000.pt", "ep00050.pt", "ep00100.pt", "ep00150.pt"]
    assert run_dir_of(Path("out/latest/checkpoints/ep00100.pt")) == work
    assert run_dir_of(Path("last.pt")) is None
    with pytest.raises(EvaluationError, match="nope"):
        resolve_ckpt(["nope*.pt"], log=said.append)
    # --run R: bare names resolve in R before out/latest, and the error names both folders
    other = tmp_path / "other_run"
    (other / "checkpoints").mkdir(parents=True, exist_ok=True)
    (other / "checkpoints" / "ep00100.pt").write_bytes((work / "checkpoints" / "ep00100.pt").read_bytes())
    assert resolve_ckpt(["ep00100.pt"], log=said.append, run=other) == [other / "checkpoints" / "ep00100.pt"]
    assert resolve_ckpt(["bc.pt"], log=said.append, run=other) == [Path("out/latest/bc.pt")]
    with pytest.raises(EvaluationError, match=f"looked in ./ and {other}/, out/latest/"):
        resolve_ckpt(["ep99999.pt"], log=said.append, run=other)


@pytest.mark.carla
def test_carla_backend_end_to_end(work):
    """Needs a CARLA server (CARLA_HOST, CARLA_PORT): the same CLI, rows stored with backend carla."""
    import os

    host, port = os.environ["CARLA_HOST"], os.environ.get("CARLA_PORT", "2000")
    assert main(["--ckpt", "last.pt", "--only", "--baseline", "log-replay", "--backend", "carla", "--carla-host", host,
                 "--carla-port", port, *ARGS, "--max-scenarios", "2"]) == 0
    stored = {s.attrs["name"]: s for s in read_checkpoints(work / "results.h5")}
    assert set(stored) == {"ep00150.pt", "log-replay"}
    for s in stored.values():
        assert s.attrs["backend"] == "carla" and len(s.rows.scenario_ids) == 2
        assert np.isfinite(s.rows.metrics["ade"]).all()
    assert read_summary(work / "results.h5").attrs["backend"] == "carla"


def test_unusable_scene_files_are_skipped_listed_and_stored_or_fatal_with_strict(work, capsys):
    folder = work.parent.parent / "logs"
    folder.mkdir()
    write_scenes(folder / "good.npz", 3, num_steps=30)
    (folder / "broken.json").write_text("{not json")
    out = work.parent.parent / "r.h5"
    assert main(["--baseline", "log-replay", "--scenarios", str(folder), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Skipped scenes (1)" in printed and "broken.json" in printed
    s = read_summary(out)
    assert len(s.scenarios) == 3 and [(Path(r.file).name, r.scene_id) for r in s.skipped] == [("broken.json", "")]
    assert s.skipped[0].reason and "\n" not in s.skipped[0].reason
    before = _digest(out)
    code = main(["--baseline", "log-replay", "--scenarios", str(folder), "--out", str(out), "--strict"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "broken.json" in err[0] and "--strict" in err[0]
    assert _digest(out) == before  # nothing lost, nothing rewritten


def test_a_metric_undefined_on_every_scene_is_said_not_a_crash(work, capsys):
    """--metric traffic_light_compliance on scenes without traffic lights (NaN everywhere): the call finishes, the
    verdict says the metric is not applicable (not "nothing to compare", no rule "not evaluated yet"), the per-type
    table says so, and the training signals are not judged on it."""
    assert main(["--run", str(work), *ARGS, "--metric", "traffic_light_compliance"]) == 0
    out = capsys.readouterr()
    text = " ".join((out.out + out.err).split())  # rich wraps lines
    assert "Traceback" not in text
    v = read_verdict(work / "results.h5")
    assert v["best"] is None and v["n_checkpoints"] == 4
    assert v["sentence"].startswith("traffic_light_compliance is not applicable on any of the 5 scenes")
    assert v["sentence"] in text and "not evaluated yet" not in text
    assert "Training signals not judged: --metric traffic_light_compliance is not applicable" in text


def test_a_subset_call_says_whose_verdict_is_stored(work, capsys):
    """A call on fewer scenes than the file holds (--max-scenarios) stores a verdict on its own scenes: the CLI
    says so, and the dashboard warns that the stored verdict judges 2 of the 5 scenes its tables show."""
    from dashboard.data import list_runs, load_run, verdict_scope_line

    assert main(["--run", str(work), *ARGS]) == 0
    assert verdict_scope_line(read_summary(work / "results.h5")) is None
    capsys.readouterr()
    assert main(["--run", str(work), *ARGS, "--max-scenarios", "2"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "note: the verdict judges this call's 2 scenes; results.h5 holds 5 for every checkpoint" in out
    summary = read_summary(work / "results.h5")
    assert summary.verdict["n_scenarios"] == 2
    line = verdict_scope_line(summary)
    assert "judges 2 of the 5 scenes every checkpoint has" in line
    (ref,) = [r for r in list_runs(work.parent) if r.path == work]
    assert ("warning", line) in load_run(ref).problems
    assert main(["--run", str(work), *ARGS]) == 0  # the whole set again: rows reused, verdict on all 5
    assert verdict_scope_line(read_summary(work / "results.h5")) is None


def test_a_run_that_moved_on_updates_the_stored_roles(tmp_path, monkeypatch, capsys):
    """Evaluated at episode 50, trained on to 100 (a resumed training), evaluated again into the same file: the
    pairs already stored are reused, but ``last`` and ``best_reward`` are ep00100's now, in the file and the
    verdict, as a fresh ``--out`` holds them; an ``--only`` call on the file leaves the run's roles alone."""
    write_scenes(tmp_path / "scenes.npz", 3, num_steps=30)
    monkeypatch.chdir(tmp_path)
    run = make_run(tmp_path, episodes=(0, 50))
    assert main(["--run", str(run), *ARGS]) == 0
    make_run(tmp_path, episodes=(0, 50, 100))  # the same first two checkpoints, then one more; roles move
    capsys.readouterr()
    assert main(["--run", str(run), *ARGS]) == 0
    out = capsys.readouterr().out
    assert "Resuming: 6 (checkpoint, scenario) pairs" in out and "other roles or files" in out
    assert main(["--run", str(run), *ARGS, "--out", "fresh.h5"]) == 0

    def picks(path: Path) -> dict[str, str]:
        return {r: p.get("name") for r, p in read_verdict(path)["rules"].items() if isinstance(p, dict)}

    def roles(path: Path) -> dict[str, tuple[str, ...]]:
        return {s.record.name: tuple(sorted(s.roles)) for s in read_checkpoints(path)}

    assert picks(run / "results.h5")["last"] == picks(run / "results.h5")["best_reward"] == "ep00100.pt"
    assert picks(run / "results.h5") == picks(tmp_path / "fresh.h5")
    assert roles(run / "results.h5") == roles(tmp_path / "fresh.h5")
    assert not any("last" in r for n, r in roles(run / "results.h5").items() if n != "ep00100.pt")
    capsys.readouterr()
    assert main(["--run", str(run), "--only", "--ckpt", "checkpoints/ep00050.pt", *ARGS]) == 0
    assert roles(run / "results.h5") == roles(tmp_path / "fresh.h5")
    assert "other roles or files" not in capsys.readouterr().out
