"""Training never leaves a checkpoint with non-finite weights, and stops with one line at the first NaN (issue 21)."""

from __future__ import annotations

import math

import pytest
import torch

from policy.checkpoint import CheckpointError, first_non_finite, save_checkpoint
from policy.model import PolicyConfig, WaypointPolicy
from training.bc import ExpertData, behaviour_clone
from training.finite import NonFiniteError, require_finite_loss, require_finite_weights
from training.train import main

TINY = ["--scenarios", "procedural-small", "--train-pool", "8", "--bc-scenes", "4", "--val-scenes", "3",
        "--bc-epochs", "2", "--dagger-rounds", "0", "--batch-scenes", "4", "--eval-interval", "4", "--hidden", "16",
        "--no-progress", "--episodes", "8"]


def small_policy() -> WaypointPolicy:
    torch.manual_seed(0)
    return WaypointPolicy(PolicyConfig(obs_dim=6, num_waypoints=2, hidden=8, layers=1))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weight_found_and_refused(tmp_path, bad):
    policy = small_policy()
    assert first_non_finite(policy.state_dict()) is None
    require_finite_weights(policy, "a step")
    name = sorted(k for k, v in policy.state_dict().items() if v.is_floating_point())[3]
    with torch.no_grad():
        policy.state_dict()[name].view(-1)[0] = bad
    assert first_non_finite(policy.state_dict()) == name
    with pytest.raises(NonFiniteError, match=f"non-finite weights \\({name}\\) after a step"):
        require_finite_weights(policy, "a step")
    path = tmp_path / "x.pt"
    with pytest.raises(CheckpointError, match=f"weight {name} is not finite"):
        save_checkpoint(path, policy, {}, {"episode": 0, "entropy": 0.0, "eval_info": {}})
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temp file


def test_critic_only_nan_is_not_an_acting_weight():
    policy = small_policy()
    name = next(k for k in policy.state_dict() if k.startswith("value_net.") and k.endswith("weight"))
    with torch.no_grad():
        policy.state_dict()[name].view(-1)[0] = float("nan")
    assert first_non_finite(policy.state_dict(), acting_only=True) is None
    assert first_non_finite(policy.state_dict()) == name


@pytest.mark.parametrize("value", [0.0, -3.5, 1e300])
def test_finite_loss_passes(value):
    require_finite_loss(value, "here")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_loss_stops(value):
    with pytest.raises(NonFiniteError, match="non-finite loss .* in here: training stopped"):
        require_finite_loss(value, "here")


def test_behaviour_cloning_stops_at_a_nan_loss():
    policy = small_policy()
    obs = torch.randn(32, 6)
    wps = torch.randn(32, 2, 2)
    ok = behaviour_clone(policy, ExpertData(obs, wps), epochs=1, lr=1e-3, batch=8,
                         generator=torch.Generator().manual_seed(0))
    assert math.isfinite(ok.final_loss)
    wps[5, 1, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="behaviour cloning epoch 1"):
        behaviour_clone(small_policy(), ExpertData(obs, wps), epochs=2, lr=1e-3, batch=8,
                        generator=torch.Generator().manual_seed(0))


def test_diverging_run_stops_with_one_line_and_only_finite_checkpoints(tmp_path, capsys):
    """An exploding reward (valid settings) makes PPO's loss NaN: one line, exit 2, every .pt left is finite."""
    out = tmp_path / "run"
    rc = main([*TINY, "--out-dir", str(out), "--w-log-dist", "1e308", "--value-warmup", "0"])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "non-finite loss" in lines[0] and "PPO iteration 1" in lines[0], err
    assert "Traceback" not in err
    saved = sorted(out.rglob("*.pt"))
    assert {p.name for p in saved} >= {"bc.pt", "last.pt"}
    for p in saved:
        obj = torch.load(p, weights_only=True)
        if "state_dict" in obj:
            assert first_non_finite(obj["state_dict"]) is None, p
    assert not list((out / "checkpoints").glob("*.pt"))  # no candidate after the divergence
