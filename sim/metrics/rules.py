"""Map-rule metrics (the rules family), batched in torch: lane occupancy, driving direction, speed limit, lane
keeping and traffic lights (docs/metrics.md, REFERENCE.md "nuPlan and NAVSIM closed-loop rules").

Every metric here is "not applicable" where the scene's map lacks the semantic it needs: the value is NaN (stored
as such; a score drops a NaN multiplier as 1 and a NaN weighted term with its weight, so it never lowers a score).
The map data comes precomputed per batch (:class:`sim.lane_map.LaneMap`, a lane as a union of oriented rectangles);
one pass over (ego centre, lane piece) pairs near each other (:func:`lane_steps`) serves every metric; the box
tests run only against the pieces past a stop line, and for :func:`lane_occupancy`.

Definitions and their sources (``docs/metrics.md`` has the full text):

- :func:`lane_occupancy`: which lanes the ego's box overlaps at each step; ``multiple_lanes`` is NAVSIM's
  ``EgoAreaIndex.MULTIPLE_LANES`` (``pdm_scorer.py`` ``_calculate_ego_area``: more than one lane holds an ego corner
  and no lane holds all four).
- ``driving_direction_compliance`` (nuPlan ``driving_direction_compliance.py``; NAVSIM
  ``_calculate_driving_direction_compliance``): the ego's signed progress against the direction of the lane its
  centre is in (the best aligned where lanes overlap; none off the lanes), summed over every window of a step and
  the 1 s of steps before it (nuPlan's ``n_horizon + 1`` displacements); the worst window ``< 2 m`` -> 1, ``< 6 m``
  -> 0.5, else 0. Applicable where the scene has lanes.
- ``speed_limit_compliance`` (nuPlan ``speed_limit_compliance.py``): over-speed ``o_t = max(0, |v_t| - limit)`` of
  the lane the ego's centre is in (0 where none or its limit is unknown); ``max(0, 1 - sum(o_t) dt / (2.23 m/s *
  duration))``, the sum over every sample from ``init_step`` to the last valid step and the duration between them
  (1 without one). Applicable where the source records limits and a lane within reach has one.
- ``lane_keeping`` (NAVSIM v2 ``pdm_scorer.py`` ``_calculate_lane_keeping``, from hydraMDP++): 0 when the ego's centre
  stays more than 0.5 m from every lane centreline of its direction of travel for 2 s of consecutive steps; steps
  with the centre in an intersection lane are skipped (they neither count nor reset the run). NAVSIM measures to
  the route's centreline; this data has no route lanes, so the nearest same-direction lane centreline is used.
  Applicable where the scene has lanes and the source flags intersection lanes.
- ``traffic_light_compliance`` (NAVSIM v2 ``_calculate_traffic_light_compliance``; V-Max ``red_light.py``; CARLA
  ``RunningRedLightTest``): 0 when the ego's box enters the part of a controlled lane past its stop line (or the
  lanes it leads into when the stop line ends the lane) at a step at which that signal is
  :attr:`~scenarios.scenario.LightState.STOP`; flashing red is a stop sign, not a red light; an ego already past
  the line when the light turns red has not entered on red. Applicable where the source records traffic lights and
  one controls a lane of the scene.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sim.config import SimError
from sim.geometry import box_corners, boxes_overlap
from sim.lane_map import LaneMap
from sim.metrics.base import Metric

if TYPE_CHECKING:  # pragma: no cover
    from sim.metrics.context import MetricContext

DDC_WINDOW = 1.0  # s, nuPlan's driving-direction horizon
DDC_COMPLY = 2.0  # m against the lane within the window: compliant (1)
DDC_VIOLATE = 6.0  # m: beyond this a violation (0), between the two 0.5
SPEED_OVER_MAX = 2.23  # m/s, nuPlan's max_overspeed_value_threshold
LK_DEVIATION = 0.5  # m from the centreline (NAVSIM lane_keeping_deviation_limit)
LK_WINDOW = 2.0  # s of consecutive steps beyond it (NAVSIM lane_keeping_horizon_window)
WINDOW = 10  # steps per circle of the coarse filter (lane_steps)
_X, _Y, _YAW, _LEN, _WID = range(5)


@dataclass(frozen=True, eq=False)
class LaneOccupancy:
    """Per-step lane occupancy of a box (B scenes, T steps).

    Attributes:
        count: int64 ``[B, T]`` lanes whose surface the box overlaps (0 off the lanes or outside ``rows``).
        multiple_lanes: bool ``[B, T]`` NAVSIM's "in multiple lanes" (more than one lane holds a corner, none all four),
            where a lane holds corners of one side of the box only (a box on the seam of two successive lanes,
            front corners in one and rear corners in the other, is in one lane).
        in_intersection: bool ``[B, T]`` the box overlaps a lane flagged as an intersection lane.
    """

    count: Tensor
    multiple_lanes: Tensor
    in_intersection: Tensor


@dataclass(frozen=True, eq=False)
class LaneSteps:
    """What the rule metrics need of the lanes, per step (B scenes, T steps, G signals).

    Attributes:
        centre_yaw: ``[B, T]`` rad, direction of the lane holding the box's centre (best aligned), NaN in none.
        centre_limit: ``[B, T]`` m/s, that lane's speed limit (the lowest among equally aligned), NaN unknown or none.
        centre_in_intersection: bool ``[B, T]`` the centre is in an intersection lane.
        near_centreline: bool ``[B, T]`` the centre is within :data:`LK_DEVIATION` of a same-direction centreline.
        light_region: bool ``[B, T, G]`` the box overlaps the part of signal g's lane past its stop line.
    """

    centre_yaw: Tensor
    centre_limit: Tensor
    centre_in_intersection: Tensor
    near_centreline: Tensor
    light_region: Tensor


def _near(ax: Tensor, ay: Tensor, ar: Tensor, bx: Tensor, by: Tensor, br: Tensor) -> Tensor:
    """Whether circles (x, y, radius) meet, with 1 mm of slack against rounding."""
    dx, dy, r = ax - bx, ay - by, ar + br + 1e-3
    return dx * dx + dy * dy <= r * r


def _candidates(boxes: Tensor, reach: Tensor, lanes: LaneMap, rows: Tensor) -> tuple[Tensor, Tensor]:
    """(step, piece) pairs where a circle of radius ``reach [B, T]`` m around the box's centre meets the piece's
    bounding circle: ``(bt [N] into B*T, seg [N] into B*R)``.

    Three conservative stages keep the work near the pairs that matter: the ego's positions over each window of
    :data:`WINDOW` steps (one circle) against the chunks of :data:`~sim.lane_map.CHUNK` pieces, then each step of a
    window against the chunks it met, then each step against the pieces of the chunks it met.
    """
    n_b, n_t = rows.shape
    n_c = lanes.chunk_circle.shape[1]
    k = lanes.seg_box.shape[1] // n_c
    n_w = -(-n_t // WINDOW)
    pad = n_w * WINDOW - n_t
    xy = torch.nn.functional.pad(boxes[..., :2], (0, 0, 0, pad)).reshape(n_b, n_w, WINDOW, 2)
    ok = torch.nn.functional.pad(rows, (0, pad)).reshape(n_b, n_w, WINDOW)
    w = ok[..., None].to(xy.dtype)
    centre = (xy * w).sum(2) / w.sum(2).clamp_min(1.0)  # [B, W, 2]
    spread = torch.linalg.vector_norm(xy - centre[:, :, None], dim=-1) + torch.nn.functional.pad(
        reach, (0, pad)).reshape(n_b, n_w, WINDOW)
    radius = torch.where(ok, spread, 0.0).amax(2)
    cc = lanes.chunk_circle
    hit = _near(centre[:, :, None, 0], centre[:, :, None, 1], radius[:, :, None],
                cc[:, None, :, 0], cc[:, None, :, 1], cc[:, None, :, 2]) & ok.any(2)[:, :, None]
    b, win, c = hit.nonzero(as_tuple=True)  # window level
    bw, chunk = b * n_w + win, b * n_c + c
    e = xy.reshape(-1, WINDOW, 2)[bw]  # [H, WINDOW, 2]: each window's steps, one contiguous row per window hit
    r = torch.nn.functional.pad(reach, (0, pad)).reshape(-1, WINDOW)[bw]
    circ = cc.reshape(-1, 3)[chunk]
    near = ok.reshape(-1, WINDOW)[bw] & _near(e[..., 0], e[..., 1], r, circ[:, None, 0], circ[:, None, 1],
                                              circ[:, None, 2])
    h, step = near.nonzero(as_tuple=True)  # step level
    bt, chunk, e, r = b[h] * n_t + win[h] * WINDOW + step, chunk[h], e[h, step], r[h, step]
    pc = _piece_circles(lanes)[chunk]  # [M, k, 3]: the k pieces of each chunk met, one contiguous row each
    near = lanes.seg_valid.reshape(-1, k)[chunk] & _near(e[:, None, 0], e[:, None, 1], r[:, None], pc[..., 0],
                                                          pc[..., 1], pc[..., 2])
    m, j = near.nonzero(as_tuple=True)  # piece level
    return bt[m], chunk[m] * k + j


_PIECE_CIRCLES: weakref.WeakKeyDictionary[LaneMap, Tensor] = weakref.WeakKeyDictionary()


def _piece_circles(lanes: LaneMap) -> Tensor:
    """``[B * C, k, 3]`` (x, y, radius) m: each lane piece's bounding circle, grouped by chunk of
    :data:`~sim.lane_map.CHUNK` pieces (computed once per lane map: it serves every rollout of its batch)."""
    got = _PIECE_CIRCLES.get(lanes)
    if got is None:
        sb = lanes.seg_box
        got = torch.stack([sb[..., _X], sb[..., _Y], torch.hypot(sb[..., _LEN], sb[..., _WID]) / 2], dim=-1)
        got = _PIECE_CIRCLES[lanes] = got.reshape(-1, sb.shape[1] // lanes.chunk_circle.shape[1], 3)
    return got


def _pairs(boxes: Tensor, lanes: LaneMap, rows: Tensor, reach: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Candidate pairs and their boxes: ``(bt, seg, ego boxes [N, 5], piece boxes [N, 5])``."""
    bt, seg = _candidates(boxes, reach, lanes, rows)
    return bt, seg, boxes.reshape(-1, 5)[bt], lanes.seg_box.reshape(-1, 5)[seg]


