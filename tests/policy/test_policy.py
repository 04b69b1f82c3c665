"""Policy model, entropy and checkpoint tests (real torch models and real files)."""

from __future__ import annotations

import math
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from policy.entropy import gaussian_entropy, gaussian_entropy_per_dim, policy_entropy
from policy.model import PolicyConfig, WaypointPolicy, gaussian_log_prob, sample_delta

OBS_DIM = 24


def _policy(state_dependent: bool = False, seed: int = 0, **kw) -> WaypointPolicy:
    torch.manual_seed(seed)
    return WaypointPolicy(PolicyConfig(obs_dim=OBS_DIM, num_waypoints=8, hidden=32, obs_version=3,
                                       state_dependent_std=state_dependent, **kw))


def _meta(**kw) -> dict:
    return {"episode": 10, "entropy": 1.0, "eval_info": {"policy_entropy": 1.0}, "kind": "candidate", **kw}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-4.0, 2.0), min_size=1, max_size=16))
def test_entropy_matches_torch_distributions(log_stds):
    log_std = torch.tensor(log_stds, dtype=torch.float64)
    ref = torch.distributions.Independent(torch.distributions.Normal(torch.zeros_like(log_std), log_std.exp()), 1)
    assert gaussian_entropy(log_std).item() == pytest.approx(ref.entropy().item(), abs=1e-9)
    per = torch.distributions.Normal(torch.zeros_like(log_std), log_std.exp()).entropy()
    torch.testing.assert_close(gaussian_entropy_per_dim(log_std), per)


def test_entropy_negative_below_sigma_0242():
    assert gaussian_entropy(torch.tensor([math.log(0.24)])).item() < 0
    assert gaussian_entropy(torch.tensor([math.log(0.25)])).item() > 0


def test_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mean, x = torch.randn(5, 16, generator=g), torch.randn(5, 16, generator=g)
    log_std = torch.randn(5, 16, generator=g) * 0.5
    ref = torch.distributions.Normal(mean, log_std.exp()).log_prob(x).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(mean, log_std, x), ref)


@pytest.mark.parametrize("state_dependent", [False, True])
def test_policy_entropy_averages_over_states(state_dependent):
    pol = _policy(state_dependent)
    if state_dependent:
        with torch.no_grad():
            pol.log_std_head.weight.normal_(0, 0.1)
    obs = torch.randn(50, OBS_DIM, generator=torch.Generator().manual_seed(0))
    stats = policy_entropy(pol, obs, chunk=7)
    out = pol(obs)
    ref = torch.distributions.Normal(out.delta_mean, out.log_std.exp()).entropy()  # [N, D]
    assert stats.total == pytest.approx(ref.sum(-1).mean().item(), abs=1e-5)
    assert stats.per_dim == pytest.approx(ref.mean(0).tolist(), abs=1e-5)
    assert stats.state_dependent is state_dependent
    if not state_dependent:
        expected = float(pol.log_std.detach().sum()) + 16 * 0.5 * math.log(2 * math.pi * math.e)
        assert stats.total == pytest.approx(expected, abs=1e-5)


def test_act_is_cloned_plus_delta_mean_and_sampling_is_reproducible():
    pol = _policy()
    with torch.no_grad():
        pol.delta_net[-1].bias.fill_(0.3)
    obs = torch.randn(4, OBS_DIM)
    out = pol(obs)
    wp = pol.act(obs, deterministic=True)
    assert wp.shape == (4, 8, 2)
    torch.testing.assert_close(wp, out.cloned + 0.3)
    a = pol.act(obs, deterministic=False, generator=torch.Generator().manual_seed(5))
    b = pol.act(obs, deterministic=False, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, wp)
    d = sample_delta(out, torch.Generator().manual_seed(0))
    assert d.shape == (4, 16)


def test_rl_gradient_does_not_reach_cloned_head():
    pol = _policy()
    out = pol(torch.randn(8, OBS_DIM))
    (out.delta_mean.sum() + out.log_std.sum() + out.value.sum()).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in pol.encoder.parameters())
    assert all(p.grad is None for p in pol.bc_head.parameters())


