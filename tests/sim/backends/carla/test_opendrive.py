"""OpenDRIVE export, checked by CARLA's own parser offline: ``carla.Map(name, xodr)`` needs no server."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

carla = pytest.importorskip("carla")
from shapely.geometry import LineString, Point  # noqa: E402

from scenarios.scenario import AgentType, Polylines, RoadMap, Scenario  # noqa: E402
from sim.backends.carla import CarlaError  # noqa: E402
from sim.backends.carla.opendrive import fit_pieces, lanes_to_xodr, scenario_to_xodr, usable_lanes  # noqa: E402

TOL = 0.1  # m, the bound on lane-centre error


def _integrate(x0, y0, yaw0, curvatures, step=1.0):
    """Polyline of a path with piecewise-constant curvature, sampled every ``step`` m (exact arcs)."""
    pts = [(x0, y0)]
    x, y, h = x0, y0, yaw0
    for k in curvatures:
        if abs(k) < 1e-9:
            x, y = x + step * math.cos(h), y + step * math.sin(h)
        else:
            h2 = h + k * step
            x, y = x + (math.sin(h2) - math.sin(h)) / k, y - (math.cos(h2) - math.cos(h)) / k
            h = h2
        pts.append((x, y))
    return np.array(pts)


def _scene(lanes, widths, sid="hand"):
    ego = np.zeros((1, 20, 7), np.float32)
    ego[0, :, 0] = np.arange(20)
    ego[0, :, 5:] = (4.5, 2.0)
    return Scenario(
        id=sid,
        source="test",
        agents=ego,
        valid=np.ones((1, 20), bool),
        agent_type=np.array([AgentType.VEHICLE], np.int8),
        ego=0,
        map=RoadMap(lanes=Polylines.from_list(lanes), lane_widths=np.asarray(widths, float)),
        route=np.asarray(lanes[0], float),
    ).validate()


def _check(lanes, widths, name="t", heading_tol_deg=5.0):
    """CARLA's lane centres and headings match every centreline within TOL, road by road; widths kept.

    The heading oracle is the polyline's chord direction, which differs from the true tangent by up
    to ``k * step / 2`` (4.3 deg at 0.15 1/m): hence the 5 deg default. Exact headings are checked
    in :func:`test_random_smooth_lanes`.
    """
    m = carla.Map(name, lanes_to_xodr(lanes, widths, name=name))
    wps = m.generate_waypoints(0.5)
    assert {w.road_id for w in wps} == set(range(1, len(lanes) + 1))
    lines = [LineString(p) for p in lanes]
    for w in wps:
        i = w.road_id - 1
        loc = w.transform.location
        p = Point(loc.x, -loc.y)  # CARLA -> project frame
        assert w.lane_id == -1 and w.lane_type == carla.LaneType.Driving
        assert lines[i].distance(p) < TOL, (i, w.s)
        assert w.lane_width == pytest.approx(widths[i], abs=1e-4)
        # heading: CARLA yaw (CW deg) vs the polyline's direction at the nearest point
        d = lines[i].project(p)
        a, b = lines[i].interpolate(max(0.0, d - 0.5)), lines[i].interpolate(min(lines[i].length, d + 0.5))
        yaw = math.atan2(b.y - a.y, b.x - a.x)
        assert abs(math.degrees(math.remainder(-math.radians(w.transform.rotation.yaw) - yaw, 2 * math.pi))) < (
            heading_tol_deg
        )
    for i, pts in enumerate(lanes):  # and from our side: each centreline point has a CARLA centre nearby
        for x, y in pts:
            wp = m.get_waypoint(carla.Location(x, -y, 0.0), True)
            loc = wp.transform.location
            assert math.hypot(loc.x - x, -loc.y - y) < TOL
        end = m.get_waypoint_xodr(i + 1, -1, 0.0)
        assert (
            end is not None
            and math.hypot(end.transform.location.x - pts[0, 0], -end.transform.location.y - pts[0, 1]) < TOL
        )
    return m


def test_straight_and_curved_lanes():
    straight = _integrate(0.0, 0.0, 0.0, [0.0] * 60)
    left = _integrate(60.0, 10.0, 0.0, [0.05] * 40)  # R = 20 m left turn
    right = _integrate(-50.0, -40.0, 1.0, [-0.1] * 25)  # R = 10 m right turn
    s_curve = _integrate(0.0, 40.0, math.pi, [0.08] * 20 + [-0.08] * 20)
    lanes = [straight, left, right, s_curve]
    m = _check(lanes, [3.5, 3.0, 3.2, 4.0])
    # road length equals the polyline's arc length (within 1 %)
    for i, pts in enumerate(lanes):
        last = max((w for w in m.generate_waypoints(0.5) if w.road_id == i + 1), key=lambda w: w.s)
        assert last.s == pytest.approx(LineString(pts).length, rel=0.01, abs=0.6)


def test_carla_y_is_flipped_for_a_northbound_lane():
    north = np.stack([np.full(30, 5.0), np.arange(30.0)], 1)
    m = carla.Map("north", lanes_to_xodr([north], [3.5]))
    wp = m.get_waypoint_xodr(1, -1, 10.0)
    assert wp.transform.location.x == pytest.approx(5.0, abs=1e-3)
    assert wp.transform.location.y == pytest.approx(-10.0, abs=1e-3)
    assert wp.transform.rotation.yaw == pytest.approx(-90.0, abs=0.1)
    assert wp.next(5.0)[0].transform.location.y == pytest.approx(-15.0, abs=1e-2)  # travel goes north


@settings(max_examples=8, deadline=None)
@given(
    st.lists(st.floats(-0.15, 0.15), min_size=3, max_size=6),
    st.floats(-math.pi, math.pi),
    st.floats(2.5, 4.5),
)
def test_random_smooth_lanes(curv, yaw0, width):
    """Lanes of random smoothly varying curvature (|k| <= 0.15 1/m), 1 m sampling as in scenes.

    Total turning is kept under pi so that the nearest-point oracle in ``_check`` is unambiguous.
    """
    ks = np.interp(np.arange(80), np.linspace(0, 79, len(curv)), curv)
    ks *= min(1.0, 3.0 / max(1e-9, np.abs(ks).sum()))  # total turning < pi: the lane cannot cross itself
    pts = _integrate(3.0, -7.0, yaw0, ks)
    m = _check([pts], [width], name="rand")
    true_yaw = yaw0 + np.concatenate([[0.0], np.cumsum(ks)])  # heading at arc length 0, 1, 2, ... m
    for w in m.generate_waypoints(0.5):
        expect = float(np.interp(w.s, np.arange(len(true_yaw)), true_yaw))
        got = -math.radians(w.transform.rotation.yaw)
        assert abs(math.remainder(got - expect, 2 * math.pi)) < math.radians(1.0), w.s


def test_scenario_export_and_irregular_sampling():
    """Via a Scenario; points closer than 5 cm are dropped; uneven spacing still fits."""
    base = _integrate(0.0, 0.0, 0.3, [0.03] * 50)
    dense = np.concatenate([base[:10], base[9:10] + 1e-3, base[10:]])  # near-duplicate point
    uneven = base[np.r_[0:20:3, 20:51]]
    xodr = scenario_to_xodr(_scene([dense, uneven + [0.0, 20.0]], [3.5, 3.5]))
    m = carla.Map("scene", xodr)
    assert {w.road_id for w in m.generate_waypoints(1.0)} == {1, 2}
    _check([dense, uneven + [0.0, 20.0]], [3.5, 3.5])


def _check_roads(lanes, widths, name="roads"):
    """Road by road, both ways: CARLA's centre line (sampled by s) and the scene's centreline within TOL.

    Works when lanes overlap (junctions), where a nearest-lane query may pick another road.
    """
    m = carla.Map(name, lanes_to_xodr(lanes, widths, name=name))
    for i, pts in enumerate(lanes):
        length = sum(pc.length for pc in fit_pieces(pts))
        s = np.r_[np.arange(0.0, length - 0.5, 1.0), length - 1e-3]
        wps = [m.get_waypoint_xodr(i + 1, -1, float(v)) for v in s]
        assert all(w is not None and w.road_id == i + 1 for w in wps)
        carla_line = LineString([(w.transform.location.x, -w.transform.location.y) for w in wps])
        ours = LineString(pts)
        assert max(ours.distance(Point(p)) for p in carla_line.coords) < TOL
        assert max(carla_line.distance(Point(p)) for p in pts) < TOL
        assert all(w.lane_width == pytest.approx(widths[i], abs=1e-4) for w in wps[:: max(1, len(wps) // 10)])


def test_procedural_scenes_load_in_carla():
    """One scene of every procedural family (junctions with overlapping lanes included)."""
    procedural = pytest.importorskip("scenarios.procedural")
    for fam in procedural.FAMILY_NAMES:
        scene = procedural.generate(fam, 3)
        lanes, widths = usable_lanes(scene)
        assert len(lanes) == len(scene.map.lanes) > 0
        _check_roads(lanes, widths, name=scene.id)


def test_bad_maps_are_reported():
    with pytest.raises(CarlaError, match="no lane centrelines"):
        lanes_to_xodr([], [])
    with pytest.raises(CarlaError, match="positive width"):
        lanes_to_xodr([np.zeros((3, 2)) + np.arange(3)[:, None]], [0.0])
    with pytest.raises(CarlaError, match="lane 0"):
        lanes_to_xodr([np.zeros((3, 2))], [3.0])
