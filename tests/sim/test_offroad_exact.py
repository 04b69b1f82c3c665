"""Off-road is measured wherever the ego can be: exact (shapely) agreement beyond every grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely import contains_xy, distance, points
from shapely.geometry import Polygon
from shapely.ops import unary_union

from scenarios.procedural import generate_suite
from scenarios.scenario import LENGTH, WIDTH, YAW, X, Y
from sim.baselines import constant_velocity_policy
from sim.batch import make_batch
from sim.geometry import box_corners
from sim.metrics.drivable import OFFROAD_THRESHOLD
from sim.metrics.registry import MetricContext, compute_metrics
from sim.road_grid import CROP_MARGIN, OUTSIDE, build_road_grid, road_distance
from sim.rollout import rollout
from tests.sim.test_road_grid import _scene

WAYMAX_DISAGREED = (2000005, 2000021, 2000029, 2000045)  # procedural:test left turns of issue 10


def _exact(union, xy: np.ndarray) -> np.ndarray:
    """Signed distance (> 0 outside) of ``xy [N, 2]`` to a shapely area: the oracle."""
    d = distance(union.boundary, points(xy))
    return np.where(contains_xy(union, xy[:, 0], xy[:, 1]), -d, d)


@settings(max_examples=15, deadline=None)
@given(
    heading=st.floats(-math.pi, math.pi),
    length=st.floats(200.0, 2000.0),
    width=st.floats(3.0, 12.0),
    bend=st.floats(-1.2, 1.2),
    seed=st.integers(0, 2**31 - 1),
)
def test_points_far_beyond_the_grid_read_the_exact_distance(heading, length, width, bend, seed):
    """A road much longer than the ego's reach (an L of two arms): every probe, however far, is exact."""
    c, s = math.cos(heading), math.sin(heading)
    rot = np.array([[c, -s], [s, c]])
    arm1 = np.array([[-20, -width / 2], [length, -width / 2], [length, width / 2], [-20, width / 2]]) @ rot.T
    cb, sb = math.cos(heading + bend), math.sin(heading + bend)
    rot2 = np.array([[cb, -sb], [sb, cb]])
    end = np.array([length - width, 0.0]) @ rot.T
    arm2 = end + np.array([[0, -width / 2], [length, -width / 2], [length, width / 2], [0, width / 2]]) @ rot2.T
    polys = [arm1, arm2]
    scene = _scene(polys, ego_xy=((0.0, 0.0), (5 * c, 5 * s)))  # the ego's log barely moves: a small grid
    grid = build_road_grid([scene])
    rng = np.random.default_rng(seed)
    along = rng.uniform(0, length, 400)
    probes = np.concatenate([
        (np.stack([along, rng.uniform(-width, width, 400)], 1)) @ rot.T,  # along arm 1, on and off it
        end + (np.stack([along, rng.uniform(-width, width, 400)], 1)) @ rot2.T,  # along arm 2
    ])
    got = road_distance(grid, torch.tensor(probes, dtype=torch.float64)[None])[0].numpy()
    ref = _exact(unary_union([Polygon(p) for p in polys]), probes)
    beyond = np.linalg.norm(probes, axis=1) > CROP_MARGIN + 10
    assert beyond.sum() > 100  # the probes do leave the grid
    out = ref > 0  # outside the road: exact; inside: the nearest boundary sample (0.1 m apart)
    np.testing.assert_allclose(got[beyond & out], ref[beyond & out], atol=1e-6)
    # inside, the depth is the nearest boundary sample: about 0.1 m at most where polygons join or fold
    np.testing.assert_allclose(got[beyond & ~out], ref[beyond & ~out], atol=0.1)
    assert np.all(got[beyond & ~out] < 0)
    assert not np.any(got == OUTSIDE)


def test_constant_velocity_left_turns_agree_with_the_exact_drivable_area():
    """procedural:test seeds where the grid once said offroad beyond its 30 m crop: exact distances agree."""
    scenes = generate_suite(list(WAYMAX_DISAGREED), progress=False)
    batch = make_batch(scenes)
    ro = rollout(batch, constant_velocity_policy(batch.dt))
    m = compute_metrics(ro, batch)
    c = MetricContext(ro, batch)
    for b, scene in enumerate(scenes):
        union = unary_union([Polygon(p) for p in scene.map.drivable if len(p) >= 3])
        ego = ro.traj[b, 0].double()
        corners = box_corners(ego[:, [X, Y, YAW, LENGTH, WIDTH]]).numpy()  # [T, 4, 2]
        steps = c.controlled[b].numpy()
        ref = _exact(union, corners[steps].reshape(-1, 2)).reshape(-1, 4).max(1)
        got = c.offroad_dist[b, c.controlled[b]].double().numpy()
        near = np.abs(ref) < 5.0
        np.testing.assert_allclose(got[near], ref[near], atol=0.4)  # the grid's documented worst case
        assert float(m["offroad"][b]) == float(np.any(ref > OFFROAD_THRESHOLD)), scene.id
        assert np.all(got < OUTSIDE / 2), scene.id


@pytest.mark.parametrize("shift", [1e3, 4e6])
def test_grid_and_fallback_do_not_depend_on_translation(shift):
    square = np.array([[-5, -4], [20, -4], [20, 4], [-5, 4]], float)
    a = build_road_grid([_scene([square])])
    b = build_road_grid([_scene([square + shift])])
    xy = torch.tensor([[[0.0, 0.0], [60.0, 1.0], [500.0, 0.0]]], dtype=torch.float64)
    np.testing.assert_allclose(road_distance(a, xy).numpy(), road_distance(b, xy + shift).numpy(), atol=1e-3)
