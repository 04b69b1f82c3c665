"""`ScenarioBatch`: B scenes as padded torch tensors on one device, ego at agent 0."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from scenarios.scenario import LENGTH, NUM_FIELDS, WIDTH, AgentType, Scenario, X, Y
from sim.config import AGENT_REACH, DEFAULT_MAX_AGENTS, ROUTE_SPACING, SimError

if TYPE_CHECKING:  # pragma: no cover
    from sim.lane_map import LaneMap
    from sim.road_grid import RoadGrid
    from sim.scene_cache import SceneCache

ROAD_RESOLUTION = 0.5  # m per cell of a batch's road grid (sim.road_grid.build_road_grid)


@dataclass(frozen=True, eq=False)
class ScenarioBatch:
    """B scenes padded to common agent and step counts.

    Attributes:
        log: float32 ``[B, A, T, 7]`` logged states (X, Y, YAW, VX, VY, LENGTH, WIDTH), ego at agent 0.
        valid: bool ``[B, A, T]``; padding agents and steps are False.
        agent_type: int64 ``[B, A]`` :class:`AgentType` values (padding = OTHER).
        step_valid: bool ``[B, T]``: the scene has this step (shorter scenes are padded at the end).
        route: float32 ``[B, R, 2]`` the ego route resampled every ``ROUTE_SPACING`` m of arc length.
        route_valid: bool ``[B, R]``.
        road: precomputed road signed-distance grid (:class:`sim.road_grid.RoadGrid`).
        init_step: closed-loop control starts at this step (common to the batch).
        dt: seconds between steps (common to the batch).
        ids, sources, families: per-scene strings, length B.
        agents_dropped: int64 ``[B]`` agents within reach of the ego left out (see :func:`select_agents`):
            0, since every agent that can touch the ego is simulated (kept for the results schema).
        world_origins: float64 numpy ``[B, 2]`` m, each scene's ``Scenario.world_origin`` (the batch
            is in local coordinates; world = local + origin).
        lanes: the map semantics of the rule metrics (:class:`sim.lane_map.LaneMap`: lane pieces as boxes
            ``[B, R, 5]`` with lane index, speed limits and intersection flags ``[B, L]``, traffic-light signals
            ``[B, G, R]`` / ``[B, G, T]``), precomputed once per batch; None in batches built by hand.
    """

    log: Tensor
    valid: Tensor
    agent_type: Tensor
    step_valid: Tensor
    route: Tensor
    route_valid: Tensor
    road: RoadGrid
    init_step: int
    dt: float
    ids: tuple[str, ...]
    sources: tuple[str, ...]
    families: tuple[str, ...]
    agents_dropped: Tensor | None = None
    world_origins: np.ndarray | None = None
    lanes: LaneMap | None = None

    @property
    def device(self) -> torch.device:
        return self.log.device

    @property
    def num_scenes(self) -> int:
        return int(self.log.shape[0])

    @property
    def num_agents(self) -> int:
        return int(self.log.shape[1])

    @property
    def num_steps(self) -> int:
        return int(self.log.shape[2])


def resample_polyline(points: np.ndarray, spacing: float) -> np.ndarray:
    """Resample a polyline at equal arc-length spacing.

    Args:
        points: ``[N, 2]`` metres (consecutive duplicates allowed).
        spacing: metres between output points.

    Returns:
        ``[M, 2]`` float64 points from the first to the last point (the last point included).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 1e-9])
    pts = pts[keep]
    if len(pts) < 2:
        return pts[:1].repeat(2, axis=0)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    n = int(np.ceil(s[-1] / spacing)) + 1
    q = np.minimum(np.arange(n) * spacing, s[-1])
    return np.stack([np.interp(q, s, pts[:, 0]), np.interp(q, s, pts[:, 1])], axis=1)


def select_agents(scene: Scenario, max_agents: int = DEFAULT_MAX_AGENTS) -> tuple[list[int], int]:
    """The agents a scene simulates: the one agent rule of training, validation and evaluation.

    Every agent that at some valid step comes within :data:`~sim.config.AGENT_REACH` m of the
    ego's logged path or its route (any step: late arrivals and far starters count, and static
    obstacles are agents valid throughout) can touch the ego and is kept, however many there are.
    Agents never within reach fill the slots that are left up to ``max_agents`` (ego included),
    after them, by closest approach to the logged ego at the same step (ties: earliest valid first):
    they cannot touch the ego; they keep a sparse scene complete.

    Args:
        scene: the scene.
        max_agents: slots, ego included, that agents out of reach may fill; never a cap on agents within reach.

    Returns:
        ``(indices, dropped)``: scene agent indices, ego first, then others by closest approach;
        ``dropped`` = agents within reach left out: 0 (agents out of reach left out are not counted).
    """
    others = np.array([i for i in range(scene.num_agents) if i != scene.ego], dtype=np.int64)
    if len(others) == 0:
        return [scene.ego], 0
    ego_xy = scene.agents[scene.ego][:, [X, Y]].astype(np.float64)  # [T, 2]
    path = np.concatenate([ego_xy, np.asarray(scene.route, np.float64).reshape(-1, 2)])
    pos = scene.agents[others][..., [X, Y]].astype(np.float64)  # [N, T, 2]
    val = scene.valid[others]  # [N, T]
    d_path = np.full(val.shape, np.inf)
    d_path[val] = cKDTree(path).query(pos[val], distance_upper_bound=AGENT_REACH + 1.0)[0]
    within = d_path.min(axis=1) <= AGENT_REACH
    same = np.where(val, np.linalg.norm(pos - ego_xy[None], axis=-1), np.inf).min(axis=1)
    first = np.where(val.any(axis=1), val.argmax(axis=1), scene.num_steps)
    order = np.lexsort((first, same, ~within))  # within reach first, then by closest approach
    kept = order[: max(max_agents - 1, int(within.sum()), 0)]
    dropped = int(within.sum() - within[kept].sum())
    return [scene.ego] + [int(i) for i in others[kept]], dropped


