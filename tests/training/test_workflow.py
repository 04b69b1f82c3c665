"""The mistakes people make with the trainer (one line, nothing lost), its generated CLI and its PPO statistics."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from policy.checkpoint import DIGEST_KEY, acting_digest, load_checkpoint, policy_digest
from scenarios.cli_config import field_range
from training.config import TrainConfig, TrainError, parse_config
from training.history import PPO_SERIES
from training.ppo import explained_variance
from training.train import main

REPO = Path(__file__).resolve().parents[2]
TINY = ["--scenarios", "procedural-small", "--train-pool", "8", "--bc-scenes", "4", "--val-scenes", "3",
        "--bc-epochs", "2", "--dagger-rounds", "1", "--batch-scenes", "4", "--eval-interval", "4", "--hidden", "32",
        "--no-progress"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wf") / "run"
    assert main([*TINY, "--episodes", "12", "--out-dir", str(out)]) == 0
    return out


# --- the generated command line --------------------------------------------------------------------------------

def test_every_setting_has_a_flag_and_the_defaults_are_the_dataclass_defaults():
    assert parse_config([]).config == TrainConfig()
    argv, want = [], {}
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            argv.append(flag if not f.default else f"--no-{flag[2:]}")
            want[f.name] = not f.default
        elif f.name == "device":
            argv += [flag, "cpu"]
            want[f.name] = "cpu"
        elif "str" in str(f.type):
            argv += [flag, f"x_{f.name}"]
            want[f.name] = f"x_{f.name}"
        else:
            cast = float if "float" in str(f.type) else int
            value = cast(7) if f.default is None else cast(f.default) + cast(3)
            rng = field_range(f)
            if not rng.contains(value):  # a value inside the declared range that differs from the default
                value = cast((cast(f.default) + rng.hi) / 2) if rng.hi is not None else cast(rng.lo) + cast(1)
            assert rng.contains(value) and value != f.default, f.name
            argv += [flag, str(value)]
            want[f.name] = value
    assert dataclasses.asdict(parse_config(argv).config) == want


def test_existing_flag_spellings_still_work():
    cli = parse_config(["--no-progress", "--state-dependent-std", "--episodes", "40", "--device", "cpu"])
    assert not cli.config.progress and cli.config.state_dependent_std and cli.config.episodes == 40
    assert parse_config(["--resume"]).resume == "out/latest"
    cli = parse_config(["--resume", "R", "--episodes", "9", "--no-progress"])
    assert cli.resume == "R" and cli.overrides["episodes"] == 9 and cli.overrides["progress"] is False
    assert "episodes" not in parse_config(["--resume", "R"]).overrides  # the run's own count stays


def test_resume_refuses_settings_it_would_ignore():
    with pytest.raises(TrainError, match="--lr cannot change"):
        parse_config(["--resume", "R", "--lr", "0.1"])


# --- PPO statistics and the acting-weights digest ----------------------------------------------------------------

def test_explained_variance():
    ret = torch.tensor([1.0, 2.0, 4.0, 8.0])
    assert explained_variance(ret, ret) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(ret, float(ret.mean())), ret) == pytest.approx(0.0, abs=1e-6)
    assert explained_variance(-ret, ret) < 0
    assert explained_variance(ret, torch.ones(4)) is None


def test_ppo_statistics_are_series_aligned_with_episodes_and_in_each_checkpoint(run_dir):
    h = json.loads((run_dir / "entropy_history.json").read_text())
    m = json.loads((run_dir / "train_metrics.json").read_text())
    n = len(h["episodes"])
    assert n == 3
    for name in PPO_SERIES:
        assert len(h[name]) == n, name
        assert all(v is None or math.isfinite(v) for v in h[name]), name
    # value_warmup = 2: the first interval (one iteration) trains the value head only, so the policy ratio is 1
    assert h["approx_kl"][0] == 0.0 and h["clip_fraction"][0] == 0.0
    assert all(v > 0 for v in h["value_loss"])
    assert h["approx_kl"][2] > 0  # the third iteration updates the policy
    for i, ep in enumerate(h["episodes"]):
        meta = load_checkpoint(run_dir / f"checkpoints/ep{ep:05d}.pt").meta
        assert meta["ppo_stats"] == {name: h[name][i] for name in PPO_SERIES}
        assert m["evaluations"][i]["ppo_stats"] == meta["ppo_stats"]
    assert load_checkpoint(run_dir / "last.pt").meta["ppo_stats"] == {name: h[name][-1] for name in PPO_SERIES}


def test_policy_digest_counts_the_warm_up_checkpoint_as_the_cloned_policy(run_dir):
    digests = {}
    for name in ("bc.pt", "checkpoints/ep00004.pt", "checkpoints/ep00012.pt", "last.pt"):
        raw = torch.load(run_dir / name, weights_only=True)
        assert raw["meta"][DIGEST_KEY] == acting_digest(raw["state_dict"], raw["config"]["policy"])
        assert raw["meta"][DIGEST_KEY] == policy_digest(load_checkpoint(run_dir / name).policy)
        digests[name] = raw["meta"][DIGEST_KEY]
    bc, ep4 = (torch.load(run_dir / n, weights_only=True)["state_dict"] for n in ("bc.pt", "checkpoints/ep00004.pt"))
    assert any(not torch.equal(bc[k], ep4[k]) for k in bc if k.startswith("value_net."))  # the critic moved
    assert digests["checkpoints/ep00004.pt"] == digests["bc.pt"]  # ... the acting weights did not
    assert digests["checkpoints/ep00012.pt"] != digests["bc.pt"]
    assert digests["last.pt"] == digests["checkpoints/ep00012.pt"]


# --- workflow mistakes ------------------------------------------------------------------------------------------

@pytest.fixture
def out_with_latest(tmp_path, monkeypatch) -> Path:
    """A working directory whose out/latest points at an earlier run."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out" / "old").mkdir(parents=True)
    os.symlink("old", tmp_path / "out" / "latest")
    return tmp_path / "out"


