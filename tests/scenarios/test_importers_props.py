"""Property tests of the importers' numeric helpers against independent oracles (shapely, linear motion)."""

from __future__ import annotations

import math

import numpy as np
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Polygon

from scenarios.importers.mapgeom import lane_buffer_polygons, simplify
from scenarios.importers.resample import longest_runs, needs_resampling, resample_tracks, window_starts
from scenarios.scenario import Polylines, wrap_angle


@st.composite
def polylines(draw):
    n = draw(st.integers(2, 8))
    steps = draw(st.lists(st.floats(0.5, 15.0), min_size=n - 1, max_size=n - 1))
    turns = draw(st.lists(st.floats(-2.5, 2.5), min_size=n - 1, max_size=n - 1))
    heading = draw(st.floats(-math.pi, math.pi))
    pts = [np.zeros(2)]
    for s, t in zip(steps, turns):
        heading += t
        pts.append(pts[-1] + s * np.array([math.cos(heading), math.sin(heading)]))
    return np.array(pts)


@settings(max_examples=60, deadline=None)
@given(polylines(), st.floats(0.5, 3.0))
def test_lane_buffer_contains_the_round_buffer(line, r):
    polys = lane_buffer_polygons(Polylines.from_list([line]), np.array([r]))
    union = shapely.union_all([Polygon(p).buffer(0) for p in polys])
    oracle = LineString(simplify(line, 0.1)).buffer(r * 0.999, quad_segs=16)
    assert oracle.difference(union).area < 1e-6 * max(oracle.area, 1.0)
    # ...and is not wildly larger: within the buffer grown by the mitre/cap allowance.
    assert union.difference(LineString(line).buffer(2.1 * r + 0.1)).area < 1e-6 * union.area
    # simplified centreline stays within 0.1 m of the original
    assert LineString(line).hausdorff_distance(LineString(simplify(line, 0.1))) <= 0.1 + 1e-9


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.03, 0.4), min_size=3, max_size=40),
    st.floats(-20, 20),
    st.floats(-20, 20),
    st.floats(-math.pi, math.pi),
    st.floats(-1.0, 1.0),
)
def test_resampling_linear_motion_is_exact(steps, vx, vy, yaw0, yaw_rate):
    t = np.concatenate([[0.0], np.cumsum(steps)]) + 3.0
    states = np.zeros((1, len(t), 7))
    states[0, :, 0] = 1.0 + vx * t
    states[0, :, 1] = -2.0 + vy * t
    states[0, :, 2] = wrap_angle(yaw0 + yaw_rate * t)
    states[0, :, 3], states[0, :, 4] = vx, vy
    states[0, :, 5:7] = (4.0, 2.0)
    t_new, out, valid = resample_tracks(t, states, np.ones((1, len(t)), bool), 0.1)
    assert valid.all() and t_new[0] == t[0] and t_new[-1] <= t[-1] + 1e-9 and t[-1] - t_new[-1] < 0.1 + 1e-9
    np.testing.assert_allclose(np.diff(t_new), 0.1, atol=1e-9)
    np.testing.assert_allclose(out[0, :, 0], 1.0 + vx * t_new, atol=1e-6)
    np.testing.assert_allclose(out[0, :, 1], -2.0 + vy * t_new, atol=1e-6)
    # the step between samples never turns more than 0.4 rad, so the shortest arc is the true one
    np.testing.assert_allclose(wrap_angle(out[0, :, 2] - (yaw0 + yaw_rate * t_new)), 0.0, atol=1e-6)


def test_resampling_keeps_gaps():
    t = np.arange(10) * 0.2
    valid = np.ones((1, 10), bool)
    valid[0, 4] = False  # source sample at 0.8 s missing
    _, out, v = resample_tracks(t, np.ones((1, 10, 7)), valid, 0.1)
    # new steps at 0.7, 0.8, 0.9 s touch the missing sample; 0.6 and 1.0 s coincide with valid ones
    assert v[0, 6] and not v[0, 7:10].any() and v[0, 10]
    assert np.all(out[0, 7:10] == 0)


def test_jitter_is_not_resampled():
    assert not needs_resampling(np.arange(91) * 0.1 + np.random.default_rng(0).uniform(-3e-4, 3e-4, 91))
    assert needs_resampling(np.arange(50) * 0.2)


@given(st.integers(2, 400), st.integers(0, 300), st.integers(0, 100))
def test_window_starts(n, window, stride):
    starts = window_starts(n, window, stride)
    if window <= 0 or window >= n:
        assert starts == [0]
        return
    step = stride or window
    assert starts[0] == 0 and all(s + window <= n for s in starts)
    assert all(b - a == step for a, b in zip(starts, starts[1:]))
    assert starts[-1] + step + window > n  # no further window fits


