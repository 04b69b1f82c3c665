"""Gymnasium environment ``driveselect/ClosedLoop-v0`` on the batched simulator (registered on import).

One episode = one scene replayed in closed loop from its ``init_step`` to its last step (10 Hz).

- **Observation**: the project's observation vector, float32 ``[OBS_DIM]`` (:mod:`sim.observation`).
- **Action**: waypoint deltas, float32 ``[2K]`` metres ``(dx0, dy0, dx1, dy1, ...)`` in the ego frame, bounded
  by ``[-delta_bound, delta_bound]`` (default :data:`DELTA_BOUND` = 5 m; clipped). They are added to the
  constant-velocity base plan (waypoint k at ``speed * 0.5 s * (k + 1)`` straight ahead), exactly as the
  policy head's deltas are added to its cloned plan; :func:`sim.action_map.waypoints_from_action` is the one
  mapping, shared with the ``sb3`` agent plug-in. The waypoint controller (:mod:`sim.controller`) turns them into
  (accel, curvature).
- **Reward**: the trainer's reward (:func:`sim.rl.reward.step_rewards` on the series named by
  :func:`sim.rl.reward.reward_series`, default :class:`~sim.rl.reward.RewardWeights`): collision onset (times
  ``not_at_fault`` unless the ego is at fault), offroad distance, broken comfort bounds, distance to the log, time
  to collision below 0.95 s, and progress along the route (weight 0 by default). A step-wise env cannot see the
  future, so two terms are judged on the episode so far: the comfort derivatives on the last ``REWARD_WINDOW``
  steps (the trainer's post-hoc reward uses a centred window), and a collision onset costs the full weight when an
  at-fault collision has happened up to that step (the trainer judges the whole episode, so the two differ only
  when a collision that is not the ego's fault comes before an at-fault one). The other terms are identical.
- **Episode end**: ``terminated`` when the scene's log ends; in a batch of scenes of different lengths
  the batch ends with its shortest scene and longer ones are ``truncated``. ``info["metrics"]`` then holds
  every closed-loop metric of :func:`sim.metrics.registry.compute_metrics` (``{name: float}``).
- **Scenes**: ``scenarios=`` a bundled suite (``"procedural:train"``), a scenario file or a folder, or
  ``scenes=`` a list of :class:`~scenarios.scenario.Scenario`. Unusable files or scenes of a file or folder are
  skipped with a warning each (``skipped FILE[:SCENE]: reason``, :func:`scenarios.loading.load_scenes`), or stop
  the constructor with ``strict=True``.
- **Rendering**: none (``metadata["render_modes"]`` is empty); ``render_mode`` other than None is refused.

``gymnasium.make_vec(ENV_ID, num_envs=N)`` gives :class:`ClosedLoopVectorEnv`: one simulator batch of N scenes
with same-step autoreset (not N copies); its infos follow Gymnasium's vector convention (a dict of arrays, each
with a ``_key`` mask), as ``SyncVectorEnv`` with ``AutoresetMode.SAME_STEP`` lays them out. :class:`SB3VecEnv`
adapts the same core to Stable-Baselines3.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from torch import Tensor

from scenarios.scenario import Scenario
from scenarios.suites import DEFAULT_CACHE_DIR
from sim.action_map import ACTION_DIM, DELTA_BOUND, waypoints_from_action
from sim.backends.kinematic import KinematicBackend
from sim.batch import ScenarioBatch, make_batch
from sim.config import DEFAULT_MAX_AGENTS, SimError
from sim.controller import WaypointController
from sim.metrics.registry import MetricContext, compute_metrics
from sim.observation import OBS_DIM, observe
from sim.rl.reward import RewardWeights, reward_series, step_rewards, uses_at_fault
from sim.rollout import Rollout

ENV_ID = "driveselect/ClosedLoop-v0"
REWARD_WINDOW = 16  # steps of history for the per-step comfort terms (jerk window 15 + 1)
_POINT_SERIES = ("collision", "offroad_dist", "route_s", "log_dist")  # need only the state at one step


def _load(scenarios: str | None, scenes: Sequence[Scenario] | None, cache_dir: str | None,
          strict: bool) -> list[Scenario]:
    """The env's scenes. A file or folder's unusable files or scenes become one warning each (``skipped FILE[:SCENE]:
    why``, the lines training and ``sim.evaluate`` print), or, with ``strict``, a :class:`SimError` naming the first;
    its import notes (parts of a scene left out) become ``note: ...`` warnings."""
    if scenes is not None:
        out = list(scenes)
    else:
        from scenarios.loading import load_scenes
        from scenarios.scenario import ScenarioError

        spec = scenarios or "procedural:train"
        try:
            try:
                report = load_scenes(spec, cache_dir=cache_dir or None, strict=strict)
            except OSError:  # cache folder not writable: generate in memory
                report = load_scenes(spec, strict=strict)
        except ScenarioError as e:
            raise SimError(str(e).replace("(--strict)", "(strict=True)")) from None
        for note in report.notes:
            warnings.warn(f"note: {note}", UserWarning, stacklevel=4)
        for item in report.skipped:
            warnings.warn(item.line(), UserWarning, stacklevel=4)
        out = list(report.scenes)
    if not out:
        raise SimError(f"{scenarios}: no scenes")
    return out


AGENT_MODELS = ("log", "idm")
"""Other agents' models the env simulates (``agents=``): log replay or IDM."""


