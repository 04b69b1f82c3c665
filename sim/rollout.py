"""`rollout()`: the one closed-loop loop shared by training and evaluation."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import torch
from torch import Tensor

from sim.backends.kinematic import Backend, KinematicBackend
from sim.batch import ScenarioBatch
from sim.compiled import StepCompile, maybe_compile
from sim.config import NUM_WAYPOINTS, SimError
from sim.controller import ControllerConfig, WaypointController, pursuit_law
from sim.observation import OBS_DIM, observation_features, observe
from sim.state import SimState


class Controls(NamedTuple):
    """Controls a policy may return instead of waypoints (the waypoint controller is then skipped).

    Attributes:
        accel: float ``[B]`` longitudinal acceleration, m/s^2 (clipped by the dynamics to its limits).
        curvature: float ``[B]`` path curvature, 1/m (clipped likewise).
    """

    accel: Tensor
    curvature: Tensor


_TEMPLATES: weakref.WeakKeyDictionary[ScenarioBatch, tuple[Tensor, Tensor]] = weakref.WeakKeyDictionary()
"""Per batch, a full record (traj, valid) of one rollout with log-replay agents (see :func:`rollout`)."""
_ROLLED: weakref.WeakSet[ScenarioBatch] = weakref.WeakSet()  # batches rolled out once with log-replay agents

PolicyFn = Callable[[Tensor, int], tuple["Tensor | Controls", dict[str, Tensor]]]
"""(obs float32 [B, OBS_DIM], step t) -> (waypoints float32 [B, K, 2] ego frame m, or :class:`Controls`;
aux {name: [B, ...]})."""


@dataclass(frozen=True)
class StatePolicy:
    """A policy that builds its own features from the batched simulator state instead of the observation.

    Attributes:
        fn: ``(state: SimState, batch: ScenarioBatch, t) -> (waypoints [B, K, 2] | Controls, aux)``; ``state``
            holds every agent's pose and speed ``[B, A]`` (ego at index 0) in the scene's local frame.
    """

    fn: Callable[[SimState, ScenarioBatch, int], tuple[Tensor | Controls, dict[str, Tensor]]]


@dataclass(frozen=True, eq=False)
class Rollout:
    """The record of one batched closed-loop run.

    Attributes:
        record: float32 ``[B, A, T, 7]`` every agent's state at every step (ego closed-loop from init_step); its
            ego row (agent 0) is the ego's unless ``ego_row`` is given. Read it through :attr:`traj` (the whole
            record) or :attr:`ego` and rows ``1:`` (the other agents).
        valid: bool ``[B, A, T]``.
        ego_action: float32 ``[B, T, 2]`` (accel m/s^2, curvature 1/m) applied at step t -> t+1; 0 outside control.
        obs: float32 ``[B, S, OBS_DIM]`` when recorded (obs at steps init_step..T-2, S = T - 1 - init_step).
        aux: each ``[B, S, ...]`` stacked from the policy's aux outputs.
        agent_model: ``"log"`` or ``"idm"``.
        init_step: first controlled step.
        dt: seconds per step.
        ego_row: float32 ``[B, T, 7]`` the ego's states when they are kept apart from ``record``: with log-replay
            agents, the later rollouts of a batch share one read-only record of the other agents (``record`` and
            ``valid``, which do not depend on the policy) and keep only the ego's row of their own (no
            ``[B, A, T, 7]`` copy per rollout; :func:`rollout`).
    """

    record: Tensor
    valid: Tensor
    ego_action: Tensor
    obs: Tensor | None
    aux: dict[str, Tensor] = field(default_factory=dict)
    agent_model: str = "log"
    init_step: int = 0
    dt: float = 0.1
    ego_row: Tensor | None = None

    @property
    def ego(self) -> Tensor:
        """float32 ``[B, T, 7]`` the ego's states at every step."""
        return self.record[:, 0] if self.ego_row is None else self.ego_row

    @cached_property
    def traj(self) -> Tensor:
        """float32 ``[B, A, T, 7]`` every agent's state at every step, ego at agent 0 (a copy of the shared record
        with the ego's row written in, made once on first use, when the ego is kept apart)."""
        if self.ego_row is None:
            return self.record
        traj = self.record.clone()
        traj[:, 0] = self.ego_row
        return traj


