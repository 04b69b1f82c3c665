"""The lane map's batched polygon width probe (sim/lane_map.py) against shapely's line-polygon intersection."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Point, Polygon

from sim.lane_map import _ACROSS, _polygon_extent


def shapely_extent(poly: np.ndarray, m: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """Oracle: the part of ``polygon.intersection(probe)`` through the middle -> (offset, half width), or NaNs."""
    shape = Polygon(poly).buffer(0)
    cut = shape.intersection(LineString([m - _ACROSS * n, m + _ACROSS * n]))
    for part in getattr(cut, "geoms", [cut]):
        if part.is_empty or part.geom_type != "LineString" or part.distance(Point(m)) > 1e-6:
            continue
        along = (np.asarray(part.coords)[[0, -1]] - m) @ n
        if along.max() - along.min() > 1e-3:
            return (along.min() + along.max()) / 2, (along.max() - along.min()) / 2
    return math.nan, math.nan


@st.composite
def star_polygons(draw) -> np.ndarray:
    """A simple (valid) polygon: vertices at increasing angles around a centre, radii 0.5-20 m."""
    n = draw(st.integers(3, 24))
    cuts = sorted(draw(st.lists(st.floats(0.0, 2 * math.pi, exclude_max=True), min_size=n, max_size=n, unique=True)))
    assume(all(b - a > 1e-3 for a, b in zip(cuts, cuts[1:] + [cuts[0] + 2 * math.pi])))
    r = np.asarray(draw(st.lists(st.floats(0.5, 20.0), min_size=n, max_size=n)))
    ang = np.asarray(cuts)
    poly = np.stack([r * np.cos(ang), r * np.sin(ang)], 1) + np.asarray(draw(st.tuples(st.floats(-50, 50),
                                                                                       st.floats(-50, 50))))
    assume(Polygon(poly).is_valid)
    return poly


@settings(max_examples=150, deadline=None)
@given(star_polygons(), st.lists(st.tuples(st.floats(-30, 30), st.floats(-30, 30), st.floats(-math.pi, math.pi)),
                                 min_size=1, max_size=12))
def test_probe_matches_shapely(poly, probes):
    centre = poly.mean(0)
    mids = np.asarray([[centre[0] + x, centre[1] + y] for x, y, _ in probes])
    normals = np.asarray([[math.cos(a), math.sin(a)] for _, _, a in probes])
    boundary = Polygon(poly).exterior
    assume(all(boundary.distance(Point(m)) > 1e-4 for m in mids))  # a middle on the boundary is a tie
    off, hw = _polygon_extent(poly, mids, normals)
    for k, (m, n) in enumerate(zip(mids, normals, strict=True)):
        want = shapely_extent(poly, m, n)
        assert np.isnan(off[k]) == math.isnan(want[0]), (k, off[k], want)
        if not math.isnan(want[0]):
            assert off[k] == pytest.approx(want[0], abs=1e-6) and hw[k] == pytest.approx(want[1], abs=1e-6)


def test_axis_aligned_lane_through_its_vertices():
    """A straight 3.5 m lane whose probes pass exactly through polygon vertices (procedural maps): one crossing each."""
    xs = np.arange(0.0, 21.0, 1.0)
    poly = np.concatenate([np.stack([xs, np.full_like(xs, -1.75)], 1), np.stack([xs[::-1], np.full_like(xs, 1.75)], 1)])
    mids = np.stack([xs[1:-1], np.full(len(xs) - 2, 0.25)], 1)
    normals = np.tile([0.0, 1.0], (len(mids), 1))
    off, hw = _polygon_extent(poly, mids, normals)
    np.testing.assert_allclose(hw, 1.75)
    np.testing.assert_allclose(off, -0.25)


def test_self_intersecting_polygon_is_repaired_like_shapely():
    bowtie = np.array([[0.0, 0.0], [10.0, 4.0], [10.0, 0.0], [0.0, 4.0]])
    mids = np.array([[2.0, 2.0], [8.0, 2.0], [5.0, 1.0], [5.0, 3.5]])
    normals = np.tile([0.0, 1.0], (4, 1))
    off, hw = _polygon_extent(bowtie, mids, normals)
    for k in range(4):
        want = shapely_extent(bowtie, mids[k], normals[k])
        np.testing.assert_allclose([off[k], hw[k]], want, atol=1e-6, equal_nan=True)


def test_probe_longer_than_the_polygon_is_clipped():
    """A 40 m wide polygon: the probe (|u| <= 15 m) ends inside it on both sides."""
    poly = np.array([[-5.0, -20.0], [5.0, -20.0], [5.0, 20.0], [-5.0, 20.0]])
    off, hw = _polygon_extent(poly, np.array([[0.0, 3.0]]), np.array([[0.0, 1.0]]))
    assert off[0] == pytest.approx(0.0) and hw[0] == pytest.approx(_ACROSS)
