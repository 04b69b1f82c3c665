"""Agent plug-ins: SB3 zips read without unpickling act exactly like SB3, TorchScript and own checkpoints, identity
and step, the resolver, and one-line refusals."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from scenarios.loading import load_scenes  # noqa: E402
from sim.batch import make_batch  # noqa: E402
from sim.config import NUM_WAYPOINTS  # noqa: E402
from sim.evaluation.plugins import (  # noqa: E402
    AgentError,
    AgentInfo,
    OwnAgent,
    SB3Agent,
    load_agent,
    policy_fn,
    resolve_factory,
    step_from_name,
)
from sim.metrics.registry import compute_metrics  # noqa: E402
from sim.observation import OBS_DIM  # noqa: E402
from sim.rl import gym_env as ge  # noqa: E402
from sim.rollout import rollout  # noqa: E402
from tests.sim.evaluation.pickles import RunsCode  # noqa: E402


@pytest.fixture(scope="module")
def scenes():
    return load_scenes("procedural-small:test").scenes[:6]


@pytest.fixture(scope="module")
def sb3_zips(tmp_path_factory, scenes):
    from stable_baselines3 import A2C, PPO, SAC
    from stable_baselines3.common.logger import Logger

    d = tmp_path_factory.mktemp("sb3")
    env = ge.make_sb3_vec_env(2, scenes=scenes)
    ppo = PPO("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=1, device="cpu", seed=0)
    ppo.set_logger(Logger(None, []))  # SB3's default logger makes a /tmp/SB3-<time> folder per model
    ppo.learn(32)
    ppo.save(d / "rl_model_32_steps.zip")
    sac = SAC("MlpPolicy", env, learning_starts=4, batch_size=8, device="cpu", seed=0,
              policy_kwargs={"net_arch": [32, 32]})
    sac.set_logger(Logger(None, []))
    sac.learn(8)
    sac.save(d / "sac.zip")
    a2c = A2C("MlpPolicy", env, device="cpu", seed=0)  # its default policy_kwargs pickle the RMSprop optimizer
    a2c.set_logger(Logger(None, []))
    a2c.learn(20)
    a2c.save(d / "a2c.zip")
    return d


@pytest.mark.parametrize("name,algo", [("rl_model_32_steps.zip", "PPO"), ("sac.zip", "SAC"), ("a2c.zip", "A2C")])
def test_sb3_agent_acts_like_sb3_predict_and_runs_in_rollout(sb3_zips, scenes, name, algo):
    import stable_baselines3

    path = sb3_zips / name
    agent = load_agent("sb3", str(path))
    batch = make_batch(scenes)
    ro = rollout(batch, policy_fn(agent), record_obs=True)
    obs = ro.obs.reshape(-1, OBS_DIM)
    model = getattr(stable_baselines3, algo).load(path, device="cpu")  # SB3's own (pickling) loader: test only
    ref, _ = model.predict(obs.numpy(), deterministic=True)
    np.testing.assert_allclose(agent.action(obs).numpy(), ref, atol=1e-5)
    wps = agent.waypoints(obs[:5])
    torch.testing.assert_close(wps, ge.waypoints_from_action(obs[:5], torch.from_numpy(ref[:5])))
    assert compute_metrics(ro, batch)["score"].shape == (len(scenes),)
    assert agent.info.step == model.num_timesteps and agent.info.step_source == "meta"


def test_identity_follows_the_weights_not_the_file(sb3_zips, tmp_path):
    a = load_agent("sb3", str(sb3_zips / "rl_model_32_steps.zip"))
    copy = tmp_path / "renamed.zip"
    shutil.copy(sb3_zips / "rl_model_32_steps.zip", copy)
    assert load_agent("sb3", str(copy)).info.identity == a.info.identity
    assert load_agent("sb3", str(sb3_zips / "sac.zip")).info.identity != a.info.identity
    assert len(a.info.identity) == 64


def test_a2c_policy_kwargs_pickling_only_the_optimizer_are_read_and_others_refused(sb3_zips, scenes, tmp_path):
    """A2C's default ``policy_kwargs`` hold only the RMSprop optimizer (pickled by SB3): accepted from the readable
    keys, nothing unpickled; a pickled activation or feature extractor (it changes the network) is still refused."""
    import stable_baselines3
    from stable_baselines3 import A2C

    data = json.loads(zipfile.ZipFile(sb3_zips / "a2c.zip").read("data"))
    assert ":serialized:" in data["policy_kwargs"] and "optimizer_class" in data["policy_kwargs"]
    assert SB3Agent(str(sb3_zips / "a2c.zip")).kind == "ppo"  # the Gaussian mean, clipped, as PPO
    env = ge.make_sb3_vec_env(2, scenes=scenes)
    relu = A2C("MlpPolicy", env, device="cpu", seed=0, policy_kwargs={"activation_fn": torch.nn.ReLU})
    relu.save(tmp_path / "relu.zip")
    with pytest.raises(AgentError, match=r"relu.zip: policy_kwargs are pickled \(activation_fn: custom classes\)"):
        SB3Agent(str(tmp_path / "relu.zip"))
    wide = A2C("MlpPolicy", env, device="cpu", seed=0, policy_kwargs={"net_arch": [32, 32]})
    wide.save(tmp_path / "wide.zip")  # the optimizer pickled beside a plain net_arch: read from the weights' shapes
    obs = torch.randn(5, OBS_DIM)
    ref, _ = stable_baselines3.A2C.load(tmp_path / "wide.zip", device="cpu").predict(obs.numpy(), deterministic=True)
    np.testing.assert_allclose(SB3Agent(str(tmp_path / "wide.zip")).action(obs).numpy(), ref, atol=1e-5)
    src = sb3_zips / "a2c.zip"
    extractor = {**data["policy_kwargs"], "features_extractor_class": "<class 'my.Extractor'>"}
    _rezip(src, tmp_path / "extractor.zip", {"data": json.dumps({**data, "policy_kwargs": extractor})})
    with pytest.raises(AgentError, match=r"pickled \(features_extractor_class: custom classes\)"):
        SB3Agent(str(tmp_path / "extractor.zip"))


def test_step_from_name():
    assert step_from_name("out/run/checkpoints/ep00100.pt") == 100
    assert step_from_name("rl_model_20000_steps.zip") == 20000
    assert step_from_name("model_step-300.pt") == 300
    assert step_from_name("best_entropy.pt") is None


def _rezip(src: Path, dst: Path, replace: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for n in zin.namelist():
            zout.writestr(n, replace.get(n, zin.read(n)))
    return dst


def test_sb3_refusals_are_one_line(sb3_zips, tmp_path):
    src = sb3_zips / "rl_model_32_steps.zip"
    data = json.loads(zipfile.ZipFile(src).read("data"))
    cases = {}
    (tmp_path / "notzip.zip").write_bytes(b"hello")
    cases["notzip.zip"] = "not a zip file"
    with zipfile.ZipFile(tmp_path / "nodata.zip", "w") as z:
        z.writestr("other.txt", "x")
    cases["nodata.zip"] = "not a Stable-Baselines3 model"
    buf = io.BytesIO()
    torch.save({"x": argparse.Namespace(a=1)}, buf)  # needs unpickling of a class
    _rezip(src, tmp_path / "pickled.zip", {"policy.pth": buf.getvalue()})
    cases["pickled.zip"] = "needs unpickling"
    buf = io.BytesIO()
    marker = tmp_path / "code_ran"
    torch.save({"w": RunsCode(marker)}, buf)  # loading would run a shell command
    _rezip(src, tmp_path / "code.zip", {"policy.pth": buf.getvalue()})
    cases["code.zip"] = (r"policy.pth needs unpickling; refused: it pickles "
                         rf"{os.system.__module__}.system \(code\), nothing was unpickled$")
    _rezip(src, tmp_path / "kwargs.zip", {"data": json.dumps({**data, "policy_kwargs": {":type:": "<class 'dict'>",
                                                                                    ":serialized:": "gAR9"}})})
    cases["kwargs.zip"] = "pickled"
    obs_space = {**data["observation_space"], "_shape": [7]}
    _rezip(src, tmp_path / "shape.zip", {"data": json.dumps({**data, "observation_space": obs_space})})
    cases["shape.zip"] = r"observation_space has shape \[7\]"
    for name, msg in cases.items():
        with pytest.raises(AgentError, match=msg) as e:
            SB3Agent(str(tmp_path / name))
        assert "\n" not in str(e.value) and name in str(e.value) and "weights_only" not in str(e.value)
    assert not marker.exists()  # nothing was unpickled


def test_a_cut_short_zip_and_another_algorithm_say_what_they_are(sb3_zips, tmp_path):
    """A truncated SB3 zip opens as the PyTorch archive stored inside it (zipfile finds the inner end record): the
    refusal names what the zip holds and says it may be cut short. A TD3 / DDPG zip names its policy's module and
    the algorithms the plug-in reads."""
    src = sb3_zips / "rl_model_32_steps.zip"
    raw = src.read_bytes()
    inner_end = raw.rfind(b"PK\x05\x06", 0, len(raw) - 22)  # the last end record before the zip's own
    assert inner_end > 0
    (tmp_path / "cut.zip").write_bytes(raw[: inner_end + 22])
    with pytest.raises(AgentError) as e:
        SB3Agent(str(tmp_path / "cut.zip"))
    msg = str(e.value)
    assert "cut short" in msg and "it holds " in msg and "\n" not in msg and msg.startswith(str(tmp_path / "cut.zip"))
    data = json.loads(zipfile.ZipFile(src).read("data"))
    data["policy_class"] = {":type:": "<class 'abc.ABCMeta'>", ":serialized:": "gAR9",
                            "__module__": "stable_baselines3.td3.policies"}
    buf = io.BytesIO()
    torch.save({"actor.mu.0.weight": torch.zeros(4, OBS_DIM), "actor.mu.0.bias": torch.zeros(4)}, buf)
    _rezip(src, tmp_path / "td3.zip", {"data": json.dumps(data), "policy.pth": buf.getvalue()})
    with pytest.raises(AgentError) as e:
        SB3Agent(str(tmp_path / "td3.zip"))
    assert "(stable_baselines3.td3.policies)" in str(e.value) and "PPO, A2C and SAC" in str(e.value)


def test_a_folder_of_sb3_checkpoints_skips_sb3s_side_files(scenes, tmp_path):
    """``--agent sb3 --ckpt DIR``: the model zips of ``CheckpointCallback``; its VecNormalize statistics and replay
    buffers (pickles) are left out with a note naming them, never read."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import CheckpointCallback
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import VecNormalize

    from sim.evaluation.plugin_candidates import plugin_candidates

    d = tmp_path / "checkpoints"
    sac = SAC("MlpPolicy", VecNormalize(ge.make_sb3_vec_env(2, scenes=scenes)), learning_starts=4, batch_size=8,
              device="cpu", seed=0, policy_kwargs={"net_arch": [16]})
    sac.set_logger(Logger(None, []))
    sac.learn(16, callback=CheckpointCallback(8, str(d), save_replay_buffer=True, save_vecnormalize=True))
    side = sorted(p.name for p in d.iterdir() if p.suffix == ".pkl")
    assert side == ["rl_model_replay_buffer_16_steps.pkl", "rl_model_vecnormalize_16_steps.pkl"]
    notes: list[str] = []
    cands, out = plugin_candidates([str(d)], "sb3", "cpu", tmp_path, notes.append)
    assert [c.name for c in cands] == ["rl_model_16_steps.zip"] and out == tmp_path
    note = next(n for n in notes if n.startswith("note: --ckpt"))
    assert all(name in note for name in side) and "VecNormalize statistics are not applied" in note, note


