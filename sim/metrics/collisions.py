"""Collision metrics: ``collision``, ``collision_time``, ``collision_at_fault`` and ``no_at_fault_collisions``.

- ``collision``: the ego box overlaps a valid other agent's box (SAT); ``collision_time`` is
  ``(first step - init_step) * dt`` s, NaN without collision.
- ``collision_at_fault``: nuPlan's collision categories (``no_ego_at_fault_collisions``),
  each collided agent judged at its first contact step (see
  :attr:`MetricContext.first_collision_at_fault` and ``docs/metrics.md``): stopped ego never
  at fault; stopped agent, active front: at fault; an agent behind the rear axle, non-reactive: not;
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
from sim.metrics.base import Metric, _box
from sim.metrics.pairs import pair_rows
from sim.metrics.ttc import relative_position

OBJECT_COLLISION = 0.5  # no_at_fault_collisions after an at-fault hit on an object only (NAVSIM NC)
NUPLAN_OBJECTS_ALLOWED = 1  # nuPlan's max_violation_threshold_object (vehicles and VRUs: 0)
STOPPED_SPEED = 0.05  # m/s; at or below this an agent is stopped (nuPlan's at-fault categories, <=)
FRONT_BUMPER = 0.1  # m; depth of the ego's front bumper for an active front collision


class CollisionSignals:
    """Mixin of :class:`~sim.metrics.context.MetricContext`: box overlaps and nuPlan's at-fault categories."""

    @cached_property
    def overlap_hits(self) -> Tensor:
        """int64 ``[H]`` flat indices ``b * (A-1) * T + a * T + t`` (ascending) of the (scene, agent, step) at which the
        ego's box overlaps the agent's (both valid)."""
        # only pairs whose bounding circles meet can overlap: the box test runs on those alone (same values)
        idx = self.candidates[0]
        ego_rows, other_rows = pair_rows(idx, *self.ro.valid.shape[1:])
        hit = boxes_overlap(
            _box(self.ego_rows.index_select(0, ego_rows)), _box(self.record_rows.index_select(0, other_rows)))
        return idx[hit]

    @cached_property
    def agent_overlap(self) -> Tensor:
        """bool ``[B, A-1, T]``: ego box overlaps other agent's box (both valid)."""
        n_b, n_a, n_t = self.ro.valid.shape
        out = torch.zeros(n_b * (n_a - 1) * n_t, dtype=torch.bool, device=self.ro.valid.device)
        return out.index_fill_(0, self.overlap_hits, True).reshape(n_b, n_a - 1, n_t)

    @cached_property
    def collision(self) -> Tensor:
        """bool ``[B, T]``."""
        n_b, n_o, n_t = self.ro.valid.shape
        n_o -= 1
        idx = self.overlap_hits
        out = torch.zeros(n_b * n_t, dtype=torch.bool, device=idx.device)
        return out.index_fill_(0, idx // (n_o * n_t) * n_t + idx % n_t, True).reshape(n_b, n_t)

    @cached_property
    def first_contact(self) -> tuple[Tensor, Tensor]:
        """``(first int64 [B, A-1], touched bool [B, A-1])``: each agent's first controlled step of contact with
        the ego (0 where it has none), and whether it has one."""
        n_b, n_o, n_t = self.ro.valid.shape
        n_o -= 1
        idx = self.overlap_hits
        key, t = idx // n_t, idx % n_t  # key = b * (A-1) + a
        at_control = self.controlled.reshape(-1).index_select(0, key // max(n_o, 1) * n_t + t)
        first = torch.full((n_b * n_o,), n_t, dtype=torch.long, device=idx.device)
        first = first.scatter_reduce(0, key[at_control], t[at_control], reduce="amin")
        touched = first < n_t
        return first.masked_fill(~touched, 0).view(n_b, n_o), touched.view(n_b, n_o)

    def collided_at(self, idx: Tensor) -> Tensor:
        """bool ``[P]`` for flat pair indices ``idx`` (as :attr:`overlap_hits`): the ego has touched the agent at
        this controlled step or an earlier one (nuPlan drops such tracks from TTC from their first contact on)."""
        n_t = self.ro.valid.shape[2]
        first, touched = (x.reshape(-1) for x in self.first_contact)
        key = idx // n_t
        return touched.index_select(0, key) & (idx % n_t >= first.index_select(0, key))

    @cached_property
    def collided(self) -> Tensor:
        """bool ``[B, A-1, T]``: :meth:`collided_at` of every (scene, agent, step)."""
        first, touched = self.first_contact
        steps = torch.arange(self.ro.valid.shape[2], device=first.device)
        return touched[..., None] & (steps >= first[..., None])

    @cached_property
    def fault_by_agent(self) -> tuple[Tensor, Tensor]:
        """``(at_fault bool [B, A-1], first int64 [B, A-1])``: each collided agent judged at its first contact
        step ``first`` (nuPlan's categories; see :attr:`first_collision_at_fault`)."""
        first, touched = self.first_contact
        fault = torch.zeros_like(touched)
        b, a = touched.nonzero().unbind(1)  # [K] the agents the ego touched
        if b.numel() == 0:
            return fault, first
        t = first[b, a]
        ego_t = _box(self.ego[b, t])  # [K, 5]
        other_full = self.ro.record[b, a + 1, t]  # [K, 7]
        other = _box(other_full)
        ego_stopped = self.speed.abs()[b, t] <= STOPPED_SPEED  # nuPlan: speed <= 0.05 m/s is stopped
        other_stopped = torch.hypot(other_full[..., VX], other_full[..., VY]) <= STOPPED_SPEED
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
        # active rear: the agent's centre lies behind the ego's rear axle (nuPlan is_agent_behind, beyond 150 deg),
        # tested before the front bumper as nuPlan's _get_collision_type does
        rear = relative_position(self.ego[b, t], other_full)[1]
        # the lane test only at the first-contact steps (the costly part of the context)
        need = torch.zeros(self.controlled.shape, dtype=torch.bool, device=b.device)
        need[b, t] = True
        at_fault = other_stopped | (~rear & (front | self.lateral_exposed_at(need)[b, t]))
        if self.ro.agent_model != "log":
            at_fault = at_fault | rear  # a reactive agent's rear-end: this project blames the ego (docs/metrics.md)
        fault[b, a] = at_fault & ~ego_stopped
        return fault, first

    @cached_property
    def first_collision_at_fault(self) -> Tensor:
        """bool ``[B]``: some agent's first contact with the ego is the ego's fault (nuPlan's categories).

        Each collided agent is judged at its first contact step, in nuPlan's order (``_get_collision_type``): a
        stopped ego (<= :data:`STOPPED_SPEED`) is never at fault; a stopped agent hit by a moving ego is; an agent
        whose centre lies behind the ego's rear axle (beyond 150 deg, nuPlan ``is_agent_behind``) is a rear-end,
        not at fault when agents are non-reactive (log replay); an agent touching the ego's front bumper
        (:data:`FRONT_BUMPER` m deep) is an active front collision, at fault; any other contact is lateral, at
        fault only while the ego is in several lanes or off the drivable area
        (:attr:`sim.metrics.drivable.DrivableSignals.lateral_exposed`), wherever on the ego's side it lands.
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
        road_user, objects = self.at_fault_hits
        out = torch.where(objects > 0, OBJECT_COLLISION, 1.0)
        return torch.where(road_user, 0.0, out)

    @cached_property
    def nuplan_no_at_fault_collisions(self) -> Tensor:
        """float ``[B]``: nuPlan's ``no_ego_at_fault_collisions`` score (``no_ego_at_fault_collisions.py``
        ``compute_score``), the product over VRUs, vehicles and objects of ``max(0, 1 - n / (allowed + 1))`` with 0,
        0 and :data:`NUPLAN_OBJECTS_ALLOWED` allowed: 0 after an at-fault collision with a road user, 0.5 after one
        with an object, 0 from the second object on (NAVSIM's NC, :attr:`no_at_fault_collisions`, stays at 0.5).
        The NC of ``nuplan_score`` (:mod:`sim.metrics.scores`)."""
        road_user, objects = self.at_fault_hits
        out = (1.0 - objects / (NUPLAN_OBJECTS_ALLOWED + 1)).clamp_min(0.0)
        return torch.where(road_user, 0.0, out)

    @cached_property
    def at_fault_hits(self) -> tuple[Tensor, Tensor]:
        """``(road_user bool [B], objects float [B])``: whether an at-fault collision hit a vehicle, pedestrian or
        cyclist, and how many objects (:attr:`AgentType.OTHER`) were hit at fault; what both NCs count."""
        fault = self.fault_by_agent[0]
        road_user = self.batch.agent_type[:, 1:] != int(AgentType.OTHER)
        return (fault & road_user).any(-1), (fault & ~road_user).sum(-1).float()


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
