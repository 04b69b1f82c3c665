"""``python -m sim.across``: real runs evaluated by the real CLI, the table, the JSON, and one-line refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.across import main
from sim.evaluate import main as evaluate
from sim.results.reader import read_checkpoints
from sim.selection.across_data import load_seed
from tests.sim.evaluation.test_evaluate_support import make_run, write_scenes

EV = ["--scenarios", "scenes.npz", "--no-progress", "--n-resamples", "50", "--batch-size", "8"]
SPEEDS = ([6.0, 8.0, 10.0, 12.0], [12.0, 10.0, 8.0, 6.0], [9.0, 11.0, 7.0, 8.0])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs (different checkpoints per seed), evaluated on the same 4 scenes."""
    root = tmp_path_factory.mktemp("across")
    write_scenes(root / "scenes.npz", 4, num_steps=30)
    out = []
    for i, speeds in enumerate(SPEEDS):
        run = make_run(root, name=f"seed{i}", speeds=speeds, log_stds=[-0.5, -0.9, -0.7, -1.1], seed=i)
        subprocess.run([sys.executable, "-m", "sim.evaluate", "--run", str(run), *EV], cwd=root, check=True,
                       capture_output=True)
        out.append(run)
    return root, out


@pytest.mark.slow
def test_table_and_json_follow_the_stored_rows(runs, tmp_path, capsys):
    root, dirs = runs
    js = tmp_path / "across.json"
    assert main([*map(str, dirs), "--json", str(js), "--n-resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "Across 3 runs, metric score" in out and "max_entropy" in out
    doc = json.loads(js.read_text())
    assert doc["runs"] == ["seed0", "seed1", "seed2"]
    for rule in ("max_entropy", "last", "best_reward", "bc", "random"):
        assert {"mean_regret", "mean_regret_ci", "p_best"} <= set(doc["rules"][rule])
    # max_entropy picks ep00000 (highest entropy) everywhere: its regret per seed from the stored rows
    regrets = []
    for d in dirs:
        means = {s.attrs["name"]: float(np.mean(s.rows.metrics["score"])) for s in read_checkpoints(d / "results.h5")}
        regrets.append(max(means.values()) - means["ep00000.pt"])
    assert doc["rules"]["max_entropy"]["mean_regret"] == pytest.approx(np.mean(regrets))


def test_another_metric_is_recomputed_from_the_rows(runs):
    _, dirs = runs
    s = load_seed(dirs[0], "ade")
    means = {x.attrs["name"]: float(np.mean(x.rows.metrics["ade"])) for x in read_checkpoints(dirs[0] / "results.h5")}
    assert s.metric == "ade"
    assert s.picks["max_entropy"].regret == pytest.approx(means["ep00000.pt"] - min(means.values()))


def test_runs_evaluated_otherwise_or_not_at_all_are_refused_in_one_line(runs, tmp_path, capsys, monkeypatch):
    root, dirs = runs
    other = make_run(tmp_path, name="idm", speeds=SPEEDS[0])
    write_scenes(tmp_path / "scenes.npz", 4, num_steps=30)
    monkeypatch.chdir(tmp_path)
    assert main([str(dirs[0]), str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"python -m sim.evaluate --run {other}" in err
    assert evaluate(["--run", str(other), "--agents", "idm", *EV]) == 0
    capsys.readouterr()
    assert main([str(dirs[0]), str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "idm: evaluated with other evaluation settings" in err
    assert "evaluation settings (agents idm vs log) than" in err  # the setting that differs, by name
    write_scenes(tmp_path / "scenes.npz", 3, num_steps=30, start=10)
    other2 = make_run(tmp_path, name="fewer", speeds=SPEEDS[1])
    assert evaluate(["--run", str(other2), *EV]) == 0
    capsys.readouterr()
    assert main([str(dirs[0]), str(other2)]) == 2
    assert "scenario set" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "no such run folder" in capsys.readouterr().err


@pytest.mark.parametrize("where, says", [("missing/x.json", "does not exist"), (".", "is a folder")])
def test_a_json_path_that_cannot_be_written_is_refused_before_the_runs_are_read(runs, tmp_path, capsys, where,
                                                                                  says):
    _, dirs = runs
    target = tmp_path / where
    assert main([*map(str, dirs[:2]), "--json", str(target)]) == 2
    out, err = capsys.readouterr()
    assert err.strip().startswith(f"error: --json {target}") and says in err and len(err.strip().splitlines()) == 1
    assert "distinct policies" not in out  # nothing was compared


def test_module_runs_as_a_command(runs):
    _, dirs = runs
    r = subprocess.run([sys.executable, "-m", "sim.across", *map(str, dirs[:2]), "--n-resamples", "100"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Across 2 runs" in r.stdout and Path(dirs[0]).name in r.stdout