@given(st.lists(st.lists(st.booleans(), min_size=12, max_size=12), min_size=1, max_size=6))
def test_longest_runs_against_a_scan(rows):
    """The first longest run of consecutive valid steps of each row (the CommonRoad and Waymo JSON ego choice)."""
    start, stop = longest_runs(np.array(rows, dtype=bool))
    for row, a, b in zip(rows, start, stop):
        runs = [(i, j) for i in range(len(row)) for j in range(i + 1, len(row) + 1)
                if all(row[i:j]) and (i == 0 or not row[i - 1]) and (j == len(row) or not row[j])]
        want = max(runs, key=lambda r: (r[1] - r[0], -r[0])) if runs else (0, 0)
        assert (a, b) == want


def test_route_extension_follows_a_curving_lane_and_its_successor():
    from scenarios.importers.mapgeom import ego_route

    theta = np.linspace(0, np.pi / 2, 40)
    straight = np.stack([np.linspace(-20, 10, 31), np.zeros(31)], axis=1)
    curve = np.stack([10 + 8 * np.sin(theta), 8 - 8 * np.cos(theta)], axis=1)  # left turn, radius 8 m, successor
    crossing = np.array([[9.0, -10.0], [9.0, 10.0]])  # perpendicular: never followed
    lanes = Polylines.from_list([crossing, straight[:-10], straight[-11:], curve])
    ego = np.zeros((11, 7))
    ego[:, 0] = np.linspace(0, 9.5, 11)
    ego[:, 1] = 0.3  # 0.3 m left of the centreline
    route = ego_route(ego, lanes)
    ext = route[-10:]
    assert np.hypot(*(route[-11] - (9.5, 0.3))) < 1e-9 and np.all(np.hypot(*np.diff(route, axis=0).T) < 1.05)
    d_curve = shapely.distance(LineString(np.vstack([straight, curve])), shapely.points(ext))
    assert d_curve[-1] < 0.05 and np.all(d_curve < 0.31)  # on the lane, offset fading from 0.3 m to 0
    assert ext[-1, 1] > 1.0  # it turned left with the lane
    straight_only = ego_route(ego, Polylines.from_list([crossing]))
    np.testing.assert_allclose(straight_only[-10:, 1], 0.3)  # no lane fits: straight ahead


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), gap=st.integers(0, 60), short=st.integers(3, 10))
def test_velocity_repair_matches_savitzky_golay_and_keeps_consistent_velocities(seed, gap, short):
    """Recorded velocities that contradict the positions become scipy's Savitzky-Golay derivative
    (quadratic, 11 steps, window kept inside each valid run); consistent ones are left alone."""
    from scipy.signal import savgol_filter

    from scenarios.importers.repair import VEL_TOLERANCE, VEL_WINDOW, repair_velocities

    rng = np.random.default_rng(seed)
    n_t = 80
    states = np.zeros((3, n_t, 7))
    states[..., :2] = np.cumsum(rng.normal(0.8, 0.2, (3, n_t, 2)), axis=1)
    states[..., 3:5] = 500.0  # contradicts the positions everywhere
    states[2, :, :2] = np.arange(n_t)[:, None] * np.array([1.0, 0.5])  # 10 m/s east, 5 m/s north ...
    states[2, :, 3:5] = (10.0, 5.0)  # ... and recorded so: consistent
    valid = np.ones((3, n_t), bool)
    valid[1, gap:gap + 2] = False  # agent 1: a long run and a run of `short` steps
    valid[1, gap + 2 + short:gap + 4 + short] = False
    expect = states.copy()
    repair_velocities(states, valid, 0.1)
    ref = savgol_filter(expect[0, :, :2], VEL_WINDOW, 2, deriv=1, delta=0.1, axis=0, mode="interp")
    np.testing.assert_allclose(states[0, :, 3:5], ref, atol=1e-9)
    np.testing.assert_array_equal(states[2], expect[2])
    run = slice(gap + 2, gap + 2 + short)
    if short < VEL_WINDOW and gap + 2 + short <= n_t:
        k = np.arange(short) * 0.1
        for c in range(2):
            fit = np.polyder(np.polyfit(k, expect[1, run, c], 2))
            np.testing.assert_allclose(states[1, run, 3 + c], np.polyval(fit, k), atol=1e-6)
    assert np.all(np.linalg.norm(states[0, :, 3:5] - 500.0, axis=-1) > VEL_TOLERANCE)
