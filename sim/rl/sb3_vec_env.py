"""Stable-Baselines3 ``VecEnv`` over :class:`sim.rl.gym_env.BatchedClosedLoop` (one simulator batch, autoreset)."""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from sim.rl.gym_env import BatchedClosedLoop, _spaces


class SB3VecEnv(VecEnv):
    """SB3's vectorised-env interface on the batched core.

    When the batch's episodes end, SB3's convention applies: ``dones[i]`` True, ``infos[i]["terminal_observation"]``
    the last observation, the returned observation the first of the next episode;
    ``infos[i]["TimeLimit.truncated"]`` marks truncation. ``reset_infos[i]`` holds the single env's reset info
    (``scene_id``) of slot i's current episode.
    """

    def __init__(self, core: BatchedClosedLoop) -> None:
        self.core = core  # first: VecEnv.__init__ reads render_mode through get_attr
        self._actions: np.ndarray | None = None
        self._seed: int | None = None
        obs_space, act_space = _spaces(core.delta_bound)
        super().__init__(core.num_envs, obs_space, act_space)

    def _reset_core(self, seed: int | None = None) -> np.ndarray:
        obs = self.core.reset(seed)
        self.reset_infos = [self.core.reset_info(i) for i in range(self.num_envs)]
        return obs

    def reset(self) -> np.ndarray:
        obs = self._reset_core(self._seed)
        self._seed = None
        return obs

    def seed(self, seed: int | None = None) -> list[int | None]:  # type: ignore[override]
        self._seed = seed
        return [seed] * self.num_envs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        assert self._actions is not None
        obs, r, term, trunc, infos = self.core.step(self._actions)
        dones = term | trunc
        if dones.any():
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = obs[i].copy()
                infos[i]["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
            obs = self._reset_core()
        return obs, r.astype(np.float32), dones, infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.core, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.core, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        raise NotImplementedError("SB3VecEnv has one batched core; call env.core directly")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))
