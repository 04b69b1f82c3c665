"""The shared last mile of every importer: a :class:`Recording` becomes one or more scenarios.

Steps (documented in ``docs/importers.md``): resample to 0.1 s where the source's step
differs; repair sizes, position jumps, flipped headings and velocities that contradict positions
(``repair.repair_tracks``); keep the span where the ego is valid; recentre on the ego
(``Scenario.world_origin``); cut into windows on request;
put the ego at agent 0 and drop agents never valid in a window; route = the ego's logged
path densified to 1 m and extended 10 m along its lane (or straight ahead); drivable area = generous lane buffers
plus the source's drivable polygons, its drivable-area outlines and the road from each lane out to its kerbs; the
map and its semantics (lane graph, limits, stop signs, traffic lights sliced to each window) are cropped to what
lies near the ego's path.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
from shapely.geometry import Polygon

from scenarios.import_options import ImportOptions
from scenarios.importers.drivable import hole_free
from scenarios.importers.mapgeom import ROUTE_EXTENSION, ego_route, lane_buffer_polygons, near_box, near_zone, path_zone
from scenarios.importers.repair import EgoSpanCut, repair_tracks
from scenarios.importers.resample import DT, longest_runs, needs_resampling, resample_tracks, window_starts
from scenarios.importers.semantics import (
    area_polygons,
    crop_semantics,
    hold_states,
    scene_unknown,
    shift_semantics,
    tiled,
)
from scenarios.scenario import (
    LENGTH,
    MAP_SEMANTICS,
    WIDTH,
    YAW,
    AgentType,
    Polylines,
    RoadMap,
    Scenario,
    ScenarioError,
    wrap_angle,
)

DEFAULT_LANE_WIDTH = 4.0  # m, used where a source gives no lane width


@contextmanager
def content_errors(what: str) -> Iterator[None]:
    """Turn a source's missing keys and bad values into one-line :class:`ScenarioError` s naming ``what``.

    Args:
        what: the kind of document, e.g. ``"Waymo JSON scene"``.
    """
    try:
        yield
    except ScenarioError:
        raise
    except KeyError as e:
        raise ScenarioError(f"not a {what} (missing key {e})") from None
    except (TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
        raise ScenarioError(f"malformed {what} ({type(e).__name__}: {e})") from None
LANE_MARGIN = 0.5  # m added to every lane's half width when building the drivable area
MAP_MARGIN = 80.0  # m: map elements are kept, and the drivable area clipped, this close to the ego's path and route
DEFAULT_SIZE = {  # (length, width) m where a source gives none
    AgentType.VEHICLE: (4.5, 2.0),
    AgentType.PEDESTRIAN: (0.6, 0.6),
    AgentType.CYCLIST: (1.8, 0.7),
    AgentType.OTHER: (1.0, 1.0),
}


@dataclass(frozen=True, eq=False)
class Recording:
    """One source scene before windowing, in the project's units and frame.

    Attributes:
        id: scene id in the source.
        source: source name (``"scenarionet/nuscenes"``, ``"waymo_json"``, ``"commonroad"``...).
        t: float64 ``[T]`` timestamps, seconds.
        states: float64 ``[A, T, 7]`` (X, Y, YAW, VX, VY, LENGTH, WIDTH); 0 where invalid.
        valid: bool ``[A, T]``.
        agent_type: int8 ``[A]``.
        ego: index of the ego agent.
        lanes: lane centrelines; ``lane_widths`` float ``[L]`` full widths, m (NaN = unknown).
        road_edges, road_lines, crosswalks: map polylines.
        drivable_extra: polygons that are drivable in their own right (lane polygons,
            lanelets, driveways), unioned with the lane buffers.
        lane_has_polygon: bool ``[L]``, lanes whose own polygon is in ``drivable_extra``
            (they get no buffer); None = no lane has one.
        tags: labels copied to every scenario.
        lane_polygons: ``[L]`` each lane's own surface (0 points: none); None = none for any lane.
        lane_speed_limits: float ``[L]`` m/s, NaN unknown; lane_intersection: int8 ``[L]`` 1/0/-1 (unknown).
        lane_successors, lane_neighbours: int ``[E, 2]`` / ``[N, 3]`` rows as in :class:`RoadMap`.
        stop_signs: float ``[S, 2]`` m; stop_sign_lanes: int ``[S]`` (-1 unknown).
        light_lanes: int ``[G]``; light_stop_points: float ``[G, 2]`` m; light_states: int8 ``[G, T]``
            :class:`~scenarios.scenario.LightState` at the recording's timestamps ``t``.
        drivable_outlines: closed rings outlining the drivable area (even-odd; nuScenes ``boundary_*``).
        unknown: names from :data:`MAP_SEMANTICS` the source does not provide.
    """

    id: str
    source: str
    t: np.ndarray
    states: np.ndarray
    valid: np.ndarray
    agent_type: np.ndarray
    ego: int
    lanes: Polylines = field(default_factory=Polylines.empty)
    lane_widths: np.ndarray = field(default_factory=lambda: np.zeros(0))
    road_edges: Polylines = field(default_factory=Polylines.empty)
    road_lines: Polylines = field(default_factory=Polylines.empty)
    crosswalks: Polylines = field(default_factory=Polylines.empty)
    drivable_extra: Polylines = field(default_factory=Polylines.empty)
    lane_has_polygon: np.ndarray | None = None
    tags: tuple[str, ...] = ()
    lane_polygons: Polylines | None = None
    lane_speed_limits: np.ndarray | None = None
    lane_intersection: np.ndarray | None = None
    lane_successors: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    lane_neighbours: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    stop_signs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    stop_sign_lanes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    light_lanes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    light_stop_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    light_states: np.ndarray | None = None
    drivable_outlines: Polylines = field(default_factory=Polylines.empty)
    unknown: tuple[str, ...] = MAP_SEMANTICS


def _repair_sizes(states: np.ndarray, valid: np.ndarray, agent_type: np.ndarray) -> None:
    """In place: vehicle boxes wider than long are swapped; non-positive sizes at valid steps filled.

    A size is filled with the agent's median valid positive size, else a default per type.
    """
    sizes = np.where(valid[..., None], states[..., [LENGTH, WIDTH]], np.nan)  # [A, T, 2]
    sizes = np.where(sizes > 0, sizes, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN agents
        med = np.nanmedian(sizes, axis=1)  # [A, 2]
    swap = (np.asarray(agent_type) == AgentType.VEHICLE) & (med[:, 1] > med[:, 0])
    if swap.any():
        lw = states[swap][:, :, [WIDTH, LENGTH]]
        sub = states[swap]
        sub[:, :, [LENGTH, WIDTH]] = lw
        states[swap] = sub
        med[swap] = med[swap][:, ::-1]
    default = np.array([DEFAULT_SIZE[AgentType(int(t))] for t in agent_type]).reshape(-1, 2)
    fill = np.where(np.isfinite(med), med, default)  # [A, 2]
    for k, c in enumerate((LENGTH, WIDTH)):
        bad = valid & ~(states[..., c] > 0)
        if bad.any():
            states[..., c] = np.where(bad, fill[:, k : k + 1], states[..., c])


def _crop(lines: Polylines, keep: np.ndarray) -> Polylines:
    return Polylines.from_list([p for p, k in zip(lines, keep) if k])


def _road_map(rec: Recording, widths: np.ndarray, drivable: list[np.ndarray], paths: list[np.ndarray],
              extra: _SceneArea, light_states: np.ndarray) -> RoadMap:
    """The map cropped to what comes within :data:`MAP_MARGIN` of ``paths`` (the ego's path and route, ``[n, 2]``
    each): the elements that do, and the drivable area clipped to that distance, so that the map a scene keeps
    turns with it (a box would follow the frame's axes).

    ``drivable``: the recording's whole drivable area as tiles (:func:`~scenarios.importers.semantics.tiled`).
    """
    zone = path_zone(paths, MAP_MARGIN)
    keep_lane = near_zone(rec.lanes, zone)
    polys = [q for p, k in zip(drivable, near_zone(drivable, zone, closed=True)) if k
             for q in hole_free(Polygon(p).buffer(0).intersection(zone))]
    edges = extra.edges if extra.edges is not None else rec.road_edges
    mapped = Polylines.from_list([extra.hull] if len(extra.hull) >= 3 else [])
    return RoadMap(
        lanes=_crop(rec.lanes, keep_lane),
        lane_widths=widths[keep_lane],
        road_edges=_crop(edges, near_zone(edges, zone)),
        road_lines=_crop(rec.road_lines, near_zone(rec.road_lines, zone)),
        drivable=Polylines.from_list(polys),
        crosswalks=_crop(rec.crosswalks, near_zone(rec.crosswalks, zone, closed=True)),
        mapped_area=mapped,
        unknown=scene_unknown(rec, mapped),
        **crop_semantics(rec, keep_lane, zone, light_states),
    )


@dataclass(frozen=True)
class _SceneArea:
    """Drivable polygons from the source's outlines / road edges (untiled), the mapped hull, outline edges (or
    None)."""

    polygons: list[np.ndarray]
    hull: np.ndarray
    edges: Polylines | None


def _shift_map(rec: Recording, offset: np.ndarray) -> Recording:
    """``rec`` with every map polyline and map position moved by ``-offset`` (m, float64)."""
    moved = {
        name: Polylines(getattr(rec, name).points - offset, getattr(rec, name).offsets)
        for name in ("lanes", "road_edges", "road_lines", "crosswalks", "drivable_extra")
    }
    return replace(rec, **moved, **shift_semantics(rec, offset))


def _with_ego_agent(rec: Recording, k: int) -> Recording:
    """The recording with agent ``k`` of the default import's order (``[ego] + the others``) as its ego."""
    n = len(rec.states)
    if not 0 <= k < n:
        raise ScenarioError(f"scene {rec.id}: --ego-agent {k} is not one of its {n} agents (0 to {n - 1})")
    order = [rec.ego] + [i for i in range(n) if i != rec.ego]
    return replace(rec, ego=int(order[k]), id=f"{rec.id}+ego{k}")


