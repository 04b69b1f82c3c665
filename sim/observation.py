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

import torch
import torch.nn.functional as F
from torch import Tensor

from sim.batch import ScenarioBatch
from sim.config import ACCEL_MAX, CURVATURE_MAX, ROUTE_SPACING
from sim.geometry import RoadGrid
from sim.state import SimState

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


_ROUTE_CACHE: weakref.WeakKeyDictionary[ScenarioBatch, tuple[Tensor, Tensor, Tensor]] = weakref.WeakKeyDictionary()


def _route_xy(batch: ScenarioBatch) -> tuple[Tensor, Tensor, Tensor]:
    """Contiguous route x ``[B, R]``, y ``[B, R]`` (invalid points far away) and the valid count ``[B, 1]``."""
    got = _ROUTE_CACHE.get(batch)
    if got is None:
        far = torch.full_like(batch.route[..., 0], 1e9)
        rx = torch.where(batch.route_valid, batch.route[..., 0], far).contiguous()
        ry = torch.where(batch.route_valid, batch.route[..., 1], far).contiguous()
        got = (rx, ry, batch.route_valid.sum(dim=1, keepdim=True))
        _ROUTE_CACHE[batch] = got
    return got


def route_ahead(batch: ScenarioBatch, ego_xy: Tensor) -> Tensor:
    """``[B, NUM_ROUTE_POINTS, 2]`` world route points every ROUTE_STEP_M ahead of the nearest route point."""
    rx, ry, n_valid = _route_xy(batch)
    d = (rx - ego_xy[:, :1]).square() + (ry - ego_xy[:, 1:]).square()
    near = d.argmin(dim=1, keepdim=True)  # [B, 1]
    step = max(1, round(ROUTE_STEP_M / ROUTE_SPACING))
    offs = _const(tuple(i * step for i in range(1, NUM_ROUTE_POINTS + 1)), ego_xy, torch.int64)
    idx = torch.minimum(near + offs, n_valid - 1)  # [B, N]
    return _rows(batch.route, idx)