MAX_ENVS = 1 << 20  # scenes in one batch; beyond this the observations alone outgrow any machine's memory


def _check_arguments(num_envs: Any, agents: Any, delta_bound: Any, max_agents: Any, device: Any) -> torch.device:
    """Check the constructor's numbers and names before any scene is loaded; returns the present device.

    Raises:
        SimError: one line naming the argument and what it must be (e.g. ``device="cuda"`` without a GPU).
    """
    from policy.device import DeviceError, resolve_device

    def whole(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not whole(num_envs) or not 1 <= num_envs <= MAX_ENVS:
        raise SimError(f"num_envs must be an integer in [1, {MAX_ENVS}], got {num_envs!r}")
    if not whole(max_agents) or max_agents < 1:
        raise SimError(f"max_agents must be an integer >= 1, got {max_agents!r}")
    if agents not in AGENT_MODELS:
        raise SimError(f"agents must be one of {', '.join(AGENT_MODELS)}, got {agents!r}")
    if isinstance(delta_bound, bool) or not isinstance(delta_bound, (int, float, np.floating, np.integer)) \
            or not math.isfinite(delta_bound) or delta_bound <= 0:
        raise SimError(f"delta_bound must be a finite number > 0 (metres), got {delta_bound!r}")
    if not isinstance(device, (str, torch.device)):
        raise SimError(f"device must be a device name such as 'cpu' or 'cuda', got {device!r}")
    try:
        return resolve_device(str(device), flag="device")
    except DeviceError as e:
        raise SimError(str(e).replace("(use --device cpu)", "(use device='cpu')")) from None


def check_render_mode(render_mode: Any) -> None:
    """Refuse a ``render_mode`` the env cannot honour (it has no renderer: ``metadata["render_modes"]`` is empty).

    Raises:
        SimError: ``render_mode`` is not None.
    """
    if render_mode is not None:
        raise SimError(f"render_mode={render_mode!r} is not supported: {ENV_ID} has no renderer "
                       "(metadata['render_modes'] is empty); use render_mode=None")


class BatchedClosedLoop:
    """The env core: N slots run one batch of N scenes in lock-step (torch, one device).

    Args:
        num_envs: N.
        scenarios: suite name, scenario file or folder (ignored when ``scenes`` is given).
        scenes: explicit scenes.
        shuffle: draw scenes at random (seeded by ``reset(seed)``); False: take them in order, cycling.
        agents: other agents' model, ``"log"`` or ``"idm"``.
        delta_bound: action bound, m.
        weights: reward weights.
        max_agents: agents kept per scene.
        device: torch device.
        scenario_cache: on-disk cache of generated bundled suites (as `sim.evaluate --scenario-cache`; None: memory).
        strict: an unusable file or scene of ``scenarios`` is an error instead of a warning.
    """

    render_mode: str | None = None  # no renderer (Stable-Baselines3's VecEnv reads this attribute)

    def __init__(self, num_envs: int = 1, scenarios: str | None = "procedural:train",
                 scenes: Sequence[Scenario] | None = None, shuffle: bool = True, agents: str = "log",
                 delta_bound: float = DELTA_BOUND, weights: RewardWeights | None = None,
                 max_agents: int = DEFAULT_MAX_AGENTS, device: str = "cpu",
                 scenario_cache: str | None = DEFAULT_CACHE_DIR, strict: bool = False) -> None:
        self.device = _check_arguments(num_envs, agents, delta_bound, max_agents, device)
        self.num_envs = num_envs
        self.scenes = _load(scenarios, scenes, scenario_cache, strict)
        self.shuffle, self.agents, self.delta_bound = shuffle, agents, float(delta_bound)
        self.weights = weights or RewardWeights()
        self.max_agents = max_agents
        self.rng = np.random.default_rng()
        self._cursor = 0
        self.batch: ScenarioBatch | None = None
        self.episode_scene_ids: tuple[str, ...] = ()

    def _draw(self) -> list[Scenario]:
        n = len(self.scenes)
        if self.shuffle:
            idx = self.rng.integers(0, n, self.num_envs)
        else:
            idx = (self._cursor + np.arange(self.num_envs)) % n
            self._cursor = int((self._cursor + self.num_envs) % n)
        return [self.scenes[int(i)] for i in idx]

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start N new episodes; returns float32 ``[N, OBS_DIM]``."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
            self._cursor = 0
        b = make_batch(self._draw(), self.device, self.max_agents)
        self.batch, self.episode_scene_ids = b, b.ids
        if getattr(self, "backend", None) is not None:
            self.backend.close()
        self.backend = KinematicBackend(self.agents)
        self.state = self.backend.reset(b)
        self.ctrl = WaypointController(b.dt)
        self.traj = b.log.clone()  # [B, A, T, 7]
        self.valid = b.valid.clone()
        self.ego_action = torch.zeros(b.num_scenes, b.num_steps, 2, device=self.device)
        steps = torch.arange(b.num_steps, device=self.device)
        last = (b.step_valid * steps).amax(1)  # [B] last valid step
        self.last = last
        self.end = int(last.min())  # the batch ends with its shortest scene
        self.t = b.init_step
        self.cache = {n: torch.zeros(b.num_scenes, b.num_steps, device=self.device) for n in _POINT_SERIES}
        self._cache_step(self.t)
        # the agents the ego has touched (nuPlan judges each at its first contact) and whether one was its fault
        self.touched = torch.zeros(b.num_scenes, b.log.shape[1] - 1, dtype=torch.bool, device=self.device)
        self.at_fault = torch.zeros(b.num_scenes, dtype=torch.bool, device=self.device)
        self.returns = np.zeros(self.num_envs)
        self.t_start = time.perf_counter()
        self.obs = observe(self.state, b)
        return self.obs.cpu().numpy()

    def reset_info(self, i: int) -> dict[str, Any]:
        """Slot ``i``'s info at the start of an episode: ``{"scene_id": str}``."""
        return {"scene_id": self.episode_scene_ids[i]}

    def _window(self, lo: int, hi: int, init: int, hide: Tensor | None = None) -> tuple[Rollout, ScenarioBatch]:
        """Steps ``lo:hi`` as a (rollout, batch) pair with ``init`` as its init step; agents ``hide`` (bool
        ``[B, A-1]``) are marked invalid in the rollout."""
        b = self.batch
        assert b is not None
        sub = dataclasses.replace(b, log=b.log[:, :, lo:hi], valid=b.valid[:, :, lo:hi],
                                  step_valid=b.step_valid[:, lo:hi], init_step=init)
        valid = self.valid[:, :, lo:hi]
        if hide is not None:
            valid = torch.cat([valid[:, :1], valid[:, 1:] & ~hide[:, :, None]], dim=1)
        ro = Rollout(self.traj[:, :, lo:hi], valid, self.ego_action[:, lo:hi], None,
                     agent_model=self.agents, init_step=init, dt=b.dt)
        return ro, sub

    def _cache_step(self, t: int) -> None:
        """Per-step series at step ``t`` (collision, offroad, route position, log distance) into the cache."""
        ctx = MetricContext(*self._window(t, t + 1, 0))
        for n in _POINT_SERIES:
            self.cache[n][:, t] = getattr(ctx, n)[:, 0].float()

    def step(self, action: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        """Advance every slot one step (0.1 s).

        Args:
            action: float ``[N, 2K]`` waypoint deltas, m.

        Returns:
            ``(obs [N, OBS_DIM], reward [N], terminated [N], truncated [N], infos)``; ``obs`` is the
            observation after the step (the last one of an episode: call :meth:`reset` next). ``infos[i]`` holds
            ``metrics`` and ``scene_id`` when slot i's episode ended.
        """
        b = self.batch
        if b is None:
            raise SimError("step called before reset")
        if self.t >= self.end:
            raise SimError(f"step called after the episode ended (after {self.t - b.init_step} steps); call reset")
        act = torch.as_tensor(np.asarray(action), dtype=torch.float32, device=self.device).reshape(self.num_envs, -1)
        if act.shape[1] != ACTION_DIM:
            raise SimError(f"action must be [{self.num_envs}, {ACTION_DIM}], got {list(act.shape)}")
        finite = torch.isfinite(act).all(1)
        if not bool(finite.all()):
            bad = np.flatnonzero(~finite.cpu().numpy()).tolist()
            raise SimError(f"action must be finite (waypoint deltas in metres): NaN or inf in env(s) {bad}")
        t = self.t
        with torch.no_grad():
            wps = waypoints_from_action(self.obs, act, self.delta_bound, b.dt)
            accel, curv = self.ctrl(wps, self.state.speed[:, 0])
            self.state = self.backend.step(self.state, accel, curv, t)
            self.traj[:, :, t + 1] = self.state.agents
            self.valid[:, :, t + 1] = self.state.valid
            self.ego_action[:, t] = self.state.last_action
            self._cache_step(t + 1)
            rw = self._reward(t)
            self.t = t + 1
            self.obs = observe(self.state, b)
        reward = rw.cpu().numpy().astype(np.float64)
        self.returns += reward
        n = self.num_envs
        infos: list[dict] = [{} for _ in range(n)]
        done = self.t >= self.end
        term = np.zeros(n, dtype=bool)
        trunc = np.zeros(n, dtype=bool)
        if done:
            term = (self.last == self.t).cpu().numpy()
            trunc = ~term
            ro, sub = self._window(0, self.t + 1, b.init_step)
            metrics = {k: v.cpu().numpy() for k, v in compute_metrics(ro, sub).items()}
            for i in range(n):
                infos[i] = {"metrics": {k: float(v[i]) for k, v in metrics.items()}, "scene_id": b.ids[i],
                            "episode": {"r": float(self.returns[i]), "l": self.t - b.init_step,
                                        "t": time.perf_counter() - self.t_start}}
        return self.obs.cpu().numpy(), reward, term, trunc, infos

    def _reward(self, t: int) -> Tensor:
        """float32 ``[N]`` the trainer's reward of transition ``t -> t+1``, on the episode up to step ``t + 1``.

        The series are the trainer's (:func:`~sim.rl.reward.reward_series`) at steps t and t+1: the point series from
        the cache, the comfort ones from the last ``REWARD_WINDOW`` steps (their derivatives need a history), TTC and
        the at-fault judgement from steps t..t+1 with step t+1 controlled and the agents the ego touched before t+1
        hidden. That window judges only first contacts at t+1 and leaves touched agents out of the TTC from their
        first contact on, as the whole-episode context does (nuPlan judges each agent at its first contact).
        """
        b = self.batch
        assert b is not None
        w = self.weights
        names = reward_series(w)
        lo = max(0, t + 1 - REWARD_WINDOW)
        ctx = MetricContext(*self._window(lo, t + 2, t - lo))
        series = {n: self.cache[n][:, t:t + 2] if n in _POINT_SERIES else getattr(ctx, n)[:, -2:]
                  for n in names if n != "ttc"}
        if "ttc" in names or uses_at_fault(w):
            now = MetricContext(*self._window(t, t + 2, 0, hide=self.touched))
            if "ttc" in names:
                series["ttc"] = now.ttc
            self.touched = self.touched | now.first_contact[1]
            self.at_fault = self.at_fault | now.fault_by_agent[0].any(-1)
        at_fault = self.at_fault if uses_at_fault(w) else None
        return step_rewards(series, b.step_valid[:, t:t + 2], 0, w, b.road.has_road, at_fault).reward[:, 0]


def _spaces(delta_bound: float) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    obs = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    act = gym.spaces.Box(-delta_bound, delta_bound, (ACTION_DIM,), np.float32)
    return obs, act


class ClosedLoopEnv(gym.Env):
    """Single-scene env (a batch of one); keywords as :class:`BatchedClosedLoop` (without ``num_envs``).

    ``render_mode``: None only (no renderer; :func:`check_render_mode`).
    """

    metadata = {"render_modes": []}

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        check_render_mode(render_mode)
        self.render_mode = render_mode
        self.core = BatchedClosedLoop(1, **kwargs)
        self.observation_space, self.action_space = _spaces(self.core.delta_bound)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        obs = self.core.reset(seed)
        return obs[0], self.core.reset_info(0)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, r, term, trunc, infos = self.core.step(np.asarray(action)[None])
        return obs[0], float(r[0]), bool(term[0]), bool(trunc[0]), infos[0]


class ClosedLoopVectorEnv(VectorEnv):
    """N scenes in one simulator batch, same-step autoreset.

    Infos follow Gymnasium's vector convention, laid out by :meth:`VectorEnv._add_info` as ``SyncVectorEnv`` with
    ``AutoresetMode.SAME_STEP`` does: each key of the single env's info maps to an array over the N slots (a
    nested dict for a dict) with a bool ``_key`` mask. ``reset`` and an autoreset give ``scene_id`` (object
    ``[N]``); when episodes end, ``final_obs`` (object ``[N]`` of ``[OBS_DIM]`` observations) and ``final_info``
    (``metrics`` ``{name: float64 [N]}``, ``scene_id``, ``episode`` ``{r, l, t: [N]}``) hold the ended episodes'
    last observation and info. ``render_mode``: None only (no renderer).
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, **kwargs: Any) -> None:
        check_render_mode(render_mode)
        self.render_mode = render_mode
        self.core = BatchedClosedLoop(num_envs, **kwargs)
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = _spaces(self.core.delta_bound)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)

    def _reset_infos(self, infos: dict[str, Any]) -> dict[str, Any]:
        for i in range(self.num_envs):
            infos = self._add_info(infos, self.core.reset_info(i), i)
        return infos

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        obs = self.core.reset(seed)
        return obs, self._reset_infos({})

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, r, term, trunc, infos = self.core.step(actions)
        out: dict[str, Any] = {}
        ended = term | trunc
        if ended.any():  # the batch's episodes end together: every slot starts its next one
            for i in np.flatnonzero(ended).tolist():
                out = self._add_info(out, {"final_obs": obs[i].copy(), "final_info": infos[i]}, i)
            obs = self.core.reset()
            out = self._reset_infos(out)
        return obs, r, term, trunc, out


def make_sb3_vec_env(num_envs: int = 64, **kwargs: Any):
    """A Stable-Baselines3 ``VecEnv`` on one simulator batch (``PPO("MlpPolicy", env)`` trains on it).

    Keywords as :class:`BatchedClosedLoop`. Each ended episode's info holds ``terminal_observation``,
    ``episode`` (``r``, ``l``, ``t``, so SB3 logs ``rollout/ep_rew_mean``), ``metrics`` and ``scene_id``.
    """
    from sim.rl.sb3_vec_env import SB3VecEnv

    return SB3VecEnv(BatchedClosedLoop(num_envs, **kwargs))


def register() -> None:
    """Register :data:`ENV_ID` (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point="sim.rl.gym_env:ClosedLoopEnv",
                     vector_entry_point="sim.rl.gym_env:ClosedLoopVectorEnv")


register()