def test_the_sb3_example_evaluates_the_tensorboard_run_it_wrote(tmp_path):
    """A second ``python -m examples.sb3_ppo --out DIR`` writes ``tb/PPO_2`` beside ``tb/PPO_1`` (SB3 numbers its
    runs); the example's evaluation judges the run it just wrote, not the folder of both."""
    pytest.importorskip("tensorboard")
    from examples.sb3_ppo import eval_command, train

    runs = [train(tmp_path, 2, 2 * 80, 2 * 80, "procedural-small:train", 0) for _ in range(2)]
    assert runs == [tmp_path / "tb" / "PPO_1", tmp_path / "tb" / "PPO_2"]
    cmd = eval_command(tmp_path, "procedural-small:test", 4, "score", 0, runs[-1])
    assert cmd[cmd.index("--signals") + 1] == str(tmp_path / "tb" / "PPO_2")


class _Plan(torch.nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(OBS_DIM, 2 * k)
        self.k = k

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.lin(obs).view(-1, self.k, 2)


def test_torchscript_agent_and_wrong_shape(tmp_path, scenes):
    torch.manual_seed(0)
    good = _Plan(NUM_WAYPOINTS)
    torch.jit.script(good).save(str(tmp_path / "plan_step_40.pt"))
    agent = load_agent("torchscript", str(tmp_path / "plan_step_40.pt"))
    obs = torch.randn(3, OBS_DIM)
    torch.testing.assert_close(agent.waypoints(obs), good(obs))
    assert agent.info.step == 40 and agent.info.step_source == "file name"
    batch = make_batch(scenes[:2])
    assert rollout(batch, policy_fn(agent)).traj.shape[0] == 2
    torch.jit.script(_Plan(3)).save(str(tmp_path / "bad.pt"))
    with pytest.raises(AgentError, match=r"bad.pt: module output must be \[B, 8, 2\] waypoints, got \[2, 3, 2\]"):
        load_agent("torchscript", str(tmp_path / "bad.pt"))


def test_own_agent_matches_policy_act(tmp_path):
    from policy.checkpoint import save_checkpoint
    from policy.model import PolicyConfig, WaypointPolicy
    from sim.observation import OBS_VERSION

    torch.manual_seed(1)
    pol = WaypointPolicy(PolicyConfig(obs_dim=OBS_DIM, num_waypoints=NUM_WAYPOINTS, obs_version=OBS_VERSION))
    meta = {"episode": 250, "entropy": 0.0, "eval_info": {}}
    save_checkpoint(tmp_path / "ep00250.pt", pol, {}, meta)
    agent = resolve_factory("own")(str(tmp_path / "ep00250.pt"), "cpu")
    assert isinstance(agent, OwnAgent) and agent.info.step == 250 and agent.info.step_source == "meta"
    obs = torch.randn(4, OBS_DIM)
    torch.testing.assert_close(agent.waypoints(obs), pol.eval().act(obs))
    with torch.no_grad():  # the value head is not part of the acting identity
        pol.value_net[0].weight.add_(1.0)
    save_checkpoint(tmp_path / "other.pt", pol, {}, meta)
    assert OwnAgent(str(tmp_path / "other.pt")).info.identity == agent.info.identity


def test_resolver():
    assert resolve_factory("sim.evaluation.plugins:TorchScriptAgent").__name__ == "TorchScriptAgent"
    for spec, msg in [("nope", "not a built-in"), ("no_such_mod:f", "cannot import 'no_such_mod'"),
                      (":", "cannot import ''"), (".rel:f", "cannot import '.rel'"),
                      ("sim.evaluation.plugins:Missing", "has no Missing"),
                      ("sim.evaluation.plugins:NUM_WAYPOINTS", "not callable")]:
        with pytest.raises(AgentError, match=msg):
            resolve_factory(spec)


@pytest.mark.parametrize("spec, fault", [("json:loads", "TypeError"), ("collections:namedtuple", "ValueError"),
                                         ("math:sqrt", "TypeError")])
def test_a_factory_that_fails_is_a_one_line_agent_error(tmp_path, spec, fault):
    """Any callable can be named; one that cannot build an agent from (path, device) is the plug-in's fault, named
    in one line with the file (not a traceback)."""
    from sim.evaluation.plugins import load_agent

    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"")
    with pytest.raises(AgentError, match=f"--agent {spec}: the factory failed on .*m.pt \\({fault}") as e:
        load_agent(spec, str(ckpt))
    assert "\n" not in str(e.value)


