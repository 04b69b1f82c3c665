"""CommonRoad 2020a scenes beyond the NGSIM samples, built at test time from them: other lanelet types, signs of
other countries, directional traffic lights, obstacles that appear late, uncertain state values, another step.

Each variant is a real sample rewritten in the XML (ElementTree, written to ``tmp_path``) and checked against a
property computed from the XML itself or against the original's import.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Polygon
from shapely.ops import unary_union

from scenarios.importers.commonroad import commonroad_recording, load_commonroad
from scenarios.scenario import Scenario

pytestmark = pytest.mark.data
PEACH, LANKER, US101 = "USA_Peach-4_8_T-1.xml", "USA_Lanker-2_17_T-1.xml", "USA_US101-1_1_T-1.xml"
MPH = 0.44704  # m/s


def _root(shared_data: Path, name: str) -> ET.Element:
    return ET.parse(shared_data / "commonroad" / name).getroot()


def _write(root: ET.Element, path: Path) -> Path:
    ET.ElementTree(root).write(path)
    return path


def _load(path: Path) -> Scenario:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (s,) = load_commonroad(path)
    return s


def _lanelet(root: ET.Element, lid: int) -> ET.Element:
    return next(ll for ll in root.findall("lanelet") if ll.get("id") == str(lid))


def _bound(ll: ET.Element, side: str) -> np.ndarray:
    return np.array([[float(p.findtext("x")), float(p.findtext("y"))] for p in ll.find(side).findall("point")])


def _lane_index(rec, root: ET.Element, lid: int) -> int:
    """The recording's lane whose centreline is lanelet ``lid``'s (the middle of its bounds)."""
    ll = _lanelet(root, lid)
    centre = (_bound(ll, "leftBound") + _bound(ll, "rightBound")) / 2
    (i,) = [i for i, p in enumerate(rec.lanes) if len(p) == len(centre) and np.allclose(p, centre)]
    return i


def _union(s: Scenario):
    return unary_union([Polygon(p).buffer(0) for p in s.map.drivable])


def test_sidewalk_bicycle_and_crosswalk_lanelets_are_not_driving_lanes(shared_data, tmp_path):
    """Three lanes of Peachtree retyped: a sidewalk leaves the lanes and the drivable area (its shapely area shrinks
    by its surface) and its driving neighbour's boundary becomes a kerb; a bicycle lane leaves the lanes but stays
    road surface (drivable, its neighbour's boundary a painted line, as Waymo's kerbs lie beyond bicycle lanes); a
    crosswalk lanelet is a crosswalk, not a lane."""
    base = _load(shared_data / "commonroad" / PEACH)
    root = _root(shared_data, PEACH)
    retyped = {43205: "sidewalk", 43343: "bicycleLane", 43652: "crosswalk"}  # 43205, 43343: rightmost, off junctions
    for lid, kind in retyped.items():
        _lanelet(root, lid).find("laneletType").text = kind
    s = _load(_write(root, tmp_path / PEACH))
    assert len(s.map.lanes) == len(base.map.lanes) - 3 and len(s.map.crosswalks) == 1
    assert len(s.map.lane_polygons) == len(s.map.lanes)
    origin = np.array(s.world_origin)
    surface = {lid: Polygon(np.vstack([_bound(_lanelet(root, lid), "rightBound"),
                                       _bound(_lanelet(root, lid), "leftBound")[::-1]]) - origin) for lid in retyped}
    np.testing.assert_allclose(s.map.crosswalks[0], np.asarray(surface[43652].exterior.coords)[:-1], atol=1e-6)
    before, after = _union(base), _union(s)
    for lid in (43205, 43343):
        assert before.intersection(surface[lid]).area == pytest.approx(surface[lid].area, rel=1e-6)
    assert after.intersection(surface[43205]).area < 0.02 * surface[43205].area
    assert after.intersection(surface[43343]).area == pytest.approx(surface[43343].area, rel=1e-6)
    gone = surface[43205].area
    assert after.difference(before).area < 1e-6 * after.area  # nothing added
    assert gone * 0.98 < before.area - after.area < gone * 1.1  # the sidewalk's surface (and the kerb fill beyond)
    rec = commonroad_recording(tmp_path / PEACH)
    kerb = _bound(_lanelet(root, 43341), "rightBound")  # 43205's left neighbour (same direction): now a kerb
    assert any(len(e) == len(kerb) and np.allclose(e, kerb) for e in rec.road_edges)
    paint = _bound(_lanelet(root, 43208), "rightBound")  # 43343's left neighbour: still a painted line
    assert not any(len(e) == len(paint) and np.allclose(e, paint) for e in rec.road_edges)
    assert any(len(e) == len(paint) and np.allclose(e, paint) for e in rec.road_lines)


def test_oncoming_adjacent_lanelets_are_not_neighbours(shared_data):
    """``adjacentLeft drivingDir="opposite"`` (Lankershim 3498 / 3500): oncoming traffic, no lane change, the
    shared boundary a road line (the centre line), not a kerb."""
    root = _root(shared_data, LANKER)
    rec = commonroad_recording(shared_data / "commonroad" / LANKER)
    i, j = _lane_index(rec, root, 3498), _lane_index(rec, root, 3500)
    assert not any({a, b} == {i, j} for a, b, _ in rec.lane_neighbours)
    left = _bound(_lanelet(root, 3498), "leftBound")
    assert any(len(line) == len(left) and np.allclose(line, left) for line in rec.road_lines)
    assert not any(len(e) == len(left) and np.allclose(e, left[::-1]) for e in rec.road_edges)


def _light(root: ET.Element, lid: str) -> tuple[int, list[tuple[int, str]]]:
    tl = next(t for t in root.iter("trafficLight") if t.get("id") == lid)
    return (int(tl.findtext("cycle/timeOffset") or 0),
            [(int(c.findtext("duration")), c.findtext("color")) for c in tl.iter("cycleElement")])


def _colour(light: tuple[int, list[tuple[int, str]]], t: int) -> str:
    offset, elems = light
    m = (t - offset) % sum(d for d, _ in elems)
    for d, c in elems:
        if m < d:
            return c
        m -= d
    raise AssertionError


def test_a_left_arrow_controls_the_left_turn_only(shared_data, tmp_path):
    """Lankershim lanelet 3560 turns left into 3671 and references a ``left`` light (3831) and a ``straightRight``
    one (3832). The left turn is governed by 3831 alone: with 3831's cycle moved to show green while 3832 is red,
    the signal controlling 3671 follows 3831 (the import gave both lights to 3560 and all it leads into, so this
    left turn on a green arrow read as a red-light violation)."""
    from scenarios.scenario import LightState

    root = _root(shared_data, LANKER)
    next(t for t in root.iter("trafficLight") if t.get("id") == "3831").find("cycle/timeOffset").text = "0"
    rec = commonroad_recording(_write(root, tmp_path / LANKER))
    left, other = _light(root, "3831"), _light(root, "3832")
    n_t = rec.light_states.shape[1]
    stop = [_colour(left, t) == "red" for t in range(n_t)]
    assert stop != [_colour(other, t) == "red" for t in range(n_t)]
    on_turn = np.flatnonzero(rec.light_lanes == _lane_index(rec, root, 3671))
    assert len(on_turn) == 1
    assert (rec.light_states[on_turn[0]] == LightState.STOP).tolist() == stop
    assert not np.any(rec.light_lanes == _lane_index(rec, root, 3560))  # its lights go to the movements


def test_speed_limits_of_other_countries_and_a_us_stop_sign(shared_data, tmp_path):
    """The value of a speed-limit sign is m/s in CommonRoad for every country (NGSIM's R2-1 of 25 mph is 11.176);
    a German ``274`` in this USA file (commonroad-io loses its ID: the USA table lacks it) and a German file's
    ``274`` give the same limits; a US stop sign ``R1-1`` (also missing from commonroad-io's USA table) is a stop
    sign on the lanelets referencing it, not a map without stop signs."""
    base = _load(shared_data / "commonroad" / PEACH)
    assert np.nanmin(base.map.lane_speed_limits) == pytest.approx(25 * MPH, abs=1e-4)
    for country in ("USA", "DEU"):
        root = _root(shared_data, PEACH)
        root.set("benchmarkID", root.get("benchmarkID").replace("USA", country))
        for e in root.iter("trafficSignID"):
            e.text = "274" if e.text == "R2-1" else e.text
        s = _load(_write(root, tmp_path / f"{country}.xml"))
        np.testing.assert_array_equal(s.map.lane_speed_limits, base.map.lane_speed_limits)
    root = _root(shared_data, PEACH)
    sign = root.find("trafficSign")
    elem = sign.find("trafficSignElement")
    elem.find("trafficSignID").text = "R1-1"
    for v in elem.findall("additionalValue"):
        elem.remove(v)
    users = [ll for ll in root.findall("lanelet") if any(r.get("ref") == sign.get("id")
                                                         for r in ll.findall("trafficSignRef"))]
    s = _load(_write(root, tmp_path / "stop.xml"))
    assert s.map.knows("stop_signs") and len(s.map.stop_signs) == len(users) > 0


def test_obstacles_that_appear_after_step_0_and_leave_a_gap(shared_data, tmp_path):
    """Every obstacle shifted 5 steps later (a recording where the road users appear after its start) is the same
    scene from step 5; a gap in another obstacle's trajectory is invalid there, the rest kept."""
    base = _load(shared_data / "commonroad" / PEACH)
    root = _root(shared_data, PEACH)
    obstacles = list(root.iter("dynamicObstacle"))
    for o in obstacles:
        for t in o.iter("time"):
            t.find("exact").text = str(int(t.findtext("exact")) + 5)
    g = next(i for i, o in enumerate(obstacles) if len(o.find("trajectory")) == 60
             and f"ego={o.get('id')}" not in base.tags)
    traj = obstacles[g].find("trajectory")
    for st in list(traj):
        if 25 <= int(st.findtext("time/exact")) < 35:  # steps 20-29 of the scene
            traj.remove(st)
    s = _load(_write(root, tmp_path / PEACH))
    assert s.id == base.id + "@5" and s.tags == base.tags and s.num_steps == base.num_steps
    ego = next(i for i, o in enumerate(obstacles) if f"ego={o.get('id')}" in base.tags)
    g += int(g < ego)  # the scene's agent order: the ego, then the obstacles in file order
    want = base.valid.copy()
    want[g, 20:30] = False
    assert s.valid.tolist() == want.tolist()
    np.testing.assert_allclose(s.agents[s.valid][:, :3], base.agents[s.valid][:, :3], atol=1e-4)


def test_interval_values_and_states_without_velocity(shared_data, tmp_path):
    """A state's orientation given as an interval is its middle (it raised a TypeError traceback); states without
    a velocity (optional in 2020a) get the central difference of their positions (they read as standing still)."""
    base = _load(shared_data / "commonroad" / US101)
    root = _root(shared_data, US101)
    tracks = {}
    for o in root.iter("dynamicObstacle"):
        states = [o.find("initialState"), *o.find("trajectory")]
        tracks[o.get("id")] = np.array([[float(st.findtext(f"position/point/{c}")) for c in "xy"] for st in states])
        for st in states:
            st.remove(st.find("velocity"))
            ori = st.find("orientation")
            yaw = float(ori.findtext("exact"))
            ori.remove(ori.find("exact"))
            ET.SubElement(ori, "intervalStart").text = repr(yaw - 0.02)
            ET.SubElement(ori, "intervalEnd").text = repr(yaw + 0.02)
    s = _load(_write(root, tmp_path / US101))
    np.testing.assert_allclose(s.agents[..., :3], base.agents[..., :3], atol=1e-4)
    ego = tracks[next(t for t in s.tags if t.startswith("ego=")).split("=")[1]]
    want = np.gradient(ego, 0.1, axis=0)
    np.testing.assert_allclose(s.agents[0, :, 3:5], want[: s.num_steps], atol=1e-3)


def test_a_5_hz_file_is_resampled_to_10_hz(shared_data, tmp_path):
    """Lankershim kept at every other step with ``timeStepSize`` 0.2 (and the light cycles halved): resampled,
    its even steps are the original's and its lights agree there (this import was already right; kept as a
    guard for files of other rates: highD and inD are 25 Hz)."""
    base = _load(shared_data / "commonroad" / LANKER)
    root = _root(shared_data, LANKER)
    root.set("timeStepSize", "0.2")
    for o in root.iter("dynamicObstacle"):
        traj = o.find("trajectory")
        for st in list(traj):
            t = int(st.findtext("time/exact"))
            if t % 2:
                traj.remove(st)
            else:
                st.find("time/exact").text = str(t // 2)
    for c in root.iter("cycle"):
        for d in [*c.iter("duration"), *c.iter("timeOffset")]:
            assert int(d.text) % 2 == 0
            d.text = str(int(d.text) // 2)
    s = _load(_write(root, tmp_path / LANKER))
    assert "resampled" in s.tags and s.num_steps == base.num_steps - (base.num_steps + 1) % 2
    xy = s.agents[0, :, :2] + s.world_origin
    xy0 = base.agents[0, : s.num_steps, :2] + base.world_origin
    np.testing.assert_allclose(xy[::2], xy0[::2], atol=1e-3)
    assert (s.map.light_states[:, ::2] == base.map.light_states[:, : s.num_steps : 2]).all()
