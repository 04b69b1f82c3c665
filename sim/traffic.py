"""Models of the other agents (agents 1..A-1): log replay (default) or IDM along their logged paths.

Each model turns the state at step ``t`` into the other agents' kinematics at ``t + 1``:
``next(state, t) -> (KinematicUpdate for agents 1.., path_s [B, A] | None)``; validity and
sizes at ``t + 1`` come from the log (:class:`LogTables`).
"""

from __future__ import annotations

import weakref

import torch
from torch import Tensor

from scenarios.scenario import AgentType
from sim.batch import ScenarioBatch
from sim.config import ACCEL_MIN, IDM_A_MAX, IDM_B, IDM_LOOKAHEAD, IDM_S0, IDM_T, IDM_V0, SimError
from sim.dynamics import KinematicUpdate, inverse_bicycle, wrap
from sim.state import SimState

AGENT_MODELS = ("log", "idm")
MIN_IDM_SPEED = 0.5  # m/s; agents never faster than this in their log stay on the log (parked)


def _with_speed(kin5: Tensor) -> Tensor:
    """``[..., 5]`` (x, y, yaw, vx, vy) -> ``[..., 6]`` with speed = |v|."""
    return torch.cat([kin5, torch.hypot(kin5[..., 3], kin5[..., 4]).unsqueeze(-1)], dim=-1)


def _hold_index(valid: Tensor) -> Tensor:
    """``[B, A, T]`` index of the last valid step at or before each step (the first valid one before it)."""
    n_t = valid.shape[-1]
    ar = torch.arange(n_t, device=valid.device).expand_as(valid)
    idx = torch.where(valid, ar, torch.full_like(ar, -1)).cummax(dim=-1).values
    first = valid.to(torch.int64).argmax(dim=-1, keepdim=True).expand_as(idx)
    return torch.where(idx < 0, first, idx)


class LogTables:
    """Time-major copies of the log, built once per batch so a step reads contiguous memory.

    Attributes:
        kin: float32 ``[T, B, A, 6]`` (x, y, yaw, vx, vy, speed) logged.
        sizes: float32 ``[T, B, A, 2]`` (length, width), held from the nearest valid step.
        valid: bool ``[T, B, A]`` logged validity, False on steps a scene does not have.
        ego_actions: float32 ``[T-1, B, 2]`` the logged ego's (accel, curvature) from step t to t+1
            (:func:`sim.dynamics.inverse_bicycle`).
        all_steps: every scene has every step.
    """

    def __init__(self, batch: ScenarioBatch) -> None:
        log = batch.log
        self.kin = _with_speed(log[..., :5]).permute(2, 0, 1, 3).contiguous()
        idx = _hold_index(batch.valid)
        sizes = log[..., 5:7].gather(2, idx.unsqueeze(-1).expand(-1, -1, -1, 2))
        self.sizes = sizes.permute(2, 0, 1, 3).contiguous()
        self.valid = (batch.valid & batch.step_valid[:, None, :]).permute(2, 0, 1).contiguous()
        acc, curv, _ = inverse_bicycle(log[:, 0], batch.dt)  # [B, T-1]
        self.ego_actions = torch.stack([acc, curv], dim=-1).transpose(0, 1).contiguous()  # [T-1, B, 2]
        self.all_steps = bool(batch.step_valid.all())  # no scene ends early (one host sync per batch)
        self._kin8: Tensor | None = None

    @property
    def kin8(self) -> Tensor:
        """float32 ``[T, B, A, 8]`` the logged states in :attr:`SimState.kin` layout (x, y, yaw, vx, vy, length,
        width, speed; sizes held as in :attr:`sizes`), built on first use: a step of log replay reads one slice."""
        if self._kin8 is None:
            self._kin8 = torch.cat([self.kin[..., :5], self.sizes, self.kin[..., 5:6]], dim=-1)
        return self._kin8


_TABLES: weakref.WeakKeyDictionary[ScenarioBatch, LogTables] = weakref.WeakKeyDictionary()


def log_tables(batch: ScenarioBatch) -> LogTables:
    """The batch's :class:`LogTables`, built on first use and cached while the batch lives."""
    tab = _TABLES.get(batch)
    if tab is None:
        tab = LogTables(batch)
        _TABLES[batch] = tab
    return tab


