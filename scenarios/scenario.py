"""The `Scenario` type: one recorded (or generated) driving scene, in numpy.

Shape contract (A agents, T steps, L polylines, P points):

- ``agents``: float32 ``[A, T, 7]``, columns ``X, Y, YAW, VX, VY, LENGTH, WIDTH``
  (metres, radians, m/s; world frame, x east, y north, yaw counter-clockwise from +x,
  wrapped to (-pi, pi]).
- ``valid``: bool ``[A, T]``; values at invalid steps are meaningless (kept finite, 0).
- ``agent_type``: int8 ``[A]`` of :class:`AgentType`.
- ``ego``: index of the ego agent; its log is the expert. It is valid at every step.
- ``route``: float64 ``[R, 2]``, the ego's intended path (covers the logged ego path).
- ``map``: :class:`RoadMap` of ragged :class:`Polylines` plus the map's semantics (lane polygons,
  speed limits, lane graph, stop signs, traffic lights with a state per step ``[G, T]``); what the
  source lacks is named in ``map.unknown``, never invented.
- ``dt``: seconds between steps (0.1 s in every shipped source).
- ``init_step``: steps ``0..init_step`` are history given from the log; closed-loop
  control starts at ``init_step`` and runs to ``T - 1``.
- ``world_origin``: float ``(x, y)`` metres, where the scene's local frame origin lies in the
  source's world frame (world = local + world_origin). Importers recentre every scene on the
  ego (its position at ``init_step``) so that float32 simulation never sees large coordinates
  (a UTM-referenced log sits ~4,000 km from its origin); exports, CARLA and replays add it back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

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


class LightState(IntEnum):
    """State of a traffic light controlling one lane, per step (Waymo ``LANE_STATE_*``, ScenarioNet
    ``dynamic_map_states``, CommonRoad ``TrafficLightState``)."""

    UNKNOWN = 0
    STOP = 1  # red, red arrow (Waymo LANE_STATE_STOP, LANE_STATE_ARROW_STOP)
    CAUTION = 2  # yellow / amber (LANE_STATE_CAUTION, LANE_STATE_ARROW_CAUTION)
    GO = 3  # green (LANE_STATE_GO, LANE_STATE_ARROW_GO)
    FLASHING_STOP = 4  # flashing red: a stop sign (LANE_STATE_FLASHING_STOP)
    FLASHING_CAUTION = 5  # flashing yellow (LANE_STATE_FLASHING_CAUTION)


# The map semantics a source may lack; ``RoadMap.unknown`` names the ones a scene's source does not provide.
MAP_SEMANTICS = ("lane_polygons", "speed_limits", "lane_graph", "intersections", "stop_signs", "traffic_lights",
                 "road_edges", "mapped_area")


def _ints(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, dtype=np.int64)


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
    """Road geometry and semantics of a scene (L lanes, G traffic-light signals, S stop signs, T steps).

    Attributes:
        lanes: lane centrelines, in the direction of travel (their direction is the lane's driving direction).
        lane_widths: float64 ``[L]`` metres, one per lane centreline.
        road_edges: road boundaries (kerbs), drivable area on the LEFT of each edge's direction.
        road_lines: painted lines (for display).
        drivable: closed polygons (first point not repeated) whose union is the drivable
            area. Offroad is measured against these; a map without them has no offroad.
        crosswalks: closed polygons of pedestrian crossings (for display).
        lane_polygons: ``[L]`` closed polygons, lane ``i``'s own surface where the source has one
            (nuScenes lane polygons, CommonRoad lanelet bounds, Argoverse 2 boundaries); a polygon of
            0 points means "none from the source" (consumers then use centreline +- width / 2).
        mapped_area: closed polygons of where the source mapped at all (ScenarioNet crops maps around the
            recorded ego); empty means "everywhere" (a step outside it is off the map, not off-road).
        lane_speed_limits: float64 ``[L]`` m/s; NaN where unknown.
        lane_intersection: int8 ``[L]``: 1 a lane through an intersection (lane connector), 0 not, -1 unknown.
        lane_successors: int64 ``[E, 2]`` rows ``(lane, successor lane)``.
        lane_neighbours: int64 ``[N, 3]`` rows ``(lane, neighbour lane, side)``, side +1 left, -1 right.
        stop_signs: float64 ``[S, 2]`` metres, positions of stop signs.
        stop_sign_lanes: int64 ``[S]`` lane each stop sign controls, -1 unknown.
        light_lanes: int64 ``[G]`` lane each signal controls, -1 unknown.
        light_stop_points: float64 ``[G, 2]`` metres, where a vehicle must stop on that lane.
        light_states: int8 ``[G, T]`` :class:`LightState` per step (``T`` = the scene's steps).
        unknown: names from :data:`MAP_SEMANTICS` that the source does not provide (recorded, never invented).
    """

    lanes: Polylines = field(default_factory=Polylines.empty)
    lane_widths: np.ndarray = field(default_factory=lambda: np.zeros(0))
    road_edges: Polylines = field(default_factory=Polylines.empty)
    road_lines: Polylines = field(default_factory=Polylines.empty)
    drivable: Polylines = field(default_factory=Polylines.empty)
    crosswalks: Polylines = field(default_factory=Polylines.empty)
    lane_polygons: Polylines | None = None
    mapped_area: Polylines = field(default_factory=Polylines.empty)
    lane_speed_limits: np.ndarray | None = None
    lane_intersection: np.ndarray | None = None
    lane_successors: np.ndarray = field(default_factory=lambda: _ints((0, 2)))
    lane_neighbours: np.ndarray = field(default_factory=lambda: _ints((0, 3)))
    stop_signs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    stop_sign_lanes: np.ndarray = field(default_factory=lambda: _ints((0,)))
    light_lanes: np.ndarray = field(default_factory=lambda: _ints((0,)))
    light_stop_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    light_states: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int8))
    unknown: tuple[str, ...] = MAP_SEMANTICS

    POLYLINE_FIELDS = ("lanes", "road_edges", "road_lines", "drivable", "crosswalks", "lane_polygons", "mapped_area")
    ARRAY_FIELDS = ("lane_speed_limits", "lane_intersection", "lane_successors", "lane_neighbours", "stop_signs",
                    "stop_sign_lanes", "light_lanes", "light_stop_points", "light_states")
    ARRAY_DTYPES = {"lane_speed_limits": np.float64, "lane_intersection": np.int8, "lane_successors": np.int64,
                    "lane_neighbours": np.int64, "stop_signs": np.float64, "stop_sign_lanes": np.int64,
                    "light_lanes": np.int64, "light_stop_points": np.float64, "light_states": np.int8}

    def __post_init__(self) -> None:
        n = len(self.lanes)
        # per-lane fields default to "none / unknown" for every lane (frozen: set through object.__setattr__)
        if self.lane_polygons is None:
            object.__setattr__(self, "lane_polygons", Polylines(np.zeros((0, 2)), np.zeros(n + 1, dtype=np.int64)))
        if self.lane_speed_limits is None:
            object.__setattr__(self, "lane_speed_limits", np.full(n, np.nan))
        if self.lane_intersection is None:
            object.__setattr__(self, "lane_intersection", np.full(n, -1, dtype=np.int8))
        object.__setattr__(self, "unknown", tuple(self.unknown))

    @property
    def num_lights(self) -> int:
        """G, the number of traffic-light signals."""
        return int(len(self.light_lanes))

    def knows(self, semantic: str) -> bool:
        """Whether the source provides ``semantic`` (a name from :data:`MAP_SEMANTICS`)."""
        if semantic not in MAP_SEMANTICS:
            raise ValueError(f"unknown map semantic {semantic!r}; one of {MAP_SEMANTICS}")
        return semantic not in self.unknown

    def validate(self, num_steps: int | None = None) -> None:
        """Raise :class:`ScenarioError` if any part is malformed.

        Args:
            num_steps: the scene's T, to check ``light_states`` against (None skips that check).
        """
        for name in self.POLYLINE_FIELDS:
            getattr(self, name).validate(f"map.{name}")
        n = len(self.lanes)
        if self.lane_widths.shape != (n,):
            raise ScenarioError(
                f"map.lane_widths must have one width per lane ({n}), "
                f"got shape {list(self.lane_widths.shape)}"
            )
        if len(self.lane_widths) and not (np.all(np.isfinite(self.lane_widths)) and np.all(self.lane_widths > 0)):
            raise ScenarioError("map.lane_widths must be finite and positive")
        for i, poly in enumerate(self.drivable):
            if len(poly) < 3:
                raise ScenarioError(f"map.drivable polygon {i} has {len(poly)} points (needs >= 3)")
        if len(self.lane_polygons) != n:
            got = len(self.lane_polygons)
            raise ScenarioError(f"map.lane_polygons must have one polygon per lane ({n}), got {got}")
        for i, poly in enumerate(self.lane_polygons):
            if 0 < len(poly) < 3:
                raise ScenarioError(f"map.lane_polygons polygon {i} has {len(poly)} points (needs 0 or >= 3)")
        unknown = set(self.unknown) - set(MAP_SEMANTICS)
        if unknown:
            raise ScenarioError(f"map.unknown names {sorted(unknown)}, not among {list(MAP_SEMANTICS)}")
        self._validate_arrays(n, num_steps)

    def _validate_arrays(self, n: int, num_steps: int | None) -> None:
        s, g = len(self.stop_signs), len(self.light_lanes)
        shapes = {"lane_speed_limits": (n,), "lane_intersection": (n,), "stop_signs": (s, 2),
                  "stop_sign_lanes": (s,), "light_lanes": (g,), "light_stop_points": (g, 2)}
        for name, shape in shapes.items():
            a = getattr(self, name)
            if np.shape(a) != shape:
                raise ScenarioError(f"map.{name} must be {list(shape)}, got {list(np.shape(a))}")
        for name, cols in (("lane_successors", 2), ("lane_neighbours", 3)):
            a = getattr(self, name)
            if a.ndim != 2 or a.shape[1] != cols:
                raise ScenarioError(f"map.{name} must be [E, {cols}], got {list(a.shape)}")
        for name in ("lane_successors", "lane_neighbours", "stop_sign_lanes", "light_lanes"):
            a = np.asarray(getattr(self, name))
            ids = a[:, :2] if name in ("lane_successors", "lane_neighbours") else a
            if ids.size and (ids.min() < -1 or ids.max() >= n):
                raise ScenarioError(f"map.{name} refers to a lane outside [0, {n})")
        sl = self.lane_speed_limits
        if np.any(sl[np.isfinite(sl)] <= 0) or np.any(np.isinf(sl)):
            raise ScenarioError("map.lane_speed_limits must be positive m/s or NaN (unknown)")
        if not (np.all(np.isfinite(self.stop_signs)) and np.all(np.isfinite(self.light_stop_points))):
            raise ScenarioError("map.stop_signs and map.light_stop_points must be finite")
        ls = self.light_states
        if ls.ndim != 2 or ls.shape[0] != g or (num_steps is not None and g and ls.shape[1] != num_steps):
            raise ScenarioError(f"map.light_states must be [{g}, T={num_steps}], got {list(ls.shape)}")
        if ls.size and not np.all(np.isin(ls, [v.value for v in LightState])):
            raise ScenarioError("map.light_states holds values that are not LightState")


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
        self.map.validate(n_t)
        return self


_CONTENT_DIGESTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def content_digest(scene: Scenario) -> str:
    """32 hex digits over every field of a scene and its map (arrays by dtype, shape and bytes), memoised per object.

    Two scenes with the same digest are the same input to anything that reads a :class:`Scenario`: the key of caches
    of what is derived from a scene (``sim.scene_cache``). Not a stored identity (results files keep
    ``sim.results.identity.scene_digest``, over what the simulator reads).
    """
    d = _CONTENT_DIGESTS.get(scene)
    if d is None:
        h = hashlib.blake2b(digest_size=16)
        _feed(h, scene)
        d = _CONTENT_DIGESTS[scene] = h.hexdigest()
    return d


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        h.update(f"<{a.dtype.str}{a.shape}>".encode())
        h.update(a.tobytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(f"[{type(value).__name__}".encode())
        for f in dataclasses.fields(value):
            h.update(f.name.encode() + b"=")
            _feed(h, getattr(value, f.name))
        h.update(b"]")
    elif isinstance(value, (tuple, list)):
        h.update(f"({len(value)}".encode())
        for v in value:
            _feed(h, v)
        h.update(b")")
    else:
        h.update(f"{type(value).__name__}:{value!r};".encode())

