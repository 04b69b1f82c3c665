"""driveselect/ClosedLoop-v0 at its edges: misuse and bad input are one-line errors, skipped scene files are reported,
``render_mode`` follows Gymnasium's API, the SB3 adapter builds without warnings."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

from scenarios.io import save_scenarios  # noqa: E402
from scenarios.loading import load_scenes  # noqa: E402
from sim.rl import gym_env as ge  # noqa: E402


@pytest.fixture(scope="module")
def scenes():
    return load_scenes("procedural-small:train", progress=False).scenes[:2]


def test_step_after_the_episode_ended_is_refused(scenes):
    env = gym.make(ge.ENV_ID, scenes=scenes[:1])
    env.reset(seed=0)
    zero = np.zeros(ge.ACTION_DIM, np.float32)
    steps, ended = 0, False
    while not ended:
        _, _, term, trunc, _ = env.step(zero)
        ended, steps = term or trunc, steps + 1
    with pytest.raises(ge.SimError, match=rf"step called after the episode ended \(after {steps} steps\); call reset"):
        env.step(zero)
    env.reset()
    env.step(zero)  # a new episode steps again


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_is_refused(scenes, bad):
    env = gym.make(ge.ENV_ID, scenes=scenes)
    env.reset(seed=0)
    action = np.zeros(ge.ACTION_DIM, np.float32)
    action[3] = bad
    with pytest.raises(ge.SimError, match=r"action must be finite .*NaN or inf in env\(s\) \[0\]"):
        env.step(action)
    core = ge.BatchedClosedLoop(3, scenes=scenes)
    core.reset(0)
    actions = np.zeros((3, ge.ACTION_DIM), np.float32)
    actions[1, 0] = bad
    with pytest.raises(ge.SimError, match=r"NaN or inf in env\(s\) \[1\]"):
        core.step(actions)


@pytest.fixture
def folder(tmp_path, scenes):
    """Two usable scene files and two unusable ones."""
    save_scenarios(tmp_path / "a_good.npz", scenes[:1])
    save_scenarios(tmp_path / "b_good.npz", scenes[1:2])
    (tmp_path / "c_broken.json").write_text("{not json")
    (tmp_path / "d_no_objects.json").write_text(json.dumps({"objects": [], "metadata": {"sdc_track_index": 0}}))
    return tmp_path


def test_skipped_scene_files_are_reported_and_strict_refuses_them(folder, scenes):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make(ge.ENV_ID, scenarios=str(folder))
    skipped = sorted(str(w.message) for w in caught if str(w.message).startswith("skipped "))
    assert len(skipped) == 2 and all("\n" not in line for line in skipped)
    assert skipped[0].startswith(f"skipped {folder / 'c_broken.json'}: ")
    assert skipped[1].startswith(f"skipped {folder / 'd_no_objects.json'}: ")
    assert [s.id for s in env.unwrapped.core.scenes] == [s.id for s in scenes]
    with pytest.raises(ge.SimError, match=r"c_broken.json: .*\(strict=True\)$"):
        gym.make(ge.ENV_ID, scenarios=str(folder), strict=True)


def test_render_mode_follows_gymnasiums_api(scenes):
    assert ge.ClosedLoopEnv.metadata["render_modes"] == [] == ge.ClosedLoopVectorEnv.metadata["render_modes"]
    env = gym.make(ge.ENV_ID, scenes=scenes, render_mode=None)
    assert env.render_mode is None
    with pytest.raises(ge.SimError, match=r"render_mode='rgb_array' is not supported: .* has no renderer"):
        gym.make(ge.ENV_ID, scenes=scenes, render_mode="rgb_array")
    vec = gym.make_vec(ge.ENV_ID, num_envs=2, scenes=scenes, render_mode=None)
    assert vec.render_mode is None
    with pytest.raises(ge.SimError, match=r"render_mode='human' is not supported"):
        gym.make_vec(ge.ENV_ID, num_envs=2, scenes=scenes, render_mode="human")


def test_sb3_vec_env_builds_without_warnings_and_keeps_reset_infos(scenes):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = ge.make_sb3_vec_env(2, scenes=scenes, shuffle=False)
    assert [str(w.message) for w in caught] == []
    assert env.render_mode is None
    env.reset()
    assert [i["scene_id"] for i in env.reset_infos] == [s.id for s in scenes]