def _local(px: Tensor, py: Tensor, sb: Tensor) -> tuple[Tensor, Tensor]:
    """Points ``[N, ...]`` in the frame of pieces ``sb [N, 5]``: (along, across) m."""
    shape = (-1,) + (1,) * (px.ndim - 1)
    c, s = torch.cos(sb[:, _YAW]).reshape(shape), torch.sin(sb[:, _YAW]).reshape(shape)
    dx, dy = px - sb[:, _X].reshape(shape), py - sb[:, _Y].reshape(shape)
    return dx * c + dy * s, -dx * s + dy * c


def _any_at(mask: Tensor, size: int, key: Tensor) -> Tensor:
    """bool ``[size]``: True at ``key[mask]``."""
    out = torch.zeros(size, dtype=torch.bool, device=key.device)
    return out.index_put_((key[mask],), torch.tensor(True, device=key.device))


def lane_steps(boxes: Tensor, lanes: LaneMap, rows: Tensor) -> LaneSteps:
    """The lane of the box's centre at every step, and the traffic-light regions the box overlaps.

    Args:
        boxes: float32 ``[B, T, 5]`` (x, y, yaw, length, width) m / rad, the batch's local frame.
        lanes: the batch's :class:`~sim.lane_map.LaneMap`.
        rows: bool ``[B, T]`` steps to evaluate (others read as in no lane).

    Returns:
        :class:`LaneSteps`.
    """
    n_b, n_t = rows.shape
    n_l, n_g = lanes.num_lanes, lanes.light_seg.shape[1]
    dev = boxes.device
    # the centre's lane: only pieces within LK_DEVIATION of the centre can hold it or be near it
    bt, seg, eb, sb = _pairs(boxes, lanes, rows, torch.full_like(boxes[..., 0], LK_DEVIATION))
    lane_key = (bt // n_t) * n_l + lanes.seg_lane.reshape(-1)[seg]
    u, v = _local(eb[:, _X], eb[:, _Y], sb)
    along = u.abs() <= sb[:, _LEN] / 2
    centre_in = along & (v.abs() <= sb[:, _WID] / 2)
    align = torch.cos(eb[:, _YAW] - sb[:, _YAW])
    near = along & (v.abs() <= LK_DEVIATION) & (align > 0)
    inter = lanes.lane_intersection.reshape(-1)[lane_key] == 1
    score = torch.where(centre_in, align, torch.full_like(align, -2.0))
    best = torch.full((n_b * n_t,), -3.0, device=dev).scatter_reduce(0, bt, score, "amax")
    win = centre_in & (score == best[bt])
    yaw = torch.full((n_b * n_t,), -math.inf, device=dev).scatter_reduce(0, bt[win], sb[win, _YAW], "amax")
    limit = lanes.lane_speed_limit.reshape(-1)[lane_key].nan_to_num(nan=math.inf)
    lim = torch.full((n_b * n_t,), math.inf, device=dev).scatter_reduce(0, bt[win], limit[win], "amin")
    region = torch.zeros(n_b * n_t, n_g, device=dev)
    light_any = lanes.light_seg.any(1) if n_g else None  # [B, R] pieces past some stop line
    if n_g and bool(light_any.any()):  # the box against the pieces past a stop line alone
        reach = torch.hypot(boxes[..., _LEN], boxes[..., _WID]) / 2
        bt2, seg2, eb2, sb2 = _pairs(boxes, lanes, rows, reach)
        keep = light_any.reshape(-1)[seg2]
        bt2, seg2 = bt2[keep], seg2[keep]
        hit = boxes_overlap(eb2[keep], sb2[keep])
        hits = lanes.light_seg.permute(0, 2, 1).reshape(-1, n_g)[seg2[hit]].float()
        region.index_add_(0, bt2[hit], hits)

    def bt_shape(x: Tensor) -> Tensor:
        return x.reshape(n_b, n_t, *x.shape[1:])

    nan = torch.tensor(math.nan, device=dev)
    return LaneSteps(
        centre_yaw=bt_shape(torch.where(torch.isinf(yaw), nan, yaw)),
        centre_limit=bt_shape(torch.where(torch.isinf(lim), nan, lim)),
        centre_in_intersection=bt_shape(_any_at(centre_in & inter, n_b * n_t, bt)),
        near_centreline=bt_shape(_any_at(near, n_b * n_t, bt)),
        light_region=bt_shape(region > 0),
    )


def lane_occupancy(boxes: Tensor, lanes: LaneMap, rows: Tensor) -> LaneOccupancy:
    """Which lanes a box overlaps at each step: the count, NAVSIM's "in multiple lanes", and whether one of them
    is an intersection lane (lane polygons where the source has them, else centreline +- width / 2).

    Args:
        boxes: float32 ``[B, T, 5]`` (x, y, yaw, length, width) m / rad. lanes: :class:`~sim.lane_map.LaneMap`.
        rows: bool ``[B, T]`` steps to evaluate.

    Returns:
        :class:`LaneOccupancy` (``[B, T]`` each).
    """
    n_b, n_t = rows.shape
    n_l = lanes.num_lanes
    dev = boxes.device
    bt, seg, eb, sb = _pairs(boxes, lanes, rows, torch.hypot(boxes[..., _LEN], boxes[..., _WID]) / 2)
    lane_key = (bt // n_t) * n_l + lanes.seg_lane.reshape(-1)[seg]
    overlap = boxes_overlap(eb, sb)
    corners = box_corners(eb)  # [N, 4, 2]
    cu, cv = _local(corners[..., 0], corners[..., 1], sb)
    corner_in = (cu.abs() <= sb[:, None, _LEN] / 2 + 1e-6) & (cv.abs() <= sb[:, None, _WID] / 2 + 1e-6)  # [N, 4]
    # one row per (step, lane) pair that occurs (not a dense [B * T, lanes] table: the cost follows the pairs)
    key, inv = torch.unique(bt * n_l + lanes.seg_lane.reshape(-1)[seg], return_inverse=True)  # [U], [N]
    n_u, n_bt = key.numel(), n_b * n_t
    step = key // n_l  # [U] into B * T
    occ = _any_at(overlap, n_u, inv)  # [U] the box overlaps the lane
    pair, corner = corner_in.nonzero(as_tuple=True)
    held = torch.zeros(n_u, 4, dtype=torch.bool, device=dev)
    held.index_put_((inv[pair], corner), torch.tensor(True, device=dev))  # [U, 4] corners the lane holds
    inter = lanes.lane_intersection.reshape(-1)[lane_key] == 1
    # corners 0, 1 are the box's left side, 2, 3 its right (sim.geometry.box_corners). Two successive lanes meet at
    # a seam across the lane: a box on the seam has its front corners in one and its rear corners in the other, each
    # lane holding both sides, and it is in one lane. It is in several lanes when a lane holds one side only.
    left, right = held[:, :2].any(-1), held[:, 2:].any(-1)
    one_side = _any_at(left != right, n_bt, step)
    n_holding = torch.zeros(n_bt, dtype=torch.int64, device=dev).index_add_(0, step, held.any(-1).long())
    count = torch.zeros(n_bt, dtype=torch.int64, device=dev).index_add_(0, step, occ.long())
    return LaneOccupancy(
        count=count.reshape(n_b, n_t),
        multiple_lanes=((n_holding > 1) & ~_any_at(held.all(-1), n_bt, step) & one_side).reshape(n_b, n_t),
        in_intersection=_any_at(overlap & inter, n_bt, bt).reshape(n_b, n_t),
    )


def worst_window_sum(x: Tensor, window: int) -> Tensor:
    """``[B]`` largest sum of ``window`` consecutive entries of ``x [B, T]`` (fewer at the start)."""
    cs = torch.cat([torch.zeros_like(x[:, :1]), x.cumsum(1)], dim=1)  # [B, T + 1]
    lo = (torch.arange(1, x.shape[1] + 1, device=x.device) - window).clamp_min(0)
    return (cs[:, 1:] - cs[:, lo]).amax(1)


def direction_from_worst(worst: Tensor) -> Tensor:
    """nuPlan's driving-direction value of the worst 1 s progress against the lane (m): below 2 m 1, below 6 m 0.5,
    else 0 (``driving_direction_compliance.py`` and NAVSIM compare with ``<``: exactly 2 m is 0.5)."""
    return torch.where(worst < DDC_COMPLY, 1.0, torch.where(worst < DDC_VIOLATE, 0.5, 0.0)).to(worst.dtype)


def longest_run(exceed: Tensor, counted: Tensor) -> Tensor:
    """``[B]`` longest run of ``exceed`` over the ``counted`` steps of ``[B, T]`` (uncounted steps are skipped: they
    neither extend nor end a run)."""
    idx = counted.long().cumsum(1)
    resets = torch.where(counted & ~exceed, idx, torch.zeros_like(idx)).cummax(1).values
    return torch.where(exceed & counted, idx - resets, torch.zeros_like(idx)).amax(1)


class RuleContext:
    """Lane steps of one :class:`~sim.metrics.registry.MetricContext`, computed once for every rule metric.

    It keeps the context's tensors it needs, never the context itself: the context keeps it (:meth:`of`), and a
    reference back would make a cycle that holds the batch's tensors until the cyclic garbage collector runs.
    """

    def __init__(self, c: MetricContext):
        lanes = c.batch.lanes
        if lanes is None:
            raise SimError("rule metrics: the batch has no lane map (build it with sim.batch.make_batch)")
        n_t = c.ego.shape[1]
        if lanes.light_red.shape[-1] < n_t:
            raise SimError(f"rule metrics: light states cover {lanes.light_red.shape[-1]} steps, the rollout {n_t}")
        self.lanes = lanes
        self.ego, self.controlled, self.n_controlled, self.dt = c.ego, c.controlled, c.n_controlled, c.dt
        steps = torch.arange(n_t, device=c.ego.device)
        self.box = torch.cat([c.ego[..., 0:3], c.ego[..., 5:7]], dim=-1)
        self.rows = c.step_valid & (steps >= c.init)[None, :]
        self.steps = lane_steps(self.box, lanes, self.rows)
        self._occupancy: LaneOccupancy | None = None

    @staticmethod
    def of(c: MetricContext) -> RuleContext:
        """The context's rule context (made on first use, kept on the context)."""
        got = c.__dict__.get("_rules")
        if got is None:
            got = c.__dict__["_rules"] = RuleContext(c)
        return got

    def ego_occupancy(self) -> LaneOccupancy:
        """The ego's :class:`LaneOccupancy` ``[B, T]`` (steps from ``init_step``; scenes without lanes read 0 lanes):
        the lane test of nuPlan's at-fault lateral rule (``multiple_lanes``) and of TTC's agents-behind rule
        (``multiple_lanes | in_intersection``); use it where ``lanes.has_lanes``. Computed on first use."""
        if self._occupancy is None:
            self._occupancy = lane_occupancy(self.box, self.lanes, self.rows)
        return self._occupancy

    def occupancy(self, rows: Tensor | None = None) -> LaneOccupancy:
        """:meth:`ego_occupancy` at the steps ``rows`` (bool ``[B, T]``) alone, False elsewhere (not kept: the
        caller keeps what it asked for); None: every step, kept."""
        if rows is None or self._occupancy is not None:
            occ = self.ego_occupancy()
            if rows is None:
                return occ
            return LaneOccupancy(occ.count * rows, occ.multiple_lanes & rows, occ.in_intersection & rows)
        return lane_occupancy(self.box, self.lanes, self.rows & rows)

    def _na(self, value: Tensor, applicable: Tensor) -> Tensor:
        return torch.where(applicable, value.float(), torch.full_like(value.float(), math.nan))

    def driving_direction_compliance(self) -> Tensor:
        """``[B]`` in {0, 0.5, 1}, NaN without lanes."""
        yaw = self.steps.centre_yaw[:, 1:]
        step = self.ego[:, 1:, 0:2] - self.ego[:, :-1, 0:2]
        along = step[..., 0] * torch.cos(yaw) + step[..., 1] * torch.sin(yaw)
        # signed: progress with the lane within a window cancels progress against it (nuPlan sums the signed
        # progress along the baseline over the step and the n_horizon steps before it: 11 displacements at 10 Hz)
        against = torch.where(self.controlled[:, 1:] & ~torch.isnan(yaw), -along, 0.0)
        against = torch.cat([torch.zeros_like(against[:, :1]), against], dim=1).double()
        worst = worst_window_sum(against, round(DDC_WINDOW / self.dt) + 1).clamp_min(0.0)
        return self._na(direction_from_worst(worst), self.lanes.has_lanes)

    def speed_limit_compliance(self) -> Tensor:
        """``[B]`` in [0, 1], NaN where no speed limit is known."""
        speed = torch.hypot(self.ego[..., 3], self.ego[..., 4])
        over = (speed - self.steps.centre_limit).nan_to_num(nan=0.0).clamp_min(0.0)
        # nuPlan: every sample from the first (init_step) to the last, times dt, over the duration (last - first)
        loss = (over * self.rows).sum(1) / (SPEED_OVER_MAX * self.n_controlled)
        value = torch.where(self.controlled.any(1), (1.0 - loss).clamp_min(0.0), 1.0)  # no duration: 1 (nuPlan)
        return self._na(value, self.lanes.knows_speed_limits)

    def lane_keeping(self) -> Tensor:
        """``[B]`` in {0, 1}, NaN without lanes or intersection flags."""
        counted = self.controlled & ~self.steps.centre_in_intersection
        run = longest_run(~self.steps.near_centreline, counted)
        fail = run >= math.ceil(LK_WINDOW / self.dt - 1e-9)
        return self._na(~fail, self.lanes.has_lanes & self.lanes.knows_intersections)

    def traffic_light_compliance(self) -> Tensor:
        """``[B]`` in {0, 1}, NaN without traffic lights."""
        region = self.steps.light_region  # [B, T, G]
        n_t = region.shape[1]
        prev = torch.cat([region[:, :1], region[:, :-1]], dim=1)
        red = self.lanes.light_red[..., :n_t].permute(0, 2, 1) & self.lanes.light_valid[:, None, :]
        ran = (region & ~prev & red & self.controlled[..., None]).flatten(1).any(1)
        return self._na(~ran, self.lanes.has_lights)


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
