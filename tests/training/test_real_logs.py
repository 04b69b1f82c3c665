"""Training on a folder of logs, said plainly (issue "Users' data and trackers plug in", item 4): the split is
printed and recorded, a val split too small for a meaningful score is a warning with the number needed, too few
scenes is one line saying how many are needed, and evaluating on scenes the run trained on is a warning naming them."""

from __future__ import annotations

import json

from scenarios.io import save_scenarios
from sim.evaluate import main as evaluate
from sim.results.run_folder import SCENES_FILE
from tests.sim.evaluation.test_evaluate_support import straight_scene
from training.data import MIN_VAL_SCENES, VAL_EVERY, VAL_OFFSET, _min_scenes
from training.train import main as train

TINY = ["--train-pool", "8", "--bc-scenes", "4", "--val-scenes", "3", "--bc-epochs", "2", "--dagger-rounds", "1",
        "--batch-scenes", "4", "--eval-interval", "4", "--hidden", "32", "--eval-states", "16", "--no-progress"]


def _folder(tmp_path, n: int):
    d = tmp_path / "logs"
    d.mkdir()
    for i in range(n):
        save_scenarios(d / f"s{i:02d}.npz", [straight_scene(i, 40)])
    return d


def test_min_scenes_matches_the_split_rule():
    for n_val in range(1, 6):
        n = _min_scenes(n_val)
        assert sum(i % VAL_EVERY == VAL_OFFSET for i in range(n)) == n_val
        assert sum(i % VAL_EVERY == VAL_OFFSET for i in range(n - 1)) == n_val - 1


def test_too_few_scenes_says_how_many_are_needed(tmp_path, capsys):
    logs = _folder(tmp_path, 2)
    assert train([*TINY, "--scenarios", str(logs), "--episodes", "4", "--out-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "2 usable scene(s)" in err and f"at least {_min_scenes(1)} usable scenes" in err
    assert not (tmp_path / "run").exists()


def test_split_printed_recorded_small_val_warned_and_reuse_warned_at_evaluation(tmp_path, capsys):
    logs = _folder(tmp_path, 10)
    run = tmp_path / "run"
    assert train([*TINY, "--scenarios", str(logs), "--episodes", "4", "--out-dir", str(run)]) == 0
    cap = capsys.readouterr()
    assert "scenes: 8 train, 1 val" in cap.out  # --train-pool 8 of the split's 9
    assert f"fewer than {MIN_VAL_SCENES}" in cap.err and f"at least {_min_scenes(MIN_VAL_SCENES)}" in cap.err
    split = json.loads((run / SCENES_FILE).read_text())
    assert len(split["train"]) == 8 and len(split["val"]) == 1  # --train-pool 8 of the 9
    assert not set(split["train"]) & set(split["val"])
    rc = evaluate(["--run", str(run), "--scenarios", str(logs), "--n-resamples", "20", "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "trained on" in ln)
    assert line.startswith("warning: 8 of the 10 evaluated scenes") and split["train"][0] in line