class LogReplayAgents:
    """Every other agent follows its log exactly; invalid logged steps stay invalid."""

    name = "log"

    def __init__(self, batch: ScenarioBatch, tables: LogTables) -> None:
        self.batch = batch
        self.tables = tables

    def init_path_s(self) -> Tensor | None:
        """No path state for log replay."""
        return None

    def next(self, state: SimState, t: int) -> tuple[KinematicUpdate, Tensor | None]:
        """Logged states at ``t + 1`` of agents 1..A-1."""
        return KinematicUpdate(self.tables.kin[t + 1][:, 1:], first=1), None


class IDMAgents:
    """Intelligent Driver Model along each agent's logged path (REFERENCE.md constants).

    Controlled: non-ego vehicles (:attr:`AgentType.VEHICLE`) valid at ``init_step`` that do not overlap
    another box there and that move in their log (max logged speed >= 0.5 m/s); the rest replay their
    log. Pedestrians, cyclists and objects always keep their logs, as nuPlan's reactive agents
    (``nuplan/planning/simulation/observation/idm_agents.py``: IDM drives vehicles only). Desired speed
    v0 = min(30 m/s, the agent's max logged speed). The leader is the nearest valid box (the ego
    included) ahead in the agent's heading frame whose lateral offset is under the half-widths'
    sum, within ``IDM_LOOKAHEAD + IDM_T * v`` m. Past the end of its logged path an agent goes
    straight on along its last logged heading. Validity follows the log.
    """

    name = "idm"

    def __init__(self, batch: ScenarioBatch, tables: LogTables) -> None:
        self.batch = batch
        self.tables = tables
        log, valid = batch.log, batch.valid
        n_a = log.shape[1]
        dev = log.device
        idx = _hold_index(valid)  # hold before the first valid step and across gaps
        held = log.gather(2, idx.unsqueeze(-1).expand(-1, -1, -1, log.shape[-1]))
        self.path_xy = held[..., :2].contiguous()  # [B, A, T, 2]
        self.path_yaw = held[..., 2].contiguous()  # [B, A, T]
        seg = (self.path_xy[:, :, 1:] - self.path_xy[:, :, :-1]).norm(dim=-1)
        self.path_cum = torch.cat([torch.zeros_like(seg[..., :1]), seg.cumsum(-1)], dim=-1).contiguous()
        speed = torch.hypot(log[..., 3], log[..., 4]) * valid
        vmax = speed.amax(dim=-1)
        self.v0 = vmax.clamp(max=IDM_V0).clamp_min(MIN_IDM_SPEED)
        t0 = batch.init_step
        ctrl = valid[:, :, t0] & (vmax >= MIN_IDM_SPEED) & (batch.agent_type == int(AgentType.VEHICLE))
        ctrl[:, 0] = False
        from sim.geometry import boxes_overlap

        box = log[:, :, t0][..., [0, 1, 2, 5, 6]]
        ov = boxes_overlap(box[:, :, None], box[:, None, :])  # [B, A, A]
        ov = ov & valid[:, :, t0, None] & valid[:, None, :, t0]
        ov = ov & ~torch.eye(n_a, dtype=torch.bool, device=dev)
        self.controlled = ctrl & ~ov.any(dim=-1)  # [B, A]
        self.eye = torch.eye(n_a, dtype=torch.bool, device=dev)

    def init_path_s(self) -> Tensor:
        """``[B, A]`` arc length along each logged path at init_step."""
        return self.path_cum[:, :, self.batch.init_step].clone()

    def _point_at(self, s: Tensor) -> Tensor:
        """``[B, A]`` arc lengths -> ``[B, A, 3]`` (x, y, yaw) on the logged paths (extrapolated past the end)."""
        cum = self.path_cum
        n_t = cum.shape[-1]
        i1 = torch.searchsorted(cum, s.unsqueeze(-1).contiguous(), right=True).clamp(1, n_t - 1)  # [B, A, 1]
        i0 = i1 - 1
        c0, c1 = cum.gather(2, i0), cum.gather(2, i1)
        frac = ((s.unsqueeze(-1) - c0) / (c1 - c0).clamp_min(1e-6)).clamp(0.0, 1.0)
        p0 = self.path_xy.gather(2, i0.unsqueeze(-1).expand(-1, -1, -1, 2))
        p1 = self.path_xy.gather(2, i1.unsqueeze(-1).expand(-1, -1, -1, 2))
        y0, y1 = self.path_yaw.gather(2, i0), self.path_yaw.gather(2, i1)
        xy = (p0 + frac.unsqueeze(-1) * (p1 - p0)).squeeze(2)
        yaw = wrap(y0 + frac * wrap(y1 - y0)).squeeze(2)
        extra = (s - cum[..., -1]).clamp_min(0.0)  # past the end: straight on
        last_yaw = self.path_yaw[..., -1]
        xy = xy + extra.unsqueeze(-1) * torch.stack([torch.cos(last_yaw), torch.sin(last_yaw)], dim=-1)
        yaw = torch.where(extra > 0, last_yaw, yaw)
        return torch.cat([xy, yaw.unsqueeze(-1)], dim=-1)

    def accel(self, state: SimState) -> Tensor:
        """``[B, A]`` IDM acceleration (m/s^2) of every agent at the current state."""
        a = state.agents
        v = state.speed
        c, s = torch.cos(a[..., 2]), torch.sin(a[..., 2])
        d = a[:, None, :, :2] - a[:, :, None, :2]  # [B, i, j, 2] j relative to i
        dx = d[..., 0] * c[..., None] + d[..., 1] * s[..., None]
        dy = -d[..., 0] * s[..., None] + d[..., 1] * c[..., None]
        half_l = 0.5 * a[..., 5]
        half_w = 0.5 * a[..., 6]
        gap = dx - half_l[:, :, None] - half_l[:, None, :]
        reach = (IDM_LOOKAHEAD + IDM_T * v).unsqueeze(-1)
        lead = (dx > 0) & (dy.abs() < half_w[:, :, None] + half_w[:, None, :]) & (gap < reach)
        lead = lead & state.valid[:, None, :] & ~self.eye
        gap = torch.where(lead, gap.clamp_min(0.1), torch.full_like(gap, float("inf")))
        gmin, j = gap.amin(dim=-1), gap.argmin(dim=-1)  # [B, A] (min(dim) is far slower on CPU here)
        has = torch.isfinite(gmin)
        vj = a[..., 3:5].gather(1, j.unsqueeze(-1).expand(-1, -1, 2))
        v_lead = vj[..., 0] * c + vj[..., 1] * s
        free = 1.0 - (v / self.v0) ** 4
        s_star = IDM_S0 + (v * IDM_T + v * (v - v_lead) / (2.0 * (IDM_A_MAX * IDM_B) ** 0.5)).clamp_min(0.0)
        inter = torch.where(has, (s_star / gmin.clamp_min(0.1)) ** 2, torch.zeros_like(v))
        return (IDM_A_MAX * (free - inter)).clamp(ACCEL_MIN, IDM_A_MAX)

    def next(self, state: SimState, t: int) -> tuple[KinematicUpdate, Tensor]:
        """IDM agents advance along their paths; the others replay their log."""
        dt = self.batch.dt
        v = state.speed
        acc = torch.maximum(self.accel(state), -v / dt)
        path_s = state.path_s + (v * dt + 0.5 * acc * dt * dt).clamp_min(0.0)
        nv = (v + acc * dt).clamp_min(0.0)
        pose = self._point_at(path_s)
        yaw = pose[..., 2]
        idm = torch.cat([pose, (nv * torch.cos(yaw)).unsqueeze(-1), (nv * torch.sin(yaw)).unsqueeze(-1)], dim=-1)
        idm = torch.cat([idm, nv.unsqueeze(-1)], dim=-1)
        kin = torch.where(self.controlled.unsqueeze(-1), idm, self.tables.kin[t + 1])
        return KinematicUpdate(kin[:, 1:], first=1), path_s


def make_agent_model(kind: str, batch: ScenarioBatch, tables: LogTables) -> LogReplayAgents | IDMAgents:
    """``"log"`` -> :class:`LogReplayAgents`, ``"idm"`` -> :class:`IDMAgents`."""
    if kind == "log":
        return LogReplayAgents(batch, tables)
    if kind == "idm":
        return IDMAgents(batch, tables)
    raise SimError(f"unknown agent model {kind!r}; choose one of {', '.join(AGENT_MODELS)}")
