"""The road grid: signed distance against shapely, beyond the grid, cropping, caching and memory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shapely.geometry import Point, Polygon
from shapely.ops import unary_union

from scenarios.scenario import AgentType, Polylines, RoadMap, Scenario
from sim.geometry import box_corners
from sim.road_grid import _CACHE, NO_ROAD, OUTSIDE, build_road_grid, road_distance


def _scene(polys, ego_xy=((0.0, 0.0), (10.0, 0.0)), route=None) -> Scenario:
    n_t = len(ego_xy)
    agents = np.zeros((1, n_t, 7), np.float32)
    agents[0, :, :2] = ego_xy
    agents[0, :, 5], agents[0, :, 6] = 4.5, 2.0
    r = np.asarray(route if route is not None else ego_xy, dtype=np.float64)
    return Scenario(
        id="g",
        source="test",
        agents=agents,
        valid=np.ones((1, n_t), bool),
        agent_type=np.array([AgentType.VEHICLE], np.int8),
        ego=0,
        map=RoadMap(drivable=Polylines.from_list(polys)),
        route=r,
        init_step=0,
    ).validate()


def _random_polys(rng: np.random.Generator) -> list[np.ndarray]:
    polys = []
    for _ in range(rng.integers(1, 5)):
        cx, cy = rng.uniform(-30, 30, 2)
        if rng.random() < 0.5:  # rotated rectangle (a road piece)
            b = (cx, cy, rng.uniform(-math.pi, math.pi), rng.uniform(10, 60), rng.uniform(3, 12))
            polys.append(box_corners(torch.tensor(b, dtype=torch.float64)).numpy())
        else:  # star-shaped polygon, possibly non-convex
            n = rng.integers(3, 9)
            ang = np.sort(rng.uniform(0, 2 * math.pi, n))
            rad = rng.uniform(4, 20, n)
            polys.append(np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1))
        if rng.random() < 0.3:
            polys[-1] = polys[-1][::-1]  # clockwise
    return polys


@pytest.mark.parametrize("seed", range(6))
def test_road_distance_matches_shapely(seed):
    rng = np.random.default_rng(seed)
    polys = _random_polys(rng)
    union = unary_union([Polygon(p) for p in polys])
    lo = np.array(union.bounds[:2]) - 4
    hi = np.array(union.bounds[2:]) + 4
    frame = [lo, [hi[0], lo[1]], hi, [lo[0], hi[1]], lo]
    scene = _scene(polys, route=frame)  # the route spans the map: no cropping
    grid = build_road_grid([scene], resolution=0.5)
    pts = rng.uniform(lo, hi, (3000, 2))
    got = road_distance(grid, torch.tensor(pts, dtype=torch.float32)[None])[0].numpy()
    ref = np.array([union.boundary.distance(Point(p)) for p in pts])
    ref = np.where([union.contains(Point(p)) for p in pts], -ref, ref)
    in_grid = road_distance(grid, torch.tensor(pts, dtype=torch.float32)[None], exact=False)[0].numpy() != OUTSIDE
    np.testing.assert_allclose(got[~in_grid], ref[~in_grid], atol=0.01)  # beyond the grid: exact fallback
    got, ref = got[in_grid], ref[in_grid]
    near = np.abs(ref) < 2.0  # EXACT_BAND; farther cells come from the distance transform
    err = np.abs(got - ref)[near]
    # farther: the nearest band cell's value plus the distance to it (an upper bound), same sign
    assert np.all(np.abs(got - ref)[~near] < 0.1 * np.abs(ref[~near]) + 0.36)
    assert np.all((got > 0)[~near] == (ref > 0)[~near])
    got, ref = got[near], ref[near]
    # cell values are exact (to the 0.1 m boundary sampling) and the field is 1-Lipschitz, so a
    # bilinear blend of the 4 cells is within res / sqrt(2) of the truth; straight edges are exact
    bound = 0.5 / math.sqrt(2) + 0.01
    assert err.max() < bound, err.max()
    assert np.median(err) < 0.005, np.median(err)
    clear = np.abs(ref) > bound
    assert np.all((got[clear] > 0) == (ref[clear] > 0))
    # the nuPlan 0.3 m decision agrees outside that band around the threshold
    far_from_thr = np.abs(ref - 0.3) > bound
    assert np.all((got > 0.3)[far_from_thr] == (ref > 0.3)[far_from_thr])


def test_road_distance_outside_grid_and_no_road():
    road = _scene([np.array([[-5, -4], [20, -4], [20, 4], [-5, 4]], float)])
    bare = _scene([])
    grid = build_road_grid([road, bare])
    xy = torch.tensor([[[0.0, 0.0], [5000.0, 0.0]], [[0.0, 0.0], [5000.0, 0.0]]])
    d = road_distance(grid, xy)
    assert d[0, 0] == pytest.approx(-4.0, abs=1e-3)
    assert d[0, 1] == pytest.approx(4980.0, abs=1e-2)  # beyond the grid: the exact distance
    assert road_distance(grid, xy, exact=False)[0, 1] == OUTSIDE
    assert torch.all(d[1] == NO_ROAD)
    assert grid.has_road.tolist() == [True, False]


def test_road_grid_cropped_to_ego_reach():
    road = np.array([[-500, -4], [500, -4], [500, 4], [-500, 4]], float)
    scene = _scene([road], ego_xy=((0.0, 0.0), (10.0, 0.0)))
    grid = build_road_grid([scene])
    d = road_distance(grid, torch.tensor([[[35.0, 0.0], [45.0, 0.0], [-25.0, 0.0], [-35.0, 0.0]]]))[0]
    assert d[0] == pytest.approx(-4.0, abs=1e-3) and d[2] == pytest.approx(-4.0, abs=1e-3)
    # beyond CROP_MARGIN (30 m) of the ego path and route: still on the road, measured exactly
    assert d[1] == pytest.approx(-4.0, abs=1e-3) and d[3] == pytest.approx(-4.0, abs=1e-3)
    coarse = road_distance(grid, torch.tensor([[[45.0, 0.0], [-35.0, 0.0]]]), exact=False)[0]
    assert torch.all(coarse == OUTSIDE)


def test_road_grid_cached_per_scene():
    scene = _scene([np.array([[-5, -4], [20, -4], [20, 4], [-5, 4]], float)])
    g1 = build_road_grid([scene])
    assert scene in _CACHE and 0.5 in _CACHE[scene]
    cached = _CACHE[scene][0.5][0]
    g2 = build_road_grid([scene, scene])
    assert _CACHE[scene][0.5][0] is cached
    h, w = cached.shape
    assert torch.equal(g2.sdf[1, :h, :w], g1.sdf[0, :h, :w])


def _rot(yaw: float) -> np.ndarray:
    return np.array([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])


def test_memory_of_a_large_batch():
    """256 highway-length scenes (240 m of ego travel, 16 m wide road) at 8 headings stay well under 500 MB."""
    yaws = [i * math.pi / 4 + 0.1 for i in range(8)]
    scenes = []
    for yaw in yaws:
        road = np.array([[-50, -8], [300, -8], [300, 8], [-50, 8]], float) @ _rot(yaw).T
        ego = np.stack([np.linspace(0, 240, 81), np.zeros(81)], 1) @ _rot(yaw).T
        scenes.append(_scene([road], ego_xy=ego))
    grid = build_road_grid(scenes * 32)  # cached: 8 rasterisations, 256 grids
    nbytes = grid.sdf.element_size() * grid.sdf.nelement()
    assert nbytes < 100e6, nbytes / 1e6
    # rotated grids answer in world coordinates
    local = np.array([[120.0, 0.0], [120.0, 7.0], [120.0, 9.0], [-25.0, 7.5]])
    xy = torch.tensor(np.stack([local @ _rot(y).T for y in yaws * 32]), dtype=torch.float32)
    d = road_distance(grid, xy)
    torch.testing.assert_close(d, torch.tensor([-8.0, -1.0, 1.0, -0.5]).expand(256, 4), atol=1e-3, rtol=0)