def _one_line(err: str, *needles: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_empty_scenario_folder_leaves_no_run_and_keeps_latest(out_with_latest, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([*TINY, "--scenarios", str(tmp_path / "empty"), "--episodes", "4"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and str(tmp_path / "empty") in err and "Traceback" not in err
    assert sorted(p.name for p in out_with_latest.iterdir()) == ["latest", "old"]
    assert os.readlink(out_with_latest / "latest") == "old"
    assert main([*TINY, "--scenarios", str(tmp_path / "empty"), "--out-dir", str(tmp_path / "a" / "b")]) == 2
    assert not (tmp_path / "a").exists()
    (tmp_path / "pre").mkdir()  # an empty folder the user made stays, empty
    assert main([*TINY, "--scenarios", str(tmp_path / "empty"), "--out-dir", str(tmp_path / "pre")]) == 2
    assert (tmp_path / "pre").is_dir() and not any((tmp_path / "pre").iterdir())


@pytest.mark.parametrize("device", ["cuda", "cuda:99", "no-such-device"])
def test_absent_or_unknown_device_is_one_line_and_writes_nothing(out_with_latest, device, capsys):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main([*TINY, "--device", device, "--episodes", "4"]) == 2
    _one_line(capsys.readouterr().err, "error: --device", device)
    assert sorted(p.name for p in out_with_latest.iterdir()) == ["latest", "old"]


@pytest.mark.slow
def test_out_dir_says_latest_did_not_move_and_default_says_it_did(out_with_latest, tmp_path, capsys):
    assert main([*TINY, "--episodes", "4", "--out-dir", str(tmp_path / "mine")]) == 0
    assert "out/latest not moved" in capsys.readouterr().err
    assert os.readlink(out_with_latest / "latest") == "old"
    assert main([*TINY, "--episodes", "4"]) == 0
    new = os.readlink(out_with_latest / "latest")
    assert new != "old" and f"out/latest -> out/{new}" in capsys.readouterr().err


def test_resume_of_a_finished_run_says_so_and_changes_nothing(run_dir, capsys):
    before = _files(run_dir)
    assert main(["--resume", str(run_dir), "--no-progress"]) == 0
    _one_line(capsys.readouterr().err, "is complete", "12 of 12 episodes")
    assert _files(run_dir) == before


def test_resume_without_last_pt_says_what_it_starts_from_and_equals_the_run(run_dir, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "last.pt").unlink()
    assert main(["--resume", str(copy), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "no last.pt" in err and "behaviour cloning" in err
    for f in ("entropy_history.json", "train_metrics.json"):
        assert (copy / f).read_text() == (run_dir / f).read_text(), f


@pytest.mark.slow
def test_no_progress_silences_every_bar(tmp_path, capsys):
    # a train pool above 100 scenes is where the scene generator shows a bar of its own
    args = [*TINY, "--scenarios", "procedural", "--train-pool", "101", "--episodes", "4", "--out-dir"]
    assert main([*args, str(tmp_path / "quiet")]) == 0
    err = capsys.readouterr().err
    assert "generating" not in err and "ep/s" not in err and "it/s" not in err


def _interrupt(cmd: list[str], ready, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not ready() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


# Ctrl-C exits 130, never death by SIGINT (-2; shells show 130 for both): when the signal lands in code run by
# exec of a string (dataclass methods are built that way), CPython sets its "unhandled KeyboardInterrupt" flag for
# good and re-raises SIGINT at exit although the program caught the interrupt (seen in CI); the command's
# __main__ guard (scenarios.commands.run_main) clears the flag before it exits.
INTERRUPTED = (130,)


@pytest.mark.slow
def test_ctrl_c_prints_the_real_resume_command_and_it_continues_the_run(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "training.rl.train_rl_delta_waypoint", *TINY, "--episodes", "400", "--out-dir",
           str(run)]
    proc = _interrupt(cmd, lambda: (run / "checkpoints" / "ep00008.pt").exists(), tmp_path)
    assert proc.returncode in INTERRUPTED, proc.stderr
    hint = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1]
    assert hint.startswith("interrupted: continue with ") and "Traceback" not in proc.stderr, proc.stderr
    resume = hint.split("continue with ", 1)[1].split(" (")[0]
    assert resume == f"python -m training.rl.train_rl_delta_waypoint --resume {run}"
    done = json.loads((run / "train_metrics.json").read_text())["episodes_done"]
    again = subprocess.run([sys.executable, "-m", *resume.split()[2:], "--episodes", str(done + 4), "--no-progress"],
                           cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert json.loads((run / "train_metrics.json").read_text())["episodes_done"] == done + 4


@pytest.mark.slow
def test_ctrl_c_before_the_first_checkpoint_leaves_nothing(tmp_path):
    run = tmp_path / "out" / "run"
    cmd = [sys.executable, "-m", "training.train", *TINY, "--bc-epochs", "5000", "--out-dir", str(run)]
    proc = _interrupt(cmd, lambda: (run / "eval_states.pt").exists(), tmp_path)
    assert proc.returncode in INTERRUPTED, proc.stderr
    assert "interrupted before the first checkpoint" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_resume_while_another_process_trains_the_run_is_refused(run_dir, capsys):
    """Two trainers on one run would interleave their writes: the second gets one line and exit 2."""
    from training.run_dir import run_lock

    before = _files(run_dir)
    with run_lock(run_dir):  # what a running trainer holds (a second open file description conflicts)
        assert main(["--resume", str(run_dir), "--episodes", "16", "--no-progress"]) == 2
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "another process is training this run" in errors[0]
    assert _files(run_dir) == before
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []  # no lock file left