def agents_dropped(scene: Scenario, max_agents: int = DEFAULT_MAX_AGENTS) -> int:
    """``select_agents(scene, max_agents)[1]``, without the reach test where it cannot matter: a scene of at most
    ``max_agents`` agents keeps every one of them."""
    return 0 if scene.num_agents <= max_agents else select_agents(scene, max_agents)[1]


def make_batch(
    scenes: Sequence[Scenario], device: str | torch.device = "cpu", max_agents: int = DEFAULT_MAX_AGENTS,
    cache: SceneCache | None = None,
) -> ScenarioBatch:
    """Pack scenes into a :class:`ScenarioBatch` on ``device``.

    The ego goes to agent 0; the other agents are chosen by :func:`select_agents` (every agent
    within reach of the ego over the whole horizon, however many; others up to ``max_agents`` with the ego). Agents are
    padded to the most any scene keeps (at least 2), steps to the longest scene, routes (resampled every
    ``ROUTE_SPACING`` m) to the longest route. ``cache``: where prepared scenes (road grids, lane pieces) are loaded
    from and kept (:class:`sim.scene_cache.SceneCache`); the batch is the same with and without it.

    Raises:
        SimError: empty input, ``max_agents < 1``, or scenes with different ``init_step`` or ``dt``.
    """
    if len(scenes) == 0:
        raise SimError("make_batch: no scenes given")
    if max_agents < 1:
        raise SimError(f"make_batch: max_agents must be >= 1, got {max_agents}")
    first = scenes[0]
    for s in scenes[1:]:
        if s.init_step != first.init_step:
            raise SimError(
                f"make_batch: scene {s.id!r} has init_step {s.init_step} but {first.id!r} has {first.init_step}; "
                "batch them apart"
            )
        if abs(float(s.dt) - float(first.dt)) > 1e-9:
            raise SimError(
                f"make_batch: scene {s.id!r} has dt {s.dt} s but {first.id!r} has {first.dt} s; batch them apart"
            )
    b = len(scenes)
    n_t = max(s.num_steps for s in scenes)
    picks = [select_agents(s, max_agents) for s in scenes]
    # at least one (invalid) other agent: the step functions are not written for A = 1
    max_agents = max(2, max(len(sel) for sel, _ in picks))
    log = np.zeros((b, max_agents, n_t, NUM_FIELDS), dtype=np.float32)
    log[..., LENGTH] = 1.0
    log[..., WIDTH] = 1.0
    valid = np.zeros((b, max_agents, n_t), dtype=bool)
    agent_type = np.full((b, max_agents), int(AgentType.OTHER), dtype=np.int64)
    step_valid = np.zeros((b, n_t), dtype=bool)
    routes = [resample_polyline(s.route, ROUTE_SPACING) for s in scenes]
    n_r = max(len(r) for r in routes)
    route = np.zeros((b, n_r, 2), dtype=np.float32)
    route_valid = np.zeros((b, n_r), dtype=bool)
    for i, s in enumerate(scenes):
        sel = picks[i][0]
        t = s.num_steps
        log[i, : len(sel), :t] = s.agents[sel]
        valid[i, : len(sel), :t] = s.valid[sel]
        agent_type[i, : len(sel)] = s.agent_type[sel]
        step_valid[i, :t] = True
        r = routes[i]
        route[i, : len(r)] = r
        route[i, len(r) :] = r[-1]
        route_valid[i, : len(r)] = True
    # keep meaningless values finite and sizes positive where invalid
    log = np.where(valid[..., None], log, 0.0).astype(np.float32)
    log[..., LENGTH] = np.where(valid, log[..., LENGTH], 1.0)
    log[..., WIDTH] = np.where(valid, log[..., WIDTH], 1.0)
    from sim.lane_map import build_lane_map  # lazy: imports shapely
    from sim.road_grid import build_road_grid  # lazy: written by the metrics helper

    dev = torch.device(device)
    grids = pieces = None
    if cache is not None:
        from sim.scene_cache import prepared

        ready = prepared(list(scenes), ROAD_RESOLUTION, cache)
        grids, pieces = [p.grid for p in ready], [p.pieces for p in ready]
    return ScenarioBatch(
        log=torch.from_numpy(log).to(dev),
        valid=torch.from_numpy(valid).to(dev),
        agent_type=torch.from_numpy(agent_type).to(dev),
        step_valid=torch.from_numpy(step_valid).to(dev),
        route=torch.from_numpy(route).to(dev),
        route_valid=torch.from_numpy(route_valid).to(dev),
        road=build_road_grid(scenes, device=dev, resolution=ROAD_RESOLUTION, grids=grids),
        init_step=int(scenes[0].init_step),
        dt=float(scenes[0].dt),
        ids=tuple(s.id for s in scenes),
        sources=tuple(s.source for s in scenes),
        families=tuple(s.family for s in scenes),
        agents_dropped=torch.tensor([d for _, d in picks], dtype=torch.int64, device=dev),
        world_origins=np.array([s.world_origin for s in scenes], dtype=np.float64).reshape(b, 2),
        lanes=build_lane_map(scenes, n_t, dev, pieces),
    )
