"""Observation builder: a fixed-size float32 vector per scene, in the ego frame, scaled to O(1).

Layout (``OBS_VERSION`` 1, ``OBS_DIM`` = 3 + 2*10 + 9*8 + 7*5 + 1 = 131):

- ``[0:3]`` ego: speed / 10 m/s, last accel / 6 m/s^2, last curvature / 0.3 1/m.
- ``[3:23]`` route: the 10 route points every 3 m ahead of the route point nearest the ego,
  (x, y) / 30 m in the ego frame (points past the route's end repeat the end).
- ``[23:95]`` the 8 nearest valid other agents (nearest first): rel x / 30, rel y / 30, cos and sin
  of the relative yaw, relative vx / 10, vy / 10 (ego frame), length / 5, width / 2.5, present flag;
  absent slots are zeros.
- ``[95:130]`` road: signed distance to the drivable-area edge (> 0 outside), clipped to
  +-5 m and divided by 5, at 7 x 5 fixed ego-frame probes (x in PROBE_X, y in PROBE_Y).
- ``[130]`` the scene has a drivable area (1) or not (0; road features are then 0).

Only the current state is used: the ego's logged future never enters (except through the route).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from sim.batch import ScenarioBatch
from sim.config import ACCEL_MAX, CURVATURE_MAX, ROUTE_SPACING
from sim.road_grid import RoadGrid
from sim.state import SPEED, SimState

OBS_VERSION = 1
NUM_ROUTE_POINTS = 10
ROUTE_STEP_M = 3.0
NUM_NEAREST = 8
AGENT_FEATURES = 9
PROBE_X = (-4.0, 0.0, 4.0, 8.0, 12.0, 20.0, 30.0)
PROBE_Y = (-4.0, -2.0, 0.0, 2.0, 4.0)
POS_SCALE = 30.0
SPEED_SCALE = 10.0
ROAD_CLIP = 5.0
EGO_DIM = 3
ROUTE_DIM = 2 * NUM_ROUTE_POINTS
AGENTS_DIM = AGENT_FEATURES * NUM_NEAREST
ROAD_DIM = len(PROBE_X) * len(PROBE_Y) + 1
OBS_DIM = EGO_DIM + ROUTE_DIM + AGENTS_DIM + ROAD_DIM

_CACHE: dict[tuple[str, str], Tensor] = {}


def _probes(device: torch.device) -> Tensor:
    key = (str(device), "probes")
    if key not in _CACHE:
        gx, gy = torch.meshgrid(torch.tensor(PROBE_X), torch.tensor(PROBE_Y), indexing="ij")
        _CACHE[key] = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1).to(device)  # [P, 2]
    return _CACHE[key]


def _rows(x: Tensor, idx: Tensor) -> Tensor:
    """``x [B, N, F]``, ``idx [B, k]`` (long, into N) -> ``[B, k, F]``: ``x.gather(1, idx[..., None].expand(...))``.

    One ``index_select`` of whole rows from the flattened batch (a strided gather with an expanded
    index is several times slower on the CPU); same values.
    """
    n_b, n, f = x.shape
    base = torch.arange(0, n_b * n, n, device=x.device).unsqueeze(1)  # [B, 1] first row of each scene
    return x.reshape(n_b * n, f).index_select(0, (idx + base).reshape(-1)).view(n_b, -1, f)


def _const(values: tuple[float, ...], like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """A small constant tensor on ``like``'s device (``like``'s dtype by default), made once (no per-step copy)."""
    dtype = like.dtype if dtype is None else dtype
    key = (f"{like.device}/{dtype}", repr(values))
    got = _CACHE.get(key)
    if got is None:
        got = _CACHE[key] = torch.tensor(values, device=like.device, dtype=dtype)
    return got


def to_ego_frame(xy: Tensor, origin: Tensor, yaw: Tensor) -> Tensor:
    """World points ``[B, N, 2]`` -> ego frame given ego position ``[B, 2]`` and yaw ``[B]`` (rad)."""
    c, s = torch.cos(yaw).unsqueeze(1), torch.sin(yaw).unsqueeze(1)
    d = xy - origin.unsqueeze(1)
    return torch.stack([d[..., 0] * c + d[..., 1] * s, -d[..., 0] * s + d[..., 1] * c], dim=-1)


def to_world_frame(xy: Tensor, origin: Tensor, yaw: Tensor) -> Tensor:
    """Ego-frame points ``[B, N, 2]`` -> world frame (inverse of :func:`to_ego_frame`)."""
    c, s = torch.cos(yaw).unsqueeze(1), torch.sin(yaw).unsqueeze(1)
    x, y = xy[..., 0], xy[..., 1]
    return torch.stack([x * c - y * s, x * s + y * c], dim=-1) + origin.unsqueeze(1)


def road_probe(grid: RoadGrid, xy: Tensor) -> Tensor:
    """Signed road distance (m, > 0 outside) clipped to +-ROAD_CLIP at world points ``[B, N, 2]`` -> ``[B, N]``.

    The bilinear lookup of :func:`sim.road_grid.road_distance` as one ``grid_sample`` kernel (the
    step's hot path); points beyond a scene's grid read +ROAD_CLIP. Scenes without road: any value.
    """
    _, h, w = grid.sdf.shape
    rel = xy - grid.origin.unsqueeze(1)
    if grid.yaw is not None:  # grid axes rotated by yaw in the world
        c, s = torch.cos(grid.yaw).unsqueeze(1), torch.sin(grid.yaw).unsqueeze(1)
        rel = torch.stack([c * rel[..., 0] + s * rel[..., 1], -s * rel[..., 0] + c * rel[..., 1]], dim=-1)
    g = rel / grid.resolution  # cell coordinates (x -> column, y -> row)
    scale = _const((2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)), xy)
    v = F.grid_sample(
        grid.sdf.unsqueeze(1), (g * scale - 1.0).unsqueeze(1), mode="bilinear", padding_mode="border",
        align_corners=True,
    ).view(xy.shape[0], -1)
    gx, gy = g[..., 0], g[..., 1]
    inside = (gx >= 0) & (gy >= 0) & (gx <= w - 1) & (gy <= h - 1)
    return torch.where(inside, v.clamp(-ROAD_CLIP, ROAD_CLIP), torch.full_like(v, ROAD_CLIP))


def road_probe_ego(grid: RoadGrid, exy: Tensor, eyaw: Tensor) -> Tensor:
    """:func:`road_probe` at the ego-frame probes (PROBE_X x PROBE_Y) of each scene's ego -> ``[B, P]``.

    The ego frame -> world -> grid-cell -> ``grid_sample`` coordinate maps compose into one affine map
    per scene, applied to every probe by one matmul (the step's hot path; equal to
    ``road_probe(grid, to_world_frame(probes, exy, eyaw))`` to float32 round-off).

    Args:
        grid: the scenes' road grids. exy: ``[B, 2]`` ego position, m (world). eyaw: ``[B]`` ego heading, rad.
    """
    gyaw, gc, gs = _grid_axes(grid)
    probes1 = _probes1(exy.device, exy.dtype)
    return _road_probes(grid.sdf, grid.origin, grid.resolution, gyaw, gc, gs, probes1, exy, eyaw)


def _road_probes(
    sdf: Tensor, origin: Tensor, resolution: float, gyaw: Tensor | None, gc: Tensor | None, gs: Tensor | None,
    probes1: Tensor, exy: Tensor, eyaw: Tensor,
) -> Tensor:
    """:func:`road_probe_ego` on plain tensors (``sdf [B, H, W]``, ``origin [B, 2]``, grid axes ``[B]`` or None)."""
    _, h, w = sdf.shape
    sx, sy = 2.0 / max(w - 1, 1) / resolution, 2.0 / max(h - 1, 1) / resolution
    rel = exy - origin
    a = eyaw if gyaw is None else eyaw - gyaw
    c, s = torch.cos(a), torch.sin(a)
    if gyaw is None or gc is None or gs is None:
        ox, oy = rel[:, 0], rel[:, 1]
    else:  # ego position along the grid's axes, m
        ox = torch.addcmul(gc * rel[:, 0], gs, rel[:, 1])
        oy = torch.addcmul(gc * rel[:, 1], gs, rel[:, 0], value=-1.0)
    # normalised grid_sample coordinates n = [px, py, 1] @ m, per scene
    m = torch.stack([c * sx, s * sy, -s * sx, c * sy, ox * sx - 1.0, oy * sy - 1.0], dim=-1).view(-1, 3, 2)
    n = torch.einsum("pk,bkj->bpj", probes1, m)  # [B, P, 2] (one gemm; bmm is slower)
    v = F.grid_sample(
        sdf.unsqueeze(1), n.unsqueeze(1), mode="bilinear", padding_mode="border", align_corners=True
    ).view(exy.shape[0], -1)
    na = n.abs()
    outside = (na[..., 0] > 1.0) | (na[..., 1] > 1.0)
    return v.clamp(-ROAD_CLIP, ROAD_CLIP).masked_fill(outside, ROAD_CLIP)


_AXES: weakref.WeakKeyDictionary[RoadGrid, tuple[Tensor, Tensor, Tensor] | tuple[None, None, None]] = (
    weakref.WeakKeyDictionary())


def _grid_axes(grid: RoadGrid) -> tuple[Tensor, Tensor, Tensor] | tuple[None, None, None]:
    """``(yaw [B], cos(yaw), sin(yaw))`` of the grids' axes (all None without yaw), computed once per grid."""
    got = _AXES.get(grid)
    if got is None:
        got = (None, None, None) if grid.yaw is None else (grid.yaw, torch.cos(grid.yaw), torch.sin(grid.yaw))
        _AXES[grid] = got
    return got


def _probes1(device: torch.device, dtype: torch.dtype) -> Tensor:
    """``[P, 3]`` the probes with a column of ones (homogeneous coordinates)."""
    key = (f"{device}/{dtype}", "probes1")
    if key not in _CACHE:
        p = _probes(device).to(dtype)
        _CACHE[key] = torch.cat([p, torch.ones_like(p[:, :1])], dim=1)
    return _CACHE[key]


class SceneInputs(NamedTuple):
    """What the observation reads from a :class:`~sim.batch.ScenarioBatch`, as plain tensors (made once per batch).

    Attributes:
        route: float32 ``[B, R, 2]`` route points, m (world).
        route_x: float32 ``[B, R]`` route x, invalid points far away (1e9 m). route_y: likewise y.
        route_count: int64 ``[B, 1]`` valid route points.
        route_offsets: int64 ``[NUM_ROUTE_POINTS]`` route indices ahead of the nearest point.
        sdf: float32 ``[B, H, W]`` signed distance to the drivable-area edge, m. origin: ``[B, 2]`` grid origin, m.
        resolution: m per cell. grid_yaw, grid_cos, grid_sin: ``[B]`` grid axes' heading (None when unrotated).
        has_road: float32 ``[B, 1]`` 1 where the scene has a drivable area.
        probes1: float32 ``[P, 3]`` the ego-frame road probes with a column of ones.
        action_scale: float32 ``[2]`` (ACCEL_MAX, CURVATURE_MAX). size_scale: float32 ``[2]`` (5 m, 2.5 m).
    """

    route: Tensor
    route_x: Tensor
    route_y: Tensor
    route_count: Tensor
    route_offsets: Tensor
    sdf: Tensor
    origin: Tensor
    resolution: float
    grid_yaw: Tensor | None
    grid_cos: Tensor | None
    grid_sin: Tensor | None
    has_road: Tensor
    probes1: Tensor
    action_scale: Tensor
    size_scale: Tensor


_SCENE_INPUTS: weakref.WeakKeyDictionary[ScenarioBatch, SceneInputs] = weakref.WeakKeyDictionary()


def scene_inputs(batch: ScenarioBatch) -> SceneInputs:
    """The batch's :class:`SceneInputs`, made on first use and kept while the batch lives."""
    got = _SCENE_INPUTS.get(batch)
    if got is None:
        like = batch.log
        far = torch.full_like(batch.route[..., 0], 1e9)
        rx = torch.where(batch.route_valid, batch.route[..., 0], far).contiguous()
        ry = torch.where(batch.route_valid, batch.route[..., 1], far).contiguous()
        step = max(1, round(ROUTE_STEP_M / ROUTE_SPACING))
        grid = batch.road
        gyaw, gc, gs = _grid_axes(grid)
        got = SceneInputs(
            route=batch.route, route_x=rx, route_y=ry, route_count=batch.route_valid.sum(dim=1, keepdim=True),
            route_offsets=_const(tuple(i * step for i in range(1, NUM_ROUTE_POINTS + 1)), like, torch.int64),
            sdf=grid.sdf, origin=grid.origin, resolution=float(grid.resolution),
            grid_yaw=gyaw, grid_cos=gc, grid_sin=gs,
            has_road=grid.has_road.to(like.dtype).unsqueeze(1),
            probes1=_probes1(like.device, like.dtype),
            action_scale=_const((ACCEL_MAX, CURVATURE_MAX), like), size_scale=_const((5.0, 2.5), like),
        )
        _SCENE_INPUTS[batch] = got
    return got


def observation_features(kin: Tensor, valid: Tensor, last_action: Tensor, scene: SceneInputs) -> Tensor:
    """The observation from plain tensors: what :func:`observe` computes (and what ``torch.compile`` compiles).

    Args:
        kin: float32 ``[B, A, 8]`` the state (columns as :attr:`sim.state.SimState.kin`, ego at agent 0).
        valid: bool ``[B, A]``. last_action: float32 ``[B, 2]`` (accel m/s^2, curvature 1/m).
        scene: the batch's :func:`scene_inputs`.

    Returns:
        float32 ``[B, OBS_DIM]`` (layout in the module docstring).
    """
    n_b, n_a = kin.shape[:2]
    ego = kin[:, 0]
    exy, eyaw = ego[:, :2], ego[:, 2]
    c, s = torch.cos(eyaw), torch.sin(eyaw)
    cc, ss = c.unsqueeze(1), s.unsqueeze(1)
    cp, sp = cc / POS_SCALE, ss / POS_SCALE
    ego_block = torch.cat([ego[:, SPEED : SPEED + 1] / SPEED_SCALE, last_action / scene.action_scale], dim=1)

    # route points ahead of the nearest one, in the ego frame (to_ego_frame, then / POS_SCALE)
    d = route_ahead(scene, exy) - exy.unsqueeze(1)
    dx, dy = d[..., 0], d[..., 1]
    route = torch.stack([torch.addcmul(dx * cp, dy, sp), torch.addcmul(dy * cp, dx, sp, value=-1.0)], dim=-1)

    # the nearest valid other agents, nearest first
    k = min(NUM_NEAREST, n_a - 1)
    blocks = [ego_block, route.view(n_b, ROUTE_DIM)]
    if k > 0:
        dd = kin[:, 1:, :2] - exy.unsqueeze(1)  # [B, A-1, 2]
        dd = dd * dd
        dist = (dd[..., 0] + dd[..., 1]).masked_fill(valid[:, 1:].logical_not(), float("inf"))
        dk, ik = torch.topk(dist, k, dim=1, largest=False)  # [B, k]
        sel = _rows(kin, ik + 1)  # [B, k, 8]
        r = sel[..., :5] - ego[:, None, :5]  # relative x, y, yaw, vx, vy (world axes)
        cv, sv = cc / SPEED_SCALE, ss / SPEED_SCALE
        sizes = sel[..., 5:7] / scene.size_scale  # length / 5 m, width / 2.5 m
        f = torch.stack([
            torch.addcmul(r[..., 0] * cp, r[..., 1], sp),  # rotated into the ego frame, scaled
            torch.addcmul(r[..., 1] * cp, r[..., 0], sp, value=-1.0),
            torch.cos(r[..., 2]),
            torch.sin(r[..., 2]),
            torch.addcmul(r[..., 3] * cv, r[..., 4], sv),
            torch.addcmul(r[..., 4] * cv, r[..., 3], sv, value=-1.0),
            sizes[..., 0],
            sizes[..., 1],
            torch.ones_like(dk),
        ], dim=-1)
        blocks.append((f * torch.isfinite(dk).unsqueeze(-1)).view(n_b, k * AGENT_FEATURES))
    if k < NUM_NEAREST:
        blocks.append(kin.new_zeros(n_b, (NUM_NEAREST - k) * AGENT_FEATURES))

    # road signed distance at ego-frame probes
    road = _road_probes(scene.sdf, scene.origin, scene.resolution, scene.grid_yaw, scene.grid_cos, scene.grid_sin,
                        scene.probes1, exy, eyaw)
    blocks += [road / ROAD_CLIP * scene.has_road, scene.has_road]
    return torch.cat(blocks, dim=1)


def route_ahead(scene: SceneInputs, ego_xy: Tensor) -> Tensor:
    """``[B, NUM_ROUTE_POINTS, 2]`` world route points every ROUTE_STEP_M ahead of the one nearest ``ego_xy [B, 2]``."""
    d = (scene.route_x - ego_xy[:, :1]).square() + (scene.route_y - ego_xy[:, 1:]).square()
    near = d.argmin(dim=1, keepdim=True)  # [B, 1]
    idx = torch.minimum(near + scene.route_offsets, scene.route_count - 1)  # [B, N]
    return _rows(scene.route, idx)


FeaturesFn = Callable[[Tensor, Tensor, Tensor, SceneInputs], Tensor]
"""``(kin, valid, last_action, scene) -> [B, OBS_DIM]``: :func:`observation_features` or a compiled version of it."""


def observe(state: SimState, batch: ScenarioBatch, features: FeaturesFn | None = None) -> Tensor:
    """Observation of every scene's ego at ``state``.

    Args:
        state: the current state (ego at agent 0).
        batch: the scenes (route, road grid).
        features: :func:`observation_features` (default) or a compiled version of it.

    Returns:
        float32 ``[B, OBS_DIM]`` (layout in the module docstring).
    """
    fn = observation_features if features is None else features
    return fn(state.kin, state.valid, state.last_action, scene_inputs(batch))
