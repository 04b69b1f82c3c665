"""Training signals: the project's history file, real TensorBoard event files, CSV / JSON lines, sign conventions,
nearest-step matching and one-line errors."""

from __future__ import annotations

import json
import math
import re

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


def test_match_errors_and_notes_name_the_checkpoint_file(tb_dir):
    """Checkpoints are keyed by a weights digest: errors name the file given in ``names`` (notes too: below)."""
    sig = read_signals(tb_dir)
    key = "86c188119c6e793d"
    with pytest.raises(SignalError) as e:
        match_checkpoints(sig, {key: 90000}, names={key: "rl_model_90000_steps.zip"})
    assert "checkpoint rl_model_90000_steps.zip (step 90000) matches no logged step (it logs steps 1000..4000)" \
        in str(e.value) and key not in str(e.value)
    with pytest.raises(SignalError, match=r"^best.zip: no training step") as e:
        match_checkpoints(sig, {key: None}, names={key: "best.zip"})


def _tb(folder, points):
    """A real event folder with ``{tag: {step: value}}`` written by torch's SummaryWriter (add_scalar)."""
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(folder))
    for tag, hist in points.items():
        for step, value in hist.items():
            w.add_scalar(tag, value, step)
    w.close()
    return folder


def test_a_non_finite_value_at_the_matched_step_gives_no_value_and_a_note(tmp_path):
    """NaN at step 2560: the checkpoint at 2560 gets no entropy (not step 1920's), and a note names the step, the tag
    and the log; inf the same."""
    pytest.importorskip("tensorboard")
    ent = {640: -22.70, 1280: -22.69, 1920: -22.68, 2560: math.nan}
    log = _tb(tmp_path / "tb", {"train/entropy_loss": ent, "train/clip_fraction": {s: 0.1 for s in ent}
                                | {1280: math.inf}})
    sig = read_signals(log)
    assert sig.series["entropy (-train/entropy_loss)"].steps == (640, 1280, 1920, 2560)
    names = {f"k{s}": f"rl_model_{s}_steps.zip" for s in ent}
    m = match_checkpoints(sig, {f"k{s}": s for s in ent}, names=names)
    e = m.values["entropy (-train/entropy_loss)"]
    assert e[:3] == pytest.approx((22.70, 22.69, 22.68)) and math.isnan(e[3])
    assert math.isnan(m.values["train/clip_fraction"][1])
    hit = [x for x in m.matches if x.checkpoint == "k2560" and x.signal.startswith("entropy")][0]
    assert hit.logged_step == 2560 and hit.line().endswith("@ 2560 = nan (not finite: no value)")
    assert (f"entropy (-train/entropy_loss): rl_model_2560_steps.zip (step 2560) has no value: its logged step "
            f"2560 of 'train/entropy_loss' in {log} holds NaN") in m.notes
    assert any("rl_model_1280_steps.zip (step 1280) has no value" in n and "holds inf" in n for n in m.notes)


def test_a_scalar_without_a_finite_value_is_named_as_such(tmp_path):
    pytest.importorskip("tensorboard")
    log = _tb(tmp_path / "tb", {"train/entropy_loss": {s: math.nan for s in (1, 2, 3)},
                                "rollout/ep_rew_mean": {1: 1.0, 2: 2.0, 3: 3.0}})
    sig = read_signals(log)
    assert sig.headline is None and sig.non_finite == {"train/entropy_loss": 3}
    assert "train/entropy_loss: every logged value (3) is NaN or inf, not judged" in sig.notes()
    for name in ("train/entropy_loss", "entropy (-train/entropy_loss)"):
        with pytest.raises(SignalError, match=rf"tb: scalar '{re.escape(name)}': every logged value \(3\) is NaN"):
            read_signals(log, require=(name,))
    only = _tb(tmp_path / "only", {"a": {1: math.nan}, "b": {1: math.inf, 2: -math.inf}})
    with pytest.raises(SignalError, match=r"only: no scalar has a finite value \(a: every logged value \(1\) is NaN "
                                          r"or inf; b: every logged value \(2\)"):
        read_signals(only)


