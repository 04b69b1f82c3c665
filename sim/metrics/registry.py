"""Closed-loop metrics (DESIGN.md "Closed-loop metrics"), batched in torch.

Controlled steps are ``init_step + 1 .. last valid step`` of each scene (``batch.step_valid``);
every per-scenario metric is computed over them. :func:`metric_series` gives the per-step
signals shared with the training reward; :func:`compute_metrics` gives every metric in
:data:`REGISTRY` from one shared computation.

Definitions and choices (beyond DESIGN.md):

- ``collision``: the ego box overlaps a valid other agent's box (SAT); ``collision_time`` is
  ``(first step - init_step) * dt`` s, NaN without collision.
- ``collision_at_fault``: nuPlan's collision categories (``no_ego_at_fault_collisions``),
  each collided agent judged at its first contact step (see
  :attr:`MetricContext.first_collision_at_fault` and ``docs/metrics.md``): stopped ego never
  at fault; stopped agent, active front: at fault; rear half by a non-reactive agent: not;
  lateral: only while the ego is in several lanes (:func:`in_multiple_lanes`) or off the drivable area.
- ``no_at_fault_collisions``: NAVSIM's NC multiplier (``pdm_scorer.py``
  ``_calculate_no_at_fault_collision``): 0 after an at-fault collision with a vehicle, pedestrian or
  cyclist, :data:`OBJECT_COLLISION` (0.5) when every at-fault collision is with an object
  (:attr:`AgentType.OTHER`: barriers, cones, generic static objects), 1 without one.
- ``offroad``: the worst ego corner is more than :data:`OFFROAD_THRESHOLD` m outside the
  drivable area at any controlled step; never in scenes without drivable polygons.
- ``progress``: nuPlan EP, ``min(1, max(ego, 2 m) / max(expert, 2 m))`` where each is the
  arc-length advance along the route between ``init_step`` and the last valid step.
  ``route_completion``: ``(max controlled route position - start position) /
  (logged ego's final route position - start position)``, clipped to [0, 1] (1 when the log
  does not advance): an ego that drives its whole log has completed its route (the importers'
  route runs on past the last logged pose so that a policy has somewhere to go).
- ``min_ttc``: :func:`sim.geometry.time_to_collision` at every controlled step at which the
  ego moves (speed >= 0.005 m/s, as nuPlan), minimum over steps; :data:`TTC_NONE` (3.1 s)
  means no conflict within 3 s. ``ttc_ok = min_ttc > 0.95 s``. Candidates as nuPlan's
  ``time_to_collision_within_bound.py`` (``extract_tracks_info_excluding_collided_tracks``): agents
  ahead of the ego (within :data:`AHEAD_ANGLE` of its heading, seen from its rear axle); agents
  beside it only while it is in several lanes or off the drivable area, agents behind
  (beyond :data:`BEHIND_ANGLE`) never; tracks the ego has collided with are dropped from their
  first contact on; TTC is 0 at the step of an at-fault collision.
- Comfort: Savitzky-Golay derivatives of the ego's closed-loop state, with nuPlan's windows
  (``ego_is_comfortable.py`` and ``utils/state_extractors.py``): long. accel from the signed speed
  over :data:`ACCEL_WINDOW` steps, long. jerk from that accel over :data:`JERK_WINDOW` steps (nuPlan's
  15), yaw rate from the unwrapped yaw over :data:`YAW_RATE_WINDOW` steps (nuPlan's 5, quadratic),
  yaw acceleration from it over :data:`YAW_RATE_WINDOW` steps with a cubic (nuPlan's
  ``ego_yaw_acceleration.py``: ``deriv_order=2, poly_order=3``); ``lat_accel = speed * yaw_rate``;
  jerk magnitude = derivative over :data:`JERK_WINDOW` steps of ``hypot(accel, lat_accel)`` (nuPlan's
  ``ego_jerk.py``, ``acceleration_coordinate="magnitude"``). Scene ends are extended by odd reflection
  (keeps the local slope). The smoothing passes a sinusoid of period 2 s with gain 0.89 (accel) and
  0.49 (jerk, both filters): brief spikes are forgiven, sustained ones are not. ``comfortable`` =
  every controlled step within all six bounds.
- Map rules (``traffic_light_compliance``, ``driving_direction_compliance``, ``speed_limit_compliance``,
  ``lane_keeping``): :mod:`sim.metrics.rules`; NaN where the scene's map lacks the semantic (not applicable).
- ``score``: NAVSIM v2 EPDMS with NAVSIM's human filter (the terms of the recorded driver, :func:`human_terms`);
  ``nuplan_score``: nuPlan's closed-loop score. Formulas in :mod:`sim.metrics.catalogue` (``epdms``,
  ``nuplan_score``; NC through its ``score_terms``).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from functools import cached_property

import torch
from scipy.signal import savgol_coeffs
from torch import Tensor

from scenarios.scenario import LENGTH, VX, VY, WIDTH, YAW, AgentType, X, Y
from sim.batch import ScenarioBatch
from sim.compiled import StepCompile, maybe_compile
from sim.config import SimError
from sim.geometry import (
    TTC_HORIZON,
    TTC_NONE,
    box_corners,
    boxes_overlap,
    nearest_vertex,
    nearest_vertex_fused,
    project_to_dense_polyline,
    road_distance,
    time_to_collision,
)
from sim.metrics.catalogue import SPECS, epdms, nuplan_score, score_terms
from sim.metrics.rules import RuleContext
from sim.rollout import Rollout

OFFROAD_THRESHOLD = 0.3  # m outside the drivable area (nuPlan)
PROGRESS_FLOOR = 2.0  # m (nuPlan EP)
TTC_OK = 0.95  # s
TTC_MIN_SPEED = 0.005  # m/s; no TTC while the ego stands still (nuPlan)
ACCEL_BOUNDS = (-4.05, 2.40)  # m/s^2
LAT_ACCEL_MAX = 4.89  # m/s^2
YAW_RATE_MAX = 0.95  # rad/s
YAW_ACCEL_MAX = 1.93  # rad/s^2 (nuPlan ego_is_comfortable: max_abs_yaw_accel)
JERK_MAX = 4.13  # m/s^3, longitudinal
JERK_MAGNITUDE_MAX = 8.37  # m/s^3, of the acceleration magnitude (nuPlan ego_is_comfortable: max_abs_mag_jerk)
ACCEL_WINDOW = 7  # steps (0.7 s at 10 Hz)
JERK_WINDOW = 15  # steps (nuPlan)
YAW_RATE_WINDOW = 5  # steps (nuPlan approximate_derivatives' default, also for the yaw acceleration)
YAW_ACCEL_ORDER = 3  # polynomial order of the yaw acceleration fit (nuPlan ego_yaw_acceleration.py)
AHEAD_ANGLE = math.radians(20.0)  # agent ahead of the ego (nuPlan idm/utils.py is_agent_ahead)
BEHIND_ANGLE = math.radians(150.0)  # agent behind the ego (nuPlan idm/utils.py is_agent_behind)
REAR_AXLE_TO_CENTRE = 1.461  # m; the ego's rear axle behind its box centre (nuPlan's Pacifica parameters)
OBJECT_COLLISION = 0.5  # no_at_fault_collisions after an at-fault hit on an object only (NAVSIM NC)
STOPPED_SPEED = 0.05  # m/s; below this an agent is stopped (nuPlan's at-fault categories)
FRONT_BUMPER = 0.1  # m; depth of the ego's front bumper for an active front collision
LANE_KEEP = 1.0  # m from the route within which the ego keeps its lane (lateral hits not at fault)
FILTER_CHUNK = 1 << 18  # (scene, agent, step) pairs per eager chunk of the candidate filters (1 MB temporaries)
_BOX = [X, Y, YAW, LENGTH, WIDTH]
assert _BOX == [0, 1, 2, 5, 6] and VX == 3 and VY == 4  # _box() and the TTC slice these columns


def _box(x: Tensor) -> Tensor:
    """``[..., 7]`` states -> ``[..., 5]`` boxes (x, y, yaw, length, width): ``x[..., _BOX]``, sliced (fast on CPU)."""
    return torch.cat([x[..., X : YAW + 1], x[..., LENGTH : WIDTH + 1]], dim=-1)


def _savgol_deriv(x: Tensor, last: Tensor, dt: float, window: int, deriv: int = 1, order: int = 2) -> Tensor:
    """``deriv``-th derivative of ``x [B, T]`` (valid up to index ``last [B]``), Savitzky-Golay over ``window``
    steps with a polynomial of ``order``, per s^deriv. Ends extended by odd reflection about the end sample."""
    n_b, n_t = x.shape
    half = window // 2
    coef = savgol_coeffs(window, order, deriv=deriv, delta=dt, use="dot")
    coef = torch.as_tensor(coef.copy(), dtype=x.dtype, device=x.device)
    t = torch.arange(-half, n_t + half, device=x.device)[None, :].expand(n_b, -1)  # [B, T + 2h]
    lst = last[:, None]
    src = torch.where(t < 0, -t, torch.where(t > lst, 2 * lst - t, t)).clamp(0, n_t - 1)
    val = x.gather(1, src)
    val = torch.where(t < 0, 2 * x[:, :1] - val, val)
    val = torch.where(t > lst, 2 * x.gather(1, lst) - val, val)
    return val.unfold(1, window, 1) @ coef  # [B, T]


def pair_candidates(traj: Tensor, valid: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Conservative (ego, agent, step) filters of the box-overlap and TTC tests, in one pass.

    A pair can overlap only if both are valid and their bounding circles meet; it can collide within
    the TTC horizon only if its circles meet at the relative motion's closest approach in
    ``[0, TTC_HORIZON]`` s (constant velocities). Both use 1 mm of slack against rounding. Pure
    elementwise work on the whole rollout, so it can be compiled (:class:`StepCompile`) without changing
    any metric: the exact box and TTC tests run eager on the candidates alone.

    Args:
        traj: float32 ``[B, A, T, 7]`` the rollout's states (ego at agent 0). valid: bool ``[B, A, T]``.
        rows: bool ``[B, T]`` steps at which TTC is measured.

    Returns:
        ``(overlap, ttc)`` bool ``[B, A-1, T]`` candidates for :func:`~sim.geometry.boxes_overlap` and
        :func:`~sim.geometry.time_to_collision`.
    """
    ego, oth = traj[:, 0], traj[:, 1:]
    dx, dy = oth[..., X] - ego[:, None, :, X], oth[..., Y] - ego[:, None, :, Y]
    ego_diag = torch.hypot(ego[..., LENGTH], ego[..., WIDTH])[:, None]
    reach = (ego_diag + torch.hypot(oth[..., LENGTH], oth[..., WIDTH])) / 2 + 1e-3
    reach2 = reach * reach
    overlap = valid[:, 1:] & valid[:, :1] & (dx * dx + dy * dy <= reach2)
    wx, wy = oth[..., VX] - ego[:, None, :, VX], oth[..., VY] - ego[:, None, :, VY]
    tau = (-(dx * wx + dy * wy) / (wx * wx + wy * wy).clamp_min(1e-12)).clamp(0.0, TTC_HORIZON)
    cx, cy = dx + wx * tau, dy + wy * tau
    return overlap, valid[:, 1:] & rows[:, None] & (cx * cx + cy * cy <= reach2)