# --- agents that build their own features or output controls ----------------------------------------------------

class _PlanFromState:
    """A state agent: a constant plan, turned into controls by its own copy of the waypoint controller."""

    def __init__(self, path: str, device: str = "cpu"):
        from sim.controller import WaypointController

        self.info = AgentInfo("tests.sim.evaluation.test_plugins:plan_from_state", path, "0" * 64, None, "none")
        self.plan = _PLAN.clone()
        self.ctrl_factory = WaypointController

    def from_state(self, state, batch):
        from sim.rollout import Controls

        if not hasattr(self, "ctrl"):
            self.ctrl = self.ctrl_factory(batch.dt)
        accel, curvature = self.ctrl(self.plan.expand(state.speed.shape[0], -1, -1), state.speed[:, 0])
        return Controls(accel, curvature)


_PLAN = torch.stack([torch.linspace(1.0, 8.0, NUM_WAYPOINTS), torch.linspace(0.0, 0.8, NUM_WAYPOINTS)], -1)[None]


def plan_from_state(path: str, device: str) -> _PlanFromState:
    """Factory for ``--agent tests.sim.evaluation.test_plugins:plan_from_state``."""
    return _PlanFromState(path, device)


def test_a_state_agent_returning_controls_equals_the_waypoint_path(scenes, tmp_path):
    """The state + controls protocol against the oracle: the same plan through the usual observation/waypoint path."""
    from sim.evaluation.plugins import load_agent, policy_fn
    from sim.rollout import StatePolicy

    ckpt = tmp_path / "plan.bin"
    ckpt.write_bytes(b"plan")
    agent = load_agent("tests.sim.evaluation.test_plugins:plan_from_state", str(ckpt))
    fn = policy_fn(agent)
    assert isinstance(fn, StatePolicy)
    batch = make_batch(scenes[:4])
    via_state = rollout(batch, fn)
    via_waypoints = rollout(batch, lambda obs, t: (_PLAN.expand(obs.shape[0], -1, -1), {}))
    torch.testing.assert_close(via_state.traj, via_waypoints.traj)
    assert via_state.ego_action.abs().sum() > 0  # it did drive


