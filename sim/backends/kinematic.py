"""Simulation backends: the `Backend` protocol and the batched `KinematicBackend` (default).

A backend owns the world: it starts B scenes at ``batch.init_step`` and advances them one step
(dt = ``batch.dt``) given the ego's action. Protocol (all a CARLA backend needs to implement):

- ``reset(batch) -> SimState``: the state at ``batch.init_step`` (the log there).
- ``step(state, accel, curvature, t) -> SimState``: the state at ``t + 1``. ``accel``,
  ``curvature`` are ``[B]`` (m/s^2, 1/m) for the ego; both ``None`` mean the ego replays its
  log. The returned ``last_action`` is the ego action actually applied ``[B, 2]``. Scenes whose
  ``batch.step_valid[:, t + 1]`` is False keep their state (frozen) and are all invalid.
- ``close()``: release resources (idempotent).
- ``agent_model``: ``"log"`` or ``"idm"``, recorded in the :class:`~sim.rollout.Rollout`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from sim.batch import ScenarioBatch
from sim.config import CURVATURE_MAX
from sim.dynamics import KinematicUpdate, apply_updates, ego_update
from sim.state import SimState
from sim.traffic import LogTables, log_tables, make_agent_model


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
        self._tables: LogTables | None = None
        self._agents = None
        self._log_actions: Tensor | None = None
        self._freeze = True

    def reset(self, batch: ScenarioBatch) -> SimState:
        """State at ``batch.init_step``: every agent at its logged state."""
        self._batch = batch
        self._tables = log_tables(batch)
        self._agents = make_agent_model(self.agent_model, batch, self._tables)
        t0 = batch.init_step
        self._log_actions = self._tables.ego_actions
        self._freeze = not self._tables.all_steps
        kin = self._tables.kin[t0]
        last = self._log_actions[t0 - 1] if t0 > 0 else torch.zeros_like(kin[:, 0, :2])
        return SimState(
            kin=torch.cat([kin[..., :5], self._tables.sizes[t0], kin[..., 5:6]], dim=-1),
            valid=self._tables.valid[t0].clone(),
            t=t0,
            last_action=last.clone(memory_format=torch.contiguous_format),  # a row slice: one layout for any B
            path_s=self._agents.init_path_s(),
        )

    def step(self, state: SimState, accel: Tensor | None, curvature: Tensor | None, t: int) -> SimState:
        """Advance every scene from ``t`` to ``t + 1`` (see the module docstring)."""
        b, tab = self._batch, self._tables
        if b is None or tab is None:
            raise RuntimeError("KinematicBackend.step called before reset")
        replay = self.agent_model == "log"  # others follow the log: the log's next state is the base
        others, path_s = (None, None) if replay else self._agents.next(state, t)
        if accel is None or curvature is None:
            ego = KinematicUpdate(tab.kin[t + 1][:, :1], first=0)
            action = self._log_actions[t]
        else:
            ego = ego_update(state, accel, curvature, b.dt)
            eff_acc = (ego.kin[:, 0, 5] - state.kin[:, 0, 7]) / b.dt
            action = torch.stack([eff_acc, curvature.clamp(-CURVATURE_MAX, CURVATURE_MAX)], dim=-1)
        nxt = apply_updates(
            state, [ego] if replay else [ego, others], tab.sizes[t + 1], tab.valid[t + 1],
            base=tab.kin8[t + 1] if replay else None, t=t + 1, last_action=action, path_s=path_s,
        )
        if not self._freeze:
            return nxt
        sv = b.step_valid[:, t + 1]
        return nxt.replace(
            kin=torch.where(sv.view(-1, 1, 1), nxt.kin, state.kin),
            last_action=torch.where(sv.view(-1, 1), action, torch.zeros_like(action)),
            path_s=None if path_s is None else torch.where(sv.view(-1, 1), path_s, state.path_s),
        )

    def close(self) -> None:
        """Drop references to the batch."""
        self._batch = None
        self._tables = None
        self._agents = None
        self._log_actions = None
