"""The commands the dashboard suggests are pasteable on a path with spaces (each path shell-quoted)."""

from __future__ import annotations

import shlex

from dashboard.data import RunRef, eval_cmd, load_run


def test_eval_cmd_quotes_the_run(tmp_path):
    run = tmp_path / "sp ace" / "run 1"
    assert shlex.split(eval_cmd(run)) == ["python", "-m", "sim.evaluate", "--run", str(run)]


def test_an_unreadable_results_file_suggests_a_pasteable_rm_and_evaluate(tmp_path):
    run = tmp_path / "my run"
    run.mkdir()
    (run / "results.h5").write_bytes(b"not hdf5")
    errors = [text for level, text in load_run(RunRef(run.name, run, 0.0, True, False)).problems if level == "error"]
    line = next(e for e in errors if "Re-create it: " in e)
    rm, evaluate = line.split("Re-create it: ", 1)[1].split(" && ")
    assert shlex.split(rm) == ["rm", str(run / "results.h5")]
    assert shlex.split(evaluate) == ["python", "-m", "sim.evaluate", "--run", str(run)]
