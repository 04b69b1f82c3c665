"""Small walls a new user meets (issue 25, item 6): each a one-line hint or fix, checked through the real command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from policy.checkpoint import CheckpointError, read_checkpoint
from scenarios.check import check
from scenarios.formats import ImportOptions
from sim.evaluate import main
from sim.evaluation.plugins import AgentError, load_agent
from sim.results.reader import read_summary
from sim.selection.report import PIPED_WIDTH, console_width
from tests.sim.evaluation.test_evaluate_support import make_run, write_scenes

REPO = Path(__file__).resolve().parents[3]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def sb3_zip(tmp_path_factory) -> Path:
    """A real SB3 checkpoint (.zip), saved by stable-baselines3 itself."""
    sb3 = pytest.importorskip("stable_baselines3")
    out = tmp_path_factory.mktemp("sb3") / "rl_model_64_steps.zip"
    sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0, device="cpu").save(out)
    return out


def test_an_sb3_zip_without_agent_sb3_says_use_it(sb3_zip, tmp_path, capsys):
    run = tmp_path / "sb3run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(sb3_zip, run / "checkpoints" / sb3_zip.name)
    (run / "config.json").write_text("{}")  # a run marker: the folder looks like a run
    write_scenes(tmp_path / "scenes.npz", 2, num_steps=30)
    common = ["--scenarios", str(tmp_path / "scenes.npz"), "--no-progress", "--out", str(tmp_path / "r.h5")]
    assert main(["--run", str(run), *common]) == 2
    line = _one_error_line(capsys)
    assert "no checkpoints (*.pt)" in line and "use --agent sb3" in line and str(run) in line
    # the file itself, outside any run
    assert main(["--ckpt", str(sb3_zip), *common]) == 2
    line = _one_error_line(capsys)
    assert str(sb3_zip.resolve()) in line and "use --agent sb3" in line
    assert not (tmp_path / "r.h5").exists()


def test_repeated_scene_ids_name_both_files(tmp_path, capsys):
    """A repeated scene id is one bad scene: the first is evaluated, the repeat skipped and listed with both files
    (in the log and the results file); --strict makes it an error that writes nothing."""
    data = tmp_path / "data"
    data.mkdir()
    write_scenes(data / "a.npz", 2, num_steps=30)
    write_scenes(data / "b.npz", 2, num_steps=30, start=1)  # scene 1 is in both
    run = make_run(tmp_path)
    common = ["--run", str(run), "--scenarios", str(data), "--no-progress", "--only", "--baseline", "log-replay"]
    assert main([*common, "--strict", "--out", str(tmp_path / "strict.h5")]) == 2
    line = _one_error_line(capsys)
    assert str(data / "a.npz") in line and str(data / "b.npz") in line and "rename or remove one" in line
    assert not (tmp_path / "strict.h5").exists()
    assert main([*common, "--out", str(tmp_path / "r.h5")]) == 0
    out = capsys.readouterr()
    summary = read_summary(tmp_path / "r.h5")
    ids = [s.id for s in summary.scenarios]
    assert len(ids) == 3 and len(set(ids)) == 3  # scenes 0 and 1 of a.npz, scene 2 of b.npz
    (skip,) = summary.skipped
    assert skip.file == str(data / "b.npz") and skip.scene_id in ids
    assert f"is in both {data / 'a.npz'} and {data / 'b.npz'}" in skip.reason and skip.reason in out.out + out.err
    # the data report flags them (text and JSON), naming both files
    rep = check(data, ImportOptions(), progress=False)
    (dup,) = rep["duplicates"]
    assert dup["files"] == [str(data / "a.npz"), str(data / "b.npz")]
    assert f"scene id {dup['id']!r} is in both {data / 'a.npz'} and {data / 'b.npz'}" in rep["text"]
    assert "repeated scene ids" in rep["text"]


def test_console_width_when_piped(monkeypatch, tmp_path):
    monkeypatch.delenv("COLUMNS", raising=False)
    with open(tmp_path / "f.txt", "w") as f:
        assert console_width(f) == PIPED_WIDTH
        monkeypatch.setenv("COLUMNS", "100")
        assert console_width(f) == 100
        monkeypatch.setenv("COLUMNS", "wide")
        assert console_width(f) == PIPED_WIDTH
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        assert tty.isatty() and console_width(tty) is None  # a terminal: rich measures it
    os.close(master)


def test_piped_tables_fit_the_width_uncropped(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    run = make_run(tmp_path)
    write_scenes(tmp_path / "scenes.npz", 3, num_steps=30)
    assert main(["--run", str(run), "--scenarios", str(tmp_path / "scenes.npz"), "--no-progress",
                 "--n-resamples", "20", "--out", str(tmp_path / "r.h5")]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [ln for ln in lines if ln.startswith("│")]
    assert rows and all(ln.rstrip().endswith("│") for ln in rows), "a table was cropped"
    table = [ln for ln in lines if ln[:1] in "┏┃┡│└"]
    assert max(len(ln.rstrip()) for ln in table) <= PIPED_WIDTH
    # log lines are not wrapped: the whole "Run ... -> results file" line is one line
    assert any(ln.startswith("Run run1: evaluating") and ln.rstrip().endswith(str(tmp_path / "r.h5")) for ln in lines)


@pytest.fixture
def damaged(tmp_path) -> dict[str, Path]:
    from examples.custom_agent import _net

    good = tmp_path / "weights.pt"
    torch.save(_net().state_dict(), good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:3000])
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    return {"good": good, "cut": cut, "text": text}


INTERNAL = ("PytorchStreamReader", "miniz", "If you are seeing this error")


@pytest.mark.parametrize(("name", "why"), [("cut", "truncated or corrupt"), ("text", "not a PyTorch file"),
                                           ("good", "a torch.save file, not a TorchScript module")])
def test_torchscript_errors_are_one_clean_line(damaged, name, why):
    with pytest.raises(AgentError) as e:
        load_agent("torchscript", str(damaged[name]))
    msg = str(e.value)
    assert msg.startswith(str(damaged[name])) and why in msg and "\n" not in msg
    assert not any(t in msg for t in INTERNAL), msg


def test_init_checkpoint_errors_are_one_clean_line_before_the_scenes_load(damaged, tmp_path):
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(damaged["cut"])
    assert "truncated or corrupt" in str(e.value) and not any(t in str(e.value) for t in INTERNAL)
    r = subprocess.run([sys.executable, "-m", "training.train", "--init", str(damaged["cut"]), "--episodes", "2",
                        "--scenarios", "procedural-small", "--out-dir", str(tmp_path / "run"), "--no-progress"],
                       cwd=REPO, capture_output=True, text=True, timeout=170)
    err = r.stderr.strip().splitlines()
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert err[-1] == f"error: {damaged['cut']}: not a readable checkpoint (truncated or corrupt: not a complete zip " \
                      "archive)"
    assert "generating" not in r.stderr  # refused before any scene is generated


def test_pip_metadata_has_an_spdx_license_and_no_deprecation_block(tmp_path):
    """setuptools builds the metadata with ``License-Expression`` and without the ``project.license`` warning."""
    pytest.importorskip("setuptools")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    code = "from setuptools import build_meta as b; print(b.prepare_metadata_for_build_wheel('meta'))"
    (tmp_path / "meta").mkdir()
    r = subprocess.run([sys.executable, "-W", "default", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "project.license" not in r.stdout + r.stderr and "SetuptoolsDeprecationWarning" not in r.stderr
    meta = (tmp_path / "meta" / r.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in meta
    pyproject = (REPO / "pyproject.toml").read_text()
    assert json.dumps("Apache-2.0") in pyproject  # the SPDX string form, not a table


def test_a_scenario_cache_that_is_not_a_folder_is_said_and_the_scenes_still_load(tmp_path, monkeypatch):
    """``--scenario-cache`` naming a file: the suite is generated in memory, and the log says why."""
    from scenarios import suites
    from sim.evaluation.config import EvalConfig
    from sim.evaluation.orchestration import _load_scenes

    monkeypatch.setattr(suites, "_MEMORY", {})  # not generated by an earlier test in this process

    blocker = tmp_path / "cache"
    blocker.write_text("x")
    lines = []
    scenes, _ = _load_scenes(EvalConfig(scenarios="procedural-small:test", scenario_cache=str(blocker),
                                        max_scenarios=2, progress=False), lines.append)
    assert len(scenes) == 2
    assert any(x.startswith(f"note: --scenario-cache {blocker}: not a writable folder") for x in lines)
    assert blocker.read_text() == "x"


def test_the_data_reports_skipped_list_says_skipped_once(tmp_path):
    data = tmp_path / "logs"
    data.mkdir()
    write_scenes(data / "a.npz", 2, num_steps=30)
    (data / "b.npz").write_bytes(b"PK\x03\x04 truncated")
    text = check(data, ImportOptions(), progress=False)["text"]
    block = text.split("\nskipped:\n", 1)[1].splitlines()
    assert block[0].startswith(f"  {data / 'b.npz'}: ")  # not "  skipped {file}" under the heading


@pytest.mark.parametrize("metric", ["traffic_light_compliance", "lane_keeping"])
def test_budget_on_a_map_rule_metric_is_refused_before_anything_runs(metric, tmp_path, capsys):
    """A map-rule metric is NaN where a scene's map lacks what it needs: --budget (which races on a metric defined
    on every scene) refuses it in one line before any rollout or file (it used to stop after committing some)."""
    run = make_run(tmp_path)
    write_scenes(tmp_path / "s.npz", 4, num_steps=30)
    out = tmp_path / "r.h5"
    assert main(["--run", str(run), "--scenarios", str(tmp_path / "s.npz"), "--no-progress", "--budget", "0.5",
                 "--metric", metric, "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: --metric {metric}: not applicable") and "--budget" in line
    assert not out.exists() and not out.with_name(out.name + ".parts").exists()
