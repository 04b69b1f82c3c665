"""What was trained is what is recorded: ``--init`` of another width (issue 21 item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policy.checkpoint import load_checkpoint
from training.train import main

BASE = ["--scenarios", "procedural-small", "--train-pool", "8", "--bc-scenes", "4", "--val-scenes", "3",
        "--bc-epochs", "1", "--dagger-rounds", "0", "--batch-scenes", "4", "--eval-interval", "4", "--no-progress",
        "--episodes", "4"]


@pytest.fixture(scope="module")
def narrow(tmp_path_factory) -> Path:
    """A run whose policy is 24 wide with 1 layer and a state-dependent std (none of them defaults)."""
    out = tmp_path_factory.mktemp("narrow") / "run"
    assert main([*BASE, "--out-dir", str(out), "--hidden", "24", "--layers", "1", "--state-dependent-std",
                 "--init-log-std", "-1.0"]) == 0
    return out


def test_init_of_another_width_is_recorded_as_trained(narrow, tmp_path):
    init = narrow / "last.pt"
    source = load_checkpoint(init)
    out = tmp_path / "from_init"
    assert main([*BASE, "--episodes", "8", "--out-dir", str(out), "--init", str(init)]) == 0
    doc = json.loads((out / "config.json").read_text())
    arch = {"hidden": 24, "layers": 1, "state_dependent_std": True, "init_log_std": -1.0}
    assert {k: doc["train"][k] for k in arch} == arch
    assert doc["init"] == {"path": str(init), "policy_digest": source.meta["policy_digest"],
                           "episode": source.meta["episode"]}
    pts = [*out.glob("*.pt"), *(out / "checkpoints").glob("*.pt")]
    assert len([p for p in pts if p.name != "eval_states.pt"]) >= 4
    for p in pts:
        if p.name == "eval_states.pt":
            continue
        ck = load_checkpoint(p)
        assert ck.config["train"] == doc["train"], p  # every setting, one source
        assert ck.config["init"] == doc["init"], p
        assert {k: ck.config["policy"][k] for k in arch} == arch, p
        assert ck.policy.config.hidden == 24
        assert all(  # the weights themselves are 24 wide
            24 in tuple(t.shape) for k, t in ck.policy.encoder.state_dict().items() if k.endswith("weight"))
    for k in ("obs_dim", "obs_version", "num_waypoints", "waypoint_steps"):
        assert doc[k] == load_checkpoint(out / "bc.pt").config[k]


def test_init_conflicting_architecture_flag_is_refused(narrow, tmp_path, capsys):
    out = tmp_path / "clash"
    assert main([*BASE, "--out-dir", str(out), "--init", str(narrow / "last.pt"), "--hidden", "64"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--hidden 64" in err and "hidden 24" in err
    assert not out.exists()
    # the same width typed explicitly is fine
    assert main([*BASE, "--out-dir", str(out), "--init", str(narrow / "last.pt"), "--hidden", "24"]) == 0


def test_run_without_init_records_none(narrow):
    doc = json.loads((narrow / "config.json").read_text())
    assert doc["init"] is None and doc["train"]["hidden"] == 24
    assert load_checkpoint(narrow / "bc.pt").config["init"] is None
