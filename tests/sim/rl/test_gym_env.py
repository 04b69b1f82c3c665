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
from sim.rl.reward import TTC_MIN, RewardWeights, reward_signals, step_rewards  # noqa: E402
from sim.rollout import rollout  # noqa: E402


@pytest.fixture(scope="module")
def suite():
    return load_scenes("procedural-small:train", progress=False).scenes


@pytest.fixture(scope="module")
def scenes(suite):
    return suite[:4]


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


def _same_infos(native: dict, sync: dict, where: str = "infos") -> None:
    """The same keys, masks, dtypes and shapes, and the same values (wall-clock ``episode/t`` aside)."""
    assert set(native) == set(sync), where
    for key, want in sync.items():
        got, at = native[key], f"{where}[{key!r}]"
        if isinstance(want, dict):
            _same_infos(got, want, at)
            continue
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape, at
        if key == "t":
            continue
        if want.dtype == object:
            for g, w in zip(got, want):
                if isinstance(w, np.ndarray):
                    np.testing.assert_allclose(g, w, atol=1e-4, err_msg=at)
                else:
                    assert g == w, at
        else:
            np.testing.assert_allclose(got, want, atol=1e-4, equal_nan=True, err_msg=at)


def test_vector_env_equals_sync_vector_env_of_single_envs(scenes):
    """``gym.make_vec`` (one simulator batch) gives what Gymnasium's ``SyncVectorEnv`` with same-step autoreset gives
    over single envs on the same scenes: observations, rewards, flags, and infos in the same layout (dict of arrays
    with ``_key`` masks: ``scene_id`` at reset and autoreset, ``final_obs``, ``final_info``)."""
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    n = 3
    vec = gym.make_vec(ge.ENV_ID, num_envs=n, scenes=scenes[:n], shuffle=False)
    sync = SyncVectorEnv([lambda s=s: ge.ClosedLoopEnv(scenes=[s], shuffle=False) for s in scenes[:n]],
                         autoreset_mode=AutoresetMode.SAME_STEP)
    vo, vinfo = vec.reset(seed=0)
    so, sinfo = sync.reset(seed=0)
    np.testing.assert_allclose(vo, so, atol=1e-5)
    _same_infos(vinfo, sinfo)
    assert list(vinfo["scene_id"]) == [s.id for s in scenes[:n]]
    acts = _actions(200, n)
    for k in range(200):
        vo, vr, vte, vtr, vinfo = vec.step(acts[k])
        so, sr, ste, stu, sinfo = sync.step(acts[k])
        np.testing.assert_allclose(vr, sr, rtol=1e-4, atol=1e-4)
        assert list(vte) == list(ste) and list(vtr) == list(stu)
        _same_infos(vinfo, sinfo)
        np.testing.assert_allclose(vo, so, atol=1e-4)  # same-step autoreset: the next episode's first observation
        if vte.any():
            assert vte.all() and not vtr.any()
            score = vinfo["final_info"]["metrics"]["score"]  # Gymnasium's layout: an array over the envs
            assert score.shape == (n,) and score.dtype == np.float64 and vinfo["final_info"]["_metrics"].all()
            assert vinfo["final_obs"].shape == (n,) and vinfo["final_obs"][0].shape == (ge.OBS_DIM,)
            break
    else:
        pytest.fail("no episode ended in 200 steps")


def test_reward_and_metrics_match_the_trainer(scenes):
    """Same actions through rollout(): same trajectory, the trainer's reward terms, compute_metrics at the end."""
    w = RewardWeights(comfort=0.0)  # comfort derivatives are causal in the env (documented), centred post hoc
    core = ge.BatchedClosedLoop(4, scenes=scenes, shuffle=False, weights=w)
    core.reset(0)
    acts = torch.from_numpy(_actions(100, 4, seed=1))
    rewards, infos, _ = _episode(core, acts)
    b = core.batch
    t0 = b.init_step
    ro = rollout(b, lambda obs, t: (ge.waypoints_from_action(obs, acts[t - t0], dt=b.dt), {}))
    torch.testing.assert_close(ro.traj, core.traj, atol=1e-4, rtol=0)
    sig = reward_signals(ro, b, w)
    ref = step_rewards(sig.series, b.step_valid, t0, w, b.road.has_road, sig.at_fault)
    np.testing.assert_allclose(np.stack(rewards, 1), ref.reward.numpy(), atol=1e-4)
    m = compute_metrics(ro, b)
    for name, val in m.items():
        np.testing.assert_allclose([i["metrics"][name] for i in infos], val.numpy(), atol=1e-4, equal_nan=True)