def test_controls_of_the_wrong_shape_are_one_line(scenes):
    from sim.config import SimError
    from sim.rollout import Controls, StatePolicy

    batch = make_batch(scenes[:2])
    bad = StatePolicy(lambda state, b, t: (Controls(torch.zeros(3), torch.zeros(2)), {}))
    with pytest.raises(SimError, match=r"Controls\(accel \[2\], curvature \[2\]\), got \[\[3\], \[2\]\]"):
        rollout(batch, bad)


def test_the_load_time_probe_runs_a_state_agent_as_the_rollout_will(tmp_path):
    """``probe_agent`` gives a ``from_state`` agent the probe's state and batch; controls holding NaN are a reason
    to skip the file, naming the probe's scene."""
    from sim.evaluation.plugins import probe_agent

    ckpt = tmp_path / "plan.bin"
    ckpt.write_bytes(b"plan")
    spec = "tests.sim.evaluation.test_plugins:plan_from_state"
    agent = load_agent(spec, str(ckpt))
    assert probe_agent(agent, spec) is None
    plain = agent.from_state
    agent.from_state = lambda state, batch: plain(state, batch)._replace(curvature=torch.full((2,), float("nan")))
    reason = probe_agent(agent, spec)
    assert reason is not None and f"agent plug-in {spec} returned non-finite controls (NaN or infinite) on scene " \
        "procedural/cut_in/7 (and 1 more) (load-time probe); not scored" == reason, reason
