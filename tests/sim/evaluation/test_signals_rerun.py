"""``--signals`` through ``python -m sim.evaluate`` on real plug-in checkpoints and real TensorBoard event files
(written with torch's ``SummaryWriter``): a second call with another log into the same results file gives the
verdict a fresh ``--out`` gives and updates the stored entropy; errors and notes name the checkpoint file; a NaN
logged at a checkpoint's step gives it no value, never a neighbour's."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sim.evaluate import main
from sim.results.reader import read_checkpoints, read_signal_verdict, read_verdict
from tests.sim.evaluation.test_evaluate_support import write_scenes

pytest.importorskip("tensorboard")

STEPS = (100, 200, 300, 400)
HEADLINE = "entropy (-train/entropy_loss)"


def _tb_log(folder: Path, entropy, steps=STEPS) -> Path:
    """An SB3-style TensorBoard log: ``train/entropy_loss`` = -entropy(step), and a training reward."""
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(folder))
    for s in steps:
        w.add_scalar("train/entropy_loss", -entropy(s), s)
        w.add_scalar("rollout/ep_rew_mean", s / 10, s)
    w.close()
    return folder


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> Path:
    """4 checkpoints of ``examples/custom_agent.py`` at steps 100 .. 400, 4 scenes, and three logs: entropy falling
    (A), rising (B), every value NaN (N)."""
    from examples.custom_agent import _net

    d = tmp_path_factory.mktemp("byo")
    for i, step in enumerate(STEPS):
        torch.manual_seed(i)
        torch.save(_net().state_dict(), d / f"step_{step}.pt")
    write_scenes(d / "scenes.npz", 4, num_steps=30)
    _tb_log(d / "A", lambda s: 2.0 - s / 1000)
    _tb_log(d / "B", lambda s: 1.0 + s / 1000)
    _tb_log(d / "N", lambda s: math.nan)
    return d


def _eval(d: Path, out: Path, *extra: str) -> int:
    return main(["--agent", "examples.custom_agent:make", "--ckpt", str(d / "step_*.pt"), "--scenarios",
                 str(d / "scenes.npz"), "--out", str(out), "--no-progress", "--n-resamples", "50", *extra])


def _entropy(out: Path) -> dict[str, float]:
    return {s.record.name: s.record.entropy for s in read_checkpoints(out)}


def _max_entropy(out: Path) -> str | None:
    pick = read_verdict(out)["rules"].get("max_entropy")
    return pick["name"] if pick else None


def test_a_second_log_into_the_same_file_gives_the_fresh_answer_and_is_stored(ckpts, tmp_path, capsys):
    res, fresh = tmp_path / "res.h5", tmp_path / "fresh.h5"
    assert _eval(ckpts, res, "--signals", str(ckpts / "A")) == 0
    assert _max_entropy(res) == "step_100.pt"  # entropy falls: the first checkpoint
    rows = {s.key: s.rows.metrics["score"] for s in read_checkpoints(res)}
    parts = len(list(res.with_name("res.h5.parts").glob("*.h5")))
    capsys.readouterr()

    assert _eval(ckpts, res, "--signals", str(ckpts / "B")) == 0
    out = capsys.readouterr().out
    assert len(list(res.with_name("res.h5.parts").glob("*.h5"))) == parts  # superseded commit files removed
    assert _eval(ckpts, fresh, "--signals", str(ckpts / "B")) == 0
    assert _max_entropy(res) == _max_entropy(fresh) == "step_400.pt"  # entropy rises: the last checkpoint
    assert "Verdict (" in out and "The max-entropy checkpoint (step_400.pt)" in out
    sv = read_signal_verdict(res)
    head = next(j for j in sv["ranking"] if j["headline"])
    assert sv["checkpoint_names"][head["pick_max"]] == _max_entropy(res)  # both verdicts agree
    assert _entropy(res) == pytest.approx(_entropy(fresh))
    assert _entropy(res) == pytest.approx({f"step_{s}.pt": 1 + s / 1000 for s in STEPS})
    note = [ln for ln in out.splitlines() if "written by an earlier call" in ln]
    assert len(note) == 1 and "entropy" in note[0] and str(ckpts / "B") in note[0], out
    assert "Resuming: 16" in out  # no pair simulated again: only the stored attributes changed
    after = {s.key: s.rows.metrics["score"] for s in read_checkpoints(res)}
    assert after.keys() == rows.keys() and all(np.array_equal(after[k], rows[k]) for k in rows)

    capsys.readouterr()
    assert _eval(ckpts, res, "--signals", str(ckpts / "B")) == 0  # the same log again: nothing to update
    assert "written by an earlier call" not in capsys.readouterr().out


def test_a_log_whose_entropy_is_all_nan_leaves_no_stored_entropy(ckpts, tmp_path, capsys):
    res = tmp_path / "res.h5"
    assert _eval(ckpts, res, "--signals", str(ckpts / "A")) == 0
    capsys.readouterr()
    assert _eval(ckpts, res, "--signals", str(ckpts / "N")) == 0
    out = capsys.readouterr().out
    assert _max_entropy(res) is None and "No checkpoint has an entropy" in out
    assert all(math.isnan(v) for v in _entropy(res).values())
    assert "train/entropy_loss: every logged value (4) is NaN or inf, not judged" in out
    assert read_signal_verdict(res)["headline"] is None


def test_a_call_without_a_log_clears_what_an_earlier_log_stored(ckpts, tmp_path, capsys):
    """A fresh --out without --signals has no entropy for foreign checkpoints; so has the resumed file."""
    res = tmp_path / "res.h5"
    assert _eval(ckpts, res, "--signals", str(ckpts / "A")) == 0
    capsys.readouterr()
    assert _eval(ckpts, res) == 0
    assert "reads no training log (--signals)" in capsys.readouterr().out
    assert all(math.isnan(v) for v in _entropy(res).values())
    assert _max_entropy(res) is None and read_signal_verdict(res) is None


def test_a_nan_at_a_checkpoints_step_gives_it_no_value(ckpts, tmp_path, capsys):
    log = _tb_log(tmp_path / "tb", lambda s: math.nan if s == 400 else 2.0 - s / 1000)
    res = tmp_path / "res.h5"
    assert _eval(ckpts, res, "--signals", str(log)) == 0
    out = capsys.readouterr().out
    assert f"step_400.pt (step 400) -> {HEADLINE} @ 400 = nan (not finite: no value)" in out
    assert "@ 300 = 1.7" in out and "step_400.pt (step 400) -> entropy (-train/entropy_loss) @ 300" not in out
    assert (f"{HEADLINE}: step_400.pt (step 400) has no value: its logged step 400 of 'train/entropy_loss' in "
            f"{log}") in out
    ent = _entropy(res)
    assert math.isnan(ent["step_400.pt"]) and ent["step_300.pt"] == pytest.approx(1.7)
    assert _max_entropy(res) == "step_100.pt"


@pytest.mark.parametrize("case", ["far", "one_step", "other_units"])
def test_a_log_that_does_not_fit_names_the_checkpoint_file(ckpts, tmp_path, capsys, case):
    """The one-line error names the checkpoint's file, not its weights digest."""
    if case == "far":  # logged steps far after the checkpoints
        log = _tb_log(tmp_path / "tb", lambda s: 1.0, steps=(90000, 90010))
    elif case == "one_step":  # everything logged at one step (an MLflow run logged without steps: step 0)
        log = tmp_path / "log.csv"
        log.write_text("step,losses/entropy\n0,1.0\n")
    else:  # a project run's history: episodes 0 .. 40, the checkpoints at steps 100 .. 400
        log = tmp_path / "entropy_history.json"
        log.write_text('{"episodes": [0, 20, 40], "entropy": [1.0, 0.9, 0.8]}')
    res = tmp_path / "res.h5"
    assert _eval(ckpts, res, "--signals", str(log)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "step_100.pt (step 100)" in err, err
    keys = [k for k in err.split() if len(k) == 16 and all(c in "0123456789abcdef" for c in k)]
    assert not keys, err
    assert not res.exists()


def test_another_log_on_a_consolidated_file(ckpts, tmp_path):
    """A self-contained file (--consolidate) is adopted into the index layout: the attributes change, every row
    and scene stays readable, and the sidecar holds only what the index points at."""
    res = tmp_path / "res.h5"
    assert _eval(ckpts, res, "--signals", str(ckpts / "A"), "--consolidate") == 0
    rows = {s.key: s.rows.metrics["score"] for s in read_checkpoints(res, with_traj=True)}
    assert _eval(ckpts, res, "--signals", str(ckpts / "B")) == 0
    assert _max_entropy(res) == "step_400.pt"
    after = {s.key: s.rows.metrics["score"] for s in read_checkpoints(res, with_traj=True)}
    assert after.keys() == rows.keys() and all(np.array_equal(after[k], rows[k]) for k in rows)
    assert _eval(ckpts, res, "--signals", str(ckpts / "A"), "--consolidate") == 0
    assert _max_entropy(res) == "step_100.pt" and not res.with_name("res.h5.parts").exists()