def _episode(core, acts: torch.Tensor) -> tuple[list, list | None, torch.Tensor]:
    """Step ``core`` with ``acts[k]`` until an episode ends: ``(rewards per step, last infos, terminated)``."""
    rewards, infos, te = [], None, None
    for k in range(len(acts)):
        _, r, te, tr, infos = core.step(acts[k])
        rewards.append(r)
        if te.any() or tr.any():
            break
    return rewards, infos, te


def _env_and_trainer_rewards(scenes, w: RewardWeights, seed: int, scale: float) -> dict[str, np.ndarray]:
    """Random actions through the env and, the same actions, through ``rollout`` and the trainer's reward.

    Returns:
        ``env``, ``trainer``: float ``[B, S]`` per-transition rewards; ``causal``: the trainer's reward with the
        at-fault flag judged on the episode up to each step; ``differs``: bool ``[B]`` a collision starts while that
        flag differs from the trainer's whole-episode one; ``at_fault_onset``, ``other_onset``, ``ttc``: bool
        ``[B, S]`` a collision starts with the trainer's flag True / False, TTC below its bound.
    """
    n = len(scenes)
    core = ge.BatchedClosedLoop(n, scenes=scenes, shuffle=False, weights=w)
    core.reset(0)
    acts = torch.from_numpy(np.random.default_rng(seed).uniform(-scale, scale, (100, n, ge.ACTION_DIM)).astype("f4"))
    rewards, _, te = _episode(core, acts)
    b = core.batch
    t0 = b.init_step
    assert te.all() and b.num_steps == core.t + 1  # whole episodes: the trainer scores the same transitions
    ro = rollout(b, lambda obs, t: (ge.waypoints_from_action(obs, acts[t - t0], dt=b.dt), {}))
    sig = reward_signals(ro, b, w)
    args = (sig.series, b.step_valid, t0, w, b.road.has_road)
    fault, first = MetricContext(ro, b).fault_by_agent  # [B, A-1]: each touched agent judged at its first contact
    scored = torch.arange(t0 + 1, b.num_steps)  # the step each transition is scored on
    so_far = (fault[:, :, None] & (first[:, :, None] <= scored)).any(1)  # [B, S]
    yes, no = (step_rewards(*args, torch.full((n,), f)).reward for f in (True, False))
    coll = sig.series["collision"] & b.step_valid
    onset = coll[:, t0 + 1:] & ~coll[:, t0:-1]
    return {"env": np.stack(rewards, 1), "trainer": step_rewards(*args, sig.at_fault).reward.numpy(),
            "causal": torch.where(so_far, yes, no).numpy(),
            "differs": (onset & (so_far != sig.at_fault[:, None])).any(1).numpy(),
            "at_fault_onset": (onset & sig.at_fault[:, None]).numpy(),
            "other_onset": (onset & ~sig.at_fault[:, None]).numpy(),
            "ttc": (sig.series["ttc"][:, t0 + 1:] < TTC_MIN).numpy()}


def test_env_reward_is_the_trainers_with_default_weights(suite):
    """Default weights (TTC and the at-fault factor included; comfort off: its derivatives are causal in the env,
    centred post hoc, as documented): per step, the env's reward is the trainer's on 64 procedural scenes with
    collisions, TTC violations and collisions that are not the ego's fault (small actions: the ego stays near its
    path, so agents behind it run into it; nuPlan's rear-end needs the agent's centre behind the ego's rear axle).
    The one documented exception: a collision that starts before the episode's first at-fault contact costs
    ``collision * not_at_fault`` in the env (it cannot see the later contact) and the full weight in the trainer
    (it judges the whole episode)."""
    w = RewardWeights(comfort=0.0)
    assert w.ttc > 0 and w.not_at_fault != 1.0  # the defaults use both
    r = _env_and_trainer_rewards(suite[:64], w, seed=0, scale=0.3)
    same = ~r["differs"]
    np.testing.assert_allclose(r["env"][same], r["trainer"][same], atol=1e-4)
    np.testing.assert_allclose(r["env"], r["causal"], atol=1e-4)  # the exception is exactly the one above
    assert same.sum() >= 62
    for term in ("at_fault_onset", "other_onset", "ttc"):  # not vacuous: the compared scenes hold every case
        assert r[term][same].any(), term


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
