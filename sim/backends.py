"""Simulation backends: the `Backend` protocol and the batched `KinematicBackend` (default).

A backend owns the world: it starts B scenes at ``batch.init_step`` and advances them one step
(dt = ``batch.dt``) given the ego's action. Protocol (all a CARLA backend needs to implement):

- ``reset(batch) -> SimState``: the state at ``batch.init_step`` (the log there).
- ``step(state, accel, curvature, t) -> SimState``: the state at ``t + 1``. ``accel``,
  ``curvature`` are ``[B]`` (m/s^2, 1/m) for the ego; both ``None`` mean the ego replays its
  log. The returned ``last_action`` is the ego action actually applied ``[B, 2]``. Scenes whose
  ``batch.step_valid[:, t + 1]`` is False keep their state (frozen).
- ``close()``: release resources (idempotent).
- ``agent_model``: ``"log"`` or ``"idm"``, recorded in the :class:`~sim.rollout.Rollout`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from sim.agents import make_agent_model
from sim.batch import ScenarioBatch
from sim.config import CURVATURE_MAX
from sim.dynamics import KinematicUpdate, apply_update, ego_update, inverse_bicycle
from sim.state import SimState


@runtime_checkable
class Backend(Protocol):
    """What :func:`sim.rollout.rollout` needs from a simulator (see the module docstring)."""

    agent_model: str

    def reset(self, batch: ScenarioBatch) -> SimState: ...

    def step(self, state: SimState, accel: Tensor | None, curvature: Tensor | None, t: int) -> SimState: ...

    def close(self) -> None: ...


class KinematicBackend:
    """Batched torch simulator: ego on the kinematic bicycle, others by ``agents`` ("log" | "idm").

    Every tensor lives on ``batch.device``; a step launches a few dozen small kernels and no
    host synchronisation.
    """

    name = "kinematic"

    def __init__(self, agents: str = "log") -> None:
        self.agent_model = agents
        self._batch: ScenarioBatch | None = None
        self._agents = None
        self._log_actions: Tensor | None = None

    def reset(self, batch: ScenarioBatch) -> SimState:
        """State at ``batch.init_step``: every agent at its logged state."""
        self._batch = batch
        self._agents = make_agent_model(self.agent_model, batch)
        t0 = batch.init_step
        acc, curv, _ = inverse_bicycle(batch.log[:, 0], batch.dt)  # [B, T-1]
        self._log_actions = torch.stack([acc, curv], dim=-1)  # [B, T-1, 2], action t -> t+1
        agents = batch.log[:, :, t0].clone()
        last = self._log_actions[:, t0 - 1] if t0 > 0 else torch.zeros_like(agents[:, 0, :2])
        return SimState(
            agents=agents,
            speed=torch.hypot(agents[..., 3], agents[..., 4]),
            valid=batch.valid[:, :, t0].clone(),
            t=t0,
            last_action=last.clone(),
            path_s=self._agents.init_path_s(),
        )

    def step(self, state: SimState, accel: Tensor | None, curvature: Tensor | None, t: int) -> SimState:
        """Advance every scene from ``t`` to ``t + 1`` (see the module docstring)."""
        b = self._batch
        if b is None:
            raise RuntimeError("KinematicBackend.step called before reset")
        others, valid, path_s = self._agents.next(state, t)
        nxt = apply_update(state, others)
        if accel is None or curvature is None:
            e = b.log[:, 0, t + 1, :5]
            kin = torch.cat([e, torch.hypot(e[:, 3], e[:, 4]).unsqueeze(-1)], dim=-1)
            nxt = apply_update(nxt, KinematicUpdate(kin.unsqueeze(1), first=0))
            action = self._log_actions[:, t]
        else:
            upd = ego_update(state, accel, curvature, b.dt)
            nxt = apply_update(nxt, upd)
            eff_acc = (upd.kin[:, 0, 5] - state.speed[:, 0]) / b.dt
            action = torch.stack([eff_acc, curvature.clamp(-CURVATURE_MAX, CURVATURE_MAX)], dim=-1)
        # sizes from the log where it has them
        lv = b.valid[:, :, t + 1].unsqueeze(-1)
        agents = nxt.agents
        agents[..., 5:7] = torch.where(lv, b.log[:, :, t + 1, 5:7], agents[..., 5:7])
        sv = b.step_valid[:, t + 1]
        svv = sv.view(-1, 1, 1)
        return SimState(
            agents=torch.where(svv, agents, state.agents),
            speed=torch.where(sv.view(-1, 1), nxt.speed, state.speed),
            valid=torch.where(sv.view(-1, 1), valid, state.valid),
            t=t + 1,
            last_action=torch.where(sv.view(-1, 1), action, torch.zeros_like(action)),
            path_s=None if path_s is None else torch.where(sv.view(-1, 1), path_s, state.path_s),
        )

    def close(self) -> None:
        """Drop references to the batch."""
        self._batch = None
        self._agents = None
        self._log_actions = None