def recording_to_scenes(
    rec: Recording, options: ImportOptions, skipped: list[tuple[str, str]] | None = None
) -> list[Scenario]:
    """Turn one recording into validated scenarios (one per window).

    Args:
        rec: the source scene.
        options: ``window``/``stride`` (steps at 0.1 s) and ``init_step``.
        skipped: when given, a window that fails validation is appended here as
            ``(scene id, reason)`` and the other windows are kept; when None it raises.

    Returns:
        Scenarios with the ego at agent 0, ids ``<id>`` (whole scene) or ``<id>@<start>``,
        recentred so that the ego at ``init_step`` of the first window is at the local origin
        (``world_origin`` holds the offset).

    Raises:
        ScenarioError: the ego is never valid long enough for ``init_step``; with ``skipped`` None,
            any window that fails validation; with ``skipped``, no window usable.
    """
    if options.ego_agent:
        rec = _with_ego_agent(rec, options.ego_agent)
    states = np.array(rec.states, dtype=np.float64)
    valid = np.asarray(rec.valid, dtype=bool).copy()
    t = np.asarray(rec.t, dtype=np.float64)
    tags = rec.tags
    lights = np.zeros((len(rec.light_lanes), len(t)), np.int8) if rec.light_states is None else rec.light_states
    if needs_resampling(t):
        t_src = t
        t, states, valid = resample_tracks(t, states, valid, DT)
        lights = hold_states(t_src, lights, t)
        tags = (*tags, "resampled")
    states[..., YAW] = wrap_angle(states[..., YAW])
    _repair_sizes(states, valid, rec.agent_type)
    states[~valid] = 0.0
    repair_tracks(states, valid, rec.agent_type, DT, rec.id)
    a, b = (int(v[0]) for v in longest_runs(valid[rec.ego][None]))  # the ego's longest run of valid steps
    valid_steps = np.flatnonzero(valid[rec.ego])
    if valid_steps.size and (valid_steps[0] < a or valid_steps[-1] >= b):  # valid recorded steps outside the span
        warnings.warn(EgoSpanCut(f"scene {rec.id}: the recorded ego has a gap (invalid or non-finite samples); the "
                                 f"scene keeps its longest valid run, steps {a}-{b - 1} of {valid.shape[1]} "
                                 f"({int(valid_steps.size) - (b - a)} valid steps left out)"), stacklevel=2)
    if b - a < options.init_step + 2:
        raise ScenarioError(
            f"scene {rec.id}: the ego is valid for {b - a} consecutive steps, fewer than init_step + 2 = "
            f"{options.init_step + 2}"
        )
    if options.window and options.window < options.init_step + 2:
        raise ScenarioError(f"--window {options.window} must be at least init_step + 2 = {options.init_step + 2}")
    offset = states[rec.ego, min(a + options.init_step, b - 1), :2].copy()  # float64 world m
    states[..., :2] -= offset
    states[~valid] = 0.0
    rec = _shift_map(rec, offset)
    world_origin = (float(offset[0]), float(offset[1]))
    order = np.array([rec.ego] + [i for i in range(len(states)) if i != rec.ego])
    states, valid, types = states[order, a:b], valid[order, a:b], np.asarray(rec.agent_type, np.int8)[order]
    widths = np.asarray(rec.lane_widths, dtype=np.float64)
    widths = np.where(np.isfinite(widths) & (widths > 0), widths, DEFAULT_LANE_WIDTH)
    to_buffer = np.ones(len(widths), bool) if rec.lane_has_polygon is None else ~np.asarray(rec.lane_has_polygon)
    # only lanes that can reach the (cropped) map of some window: the box around the whole ego path
    ego_xy, reach = states[0, :, :2], MAP_MARGIN + ROUTE_EXTENSION
    to_buffer &= near_box(rec.lanes, ego_xy.min(0) - reach, ego_xy.max(0) + reach)
    lane_polys = lane_buffer_polygons(_crop(rec.lanes, to_buffer), widths[to_buffer] / 2 + LANE_MARGIN)
    box_lo, box_hi = ego_xy.min(0) - 2 * reach, ego_xy.max(0) + 2 * reach
    area = _SceneArea(*area_polygons(rec, widths / 2, box_lo, box_hi))
    # one union, cut into tiles: fewer polygons and no overlaps keep the road grid cheap, tiles still crop per window
    drivable = tiled(lane_polys + [p for p in rec.drivable_extra if len(p) >= 3] + area.polygons)
    lights = lights[:, a:b]
    starts = window_starts(b - a, options.window, options.stride)
    whole = options.window <= 0 or options.window >= b - a
    scenes = []
    for s in starts:
        e = b - a if whole else s + options.window
        v = valid[:, s:e]
        keep = v.any(axis=1)
        keep[0] = True
        agents = states[keep, s:e].astype(np.float32)
        sid = rec.id if whole and a == 0 else f"{rec.id}@{a + s}"
        route = ego_route(agents[0], rec.lanes)
        road = _road_map(rec, widths, drivable, [agents[0, v[0], :2], route], area, lights[:, s:e])
        scene = Scenario(
            id=sid,
            source=rec.source,
            agents=agents,
            valid=v[keep].copy(),
            agent_type=types[keep].copy(),
            ego=0,
            map=road,
            route=route,
            dt=DT,
            init_step=options.init_step,
            family=rec.source,
            tags=tags,
            world_origin=world_origin,
        )
        try:
            scenes.append(scene.validate())
        except ScenarioError as e:
            if skipped is None:
                raise ScenarioError(f"scene {sid}: {e}") from None
            skipped.append((sid, str(e)))
    if not scenes:
        raise ScenarioError(f"no usable window ({skipped[0][0]}: {skipped[0][1]})" if skipped else "no window")
    return scenes
