"""Ctrl-C during training, however often and whenever it is pressed: one line, exit status 130, a run that is either
removed completely (before its first checkpoint) or kept with a pasteable --resume command; and a bad config.json on
--resume named with its key."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import training.train as train_module
from training.train import main

REPO = Path(__file__).resolve().parents[2]
TINY = ["--scenarios", "procedural-small", "--train-pool", "8", "--bc-scenes", "4", "--val-scenes", "3",
        "--bc-epochs", "2", "--dagger-rounds", "1", "--batch-scenes", "4", "--eval-interval", "4", "--hidden", "32",
        "--no-progress"]


def _lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


# --- a second (third, ...) Ctrl-C: the cleanup still finishes, exit status 130 --------------------------------------

@pytest.mark.slow
def test_repeated_ctrl_c_during_behaviour_cloning_removes_the_run_and_exits_130(tmp_path):
    """Ctrl-C, then again 0.01 s, 0.2 s and 0.5 s later (while the run is removed, the message printed, and
    Python shuts down): one message, the new folders gone, exit status 130 (not death by SIGINT)."""
    out = tmp_path / "new parent"
    run = out / "run"
    cmd = [sys.executable, "-m", "training.train", *TINY, "--bc-epochs", "10000", "--out-dir", str(run)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "eval_states.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.2)  # cloning
    assert proc.poll() is None, proc.communicate()[1]
    start = time.time()
    for at in (0.0, 0.01, 0.2, 0.5):
        time.sleep(max(0.0, start + at - time.time()))
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert _lines(err)[-1] == (f"interrupted before the first checkpoint: {run} removed, nothing to resume; start "
                               "again with python -m training.train"), err
    assert not out.exists()


def test_a_second_ctrl_c_during_the_cleanup_does_not_cut_it_short(tmp_path, monkeypatch, capsys):
    """The first Ctrl-C lands while the scenes load; a second one while the half-made run is removed."""
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    remove = train_module.remove_new_run

    def remove_pressed_again(run, made):
        os.kill(os.getpid(), signal.SIGINT)  # delivered at once (main thread): default handling raises here
        for _ in range(10_000):
            pass
        remove(run, made)

    monkeypatch.setattr(train_module, "load_run_data", interrupted)
    monkeypatch.setattr(train_module, "remove_new_run", remove_pressed_again)
    out = tmp_path / "out"
    assert main([*TINY, "--out-dir", str(out / "run")]) == 130
    assert _lines(capsys.readouterr().err)[-1].startswith("interrupted before the first checkpoint: ")
    assert not out.exists()


def test_ctrl_c_while_config_json_is_written_leaves_no_folder(tmp_path, monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "write_config", interrupted)
    out = tmp_path / "out"
    assert main([*TINY, "--out-dir", str(out / "run")]) == 130
    assert _lines(capsys.readouterr().err) == ["interrupted before the run started; nothing was written"]
    assert not out.exists()


# --- the printed command is shell-quoted -------------------------------------------------------------------------

def test_the_resume_command_after_ctrl_c_is_pasteable_on_a_path_with_spaces(tmp_path, monkeypatch, capsys):
    """Ctrl-C in the RL loop, after the first checkpoint: the printed command splits back into --resume RUN."""
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "rollout", interrupted)
    run = tmp_path / "sp ace" / "run 1"
    assert main([*TINY, "--episodes", "8", "--bc-epochs", "1", "--dagger-rounds", "0", "--out-dir", str(run)]) == 130
    hint = _lines(capsys.readouterr().err)[-1]
    assert hint.startswith("interrupted: continue with ")
    assert hint.endswith("(files up to the last evaluation are kept)")
    cmd = hint.removeprefix("interrupted: continue with ").split(" (files up to")[0]
    assert shlex.split(cmd) == ["python", "-m", "training.train", "--resume", str(run)]
    assert (run / "last.pt").is_file()


def test_a_non_empty_out_dir_suggests_a_pasteable_resume(tmp_path, capsys):
    run = tmp_path / "my runs" / "it's"
    run.mkdir(parents=True)
    (run / "keep.txt").write_text("x")
    assert main([*TINY, "--out-dir", str(run)]) == 2
    line = _lines(capsys.readouterr().err)[-1]
    assert shlex.split(line.split("continue it with ", 1)[1]) == ["--resume", str(run)], line
    assert (run / "keep.txt").read_text() == "x"


# --- a bad config.json on --resume: the file and the key ------------------------------------------------------------

@pytest.mark.parametrize(("train", "named"), [
    ({"episodes": "x"}, "train.episodes 'x': expected int"),
    ({"foo": 1}, "unknown training setting train.foo"),
    ({"foo": 1, "bar": 2}, "unknown training settings train.bar, train.foo"),
    ({"bc_epochs": 0}, "train.bc_epochs must be "),
    ({"device": 3}, "train.device 3: expected str"),  # --device is resumable: still the file's value is named
])
@pytest.mark.parametrize("extra", [[], ["--episodes", "20"]])
def test_a_bad_config_json_on_resume_names_the_file_and_the_key(tmp_path, capsys, train, named, extra):
    run = tmp_path / "run"
    run.mkdir()
    config = run / "config.json"
    config.write_text(json.dumps({"train": train}))
    before = config.read_bytes()
    assert main(["--resume", str(run), "--no-progress", *extra]) == 2
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"error: {config}: {named}"), lines
    assert config.read_bytes() == before and sorted(p.name for p in run.iterdir()) == ["config.json"]