def road_probe(grid: RoadGrid, xy: Tensor) -> Tensor:
    """Signed road distance (m, > 0 outside) clipped to +-ROAD_CLIP at world points ``[B, N, 2]`` -> ``[B, N]``.

    The bilinear lookup of :func:`sim.geometry.road_distance` as one ``grid_sample`` kernel (the
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
    _, h, w = grid.sdf.shape
    sx, sy = 2.0 / max(w - 1, 1) / grid.resolution, 2.0 / max(h - 1, 1) / grid.resolution
    gyaw, gc, gs = _grid_axes(grid)
    rel = exy - grid.origin
    a = eyaw if gyaw is None else eyaw - gyaw
    c, s = torch.cos(a), torch.sin(a)
    if gyaw is None:
        ox, oy = rel[:, 0], rel[:, 1]
    else:  # ego position along the grid's axes, m
        ox = torch.addcmul(gc * rel[:, 0], gs, rel[:, 1])
        oy = torch.addcmul(gc * rel[:, 1], gs, rel[:, 0], value=-1.0)
    # normalised grid_sample coordinates n = [px, py, 1] @ m, per scene
    m = torch.stack([c * sx, s * sy, -s * sx, c * sy, ox * sx - 1.0, oy * sy - 1.0], dim=-1).view(-1, 3, 2)
    n = torch.einsum("pk,bkj->bpj", _probes1(exy.device, exy.dtype), m)  # [B, P, 2] (one gemm; bmm is slower)
    v = F.grid_sample(
        grid.sdf.unsqueeze(1), n.unsqueeze(1), mode="bilinear", padding_mode="border", align_corners=True
    ).view(exy.shape[0], -1)
    na = n.abs()
    outside = (na[..., 0] > 1.0) | (na[..., 1] > 1.0)
    return v.clamp(-ROAD_CLIP, ROAD_CLIP).masked_fill_(outside, ROAD_CLIP)


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


def observe(state: SimState, batch: ScenarioBatch) -> Tensor:
    """Observation of every scene's ego at ``state``.

    Every feature block is written straight into its columns of one ``[B, OBS_DIM]`` tensor (no
    ``stack``/``cat`` per step).

    Args:
        state: the current state (ego at agent 0).
        batch: the scenes (route, road grid).

    Returns:
        float32 ``[B, OBS_DIM]`` (layout in the module docstring).
    """
    ag = state.agents
    n_b, n_a = ag.shape[:2]
    out = torch.empty(n_b, OBS_DIM, device=ag.device, dtype=ag.dtype)
    ego = ag[:, 0]
    exy, eyaw = ego[:, :2], ego[:, 2]
    c, s = torch.cos(eyaw), torch.sin(eyaw)
    torch.div(state.speed[:, 0], SPEED_SCALE, out=out[:, 0])
    torch.div(state.last_action, _const((ACCEL_MAX, CURVATURE_MAX), ag), out=out[:, 1:3])

    # route points in the ego frame (to_ego_frame, then / POS_SCALE)
    r0 = EGO_DIM
    route = out[:, r0 : r0 + ROUTE_DIM].view(n_b, NUM_ROUTE_POINTS, 2)
    cc, ss = c.unsqueeze(1), s.unsqueeze(1)
    cp, sp = cc / POS_SCALE, ss / POS_SCALE
    d = route_ahead(batch, exy) - exy.unsqueeze(1)
    dx, dy = d[..., 0], d[..., 1]
    torch.addcmul(dx * cp, dy, sp, out=route[..., 0])
    torch.addcmul(dy * cp, dx, sp, value=-1.0, out=route[..., 1])

    # nearest other agents
    a0 = r0 + ROUTE_DIM
    feats = out[:, a0 : a0 + AGENTS_DIM].view(n_b, NUM_NEAREST, AGENT_FEATURES)
    dd = ag[:, 1:, :2] - exy.unsqueeze(1)  # [B, A-1, 2]
    dd.mul_(dd)
    dist = (dd[..., 0] + dd[..., 1]).masked_fill_(state.valid[:, 1:].logical_not(), float("inf"))
    k = min(NUM_NEAREST, n_a - 1)
    if k < NUM_NEAREST:
        feats[:, k:] = 0.0
    if k > 0:
        dk, ik = torch.topk(dist, k, dim=1, largest=False)  # [B, k]
        sel = _rows(state.kin, ik + 1)  # [B, k, 8] the k nearest others (columns as SimState.kin)
        r = sel[..., :5] - ego[:, None, :5]  # relative x, y, yaw, vx, vy (world axes)
        cv, sv = cc / SPEED_SCALE, ss / SPEED_SCALE
        f = feats[:, :k]
        torch.addcmul(r[..., 0] * cp, r[..., 1], sp, out=f[..., 0])  # rotated into the ego frame, scaled
        torch.addcmul(r[..., 1] * cp, r[..., 0], sp, value=-1.0, out=f[..., 1])
        torch.cos(r[..., 2], out=f[..., 2])
        torch.sin(r[..., 2], out=f[..., 3])
        torch.addcmul(r[..., 3] * cv, r[..., 4], sv, out=f[..., 4])
        torch.addcmul(r[..., 4] * cv, r[..., 3], sv, value=-1.0, out=f[..., 5])
        torch.div(sel[..., 5:7], _const((5.0, 2.5), ag), out=f[..., 6:8])  # length / 5 m, width / 2.5 m
        f[..., 8] = 1.0
        f.mul_(torch.isfinite(dk).unsqueeze(-1))

    # road signed distance at ego-frame probes
    has = out[:, OBS_DIM - 1 :]
    has.copy_(batch.road.has_road.unsqueeze(1))
    torch.mul(road_probe_ego(batch.road, exy, eyaw) / ROAD_CLIP, has, out=out[:, a0 + AGENTS_DIM : OBS_DIM - 1])
    return out