def test_csv_nan_is_logged_and_an_empty_cell_is_not(tmp_path):
    p = tmp_path / "progress.csv"
    p.write_text("step,loss,kl\n100,1.0,\n200,nan,0.1\n300,0.5,0.2\n")
    sig = read_signals(p)
    assert sig.series["loss"].steps == (100, 200, 300) and math.isnan(sig.series["loss"].values[1])
    assert sig.series["kl"].steps == (200, 300)
    m = match_checkpoints(sig, {"a": 200})
    assert math.isnan(m.values["loss"][0]) and any("(step 200) has no value" in n for n in m.notes)


def _tensor_events(folder, tags, steps=(100, 200, 300)):
    """TF2-style scalars (tensors of the scalars plugin) and a histogram, with tensorboard's own writer."""
    import time

    import numpy as np
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.histogram.summary import histogram_pb
    from tensorboard.plugins.scalar.summary import scalar_pb
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    w = EventFileWriter(str(folder))
    for s in steps:
        for tag, f in tags.items():
            w.add_event(event_pb2.Event(step=s, wall_time=time.time(), summary=scalar_pb(tag, f(s))))
        w.add_event(event_pb2.Event(step=s, wall_time=time.time(), summary=histogram_pb("weights", np.arange(4.0))))
    w.close()
    return folder


def test_scalars_written_as_tensors_are_read(tmp_path):
    pytest.importorskip("tensorboard")
    import torch
    from torch.utils.tensorboard import SummaryWriter

    log = _tensor_events(tmp_path / "tf2", {"train/entropy_loss": lambda s: -1.0 + s / 1000,
                                            "rollout/ep_rew_mean": lambda s: s / 10})
    sig = read_signals(log, require=("train/entropy_loss",))
    assert sig.headline == "entropy (-train/entropy_loss)" and "weights" not in sig.series
    assert sig.series["entropy (-train/entropy_loss)"].values == pytest.approx((0.9, 0.8, 0.7))
    assert sig.series["rollout/ep_rew_mean"].steps == (100, 200, 300)
    w = SummaryWriter(str(tmp_path / "new_style"))  # torch's new_style scalars are tensors too
    for s in (1, 2):
        w.add_scalar("losses/entropy", 1.0 / s, s, new_style=True)
    w.close()
    assert read_signals(tmp_path / "new_style").series["losses/entropy"].values == pytest.approx((1.0, 0.5))
    w = SummaryWriter(str(tmp_path / "hist"))
    w.add_histogram("weights", torch.tensor([1.0, 2.0]), 1)
    w.add_text("note", "hello", 1)
    w.close()
    with pytest.raises(SignalError) as e:
        read_signals(tmp_path / "hist")
    msg = str(e.value)
    assert "hist: TensorBoard events hold no scalars (its event files hold" in msg and "histograms: weights" in msg
    assert "note" in msg and "\n" not in msg


def test_add_scalars_subfolders_are_read_with_their_names(tmp_path):
    """``SummaryWriter.add_scalars('train', {'entropy': ..})`` writes tag ``train`` in subfolder ``train_entropy``:
    read as ``train/entropy``; also inside an SB3-style ``PPO_1`` run; other runs below are named, never read."""
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    for where in (tmp_path / "tb", tmp_path / "sb3" / "PPO_1"):
        w = SummaryWriter(str(where))
        for s in (100, 200, 300):
            w.add_scalars("train", {"entropy": 1.0 / s, "reward": float(s)}, s)
            w.add_scalars("losses/policy", {"clip": 0.1}, s)
        w.close()
    sig = read_signals(tmp_path / "tb", require=("train/entropy",))
    assert set(sig.series) == {"train/entropy", "train/reward", "losses/policy/clip"}
    assert sig.headline == "train/entropy" and sig.series["train/reward"].values == (100.0, 200.0, 300.0)
    sb3 = read_signals(tmp_path / "sb3")
    assert sb3.source == str(tmp_path / "sb3" / "PPO_1") and "train/entropy" in sb3.series
    SummaryWriter(str(tmp_path / "main")).close()
    w = SummaryWriter(str(tmp_path / "main" / "eval"))
    w.add_scalar("x", 1.0, 1)
    w.close()
    with pytest.raises(SignalError, match=r"main: TensorBoard events hold no scalars \(its event files hold no tags\); "
                                          r"other runs below it: eval: pass one of them"):
        read_signals(tmp_path / "main")