def rollout(
    batch: ScenarioBatch,
    policy_fn: PolicyFn | None,
    *,
    agents: str = "log",
    record_obs: bool = False,
    backend: Backend | None = None,
    controller: ControllerConfig | None = None,
    compile: StepCompile | None = None,
) -> Rollout:
    """Run B scenes in closed loop from ``batch.init_step`` to the last step (T - 1).

    Each controlled step t: ``obs = observe(state)``, ``waypoints, aux = policy_fn(obs, t)``,
    the waypoint controller gives (accel, curvature), the backend advances ego and agents.
    Runs under ``torch.no_grad()`` (its outputs can be fed to a model that needs gradients).

    Args:
        batch: the scenes.
        policy_fn: ``(obs [B, OBS_DIM], t) -> (waypoints [B, K, 2] ego frame m, aux {name: [B, ...]})``;
            the policy may return :class:`Controls` instead of waypoints (no waypoint controller then), and a
            :class:`StatePolicy` gets the simulator state instead of the observation; None = the ego replays
            its log exactly (the log-replay baseline).
        agents: other agents' model for the default backend: ``"log"`` (replay) or ``"idm"``.
        record_obs: keep the observations ``[B, S, OBS_DIM]`` (S = T - 1 - init_step).
        backend: a :class:`~sim.backends.kinematic.Backend`; None = :class:`~sim.backends.kinematic.KinematicBackend`.
        controller: waypoint-controller settings (default :class:`~sim.controller.ControllerConfig`).
        compile: compile the per-step observation and the controller's law where
            :class:`~sim.compiled.StepCompile` says so (its ``"observation"`` and ``"controller"`` parts; CUDA
            graphs on CUDA; default eager). Values differ from eager's at float32 round-off. Falls back to
            eager with a warning on failure.

    Returns:
        :class:`Rollout`; steps up to init_step hold the log, scenes that end early freeze (valid False).
        With the default backend and log-replay agents, the second rollout of a batch keeps a copy of its
        record (``record`` and ``valid``, while the batch lives); later rollouts of that batch share it, read-only,
        and write only the ego's row (:attr:`Rollout.ego_row`, ``[B, T, 7]``) at each step: the other agents'
        rows do not depend on the policy.

    Raises:
        SimError: the policy returned waypoints or controls of the wrong shape or an aux value without a
            leading B.
    """
    own = backend is None
    if own:
        backend = KinematicBackend(agents=agents)
    n_b, n_a, n_t, _ = batch.log.shape
    t0 = batch.init_step
    n_s = n_t - 1 - t0
    # with log-replay agents only the ego's row depends on the policy: once a batch has been recorded in full
    # twice, later rollouts start from a copy of the record and write the ego's row alone (a step then touches
    # B rows of the record, not B * A)
    replay = isinstance(backend, KinematicBackend) and backend.agent_model == "log"
    template = _TEMPLATES.get(batch) if replay else None
    try:
        with torch.no_grad():
            ego_row = None
            if template is not None:  # the shared record of the other agents; the ego's row is this rollout's own
                traj, valid = template
                ego_row = traj[:, 0].clone()
            else:  # recorded in place in the final [B, A, T, ...] layout; steps after t0 are all written below
                traj = torch.empty_like(batch.log)
                traj[:, :, : t0 + 1] = batch.log[:, :, : t0 + 1]
                valid = torch.empty_like(batch.valid)
                valid[:, :, : t0 + 1] = batch.valid[:, :, : t0 + 1]
            ego_action = torch.zeros(n_b, n_t, 2, device=batch.device, dtype=batch.log.dtype)
            obs_buf = torch.zeros(n_b, n_s, OBS_DIM, device=batch.device) if record_obs else None
            aux_buf: dict[str, Tensor] = {}
            ctrl = WaypointController(
                batch.dt, controller, maybe_compile(pursuit_law, compile, batch.device, part="controller"))
            features = maybe_compile(observation_features, compile, batch.device, part="observation")
            state = backend.reset(batch)
            from_state = isinstance(policy_fn, StatePolicy)
            for i, t in enumerate(range(t0, n_t - 1)):
                accel = curvature = None
                if (policy_fn is not None and not from_state) or record_obs:
                    obs = observe(state, batch, features)
                    if obs_buf is not None:
                        obs_buf[:, i] = obs
                if policy_fn is not None:
                    out, aux = policy_fn.fn(state, batch, t) if from_state else policy_fn(obs, t)
                    if i == 0:
                        _check_policy_output(out, aux, n_b)
                    for k, v in aux.items():
                        if k not in aux_buf:
                            aux_buf[k] = torch.zeros((n_b, n_s, *v.shape[1:]), dtype=v.dtype, device=v.device)
                        aux_buf[k][:, i] = v
                    if isinstance(out, Controls):
                        accel, curvature = out.accel.to(batch.log.dtype), out.curvature.to(batch.log.dtype)
                    else:
                        accel, curvature = ctrl(out.to(batch.log.dtype), state.speed[:, 0])
                state = backend.step(state, accel, curvature, t)
                if ego_row is not None:
                    ego_row[:, t + 1] = state.agents[:, 0]
                else:
                    traj[:, :, t + 1] = state.agents
                    valid[:, :, t + 1] = state.valid
                ego_action[:, t] = state.last_action
            if replay and template is None:
                if batch in _ROLLED:  # a batch rolled out again: keep its record (a batch used once pays nothing)
                    _TEMPLATES[batch] = (traj.clone(), valid.clone())
                _ROLLED.add(batch)
    finally:
        if own:
            backend.close()
    return Rollout(
        record=traj,
        valid=valid,
        ego_action=ego_action,
        obs=obs_buf,
        aux=aux_buf,
        agent_model=getattr(backend, "agent_model", agents),
        init_step=t0,
        dt=batch.dt,
        ego_row=ego_row,
    )


def policy_output_problem(wps: object, n_b: int) -> str | None:
    """What is wrong with a policy's output for a batch of ``n_b`` scenes (``"waypoints [B, K, 2], got [B, 3]"``), or
    None: it must be waypoints ``[n_b, NUM_WAYPOINTS, 2]`` or :class:`Controls` of two ``[n_b]`` tensors."""
    if isinstance(wps, Controls):
        shapes = [list(x.shape) if isinstance(x, Tensor) else type(x).__name__ for x in wps]
        if shapes != [[n_b], [n_b]]:
            return f"Controls(accel [{n_b}], curvature [{n_b}]), got {shapes}"
    elif not isinstance(wps, Tensor) or wps.shape != (n_b, NUM_WAYPOINTS, 2):
        shape = list(wps.shape) if isinstance(wps, Tensor) else type(wps).__name__
        return f"waypoints [{n_b}, {NUM_WAYPOINTS}, 2], got {shape}"
    return None


def _check_policy_output(wps: Tensor | Controls, aux: dict[str, Tensor], n_b: int) -> None:
    problem = policy_output_problem(wps, n_b)
    if problem:
        raise SimError(f"policy_fn must return {problem}")
    for k, v in aux.items():
        if not isinstance(v, Tensor) or v.ndim < 1 or v.shape[0] != n_b:
            raise SimError(f"policy_fn aux {k!r} must be a tensor [B={n_b}, ...]")
