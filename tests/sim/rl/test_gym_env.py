"""driveselect/ClosedLoop-v0: Gymnasium checks, native batching equals single envs, reward and metrics match the
project's own rollout, SB3 trains on the VecEnv adapter."""

from __future__ import annotations

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

import torch  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

from scenarios.loading import load_scenes  # noqa: E402
from sim.metrics.registry import MetricContext, compute_metrics  # noqa: E402
from sim.rl import gym_env as ge  # noqa: E402
from sim.rl.reward import REWARD_SERIES, RewardWeights, step_rewards  # noqa: E402
from sim.rollout import rollout  # noqa: E402


@pytest.fixture(scope="module")
def scenes():
    return load_scenes("procedural-small:train").scenes[:4]


def _actions(n_steps: int, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.5, 1.5, (n_steps, n, ge.ACTION_DIM)).astype(np.float32)


def test_single_env_passes_check_env(scenes):
    env = gym.make(ge.ENV_ID, scenes=scenes)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert obs.shape == (ge.OBS_DIM,) and obs.dtype == np.float32 and "scene_id" in info
    assert env.action_space.shape == (ge.ACTION_DIM,)
    assert float(env.action_space.high[0]) == ge.DELTA_BOUND


def test_make_vec_is_natively_batched(scenes):
    v = gym.make_vec(ge.ENV_ID, num_envs=3, scenes=scenes)
    assert isinstance(v, ge.ClosedLoopVectorEnv)
    assert v.core.num_envs == 3
    obs, _ = v.reset(seed=0)
    assert obs.shape == (3, ge.OBS_DIM)


def test_vector_env_equals_single_envs_and_autoresets(scenes):
    n = 3
    vec = ge.ClosedLoopVectorEnv(n, scenes=scenes[:n], shuffle=False)
    singles = [ge.ClosedLoopEnv(scenes=[s], shuffle=False) for s in scenes[:n]]
    vo, _ = vec.reset(seed=0)
    so = np.stack([e.reset(seed=0)[0] for e in singles])
    np.testing.assert_allclose(vo, so, atol=1e-5)
    acts = _actions(200, n)
    for k in range(200):
        vo, vr, vte, vtr, vinfo = vec.step(acts[k])
        outs = [e.step(acts[k, i]) for i, e in enumerate(singles)]
        sr = np.array([o[1] for o in outs])
        np.testing.assert_allclose(vr, sr, rtol=1e-4, atol=1e-4)
        assert list(vte) == [o[2] for o in outs]
        if vte.any():
            assert vte.all() and not vtr.any()
            np.testing.assert_allclose(vinfo["final_obs"], np.stack([o[0] for o in outs]), atol=1e-4)
            for i, o in enumerate(outs):
                for name, val in o[4]["metrics"].items():
                    got = vinfo["final_info"][i]["metrics"][name]
                    assert got == pytest.approx(val, abs=1e-4, nan_ok=True), name
            # same-step autoreset: the returned observation starts the next episode (same scenes, in order)
            np.testing.assert_allclose(vo, np.stack([e.reset()[0] for e in singles]), atol=1e-5)
            break
    else:
        pytest.fail("no episode ended in 200 steps")


def test_reward_and_metrics_match_the_trainer(scenes):
    """Same actions through rollout(): same trajectory, the trainer's reward terms, compute_metrics at the end."""
    w = RewardWeights(comfort=0.0)  # comfort derivatives are causal in the env (documented), centred post hoc
    core = ge.BatchedClosedLoop(4, scenes=scenes, shuffle=False, weights=w)
    core.reset(0)
    acts = torch.from_numpy(_actions(100, 4, seed=1))
    rewards, infos = [], None
    for k in range(100):
        _, r, te, tr, infos = core.step(acts[k])
        rewards.append(r)
        if te.any() or tr.any():
            break
    b = core.batch
    t0 = b.init_step
    ro = rollout(b, lambda obs, t: (ge.waypoints_from_action(obs, acts[t - t0], dt=b.dt), {}))
    torch.testing.assert_close(ro.traj, core.traj, atol=1e-4, rtol=0)
    ctx = MetricContext(ro, b)
    ref = step_rewards({n: getattr(ctx, n) for n in REWARD_SERIES}, b.step_valid, t0, w, b.road.has_road)
    np.testing.assert_allclose(np.stack(rewards, 1), ref.reward.numpy(), atol=1e-4)
    m = compute_metrics(ro, b)
    for name, val in m.items():
        np.testing.assert_allclose([i["metrics"][name] for i in infos], val.numpy(), atol=1e-4, equal_nan=True)


def test_bad_action_shape_is_refused(scenes):
    core = ge.BatchedClosedLoop(2, scenes=scenes)
    core.reset(0)
    with pytest.raises(ge.SimError, match=r"action must be \[2, 16\]"):
        core.step(np.zeros((2, 3), np.float32))


def test_sb3_ppo_trains_on_the_vec_env(scenes):
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger

    env = ge.make_sb3_vec_env(4, scenes=scenes)
    model = PPO("MlpPolicy", env, n_steps=80, batch_size=80, n_epochs=1, device="cpu", seed=0)
    model.set_logger(Logger(None, []))  # SB3's default logger makes a /tmp/SB3-<time> folder per model
    model.learn(320)
    assert model.num_timesteps == 320
    assert len(model.ep_info_buffer) == 4  # one finished episode per env, through info["episode"]
    obs = env.reset()
    for _ in range(80):
        obs, r, dones, infos = env.step(np.zeros((4, ge.ACTION_DIM), np.float32))
    assert dones.all() and all("terminal_observation" in i and "metrics" in i for i in infos)
