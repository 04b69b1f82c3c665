"""``python -m sim.evaluate --agent ... --signals ...`` on real foreign checkpoints (a tiny real SB3 training with
TensorBoard logging, TorchScript modules, a MODULE:FACTORY plug-in with a CSV log) and the project's own runs."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from torch import nn

from sim.config import NUM_WAYPOINTS
from sim.evaluate import main
from sim.evaluation.plugins import load_agent
from sim.observation import OBS_DIM
from sim.results.reader import read_checkpoints, read_signal_verdict, read_verdict
from tests.sim.evaluation.test_evaluate_support import make_run, write_scenes

pytest.importorskip("stable_baselines3")
pytest.importorskip("tensorboard")

HEADLINE = "entropy (-train/entropy_loss)"


@pytest.fixture(scope="module")
def sb3_run(tmp_path_factory) -> Path:
    """4 real SB3 PPO checkpoints (640 .. 2560 env steps) and their TensorBoard log, trained here."""
    from examples.sb3_ppo import train

    out = tmp_path_factory.mktemp("sb3")
    torch.set_num_threads(1)
    train(out, num_envs=8, total_steps=8 * 80 * 4, save_every=8 * 80, scenarios="procedural-small:train", seed=0)
    write_scenes(out / "scenes.npz", 6, num_steps=30)
    return out


def _args(run: Path, out: Path, *extra: str) -> list[str]:
    return ["--agent", "sb3", "--ckpt", str(run / "checkpoints" / "*.zip"), "--signals", str(run / "tb"),
            "--scenarios", str(run / "scenes.npz"), "--out", str(out), "--no-progress", "--n-resamples", "100",
            *extra]


def _snapshot(path: Path) -> str:
    """Digest of the results index and every commit file beside it."""
    h = hashlib.sha256(path.read_bytes())
    for p in sorted(path.with_name(path.name + ".parts").glob("*")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


@pytest.mark.slow
def test_sb3_checkpoints_and_tensorboard_signals(sb3_run, tmp_path, capsys):
    res = tmp_path / "res.h5"
    assert main(_args(sb3_run, res, "--signal", "train/entropy_loss")) == 0
    out = capsys.readouterr().out
    files = sorted((sb3_run / "checkpoints").glob("*.zip"))
    ids = {load_agent("sb3", str(f)).info.identity[:16]: f.name for f in files}
    stored = {s.key: s for s in read_checkpoints(res)}
    assert set(stored) == set(ids)  # results keys are the plug-in's identity
    by_name = {s.attrs["name"]: s for s in stored.values()}
    assert set(by_name["rl_model_2560_steps.zip"].roles) == {"candidate", "last"}
    assert set(by_name["rl_model_640_steps.zip"].roles) == {"candidate"}
    assert by_name["rl_model_1280_steps.zip"].attrs["episode"] == 1280
    # the matches are printed: the first checkpoint precedes SB3's first train/ log and takes the nearest step
    assert f"rl_model_640_steps.zip (step 640) -> {HEADLINE} @ 1280" in out
    sv = read_signal_verdict(res)
    assert sv["headline"] == HEADLINE and sv["agent"] == "sb3" and sv["source"].endswith("PPO_1")
    assert sorted(sv["checkpoint_names"].values()) == sorted(ids.values())
    judged = {j["signal"] for j in sv["ranking"]}
    assert {HEADLINE, "training step", "train/approx_kl", "rollout/ep_rew_mean"} <= judged
    assert any("entropy_loss = -mean entropy" in n for n in sv["notes"])
    assert "Which training signal picks the best checkpoint?" in out and f"{HEADLINE} (headline)" in out
    assert "judged negated, as entropy" in out
    # the headline comes first on screen whatever its rank
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("#")]
    assert HEADLINE in lines[0]
    # the entropy verdict covers foreign checkpoints: entropy taken from the log (minus entropy_loss)
    v = read_verdict(res)
    assert v["rules"]["max_entropy"] is not None and v["rules"]["last"]["name"] == "rl_model_2560_steps.zip"
    # resume: a folder names the same set; nothing is re-evaluated, keys unchanged
    assert main(_args(sb3_run, res)[:3] + [str(sb3_run / "checkpoints")] + _args(sb3_run, res)[4:]) == 0
    out2 = capsys.readouterr().out
    assert "Resuming: 24 (checkpoint, scenario) pairs" in out2
    assert {s.key for s in read_checkpoints(res)} == set(ids)


def _not_sb3_zip(d: Path) -> str:
    p = d / "rl_model_100_steps.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("hello.txt", "not a model")
    return str(p)


def _pickled_sb3_zip(d: Path, good: Path) -> str:
    p = d / "rl_model_200_steps.zip"
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1), "trap": Fraction(1, 3)}, buf)  # loading needs unpickling a class
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(p, "w") as dst:
        for n in src.namelist():
            dst.writestr(n, buf.getvalue() if n == "policy.pth" else src.read(n))
    return str(p)


def _bad_torchscript(d: Path) -> str:
    p = d / "step_5.pt"
    torch.jit.script(nn.Linear(OBS_DIM, NUM_WAYPOINTS)).save(str(p))  # [B, K], not [B, K, 2]
    return str(p)


@pytest.mark.parametrize("case", ["not_sb3", "pickled", "torchscript_shape", "missing_scalar", "csv_no_step",
                                  "no_logged_step"])
def test_bad_input_is_one_line_and_writes_nothing(case, sb3_run, tmp_path, capsys):
    res = tmp_path / "res.h5"
    assert main(_args(sb3_run, res)) == 0
    before = _snapshot(res)
    capsys.readouterr()
    good = sorted((sb3_run / "checkpoints").glob("*.zip"))[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    args = _args(sb3_run, res)
    if case == "not_sb3":
        args[3], named, why = _not_sb3_zip(bad), "rl_model_100_steps.zip", "not a Stable-Baselines3 model"
    elif case == "pickled":
        args[3], named, why = _pickled_sb3_zip(bad, good), "rl_model_200_steps.zip", "needs unpickling"
    elif case == "torchscript_shape":
        args[1], args[3], named, why = "torchscript", _bad_torchscript(bad), "step_5.pt", "must be [B, 8, 2]"
    elif case == "missing_scalar":
        args += ["--signal", "train/no_such_scalar"]
        named, why = "PPO_1", "no scalar 'train/no_such_scalar'"
    elif case == "csv_no_step":
        (bad / "log.csv").write_text("loss,kl\n1.0,0.1\n0.5,0.2\n")
        args[5], named, why = str(bad / "log.csv"), "log.csv", "no step column"
    else:
        (bad / "log.csv").write_text("step,loss\n900000,1.0\n900010,0.5\n")
        args[5], named, why = str(bad / "log.csv"), "log.csv", "matches no logged step"
    assert main(args) == 2
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert named in err and why in err, err
    assert _snapshot(res) == before  # earlier results intact, nothing written


def test_custom_factory_with_csv_log(tmp_path, capsys):
    from examples.custom_agent import _net

    for i, step in enumerate((100, 200, 300)):
        torch.manual_seed(i)
        torch.save(_net().state_dict(), tmp_path / f"step_{step}.pt")
    (tmp_path / "log.csv").write_text("step,loss\n100,1.0\n200,0.5\n300,0.7\n")
    write_scenes(tmp_path / "scenes.npz", 4, num_steps=30)
    res = tmp_path / "results.h5"
    assert main(["--agent", "examples.custom_agent:make", "--ckpt", str(tmp_path / "step_*.pt"), "--signals",
                 str(tmp_path / "log.csv"), "--scenarios", str(tmp_path / "scenes.npz"), "--no-progress",
                 "--n-resamples", "50"]) == 0  # default results file: beside the checkpoints
    sv = read_signal_verdict(res)
    assert sv["headline"] is None and {j["signal"] for j in sv["ranking"]} == {"loss", "training step"}
    loss = sv["ranking"][[j["signal"] for j in sv["ranking"]].index("loss")]
    assert sv["checkpoint_names"][loss["pick_min"]] == "step_200.pt"
    assert "step_300.pt (step 300) -> loss @ 300 = 0.7" in capsys.readouterr().out


def test_rollouts_with_an_agent_that_cannot_sample_writes_nothing(tmp_path, capsys):
    """--rollouts K needs sampled actions: a plug-in without sample() is refused in one line before any results
    file exists, so the command the error suggests (--rollouts 0) then runs into the default file."""
    from examples.custom_agent import _net

    torch.save(_net().state_dict(), tmp_path / "step_100.pt")
    write_scenes(tmp_path / "scenes.npz", 2, num_steps=30)
    args = ["--agent", "examples.custom_agent:make", "--ckpt", str(tmp_path / "step_100.pt"), "--scenarios",
            str(tmp_path / "scenes.npz"), "--no-progress", "--n-resamples", "50"]
    assert main([*args, "--rollouts", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "has no sample(obs, generator)" in err, err
    assert str(tmp_path / "step_100.pt") in err
    assert not list(tmp_path.glob("results*"))
    assert main([*args, "--rollouts", "0"]) == 0
    assert [p.name for p in tmp_path.glob("results*.h5")] == ["results.h5"]


def test_own_run_judges_its_entropy_history_by_default(tmp_path, monkeypatch):
    run = make_run(tmp_path, episodes=(0, 50, 100, 150))
    hist = json.loads((run / "entropy_history.json").read_text())
    hist["approx_kl"] = [0.0, 0.02, 0.01, 0.03]
    (run / "entropy_history.json").write_text(json.dumps(hist))
    write_scenes(tmp_path / "scenes.npz", 4, num_steps=30)
    monkeypatch.chdir(tmp_path)
    assert main(["--ckpt", "best_entropy.pt", "--scenarios", "scenes.npz", "--no-progress", "--n-resamples",
                 "50"]) == 0
    sv = read_signal_verdict(run / "results.h5")
    assert sv["headline"] == "entropy" and sv["agent"] == "own"
    assert {j["signal"] for j in sv["ranking"]} == {"entropy", "approx_kl", "train_reward", "training step"}
    assert sorted(sv["checkpoint_names"].values()) == ["ep00000.pt", "ep00050.pt", "ep00100.pt", "ep00150.pt"]
    # without a log (another results file, history removed) the stored signal verdict goes with it
    (run / "entropy_history.json").unlink()
    assert main(["--run", str(run), "--scenarios", "scenes.npz", "--no-progress", "--n-resamples", "50"]) == 0
    assert read_signal_verdict(run / "results.h5") is None


def test_signals_without_checkpoints_is_one_line_and_writes_nothing(tmp_path, capsys):
    """A training log with only baselines judges nothing: say so instead of ignoring (a mistyped path too)."""
    out = tmp_path / "r.h5"
    code = main(["--baseline", "log-replay", "--scenarios", "procedural-small", "--max-scenarios", "2",
                 "--signals", str(tmp_path / "no_such_log.csv"), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "none are given" in err[0]
    assert not out.exists()