_LOG_PROGRESS: weakref.WeakKeyDictionary[ScenarioBatch, Tensor] = weakref.WeakKeyDictionary()


def _pair_rows(idx: Tensor, n_a: int, n_t: int) -> tuple[Tensor, Tensor]:
    """Flat pair indices ``b * (A-1) * T + a * T + t`` into a ``[B, A-1, T]`` table -> rows of
    ``traj.reshape(-1, 7)`` (agent ``a`` of scene ``b`` at step ``t`` is row ``(b * A + a) * T + t``):
    ``(ego rows, other agent a + 1 rows)``."""
    b = idx // ((n_a - 1) * n_t)
    return b * (n_a * n_t) + idx % n_t, idx + (b + 1) * n_t


def _relative_position(ego: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
    """``(ahead, behind)`` bool ``[M]``: where ``other [M, 7]``'s centre lies seen from the rear axle of ``ego [M, 7]``
    (:data:`REAR_AXLE_TO_CENTRE` m behind its box centre, at most half its length): within :data:`AHEAD_ANGLE` of
    the ego's heading, or beyond :data:`BEHIND_ANGLE` (nuPlan ``idm/utils.py`` ``is_agent_ahead``,
    ``is_agent_behind``). A centre on the rear axle itself is neither."""
    c, s = torch.cos(ego[:, YAW]), torch.sin(ego[:, YAW])
    back = torch.clamp(ego[:, LENGTH] / 2, max=REAR_AXLE_TO_CENTRE)
    dx = other[:, X] - (ego[:, X] - back * c)
    dy = other[:, Y] - (ego[:, Y] - back * s)
    along = dx * c + dy * s
    dist = torch.hypot(dx, dy)
    return along > dist * math.cos(AHEAD_ANGLE), along < dist * math.cos(BEHIND_ANGLE)


def in_multiple_lanes(ctx: MetricContext) -> tuple[Tensor, Tensor]:
    """Whether the ego is in several lanes, and whether it is in an intersection lane, at each step.

    nuPlan and NAVSIM ask whether the ego's box overlaps more than one lane polygon
    (``no_ego_at_fault_collisions.py`` via ``ego_lane_change.py``; NAVSIM ``pdm_scorer.py``
    ``_calculate_ego_area``): the lane occupancy of :func:`sim.metrics.rules.lane_occupancy` where the scene has
    lanes. A scene without lanes falls back to the ego's distance from its route (the logged path): more than
    :data:`LANE_KEEP` m off it, the ego has left its lane (and no intersection is known). The one place this is
    decided: the at-fault lateral rule and TTC's agents beside and behind the ego both read it.

    Returns:
        ``(several [B, T], intersection [B, T])``, bool.
    """
    proxy = ctx.route_lat > LANE_KEEP
    has = ctx.batch.lanes.has_lanes[:, None]
    occ = RuleContext.of(ctx).ego_occupancy()
    several = torch.where(has, occ.multiple_lanes, proxy)
    return several, has & occ.in_intersection


class MetricContext:
    """Shared intermediate results for one (rollout, batch) pair; each computed once, lazily."""

    def __init__(self, ro: Rollout, batch: ScenarioBatch, compile: StepCompile | None = None):
        if tuple(ro.traj.shape[:3]) != tuple(batch.log.shape[:3]) or ro.traj.shape[-1] != batch.log.shape[-1]:
            raise SimError(
                f"metrics: rollout trajectory {list(ro.traj.shape)} does not match "
                f"the batch log {list(batch.log.shape)}"
            )
        if ro.init_step != batch.init_step:
            raise SimError(f"metrics: rollout init_step {ro.init_step} differs from the batch's {batch.init_step}")
        self.ro = ro
        self.batch = batch
        self.dt = float(ro.dt)
        self.init = int(ro.init_step)
        n_t = ro.traj.shape[2]
        steps = torch.arange(n_t, device=ro.traj.device)
        self.step_valid = batch.step_valid
        self.last = (batch.step_valid * steps).amax(dim=1)  # [B] last valid step
        self.controlled = batch.step_valid & (steps > self.init)[None, :]  # [B, T]
        self.n_controlled = self.controlled.sum(1).clamp_min(1)
        self.ego = ro.traj[:, 0]  # [B, T, 7]
        dev = ro.traj.device
        self._compiled_filters = compile is not None and compile.compiles("metric_filters")
        self._pair_candidates = maybe_compile(pair_candidates, compile, dev, part="metric_filters")
        # compiled: the fused nearest route vertex; eager (or a failed compile): cdist, faster uncompiled
        self._nearest = maybe_compile(nearest_vertex_fused, compile, dev, part="route_projection", eager=nearest_vertex)

    @cached_property
    def candidates(self) -> tuple[Tensor, Tensor]:
        """``(overlap, ttc)`` bool ``[B, A-1, T]``: :func:`pair_candidates` of the rollout, TTC rows at controlled
        steps where the ego moves; eager in chunks of scenes whose ``[b, A-1, T]`` temporaries stay about
        :data:`FILTER_CHUNK` elements (same values; compiled filters build none)."""
        n_b, n_a, n_t = self.ro.valid.shape
        args = (self.ro.traj, self.ro.valid, self.controlled & (self.speed.abs() >= TTC_MIN_SPEED))
        chunk = max(1, FILTER_CHUNK // max(1, (n_a - 1) * n_t))
        if self._compiled_filters or n_b <= chunk:
            return self._pair_candidates(*args)
        parts = [self._pair_candidates(*(x[i : i + chunk] for x in args)) for i in range(0, n_b, chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def masked_any(self, x: Tensor) -> Tensor:
        """``[B]`` whether bool ``x [B, T]`` holds at any controlled step."""
        return (x & self.controlled).any(1)

    def masked_mean(self, x: Tensor) -> Tensor:
        """``[B]`` mean of ``x [B, T]`` over controlled steps."""
        return (x * self.controlled).sum(1) / self.n_controlled

    def at_last(self, x: Tensor) -> Tensor:
        """``[B]`` value of ``x [B, T]`` at the last valid step."""
        return x.gather(1, self.last[:, None])[:, 0]

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
    def offroad_dist(self) -> Tensor:
        """``[B, T]`` m, worst ego corner's signed distance to the drivable area (> 0 outside)."""
        corners = box_corners(_box(self.ego))  # [B, T, 4, 2]
        n_b, n_t = corners.shape[:2]
        d = road_distance(self.batch.road, corners.reshape(n_b, n_t * 4, 2))
        return d.reshape(n_b, n_t, 4).amax(-1)

    @cached_property
    def route_projection(self) -> tuple[Tensor, Tensor]:
        """``(s [B, T], lateral [B, T])`` m: the ego's projection onto its route, computed once for both."""
        b = self.batch
        return project_to_dense_polyline(b.route, b.route_valid, self.ego[..., X : Y + 1], self._nearest)

    @cached_property
    def route_s(self) -> Tensor:
        """``[B, T]`` m, ego arc-length position along the route."""
        return self.route_projection[0]

    @cached_property
    def log_progress(self) -> Tensor:
        """``[B]`` m, the logged ego's advance along the route from init_step to the last valid step (a property
        of the batch alone: computed once per batch and kept while it lives)."""
        got = _LOG_PROGRESS.get(self.batch)
        if got is None:
            steps = torch.stack([torch.full_like(self.last, self.init), self.last], dim=1)  # [B, 2]
            xy = self.batch.log[:, 0, :, :2].gather(1, steps[..., None].expand(-1, -1, 2))
            s = project_to_dense_polyline(self.batch.route, self.batch.route_valid, xy)[0]
            got = _LOG_PROGRESS[self.batch] = s[:, 1] - s[:, 0]
        return got

    @cached_property
    def log_dist(self) -> Tensor:
        """``[B, T]`` m, ego distance to its logged position."""
        return torch.linalg.vector_norm(self.ego[..., X : Y + 1] - self.batch.log[:, 0, :, X : Y + 1], dim=-1)

    @cached_property
    def speed(self) -> Tensor:
        """``[B, T]`` m/s, signed longitudinal speed."""
        e = self.ego
        return e[..., VX] * torch.cos(e[..., YAW]) + e[..., VY] * torch.sin(e[..., YAW])

    @cached_property
    def accel(self) -> Tensor:
        """``[B, T]`` m/s^2, longitudinal acceleration."""
        return _savgol_deriv(self.speed, self.last, self.dt, ACCEL_WINDOW)

    @cached_property
    def jerk(self) -> Tensor:
        """``[B, T]`` m/s^3, longitudinal jerk."""
        return _savgol_deriv(self.accel, self.last, self.dt, JERK_WINDOW)

    @cached_property
    def unwrapped_yaw(self) -> Tensor:
        """``[B, T]`` rad, the ego's heading without the 2 pi jumps."""
        yaw = self.ego[..., YAW]
        dyaw = torch.remainder(yaw[:, 1:] - yaw[:, :-1] + torch.pi, 2 * torch.pi) - torch.pi
        return torch.cat([yaw[:, :1], yaw[:, :1] + torch.cumsum(dyaw, dim=1)], dim=1)

    @cached_property
    def yaw_rate(self) -> Tensor:
        """``[B, T]`` rad/s."""
        return _savgol_deriv(self.unwrapped_yaw, self.last, self.dt, YAW_RATE_WINDOW)

    @cached_property
    def yaw_accel(self) -> Tensor:
        """``[B, T]`` rad/s^2 (nuPlan ``ego_yaw_acceleration.py``: cubic, second derivative, 5 steps)."""
        return _savgol_deriv(self.unwrapped_yaw, self.last, self.dt, YAW_RATE_WINDOW, deriv=2, order=YAW_ACCEL_ORDER)

    @cached_property
    def lat_accel(self) -> Tensor:
        """``[B, T]`` m/s^2."""
        return self.speed * self.yaw_rate

    @cached_property
    def jerk_magnitude(self) -> Tensor:
        """``[B, T]`` m/s^3, rate of change of the acceleration magnitude ``hypot(accel, lat_accel)`` (nuPlan
        ``ego_jerk.py`` with ``acceleration_coordinate="magnitude"``, :data:`JERK_WINDOW` steps)."""
        return _savgol_deriv(torch.hypot(self.accel, self.lat_accel), self.last, self.dt, JERK_WINDOW)

    @cached_property
    def ttc(self) -> Tensor:
        """``[B, T]`` s, time to collision at each controlled step (:data:`TTC_NONE` elsewhere)."""
        n_b, n_a, n_t = self.ro.valid.shape
        out = torch.full((n_b * n_t,), TTC_NONE, dtype=self.ego.dtype, device=self.ego.device)
        if n_a < 2:
            return out.reshape(n_b, n_t)
        # Candidate (scene, agent, step) pairs in the rollout's own [B, A-1, T] layout: a pair can
        # only collide within the horizon if its bounding circles meet at the relative motion's
        # closest approach in [0, TTC_HORIZON] (1 mm slack against rounding). Each candidate goes
        # through time_to_collision alone (which re-applies its own filter) and the per-step
        # minimum is taken: the same values as one call per step with every agent.
        cand = self.candidates[1]
        idx = cand.reshape(-1).nonzero().squeeze(1)  # b * (A-1) * T + a * T + t
        if idx.numel() == 0:
            return out.reshape(n_b, n_t)
        ego_row = idx // ((n_a - 1) * n_t) * n_t + idx % n_t  # into [B * T]
        ego_rows, other_rows = _pair_rows(idx, n_a, n_t)
        rows = self.ro.traj.reshape(-1, 7)
        pair = rows.index_select(0, other_rows)
        e = rows.index_select(0, ego_rows)
        # nuPlan's candidates: not yet collided with, and ahead (or beside while the ego is in several lanes)
        ahead, behind = _relative_position(e, pair)
        keep = ~self.collided.reshape(-1).index_select(0, idx)
        keep &= ahead | (self.beside_exposed.reshape(-1).index_select(0, ego_row) & ~behind)
        ttc = time_to_collision(
            _box(e), e[:, VX : VY + 1], _box(pair)[:, None], pair[:, None, VX : VY + 1], keep[:, None]
        )
        out = out.scatter_reduce(0, ego_row, ttc, reduce="amin").reshape(n_b, n_t)
        return out.masked_fill(self.at_fault_steps, 0.0)  # nuPlan: TTC 0 at an at-fault collision

    @cached_property
    def route_lat(self) -> Tensor:
        """``[B, T]`` m, ego distance from its route (the logged path): how far it left its lane."""
        return self.route_projection[1]

    @cached_property
    def lanes_taken(self) -> tuple[Tensor, Tensor]:
        """:func:`in_multiple_lanes` of this rollout, once."""
        return in_multiple_lanes(self)

    @cached_property
    def lateral_exposed(self) -> Tensor:
        """bool ``[B, T]``: the ego is in several lanes (:func:`in_multiple_lanes`) or off the drivable area
        (more than :data:`OFFROAD_THRESHOLD` m): lateral hits are its fault (nuPlan
        ``no_ego_at_fault_collisions.py``)."""
        return self.lanes_taken[0] | (self.offroad_dist > OFFROAD_THRESHOLD)

    @cached_property
    def beside_exposed(self) -> Tensor:
        """bool ``[B, T]``: agents beside the ego are TTC candidates: it is in several lanes, in an intersection
        lane or off the drivable area (nuPlan ``time_to_collision_within_bound.py``, NAVSIM's ego areas)."""
        return self.lateral_exposed | self.lanes_taken[1]

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
        fault = other_stopped | front | (~rear & at_first(self.lateral_exposed))
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
        drivable area (:attr:`lateral_exposed`).
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


class Metric:
    """A per-scenario closed-loop metric; subclasses implement :meth:`from_context`."""

    name: str = ""

    @property
    def unit(self) -> str:
        """Unit, from :data:`sim.metrics.catalogue.CATALOGUE`."""
        return SPECS[self.name].unit

    @property
    def higher_is_better(self) -> bool:
        """Direction, from :data:`sim.metrics.catalogue.CATALOGUE`."""
        return SPECS[self.name].higher_is_better

    def compute(self, ro: Rollout, batch: ScenarioBatch) -> Tensor:
        """float ``[B]`` value per scenario."""
        return self.from_context(MetricContext(ro, batch))

    def from_context(self, c: MetricContext) -> Tensor:
        """float ``[B]`` from shared intermediate results."""
        raise NotImplementedError


class ADE(Metric):
    name = "ade"

    def from_context(self, c):
        return c.masked_mean(c.log_dist)


class FDE(Metric):
    name = "fde"

    def from_context(self, c):
        return c.at_last(c.log_dist)


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


class Offroad(Metric):
    name = "offroad"

    def from_context(self, c):
        return c.masked_any(c.offroad_dist > OFFROAD_THRESHOLD).float()


class OffroadFraction(Metric):
    name = "offroad_fraction"

    def from_context(self, c):
        return c.masked_mean((c.offroad_dist > OFFROAD_THRESHOLD).float())


class Progress(Metric):
    name = "progress"

    def from_context(self, c):
        ego = c.at_last(c.route_s) - c.route_s[:, c.init]
        return (ego.clamp_min(PROGRESS_FLOOR) / c.log_progress.clamp_min(PROGRESS_FLOOR)).clamp(max=1.0)


class RouteCompletion(Metric):
    name = "route_completion"

    def from_context(self, c):
        start = c.route_s[:, c.init]
        reached = c.route_s.masked_fill(~c.controlled, -float("inf")).amax(1)
        left = c.log_progress
        frac = (reached - start) / left.clamp_min(1e-6)
        return torch.where(left > 1e-3, frac, torch.ones_like(frac)).clamp(0.0, 1.0)


class MinTTC(Metric):
    name = "min_ttc"

    def from_context(self, c):
        return c.ttc.masked_fill(~c.controlled, TTC_NONE).amin(1)


class TTCOk(Metric):
    name = "ttc_ok"

    def from_context(self, c):
        return (MinTTC().from_context(c) > TTC_OK).float()


class Comfortable(Metric):
    name = "comfortable"

    def from_context(self, c):
        ok = (c.accel >= ACCEL_BOUNDS[0]) & (c.accel <= ACCEL_BOUNDS[1])
        ok &= c.lat_accel.abs() <= LAT_ACCEL_MAX
        ok &= c.yaw_rate.abs() <= YAW_RATE_MAX
        ok &= c.yaw_accel.abs() <= YAW_ACCEL_MAX
        ok &= c.jerk.abs() <= JERK_MAX
        ok &= c.jerk_magnitude.abs() <= JERK_MAGNITUDE_MAX
        return (~c.masked_any(~ok)).float()


class TrafficLightCompliance(Metric):
    name = "traffic_light_compliance"

    def from_context(self, c):
        return RuleContext.of(c).traffic_light_compliance()


class DrivingDirectionCompliance(Metric):
    name = "driving_direction_compliance"

    def from_context(self, c):
        return RuleContext.of(c).driving_direction_compliance()


class SpeedLimitCompliance(Metric):
    name = "speed_limit_compliance"

    def from_context(self, c):
        return RuleContext.of(c).speed_limit_compliance()


class LaneKeeping(Metric):
    name = "lane_keeping"

    def from_context(self, c):
        return RuleContext.of(c).lane_keeping()


_TERM_METRICS = ("no_at_fault_collisions", "offroad", "driving_direction_compliance", "traffic_light_compliance",
                 "progress", "ttc_ok", "lane_keeping", "comfortable", "speed_limit_compliance")
_HUMAN_TERMS: weakref.WeakKeyDictionary[ScenarioBatch, dict[str, Tensor]] = weakref.WeakKeyDictionary()


def _terms(c: MetricContext) -> dict[str, Tensor]:
    """The score terms of a context (:func:`sim.metrics.catalogue.score_terms`, the one place NC is defined), once."""
    got = c.__dict__.get("_score_terms")
    if got is None:
        got = c.__dict__["_score_terms"] = score_terms({n: REGISTRY[n].from_context(c) for n in _TERM_METRICS})
    return got


def human_terms(batch: ScenarioBatch) -> dict[str, Tensor]:
    """The score terms of the recorded driver: every agent (ego included) on its log, unfiltered. A property of the
    batch alone: computed once per batch and kept while it lives (NAVSIM's human filter compares against it)."""
    got = _HUMAN_TERMS.get(batch)
    if got is None:
        action = torch.zeros(batch.num_scenes, batch.num_steps, 2, device=batch.device, dtype=batch.log.dtype)
        log = Rollout(batch.log, batch.valid, action, None, agent_model="log", init_step=batch.init_step, dt=batch.dt)
        got = _HUMAN_TERMS[batch] = _terms(MetricContext(log, batch))
    return got


class Score(Metric):
    """NAVSIM v2 EPDMS with the human filter (:func:`sim.metrics.catalogue.epdms`)."""

    name = "score"

    def from_context(self, c):
        return epdms(_terms(c), human_terms(c.batch))


class NuplanScore(Metric):
    """nuPlan's closed-loop score, no human filter (:func:`sim.metrics.catalogue.nuplan_score`)."""

    name = "nuplan_score"

    def from_context(self, c):
        return nuplan_score(_terms(c))


REGISTRY: dict[str, Metric] = {
    m.name: m
    for m in (
        ADE(),
        FDE(),
        Collision(),
        CollisionTime(),
        CollisionAtFault(),
        NoAtFaultCollisions(),
        Offroad(),
        OffroadFraction(),
        Progress(),
        RouteCompletion(),
        MinTTC(),
        TTCOk(),
        Comfortable(),
        TrafficLightCompliance(),
        DrivingDirectionCompliance(),
        SpeedLimitCompliance(),
        LaneKeeping(),
        Score(),
        NuplanScore(),
    )
}


def compute_metrics(ro: Rollout, batch: ScenarioBatch, compile: StepCompile | None = None) -> dict[str, Tensor]:
    """Every metric in :data:`REGISTRY`.

    Args:
        ro: the closed-loop rollout (B scenes).
        batch: the batch it ran on.
        compile: compile the metrics' candidate filters (same values) and the route projection's nearest vertex
            (round-off; an exact tie may pick the neighbouring vertex) where :class:`~sim.compiled.StepCompile`
            says so.

    Returns:
        ``{name: float [B]}``; booleans as 0/1, ``collision_time`` NaN without collision.

    Raises:
        SimError: the rollout does not belong to the batch (shapes or init_step differ).
    """
    human_terms(batch)  # first: the recorded driver's context is gone before the policy's fills (peak memory)
    c = MetricContext(ro, batch, compile)
    return {name: m.from_context(c).float() for name, m in REGISTRY.items()}


SERIES = ("collision", "offroad_dist", "route_s", "log_dist", "accel", "jerk", "lat_accel", "yaw_rate", "ttc",
          "yaw_accel", "jerk_magnitude")


def metric_series(ro: Rollout, batch: ScenarioBatch, names: Sequence[str] = SERIES) -> dict[str, Tensor]:
    """Per-step signals shared by the metrics and the training reward.

    Args:
        ro: the closed-loop rollout (B scenes).
        batch: the batch it ran on.
        names: which series to compute (default all of :data:`SERIES`; ``ttc`` is the costly one).

    Returns:
        ``{name: [B, T]}``: ``collision`` (bool, any agent, fault-agnostic), ``offroad_dist``
        (m, worst ego corner, > 0 outside), ``route_s`` (m along the route), ``log_dist`` (m),
        ``accel`` (m/s^2), ``jerk`` (m/s^3), ``lat_accel`` (m/s^2), ``yaw_rate`` (rad/s),
        ``ttc`` (s; :data:`TTC_NONE` where none or not controlled), ``yaw_accel`` (rad/s^2),
        ``jerk_magnitude`` (m/s^3), ``controlled`` (bool).
        Values at padded steps are meaningless.
    """
    unknown = sorted(set(names) - set(SERIES))
    if unknown:
        raise SimError(f"metric_series: unknown series {unknown}; known: {list(SERIES)}")
    c = MetricContext(ro, batch)
    out = {n: getattr(c, n) for n in names}
    out["controlled"] = c.controlled
    return out
