"""Collision metrics: ``collision``, ``collision_time``, ``collision_at_fault`` and ``no_at_fault_collisions``.

- ``collision``: the ego box overlaps a valid other agent's box (SAT); ``collision_time`` is
  ``(first step - init_step) * dt`` s, NaN without collision.
- ``collision_at_fault``: nuPlan's collision categories (``no_ego_at_fault_collisions``),
  each collided agent judged at its first contact step (see
  :attr:`MetricContext.first_collision_at_fault` and ``docs/metrics.md``): stopped ego never
  at fault; stopped agent, active front: at fault; rear half by a non-reactive agent: not;
  lateral: only while the ego is in several lanes (:func:`sim.metrics.drivable.in_multiple_lanes`) or off the
  drivable area.
- ``no_at_fault_collisions``: NAVSIM's NC multiplier (``pdm_scorer.py``
  ``_calculate_no_at_fault_collision``): 0 after an at-fault collision with a vehicle, pedestrian or
  cyclist, :data:`OBJECT_COLLISION` (0.5) when every at-fault collision is with an object
  (:attr:`AgentType.OTHER`: barriers, cones, generic static objects), 1 without one.
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor

from scenarios.scenario import VX, VY, AgentType
from sim.geometry import boxes_overlap
from sim.metrics.base import Metric, _box, _pair_rows

OBJECT_COLLISION = 0.5  # no_at_fault_collisions after an at-fault hit on an object only (NAVSIM NC)
STOPPED_SPEED = 0.05  # m/s; below this an agent is stopped (nuPlan's at-fault categories)
FRONT_BUMPER = 0.1  # m; depth of the ego's front bumper for an active front collision


class CollisionSignals:
    """Mixin of :class:`~sim.metrics.context.MetricContext`: box overlaps and nuPlan's at-fault categories."""

    @cached_property
    def agent_overlap(self) -> Tensor:
        """bool ``[B, A-1, T]``: ego box overlaps other agent's box (both valid)."""
        # only pairs whose bounding circles meet can overlap: the box test runs on those alone (same values)
        cand = self.candidates[0]
        idx = cand.reshape(-1).nonzero().squeeze(1)  # b * (A-1) * T + a * T + t
        ego_rows, other_rows = _pair_rows(idx, cand.shape[1] + 1, cand.shape[2])
        rows = self.ro.traj.reshape(-1, 7)
        hit = boxes_overlap(_box(rows.index_select(0, ego_rows)), _box(rows.index_select(0, other_rows)))
        return torch.zeros_like(cand).reshape(-1).index_put_((idx,), hit).reshape(cand.shape)

    @cached_property
    def collision(self) -> Tensor:
        """bool ``[B, T]``."""
        return self.agent_overlap.any(1)

    @cached_property
    def collided(self) -> Tensor:
        """bool ``[B, A-1, T]``: the ego has touched the agent at this controlled step or an earlier one
        (nuPlan drops such tracks from TTC from their first contact on)."""
        hit = self.agent_overlap & self.controlled[:, None, :]
        return hit.to(torch.int8).cummax(-1).values.bool() if hit.shape[-1] else hit

    @cached_property
    def fault_by_agent(self) -> tuple[Tensor, Tensor]:
        """``(at_fault bool [B, A-1], first int64 [B, A-1])``: each collided agent judged at its first contact
        step ``first`` (nuPlan's categories; see :attr:`first_collision_at_fault`)."""
        hit = self.agent_overlap & self.controlled[:, None, :]  # [B, A-1, T]
        n_b, n_o = hit.shape[:2]
        first = hit.to(torch.int8).argmax(-1)  # [B, A-1]
        if n_o == 0:
            return torch.zeros(n_b, 0, dtype=torch.bool, device=hit.device), first
        hit_any = hit.any(-1)

        def at_first(x: Tensor) -> Tensor:  # [B, T] -> [B, A-1]
            return x.gather(1, first)

        ego_t = _box(self.ego.gather(1, first[..., None].expand(-1, -1, 7)))  # [B, A-1, 5]
        idx = first[..., None, None].expand(-1, -1, 1, 7)
        other_full = self.ro.traj[:, 1:].gather(2, idx)[:, :, 0]  # [B, A-1, 7]
        other = _box(other_full)
        ego_stopped = at_first(self.speed.abs()) < STOPPED_SPEED
        other_stopped = torch.hypot(other_full[..., VX], other_full[..., VY]) < STOPPED_SPEED
        c, s = torch.cos(ego_t[..., 2]), torch.sin(ego_t[..., 2])

        def slab(centre_from_middle: Tensor, length: Tensor) -> Tensor:  # a part of the ego box, along its axis
            part = ego_t.clone()
            part[..., 0] += c * centre_from_middle
            part[..., 1] += s * centre_from_middle
            part[..., 3] = length
            return part

        half = ego_t[..., 3] / 2
        bumper = torch.full_like(half, FRONT_BUMPER)
        front = boxes_overlap(slab(half - FRONT_BUMPER / 2, bumper), other)
        front_half = boxes_overlap(slab(half / 2, half), other)
        rear = ~front_half & (self.ro.agent_model == "log")
        # the lane test only at the first-contact steps (the costly part of the context)
        need = torch.zeros(self.controlled.shape, dtype=torch.int8, device=hit.device)
        need = need.scatter_reduce(1, first, hit_any.to(torch.int8), reduce="amax").bool()
        fault = other_stopped | front | (~rear & at_first(self.lateral_exposed_at(need)))
        if self.ro.agent_model != "log":
            fault = fault | ~front_half  # a reactive agent's rear-end: nuPlan exempts only non-reactive ones
        return fault & ~ego_stopped & hit_any, first

    @cached_property
    def first_collision_at_fault(self) -> Tensor:
        """bool ``[B]``: some agent's first contact with the ego is the ego's fault (nuPlan's categories).

        Each collided agent is judged at its first contact step: a stopped ego (< :data:`STOPPED_SPEED`)
        is never at fault; a stopped agent hit by a moving ego is; an agent touching the ego's front
        bumper (:data:`FRONT_BUMPER` m deep) is an active front collision, at fault; one touching only
        the ego's rear half is a rear-end, not at fault when agents are non-reactive (log replay);
        any other contact is lateral, at fault only while the ego is in several lanes or off the
        drivable area (:attr:`sim.metrics.drivable.DrivableSignals.lateral_exposed`).
        """
        return self.fault_by_agent[0].any(-1)

    @cached_property
    def at_fault_steps(self) -> Tensor:
        """bool ``[B, T]``: steps at which an at-fault collision begins."""
        fault, first = self.fault_by_agent
        out = torch.zeros(self.controlled.shape, dtype=torch.int8, device=fault.device)
        return out.scatter_reduce(1, first, fault.to(torch.int8), reduce="amax").bool()

    @cached_property
    def no_at_fault_collisions(self) -> Tensor:
        """float ``[B]`` in {0, 0.5, 1}: NAVSIM's NC multiplier (``pdm_scorer.py``
        ``_calculate_no_at_fault_collision``; nuPlan ``no_ego_at_fault_collisions.py``): 0 after an at-fault
        collision with a vehicle, pedestrian or cyclist, :data:`OBJECT_COLLISION` when every at-fault
        collision is with an object (:attr:`AgentType.OTHER`), else 1."""
        fault = self.fault_by_agent[0]
        road_user = self.batch.agent_type[:, 1:] != int(AgentType.OTHER)
        one = torch.ones(fault.shape[0], dtype=torch.float32, device=fault.device)
        out = torch.where(fault.any(-1), one * OBJECT_COLLISION, one)
        return torch.where((fault & road_user).any(-1), torch.zeros_like(one), out)


class Collision(Metric):
    name = "collision"

    def from_context(self, c):
        return c.masked_any(c.collision).float()


class CollisionTime(Metric):
    name = "collision_time"
    higher_is_better = True

    def from_context(self, c):
        hit = c.collision & c.controlled
        first = hit.to(torch.int8).argmax(1).float()
        t = (first - c.init) * c.dt
        return torch.where(hit.any(1), t, torch.full_like(t, float("nan")))


class CollisionAtFault(Metric):
    name = "collision_at_fault"

    def from_context(self, c):
        return c.first_collision_at_fault.float()


class NoAtFaultCollisions(Metric):
    name = "no_at_fault_collisions"

    def from_context(self, c):
        return c.no_at_fault_collisions
