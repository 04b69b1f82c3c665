"""Training signals: the project's history file, real TensorBoard event files, CSV / JSON lines, sign conventions,
nearest-step matching and one-line errors."""

from __future__ import annotations

import json
import math

import pytest

from sim.selection.signals import SignalError, match_checkpoints, read_signals


def _history(tmp_path):
    doc = {"schema_version": 1, "episodes": [50, 100, 150], "steps": [5, 10, 15], "entropy": [1.0, 0.5, 0.2],
           "entropy_per_dim": [[0.1], [0.1], [0.1]], "train_reward": [-3.0, -2.0, -1.0],
           "val_score": [None, 0.4, 0.5], "approx_kl": [0.01, 0.02, 0.03], "checkpoints": ["a", "b", None],
           "best_entropy": 1.0, "best_episode": 50}
    p = tmp_path / "entropy_history.json"
    p.write_text(json.dumps(doc))
    return p


def test_history_json_reads_every_aligned_series(tmp_path):
    sig = read_signals(_history(tmp_path))
    assert set(sig.series) == {"entropy", "train_reward", "val_score", "approx_kl"}
    assert sig.series["entropy"].steps == (50, 100, 150)
    assert sig.series["val_score"].steps == (100, 150)  # None dropped
    assert sig.headline == "entropy"


def test_history_without_episodes_is_refused(tmp_path):
    p = tmp_path / "h.json"
    p.write_text(json.dumps({"entropy": [1, 2]}))
    with pytest.raises(SignalError, match=r"h.json: no 'episodes' list"):
        read_signals(p)


@pytest.fixture
def tb_dir(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "tb" / "PPO_1"
    w = SummaryWriter(str(run))
    for step in (1000, 2000, 3000, 4000):
        w.add_scalar("train/entropy_loss", -20.0 + step / 1000, step)
        w.add_scalar("train/approx_kl", step / 1e5, step)
        w.add_scalar("rollout/ep_rew_mean", step / 100, step)
        w.add_scalar("time/fps", 500.0, step)
    w.close()
    return tmp_path / "tb"


def test_tensorboard_folder_with_sign_convention(tb_dir):
    sig = read_signals(tb_dir, require=("train/entropy_loss", "train/approx_kl"))
    ent = sig.series["entropy (-train/entropy_loss)"]
    assert ent.steps == (1000, 2000, 3000, 4000)
    assert ent.values == pytest.approx((19.0, 18.0, 17.0, 16.0))
    assert sig.headline == "entropy (-train/entropy_loss)"
    assert any("minus" in n or "-mean entropy" in n for n in sig.notes())
    assert "time/fps" not in sig.series


def test_tensorboard_errors(tb_dir, tmp_path):
    with pytest.raises(SignalError, match=r"PPO_1: no scalar 'train/nope'"):
        read_signals(tb_dir, require=("train/nope",))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SignalError, match=r"empty: no TensorBoard event files"):
        read_signals(tmp_path / "empty")
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tb_dir / "PPO_2"))
    w.add_scalar("x", 1.0, 1)
    w.close()
    with pytest.raises(SignalError, match=r"several TensorBoard runs \(PPO_1, PPO_2\)"):
        read_signals(tb_dir)


def test_csv_and_jsonl(tmp_path):
    p = tmp_path / "progress.csv"
    p.write_text("time/total_timesteps,train/entropy_loss,train/value_loss\n100,-5,1.5\n200,-4,\n300,-3,0.5\n")
    sig = read_signals(p)
    assert sig.series["entropy (-train/entropy_loss)"].values == (5.0, 4.0, 3.0)
    assert sig.series["train/value_loss"].steps == (100, 300)
    q = tmp_path / "log.jsonl"
    q.write_text("\n".join(json.dumps({"global_step": s, "losses/entropy": 1.0 / s}) for s in (10, 20)))
    assert read_signals(q).headline == "losses/entropy"


def test_csv_without_step_column(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("loss,entropy\n1,2\n")
    with pytest.raises(SignalError, match=r"bad.csv: no step column"):
        read_signals(p)


def test_match_nearest_step_and_report(tb_dir):
    sig = read_signals(tb_dir)
    m = match_checkpoints(sig, {"rl_model_2100_steps.zip": 2100, "rl_model_4000_steps.zip": 4000})
    ent = m.values["entropy (-train/entropy_loss)"]
    assert ent == pytest.approx((18.0, 16.0))
    hit = [x for x in m.matches if x.checkpoint == "rl_model_2100_steps.zip" and x.signal.startswith("entropy")][0]
    assert hit.logged_step == 2000 and "-> entropy (-train/entropy_loss) @ 2000" in hit.line()


def test_match_errors(tb_dir):
    sig = read_signals(tb_dir)
    with pytest.raises(SignalError, match=r"rl_model_9000_steps.zip \(step 9000\) matches no logged step"):
        match_checkpoints(sig, {"rl_model_9000_steps.zip": 9000})
    with pytest.raises(SignalError, match=r"best.zip: no training step"):
        match_checkpoints(sig, {"best.zip": None})


def test_partial_series_gives_nan_and_a_note(tmp_path):
    sig = read_signals(_history(tmp_path))
    m = match_checkpoints(sig, {"ep00050.pt": 50, "ep00150.pt": 150}, tolerance=0)
    assert math.isnan(m.values["val_score"][0]) and m.values["val_score"][1] == 0.5
    assert any(n.startswith("val_score: 1 of 2") for n in m.notes)
