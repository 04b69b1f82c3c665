"""End-to-end: the training command with tiny settings, its files and schemas, resume, and bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from policy.checkpoint import load_checkpoint
from training.train import main

REPO = Path(__file__).resolve().parents[2]
TINY = ["--scenarios", "procedural-small", "--train-pool", "8", "--bc-scenes", "4", "--val-scenes", "3",
        "--bc-epochs", "2", "--dagger-rounds", "1", "--batch-scenes", "4", "--eval-interval", "4", "--hidden", "32",
        "--no-progress"]


def _run(tmp: Path, name: str, *extra: str) -> tuple[int, Path]:
    out = tmp / name
    return main([*TINY, "--episodes", "12", "--out-dir", str(out), *extra]), out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    rc, out = _run(tmp_path_factory.mktemp("train"), "run", "--keep-top-k", "2", "--select-after", "8")
    assert rc == 0
    return out


def test_run_writes_every_file(run_dir):
    for f in ("bc.pt", "last.pt", "best_entropy.pt", "best_reward.pt", "config.json", "entropy_history.json",
              "train_metrics.json", "eval_states.pt"):
        assert (run_dir / f).is_file(), f
    cands = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert cands and len(cands) <= 2 and all(c.startswith("ep") and c.endswith(".pt") for c in cands)
    for p in [*run_dir.glob("*.pt"), *(run_dir / "checkpoints").glob("*.pt")]:
        obj = torch.load(p, weights_only=True)
        if p.name == "eval_states.pt":
            assert obj["obs"].ndim == 2
            continue
        assert {"state_dict", "config", "meta"} <= set(obj)
        for k in ("episode", "entropy", "eval_info", "format_version", "kind", "entropy_per_dim", "versions"):
            assert k in obj["meta"], (p, k)
        assert obj["config"]["policy"]["obs_dim"] == obj["config"]["obs_dim"]
        for k in ("mean_delta_norm", "max_delta_norm", "std_delta_norm", "policy_entropy"):
            assert isinstance(obj["meta"]["eval_info"][k], float)
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["seed"] == 0 and cfg["train"]["episodes"] == 12 and cfg["git_revision"]
    assert {"torch", "numpy", "python"} <= set(cfg["versions"])


def test_history_schema_and_best_consistency(run_dir):
    h = json.loads((run_dir / "entropy_history.json").read_text())
    m = json.loads((run_dir / "train_metrics.json").read_text())
    assert h["episodes"] == [4, 8, 12] and len(h["entropy"]) == 3
    assert all(isinstance(v, float) for v in h["entropy"])
    assert all(len(d) == 16 for d in h["entropy_per_dim"])
    for total, dims in zip(h["entropy"], h["entropy_per_dim"]):
        assert total == pytest.approx(sum(dims), abs=1e-6)
    eligible = [(e, ep) for e, ep in zip(h["entropy"], h["episodes"]) if ep >= 8]
    best = max(eligible, key=lambda t: (t[0], -t[1]))
    assert (h["best_entropy"], h["best_episode"]) == best
    assert m["best_checkpoint"]["episode"] == h["best_episode"]
    assert m["best_checkpoint"]["entropy"] == h["best_entropy"]
    assert [r["episode"] for r in m["ranked"]][0] == h["best_episode"]
    assert all("eval_info" in r for r in m["ranked"])
    be = load_checkpoint(run_dir / "best_entropy.pt")
    assert be.meta["episode"] == h["best_episode"] and be.meta["entropy"] == pytest.approx(h["best_entropy"])
    last = load_checkpoint(run_dir / "last.pt")
    assert last.meta["episode"] == 12 and last.meta["kind"] == "last"
    assert load_checkpoint(run_dir / "bc.pt").meta["kind"] == "bc"
    # the state-independent entropy is sum(log_std) + D * 0.5 ln(2 pi e)
    expected = float(last.policy.log_std.detach().sum()) + 16 * 1.4189385332
    assert last.meta["entropy"] == pytest.approx(expected, abs=1e-4)


def test_existing_run_dir_is_not_overwritten(run_dir, capsys):
    before = (run_dir / "train_metrics.json").read_bytes()
    rc = main([*TINY, "--episodes", "4", "--out-dir", str(run_dir)])
    assert rc == 2
    assert "already exists" in capsys.readouterr().err
    assert (run_dir / "train_metrics.json").read_bytes() == before



def test_out_dir_that_is_a_file_is_named_as_such(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("")
    assert main([*TINY, "--episodes", "4", "--out-dir", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out-dir {f}: a file, not a folder; pick another --out-dir (a new or empty folder)"
    assert f.read_text() == ""


def test_corrupt_resume_checkpoint_is_a_clear_error(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    data = (copy / "last.pt").read_bytes()
    (copy / "last.pt").write_bytes(data[: len(data) // 3])
    before = (copy / "entropy_history.json").read_bytes()
    assert main(["--resume", str(copy), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "last.pt" in err and "Traceback" not in err
    assert (copy / "entropy_history.json").read_bytes() == before


def test_unwritable_output_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([*TINY, "--episodes", "4", "--out-dir", str(blocker / "run")]) == 2
    assert "cannot create" in capsys.readouterr().err


def test_select_after_past_the_last_episode_is_refused_before_anything_is_written(tmp_path, capsys):
    assert main([*TINY, "--episodes", "4", "--select-after", "5", "--out-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --select-after 5") and "--episodes 4" in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_default_out_dir_and_latest_link(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*TINY, "--episodes", "4"]) == 0
    latest = tmp_path / "out" / "latest"
    assert latest.is_symlink() and not os.path.isabs(os.readlink(latest))
    assert (latest / "last.pt").is_file()


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted_run(tmp_path):
    args = [sys.executable, "-m", "training.train", *TINY, "--episodes", "40", "--seed", "3"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run([*args, "--out-dir", str(ref)], cwd=REPO, check=True, capture_output=True)
    proc = subprocess.Popen([*args, "--out-dir", str(cut)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            done = json.loads((cut / "train_metrics.json").read_text())["episodes_done"]
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= 12:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    interrupted = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert interrupted, "the run finished before it could be killed"
    assert json.loads((cut / "train_metrics.json").read_text())["episodes_done"] < 40
    subprocess.run([sys.executable, "-m", "training.train", "--resume", str(cut), "--no-progress"], cwd=REPO,
                   check=True, capture_output=True)
    for f in ("entropy_history.json", "train_metrics.json"):
        assert (ref / f).read_text() == (cut / f).read_text(), f
    for f in ("last.pt", "best_entropy.pt", "checkpoints/ep00040.pt"):
        a, b = torch.load(ref / f, weights_only=True), torch.load(cut / f, weights_only=True)
        assert a["meta"] == b["meta"]
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_init_skips_cloning_and_early_stop_on_low_entropy(run_dir, tmp_path):
    out = tmp_path / "from_init"
    rc = main([*TINY, "--episodes", "12", "--out-dir", str(out), "--init", str(run_dir / "last.pt"),
               "--min-entropy", "1000", "--entropy-patience", "2"])
    assert rc == 0
    bc = load_checkpoint(out / "bc.pt")
    assert bc.meta["kind"] == "bc" and bc.meta["source"] == str(run_dir / "last.pt")
    start = load_checkpoint(run_dir / "last.pt").policy
    obs = torch.randn(5, start.config.obs_dim)
    torch.testing.assert_close(bc.policy.act(obs), start.act(obs))
    m = json.loads((out / "train_metrics.json").read_text())
    assert m["episodes_done"] == 8 and "entropy below 1000" in m["stop_reason"]
    assert json.loads((out / "entropy_history.json").read_text())["episodes"] == [4, 8]


def test_early_stop_before_select_after_warns_that_no_best_entropy_exists(run_dir, tmp_path, capsys):
    """--select-after 10 with an early stop at episode 8: no checkpoint may become best_entropy; the run says so
    (with the command that evaluates what it has) instead of finishing silently without best_entropy.pt."""
    out = tmp_path / "stopped"
    capsys.readouterr()
    rc = main([*TINY, "--episodes", "12", "--out-dir", str(out), "--init", str(run_dir / "last.pt"),
               "--min-entropy", "1000", "--entropy-patience", "2", "--select-after", "10"])
    assert rc == 0 and not (out / "best_entropy.pt").exists()
    assert json.loads((out / "train_metrics.json").read_text())["best_checkpoint"] is None
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: no checkpoint at or after --select-after 10 (the last is episode 8)" in err
    assert f"python -m sim.evaluate --run {out}" in err


def test_init_with_non_finite_weights_is_refused_before_anything_is_written(run_dir, tmp_path, capsys):
    raw = torch.load(run_dir / "bc.pt", weights_only=True)
    raw["state_dict"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                         for k, v in raw["state_dict"].items()}
    bad = tmp_path / "nan.pt"
    torch.save(raw, bad)
    out = tmp_path / "never"
    assert main([*TINY, "--episodes", "4", "--out-dir", str(out), "--init", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --init {bad}: weight ") and "is not finite" in err and "\n" not in err
    assert not out.exists()


def test_resume_with_fewer_episodes_than_trained_says_so(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    before = (copy / "entropy_history.json").read_bytes()
    assert main(["--resume", str(copy), "--episodes", "10", "--no-progress"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert f"{copy} is complete (12 episodes trained, --episodes 10 asks for fewer); nothing to do" in err
    assert (copy / "entropy_history.json").read_bytes() == before
