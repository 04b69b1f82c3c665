"""The `Scenario` type: one recorded (or generated) driving scene, in numpy.

Shape contract (A agents, T steps, L polylines, P points):

- ``agents``: float32 ``[A, T, 7]``, columns ``X, Y, YAW, VX, VY, LENGTH, WIDTH``
  (metres, radians, m/s; world frame, x east, y north, yaw counter-clockwise from +x,
  wrapped to (-pi, pi]).
- ``valid``: bool ``[A, T]``; values at invalid steps are meaningless (kept finite, 0).
- ``agent_type``: int8 ``[A]`` of :class:`AgentType`.
- ``ego``: index of the ego agent; its log is the expert. It is valid at every step.
- ``route``: float64 ``[R, 2]``, the ego's intended path (covers the logged ego path).
- ``map``: :class:`RoadMap` of ragged :class:`Polylines`.
- ``dt``: seconds between steps (0.1 s in every shipped source).
- ``init_step``: steps ``0..init_step`` are history given from the log; closed-loop
  control starts at ``init_step`` and runs to ``T - 1``.
- ``world_origin``: float ``(x, y)`` metres, where the scene's local frame origin lies in the
  source's world frame (world = local + world_origin). Importers recentre every scene on the
  ego (its position at ``init_step``) so that float32 simulation never sees large coordinates
  (a UTM-referenced log sits ~4,000 km from its origin); exports, CARLA and replays add it back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

X, Y, YAW, VX, VY, LENGTH, WIDTH = range(7)
NUM_FIELDS = 7


class ScenarioError(ValueError):
    """A scenario (or a scenario file) is malformed. The message names what is wrong."""


class AgentType(IntEnum):
    """Kinds of road user."""

    VEHICLE = 0
    PEDESTRIAN = 1
    CYCLIST = 2
    OTHER = 3


def wrap_angle(a: np.ndarray | float) -> np.ndarray | float:
    """Wrap angles (radians) to (-pi, pi]."""
    w = np.remainder(np.asarray(a, dtype=np.float64) + math.pi, 2 * math.pi) - math.pi
    w = np.where(w <= -math.pi, w + 2 * math.pi, w)
    return float(w) if np.ndim(w) == 0 else w


@dataclass(frozen=True, eq=False)
class Polylines:
    """A ragged set of 2-D polylines packed into one array.

    Attributes:
        points: float64 ``[P, 2]`` metres, all polylines one after another.
        offsets: int64 ``[L + 1]``; polyline ``i`` is ``points[offsets[i]:offsets[i+1]]``.
    """

    points: np.ndarray
    offsets: np.ndarray

    @staticmethod
    def from_list(lines: Sequence[np.ndarray]) -> Polylines:
        """Pack a list of ``[n_i, 2]`` arrays."""
        arrs = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in lines]
        offsets = np.zeros(len(arrs) + 1, dtype=np.int64)
        if arrs:
            offsets[1:] = np.cumsum([len(a) for a in arrs])
            pts = np.concatenate(arrs, axis=0)
        else:
            pts = np.zeros((0, 2), dtype=np.float64)
        return Polylines(pts, offsets)

    @staticmethod
    def empty() -> Polylines:
        """No polylines."""
        return Polylines(np.zeros((0, 2), dtype=np.float64), np.zeros(1, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.points[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def validate(self, what: str) -> None:
        """Raise :class:`ScenarioError` if shapes or values are wrong."""
        if self.points.ndim != 2 or self.points.shape[1] != 2:
            raise ScenarioError(f"{what}: points must be [P, 2], got {list(self.points.shape)}")
        if not np.all(np.isfinite(self.points)):
            raise ScenarioError(f"{what}: points contain NaN or inf")
        o = self.offsets
        if o.ndim != 1 or len(o) < 1 or o[0] != 0 or o[-1] != len(self.points) or np.any(np.diff(o) < 0):
            raise ScenarioError(f"{what}: offsets do not partition the {len(self.points)} points")


@dataclass(frozen=True, eq=False)
class RoadMap:
    """Road geometry of a scene.

    Attributes:
        lanes: lane centrelines, in the direction of travel.
        lane_widths: float64 ``[L]`` metres, one per lane centreline.
        road_edges: road boundaries, drivable area on the LEFT of each edge's direction.
        road_lines: painted lines (for display).
        drivable: closed polygons (first point not repeated) whose union is the drivable
            area. Offroad is measured against these; a map without them has no offroad.
        crosswalks: closed polygons of pedestrian crossings (for display).
    """

    lanes: Polylines = field(default_factory=Polylines.empty)
    lane_widths: np.ndarray = field(default_factory=lambda: np.zeros(0))
    road_edges: Polylines = field(default_factory=Polylines.empty)
    road_lines: Polylines = field(default_factory=Polylines.empty)
    drivable: Polylines = field(default_factory=Polylines.empty)
    crosswalks: Polylines = field(default_factory=Polylines.empty)

    POLYLINE_FIELDS = ("lanes", "road_edges", "road_lines", "drivable", "crosswalks")

    def validate(self) -> None:
        """Raise :class:`ScenarioError` if any part is malformed."""
        for name in self.POLYLINE_FIELDS:
            getattr(self, name).validate(f"map.{name}")
        if self.lane_widths.shape != (len(self.lanes),):
            raise ScenarioError(
                f"map.lane_widths must have one width per lane ({len(self.lanes)}), "
                f"got shape {list(self.lane_widths.shape)}"
            )
        if len(self.lane_widths) and not (np.all(np.isfinite(self.lane_widths)) and np.all(self.lane_widths > 0)):
            raise ScenarioError("map.lane_widths must be finite and positive")
        for i, poly in enumerate(self.drivable):
            if len(poly) < 3:
                raise ScenarioError(f"map.drivable polygon {i} has {len(poly)} points (needs >= 3)")


@dataclass(frozen=True, eq=False)
class Scenario:
    """One driving scene. See the module docstring for the shape contract."""

    id: str
    source: str
    agents: np.ndarray
    valid: np.ndarray
    agent_type: np.ndarray
    ego: int
    map: RoadMap
    route: np.ndarray
    dt: float = 0.1
    init_step: int = 10
    family: str = ""
    tags: tuple[str, ...] = ()
    world_origin: tuple[float, float] = (0.0, 0.0)

    @property
    def num_agents(self) -> int:
        """A, the number of agents (ego included)."""
        return int(self.agents.shape[0])

    @property
    def num_steps(self) -> int:
        """T, the number of logged steps."""
        return int(self.agents.shape[1])

    @property
    def ego_log(self) -> np.ndarray:
        """float32 ``[T, 7]``: the ego's logged states."""
        return self.agents[self.ego]

    def static_agents(self) -> np.ndarray:
        """bool ``[A]``: agents that never move (valid at every step, position fixed within 1 cm, speed 0).

        Static obstacles (CommonRoad ``staticObstacle``, parked vehicles) are imported as such agents.
        """
        xy = self.agents[..., [X, Y]].astype(np.float64)
        still = np.all(np.abs(xy - xy[:, :1]) <= 0.01, axis=(1, 2))
        stopped = np.all(np.hypot(self.agents[..., VX], self.agents[..., VY]) < 0.05, axis=1)
        return self.valid.all(axis=1) & still & stopped

    def validate(self) -> Scenario:
        """Check the shape contract and values; return self.

        Raises:
            ScenarioError: naming the first problem found.
        """
        a = self.agents
        if not isinstance(a, np.ndarray) or a.ndim != 3 or a.shape[2] != NUM_FIELDS:
            raise ScenarioError(f"agents must be [A, T, {NUM_FIELDS}], got {list(np.shape(a))}")
        n_a, n_t = a.shape[:2]
        if n_a == 0 or n_t < 2:
            raise ScenarioError(f"scenario is empty: {n_a} agents, {n_t} steps")
        if self.valid.shape != (n_a, n_t) or self.valid.dtype != np.bool_:
            raise ScenarioError(f"valid must be bool [{n_a}, {n_t}], got {self.valid.dtype} {list(self.valid.shape)}")
        if self.agent_type.shape != (n_a,):
            raise ScenarioError(f"agent_type must be [{n_a}], got {list(self.agent_type.shape)}")
        if not np.all(np.isin(self.agent_type, [t.value for t in AgentType])):
            raise ScenarioError("agent_type holds unknown values")
        if not np.all(np.isfinite(a[self.valid])):
            raise ScenarioError("agents contain NaN or inf at valid steps")
        if not (0 <= self.ego < n_a):
            raise ScenarioError(f"ego index {self.ego} out of range for {n_a} agents")
        if not self.valid[self.ego].all():
            raise ScenarioError(f"ego {self.ego} is not valid at every step")
        sizes = a[..., [LENGTH, WIDTH]][self.valid]
        if np.any(sizes <= 0):
            raise ScenarioError("agent length and width must be positive at valid steps")
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise ScenarioError(f"dt must be positive, got {self.dt}")
        if not (0 <= self.init_step < n_t - 1):
            raise ScenarioError(f"init_step {self.init_step} must be in [0, {n_t - 2}]")
        r = self.route
        if r.ndim != 2 or r.shape[1] != 2 or len(r) < 2 or not np.all(np.isfinite(r)):
            raise ScenarioError(f"route must be finite [R >= 2, 2], got {list(r.shape)}")
        if not self.id:
            raise ScenarioError("scenario id is empty")
        wo = self.world_origin
        if len(wo) != 2 or not all(math.isfinite(float(v)) for v in wo):
            raise ScenarioError(f"world_origin must be two finite numbers, got {wo!r}")
        self.map.validate()
        return self
