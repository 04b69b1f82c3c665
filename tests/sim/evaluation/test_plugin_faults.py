"""Faults of foreign checkpoints and agent plug-ins through ``python -m sim.evaluate`` (real torch, real files, the
real CLI in this process): TorchScript identity covers the code, pickled code is refused without running it, a
plug-in that raises, returns the wrong shape or NaN is caught when the files are loaded (one ``error:`` line,
exit 2, nothing written) and a NaN during the rollout skips that checkpoint with its reason."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from sim.config import NUM_WAYPOINTS
from sim.evaluate import main
from sim.evaluation.plugins import AgentError, AgentInfo, load_agent
from sim.observation import OBS_DIM
from sim.results.reader import read_checkpoints, read_summary
from tests.sim.evaluation.pickles import RunsCode
from tests.sim.evaluation.test_evaluate_support import write_scenes

SPEC = "tests.sim.evaluation.test_plugin_faults"


@pytest.fixture(scope="module")
def scenes_file(tmp_path_factory) -> Path:
    return write_scenes(tmp_path_factory.mktemp("scenes") / "scenes.npz", 3, num_steps=30)


def _args(spec: str, ckpt: Path, scenes: Path, out: Path) -> list[str]:
    return ["--agent", spec, "--ckpt", str(ckpt), "--scenarios", str(scenes), "--out", str(out), "--no-progress",
            "--n-resamples", "20"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _nothing_written(out: Path) -> None:
    assert not out.exists() and not out.with_name(out.name + ".parts").exists()


# --- plug-ins with faults (factories named by --agent tests.sim.evaluation.test_plugin_faults:NAME) ---------------


def _plan(n: int) -> Tensor:
    """A constant plan straight ahead, 2 m between waypoints, for ``n`` scenes."""
    wp = torch.zeros(n, NUM_WAYPOINTS, 2)
    wp[..., 0] = torch.arange(1, NUM_WAYPOINTS + 1, dtype=torch.float32) * 2.0
    return wp


class _Faulty:
    """An agent whose checkpoint file's text says how it behaves: ``good``, ``boom`` (raises), ``late-boom``
    (raises after its first calls), ``shape`` (returns [B, 3]), ``nan`` (NaN at once), ``late-nan`` (NaN for the last
    scene of a batch after its first calls)."""

    def __init__(self, path: str, device: str = "cpu") -> None:
        self.mode = Path(path).read_text().strip()
        self.info = AgentInfo(f"{SPEC}:faulty", path, self.mode.encode().hex().ljust(64, "0")[:64], None, "none")
        self.calls = 0

    def waypoints(self, obs: Tensor) -> Tensor:
        self.calls += 1
        late = self.calls > 3  # the load-time probe is one call; the rollout's later steps are "late"
        if self.mode == "boom" or (self.mode == "late-boom" and late):
            raise ValueError("kaboom")
        if self.mode == "shape":
            return torch.zeros(obs.shape[0], 3)
        wp = _plan(obs.shape[0])
        if self.mode == "nan" or (self.mode == "late-nan" and late):
            wp[-1] = float("nan")
        return wp


def faulty(path: str, device: str) -> _Faulty:
    """Factory for ``--agent tests.sim.evaluation.test_plugin_faults:faulty``."""
    return _Faulty(path, device)


def _ckpt(d: Path, name: str, mode: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(mode + "\n")
    return p


@pytest.mark.parametrize("mode, why", [("boom", "waypoints(obs) failed on {f} (load-time probe): ValueError: kaboom"),
                                       ("shape", "waypoints(obs) on {f} must return waypoints [2, 8, 2], got [2, 3]"),
                                       ("nan", "returned non-finite waypoints (NaN or infinite)")])
def test_a_faulty_plugin_is_refused_when_loaded_and_nothing_is_written(mode, why, scenes_file, tmp_path, capsys):
    """Items 4-6: an exception, a wrong shape or NaN waypoints on the load-time probe: one ``error:`` line naming the
    agent and the file, exit 2, before any results file exists (so the corrected command then runs)."""
    f = _ckpt(tmp_path / "ck", "step_1.bin", mode)
    out = tmp_path / "res.h5"
    assert main(_args(f"{SPEC}:faulty", f, scenes_file, out)) == 2
    err = _one_line_error(capsys)
    assert why.format(f=f) in err and str(f) in err, err
    if mode != "nan":
        assert f"--agent {SPEC}:faulty" in err, err
    _nothing_written(out)
    f.write_text("good\n")
    assert main(_args(f"{SPEC}:faulty", f, scenes_file, out)) == 0


def test_an_exception_during_the_rollout_is_one_line_naming_agent_and_file(scenes_file, tmp_path, capsys):
    f = _ckpt(tmp_path / "ck", "step_1.bin", "late-boom")
    assert main(_args(f"{SPEC}:faulty", f, scenes_file, tmp_path / "res.h5")) == 2
    err = _one_line_error(capsys)
    assert f"--agent {SPEC}:faulty: waypoints(obs) failed on {f} (step " in err and "ValueError: kaboom" in err, err


def test_nan_during_the_rollout_skips_that_checkpoint_with_its_reason(scenes_file, tmp_path, capsys):
    """Item 6: in a sweep, a checkpoint whose agent returns NaN waypoints (at the probe, or later in the rollout) is
    skipped with its reason, recorded in ``/skipped``; the others are evaluated and judged; a second call resumes."""
    d = tmp_path / "ck"
    good, late, nan = _ckpt(d, "a_step_1.bin", "good"), _ckpt(d, "b_step_2.bin", "late-nan"), \
        _ckpt(d, "c_step_3.bin", "nan")
    out = tmp_path / "res.h5"
    assert main(_args(f"{SPEC}:faulty", d, scenes_file, out)) == 0
    printed = capsys.readouterr().out
    assert [c.attrs["name"] for c in read_checkpoints(out)] == [good.name]  # no NaN row is scored
    skipped = {Path(s.file).name: s.reason for s in read_summary(out).skipped}
    assert set(skipped) == {late.name, nan.name}
    assert "non-finite waypoints (NaN or infinite) on scene procedural/" in skipped[nan.name]
    assert "(load-time probe); not scored" in skipped[nan.name]
    assert "non-finite waypoints (NaN or infinite) on scene straight-0002 (step " in skipped[late.name]
    assert f"skipped checkpoint {late}: agent plug-in {SPEC}:faulty returned non-finite" in " ".join(printed.split())
    assert main(_args(f"{SPEC}:faulty", d, scenes_file, out)) == 0  # resume: the good rows stay, the others skipped
    assert "Resuming: 3 (checkpoint, scenario) pairs" in capsys.readouterr().out
    assert {Path(s.file).name for s in read_summary(out).skipped} == {late.name, nan.name}


# --- TorchScript: identity and errors -------------------------------------------------------------------------------


class _ZeroPlan(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(OBS_DIM, 2 * NUM_WAYPOINTS)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.zeros(obs.shape[0], 8, 2)


class _ConstantVelocityPlan(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(OBS_DIM, 2 * NUM_WAYPOINTS)

    def forward(self, obs: Tensor) -> Tensor:
        k = torch.arange(1, 9, dtype=obs.dtype).view(1, 8) * 0.5
        x = obs[:, :1] * 10.0 * k
        return torch.stack([x, torch.zeros_like(x)], -1)


def test_torchscript_files_with_equal_weights_and_other_code_are_two_policies(scenes_file, tmp_path, capsys):
    """Item 1: same parameters, different forward code: two identities, two rows; the same module saved again under
    another name is the same identity (results keys and resume follow what acts, not the file name)."""
    d = tmp_path / "exported"
    d.mkdir()
    torch.manual_seed(0)
    zero = torch.jit.script(_ZeroPlan())
    torch.manual_seed(0)
    cv = torch.jit.script(_ConstantVelocityPlan())
    assert all(torch.equal(a, b) for a, b in zip(zero.state_dict().values(), cv.state_dict().values(), strict=True))
    zero.save(str(d / "zero_step_1.pt"))
    cv.save(str(d / "cv_step_2.pt"))
    ids = {n: load_agent("torchscript", str(d / n)).info.identity for n in ("zero_step_1.pt", "cv_step_2.pt")}
    assert ids["zero_step_1.pt"] != ids["cv_step_2.pt"]
    torch.jit.script(_ZeroPlan()).save(str(tmp_path / "again.pt"))  # new random weights: another identity
    assert load_agent("torchscript", str(tmp_path / "again.pt")).info.identity not in ids.values()
    zero.save(str(tmp_path / "renamed.pt"))
    assert load_agent("torchscript", str(tmp_path / "renamed.pt")).info.identity == ids["zero_step_1.pt"]
    out = tmp_path / "res.h5"
    assert main(_args("torchscript", d, scenes_file, out)) == 0
    assert "2 checkpoint(s) from 2 file(s);" in capsys.readouterr().out
    stored = {c.attrs["name"]: c for c in read_checkpoints(out)}
    assert set(stored) == {"zero_step_1.pt", "cv_step_2.pt"}
    assert {c.key for c in stored.values()} == {i[:16] for i in ids.values()}
    # they drive differently: a plan that stays put and one that keeps the speed
    assert (stored["zero_step_1.pt"].rows.metrics["ade"] != stored["cv_step_2.pt"].rows.metrics["ade"]).any()


def test_a_torchscript_module_of_another_input_size_says_so(tmp_path, capsys):
    """Item 7: the observation size the simulator gives and the module's own error, not TorchScript's preamble."""
    f = tmp_path / "small_step_1.pt"
    torch.jit.script(nn.Sequential(nn.Linear(100, 16), nn.Unflatten(1, (8, 2)))).save(str(f))
    with pytest.raises(AgentError) as e:
        load_agent("torchscript", str(f))
    msg = str(e.value)
    assert f"{f}: module fails on observations [2, {OBS_DIM}]: this simulator's observation has {OBS_DIM} " \
           "features" in msg, msg
    assert "mat1 and mat2 shapes cannot be multiplied (2x131 and 100x16)" in msg, msg
    assert "TorchScript interpreter" not in msg and "\n" not in msg


# --- pickled code is refused, and never runs -------------------------------------------------------------------------


def test_a_checkpoint_that_pickles_code_is_refused_without_running_it(tmp_path, capsys):
    """Item 3: torch's current wording (``Trying to load unsupported GLOBAL posix.system ...``) is recognised: the
    refusal names what the file pickles, never repeats PyTorch's advice to load with weights_only=False, and the code
    never runs (its marker file does not appear)."""
    from examples.custom_agent import make

    marker = tmp_path / "code_ran"
    evil = tmp_path / "ep00010.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "config": {}, "meta": RunsCode(marker)}, evil)
    refused = f"refused: it pickles {os.system.__module__}.system (code), nothing was unpickled"
    out = tmp_path / "res.h5"
    assert main(["--ckpt", str(evil), "--only", "--scenarios", "procedural-small", "--max-scenarios", "1",
                 "--out", str(out), "--no-progress"]) == 2
    err = _one_line_error(capsys)
    assert f"{evil}: not a readable checkpoint ({refused})" in err, err
    with pytest.raises(AgentError) as e:
        make(str(evil))
    assert f"{evil}: not a checkpoint of examples.custom_agent ({refused})" == str(e.value)
    for msg in (err, str(e.value)):
        assert "weights_only" not in msg and "Re-running" not in msg
    assert not marker.exists()
    _nothing_written(out)
    # torch's other wording ("Unsupported global: GLOBAL argparse.Namespace was not an allowed global ...")
    from policy.checkpoint import CheckpointError, read_checkpoint

    torch.save({"state_dict": {}, "config": argparse.Namespace(a=1), "meta": {}}, evil)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(evil)
    assert str(e.value) == f"{evil}: not a readable checkpoint (refused: it pickles argparse.Namespace (code), " \
                           "nothing was unpickled)"


def test_the_custom_agent_example_says_what_is_wrong_with_a_file(tmp_path):
    """Item 7: a text file, a file of other weights, a file that is not a dict: what is wrong, not a bare number."""
    from examples.custom_agent import make

    text = tmp_path / "step_100.pt"
    text.write_text("step,loss\n100,1.0\n")
    other = tmp_path / "step_200.pt"
    torch.save(nn.Linear(100, 16).state_dict(), other)
    listed = tmp_path / "step_300.pt"
    torch.save([torch.zeros(1)], listed)
    for path, why in ((text, "not a torch.save archive"), (other, "its weights do not fit the MLP: missing 0.bias"),
                      (listed, "it holds a list, not a state dict of tensors")):
        with pytest.raises(AgentError) as e:
            make(str(path))
        assert str(e.value).startswith(f"{path}: not a checkpoint of examples.custom_agent (") and why in str(e.value)


def test_the_identity_digest_takes_scalar_weights_and_keeps_weights_only_digests():
    """One home for identities (``policy.checkpoint.hash_tensors``): a 0-d weight (a scripted module's scale) hashes;
    without code the digest is the project's weights digest, as before (resume keys of sb3 / own files unchanged)."""
    from policy.checkpoint import acting_digest
    from sim.evaluation.plugins import weights_digest

    state = {"scale": torch.tensor(2.0), "w": torch.arange(6.0).view(2, 3)}
    assert weights_digest(state) == acting_digest(state)
    assert weights_digest(state, [("code/__torch__.py", b"def forward")]) != weights_digest(state)