@pytest.mark.parametrize("state_dependent", [False, True])
def test_checkpoint_round_trip(tmp_path, state_dependent):
    pol = _policy(state_dependent)
    pol.set_normalization(torch.randn(100, OBS_DIM) * 3 + 1, torch.randn(100, 8, 2) * 5)
    path = tmp_path / "a.pt"
    save_checkpoint(path, pol, {"train": {"lr": 3e-4}}, _meta())
    raw = torch.load(path, weights_only=True)
    assert raw["meta"]["format_version"] == FORMAT_VERSION
    assert raw["config"]["policy"]["state_dependent_std"] is state_dependent
    loaded = load_checkpoint(path, "cpu")
    obs = torch.randn(6, OBS_DIM)
    torch.testing.assert_close(loaded.policy.act(obs), pol.act(obs))
    assert loaded.meta["episode"] == 10 and loaded.config["train"]["lr"] == 3e-4
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_and_foreign_files_give_clear_errors(tmp_path):
    pol = _policy()
    good = tmp_path / "good.pt"
    save_checkpoint(good, pol, {}, _meta())
    data = good.read_bytes()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc.pt: not a readable checkpoint"):
        load_checkpoint(trunc)
    text = tmp_path / "notes.pt"
    text.write_text("hello world\n")  # pickle reads "h" as an opcode and reports a bare number
    with pytest.raises(CheckpointError, match=r"notes.pt: not a readable checkpoint \(not a torch.save archive\)$"):
        load_checkpoint(text)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    save_checkpoint(other, WaypointPolicy(PolicyConfig(obs_dim=OBS_DIM, hidden=16)), {}, _meta())
    raw = torch.load(other, weights_only=True)
    raw["config"]["policy"] = pol.config.to_dict()  # architecture says 32 wide, weights are 16 wide
    torch.save(raw, other)
    with pytest.raises(CheckpointError, match="other.pt: weights do not fit") as e:
        load_checkpoint(other)
    assert "the architecture needs" in str(e.value) and "\n" not in str(e.value)  # which weight, one line
    raw_missing = dict(raw, state_dict={k: v for k, v in raw["state_dict"].items() if k != "log_std"})
    torch.save(raw_missing, other)
    with pytest.raises(CheckpointError, match=r"other.pt: weights do not fit the policy architecture \(missing log_s"):
        load_checkpoint(other)
    torch.save(raw, other)
    raw["meta"]["format_version"] = FORMAT_VERSION + 1
    torch.save(raw, other)
    with pytest.raises(CheckpointError, match="format_version"):
        read_checkpoint(other)
    raw = torch.load(good, weights_only=True)
    raw["config"]["policy"]["unknown_knob"] = 1
    torch.save(raw, other)
    with pytest.raises(CheckpointError, match="architecture"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="version"):
        load_checkpoint(good, expect_obs=(OBS_DIM, 99))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "config": {}, "meta": {"x": object()}}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_folder_keeps_earlier_file(tmp_path):
    pol = _policy()
    path = tmp_path / "ro" / "a.pt"
    path.parent.mkdir()
    save_checkpoint(path, pol, {}, _meta(episode=1))
    before = path.read_bytes()
    path.parent.chmod(0o555)
    try:
        with pytest.raises(CheckpointError, match="cannot write"):
            save_checkpoint(path, pol, {}, _meta(episode=2))
    finally:
        path.parent.chmod(0o755)
    assert path.read_bytes() == before


def test_unwritable_target_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="cannot write"):
        save_checkpoint(blocker / "a.pt", _policy(), {}, _meta())


def test_constant_velocity_prior():
    torch.manual_seed(0)
    pol = WaypointPolicy(PolicyConfig(obs_dim=OBS_DIM, hidden=16, speed_feature=2, speed_scale=10.0, waypoint_dt=0.5))
    with torch.no_grad():
        pol.bc_head.weight.zero_()
        pol.bc_head.bias.zero_()
    obs = torch.zeros(3, OBS_DIM)
    obs[:, 2] = torch.tensor([0.0, 1.0, 1.5])  # 0, 10, 15 m/s
    wp = pol.act(obs)
    expected_x = torch.tensor([0.0, 10.0, 15.0])[:, None] * 0.5 * torch.arange(1, 9)
    torch.testing.assert_close(wp[..., 0], expected_x)
    torch.testing.assert_close(wp[..., 1], torch.zeros(3, 8))
    # normalisation is fitted on the residual over the prior: targets equal to the prior give zero mean
    pol.set_normalization(obs, pol.prior(obs))
    torch.testing.assert_close(pol.wp_mean, torch.zeros(16))


def test_acting_digest_ignores_the_value_head_and_sees_every_acting_weight(tmp_path):
    from policy.checkpoint import DIGEST_KEY, acting_digest, policy_digest

    pol = _policy()
    base = policy_digest(pol)
    with torch.no_grad():
        pol.value_net[0].weight.add_(1.0)
    assert policy_digest(pol) == base  # the critic does not act
    save_checkpoint(tmp_path / "a.pt", pol, {}, _meta())
    obj = torch.load(tmp_path / "a.pt", weights_only=True)
    assert obj["meta"][DIGEST_KEY] == base == acting_digest(obj["state_dict"], obj["config"]["policy"])
    for name in ("obs_mean", "encoder.0.weight", "bc_head.bias", "delta_net.2.weight", "log_std"):
        other = _policy()
        with torch.no_grad():
            other.state_dict()[name].view(-1)[0] += 1e-3
        assert policy_digest(other) != base, name
    assert policy_digest(_policy(seed=1)) != base
    # the architecture is part of the identity, its initialisation setting is not
    assert policy_digest(_policy(max_log_std=1.0)) != base
    assert acting_digest(_policy(init_log_std=-1.0).state_dict()) != acting_digest(pol.state_dict())


def test_acting_digest_survives_a_round_trip_and_a_state_dependent_head(tmp_path):
    from policy.checkpoint import acting_digest, policy_digest

    pol = _policy(state_dependent=True)
    save_checkpoint(tmp_path / "s.pt", pol, {"train": {}}, _meta())
    loaded = load_checkpoint(tmp_path / "s.pt")
    assert loaded.meta["policy_digest"] == policy_digest(loaded.policy) == policy_digest(pol)
    assert len(loaded.meta["policy_digest"]) == 64
    sd = dict(pol.state_dict())
    sd["log_std_head.bias"] = sd["log_std_head.bias"] + 0.5
    assert acting_digest(sd) != acting_digest(pol.state_dict())


@pytest.mark.parametrize("name", ["cuda", "cuda:7", "mps", "tpu", "not a device", "cpu:x"])
def test_unavailable_or_unknown_device_is_one_line(name):
    from policy.device import DeviceError, resolve_device

    if name.startswith("cuda") and torch.cuda.device_count() > (7 if ":" in name else 0):
        pytest.skip("this machine has that GPU")
    if name == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(DeviceError) as e:
        resolve_device(name)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"--device {name}:")
    if name == "cuda" and not torch.cuda.is_available():
        assert "no cuda device" in msg


def test_present_devices_resolve():
    from policy.device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
