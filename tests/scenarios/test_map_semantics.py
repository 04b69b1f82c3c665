"""The map's semantics through the importers: analytic checks of the pieces, and the real samples against
the source files read directly (skipped without ../shared)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Polygon

from scenarios.import_options import ImportOptions
from scenarios.importers.drivable import width_polygon
from scenarios.importers.safe_pickle import safe_load
from scenarios.importers.scenarionet import load_scenarionet
from scenarios.importers.scenarionet_kinds import MPH
from scenarios.importers.semantics import hold_states, light_state
from scenarios.io import load_scenarios, save_scenarios
from scenarios.procedural import FAMILY_NAMES, generate
from scenarios.procedural.scene import PROCEDURAL_UNKNOWN
from scenarios.scenario import LightState


def _load(path, options=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_scenarionet(path, options)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.5, 3.0), st.floats(0.5, 3.0), st.floats(-np.pi, np.pi), st.integers(2, 20))
def test_width_polygon_of_a_straight_lane(left, right, yaw, n):
    """A straight centreline with constant left/right widths: the polygon is the rectangle they span."""
    u = np.array([np.cos(yaw), np.sin(yaw)])
    centre = np.outer(np.linspace(0.0, 30.0, n), u)
    poly = Polygon(width_polygon(centre, np.tile([left, right], (n, 1))))
    assert poly.is_valid and poly.exterior.is_ccw
    assert poly.area == pytest.approx(30.0 * (left + right), rel=1e-9)
    local = (np.asarray(poly.exterior.coords) @ np.array([u, [-u[1], u[0]]]).T)
    assert local[:, 1].max() == pytest.approx(left) and local[:, 1].min() == pytest.approx(-right)


def test_width_polygon_needs_positive_widths():
    centre = np.array([[0.0, 0.0], [10.0, 0.0]])
    assert width_polygon(centre, np.array([[1.0, 0.0], [1.0, 1.0]])).shape == (0, 2)
    assert width_polygon(centre, np.zeros((0, 2))).shape == (0, 2)


def test_light_state_names_and_codes():
    assert light_state("LANE_STATE_ARROW_STOP") == LightState.STOP
    assert light_state("LANE_STATE_GO") == LightState.GO
    assert light_state("caution") == LightState.CAUTION
    assert light_state(7) == LightState.FLASHING_STOP  # Waymo enum value of LANE_STATE_FLASHING_STOP
    assert light_state(None) == LightState.UNKNOWN and light_state("purple") == LightState.UNKNOWN


def test_hold_states_keeps_the_latest_sample():
    t_src = np.array([0.0, 0.25, 0.5])
    states = np.array([[LightState.GO, LightState.CAUTION, LightState.STOP]], dtype=np.int8)
    held = hold_states(t_src, states, np.array([-0.1, 0.0, 0.1, 0.2, 0.3, 0.6]))
    assert held.tolist() == [[0, 3, 3, 3, 2, 1]]


# --- real samples ----------------------------------------------------------------------------------------------------


@pytest.mark.data
def test_waymo_semantics_match_the_pickle(shared_data):
    path = next((shared_data / "scenarionet").glob("sd_waymo*.pkl"))
    raw = safe_load(path)
    scene = _load(path)[0]
    m = scene.map
    assert m.unknown == ()
    origin = np.asarray(scene.world_origin)
    feats = raw["map_features"]
    # every kept lane's limit is its source's speed_limit_mph in m/s: find each lane by its centreline
    def key(line):
        return tuple(np.round(np.concatenate([line[0], line[-1]]), 3)) + (len(line),)

    by_line = {key(np.asarray(f["polyline"])[:, :2] - origin): f for f in feats.values()
               if str(f["type"]).startswith("LANE_") and len(f["polyline"]) >= 2}
    for lane, limit, inter in zip(m.lanes, m.lane_speed_limits, m.lane_intersection):
        src = by_line[key(lane)]
        assert limit == pytest.approx(src["speed_limit_mph"] * MPH)
        assert inter == int(bool(src["interpolating"]))
    # lights: per-step states and stop points as recorded (the scene keeps all 199 steps)
    dms = raw["dynamic_map_states"]
    assert m.light_states.shape == (m.num_lights, scene.num_steps) and m.num_lights > 0
    def states_of(sig):
        names = [str(v or "") for v in sig["state"]["object_state"]]  # None: no state recorded at that step
        return [LightState.STOP if "STOP" in v else LightState.GO if "GO" in v else LightState.CAUTION
                if "CAUTION" in v else LightState.UNKNOWN for v in names]

    for g in range(m.num_lights):  # several signals share a stop point (one per lane): match point and lane
        lane = m.light_lanes[g]
        assert lane >= 0
        match = [sig for sig in dms.values()
                 if np.allclose(np.asarray(sig["stop_point"])[:2] - origin, m.light_stop_points[g], atol=1e-6)
                 and key(np.asarray(feats[str(sig["lane"])]["polyline"])[:, :2] - origin) == key(m.lanes[lane])]
        assert len(match) == 1
        assert m.light_states[g].tolist() == states_of(match[0])
    # graph rows point at lanes whose ends meet (successor starts where the lane ends)
    gaps = [np.hypot(*(m.lanes[a][-1] - m.lanes[b][0])) for a, b in m.lane_successors]
    assert len(gaps) > 10 and np.median(gaps) < 0.5


@pytest.mark.data
def test_windows_slice_the_light_states(shared_data):
    path = next((shared_data / "scenarionet").glob("sd_waymo*.pkl"))
    whole = _load(path)[0].map
    windows = _load(path, ImportOptions(window=91, stride=91))
    assert [w.num_steps for w in windows] == [91, 91]
    for k, w in enumerate(windows):
        start = int(w.id.split("@")[1])
        for g in range(w.map.num_lights):
            j = int(np.argmin(np.hypot(*(whole.light_stop_points - w.map.light_stop_points[g]
                                          - np.subtract(w.world_origin, windows[0].world_origin)).T)))
            assert w.map.light_states[g].tolist() == whole.light_states[j, start:start + 91].tolist(), k


@pytest.mark.data
def test_nuscenes_semantics_and_unknowns(shared_data):
    for path in sorted((shared_data / "scenarionet").glob("sd_nuscenes*.pkl")):
        m = _load(path)[0].map
        assert set(m.unknown) == {"speed_limits", "lane_graph", "stop_signs", "traffic_lights"}
        assert m.num_lights == 0 and np.isnan(m.lane_speed_limits).all()
        own = np.array([len(p) > 0 for p in m.lane_polygons])
        assert own.any() and (~own).any()
        assert ((m.lane_intersection == 1) == ~own).all()  # lane connectors: no polygon of their own
        assert len(m.road_edges) > 0 and len(m.mapped_area) == 1


@pytest.mark.data
def test_semantics_survive_the_project_format(shared_data, tmp_path):
    scenes = [s for p in sorted((shared_data / "scenarionet").glob("*.pkl")) for s in _load(p)]
    back = load_scenarios(save_scenarios(tmp_path / "s.npz", scenes))
    for a, b in zip(scenes, back):
        assert a.map.unknown == b.map.unknown
        for name in ("lane_speed_limits", "lane_intersection", "lane_successors", "lane_neighbours", "light_lanes",
                     "light_states", "light_stop_points", "stop_signs"):
            assert np.array_equal(getattr(a.map, name), getattr(b.map, name), equal_nan=name == "lane_speed_limits")
        assert np.array_equal(a.map.lane_polygons.points, b.map.lane_polygons.points)
        assert np.array_equal(a.map.mapped_area.points, b.map.mapped_area.points)


@pytest.mark.data
def test_red_light_case_holds_its_signals_at_stop(cases):
    """c10: the 6 lights on the ego's approach are held at LANE_STATE_STOP for the whole scene."""
    m = _load(cases / "c10_red_light.pkl")[0].map
    held = (m.light_states == LightState.STOP).all(axis=1)
    assert held.sum() >= 6


@pytest.mark.data
def test_speeding_case_lane_limit(cases):
    """c12: the lane under the ego's start has speed_limit_mph 40 = 17.88 m/s."""
    scene = _load(cases / "c12_speeding.pkl")[0]
    m, p = scene.map, scene.agents[0, scene.init_step, :2].astype(float)
    dist = [np.min(np.hypot(*(lane - p).T)) for lane in m.lanes]
    assert m.lane_speed_limits[int(np.argmin(dist))] == pytest.approx(40 * 0.44704)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_procedural_world_knows_its_map(family):
    """The generator knows its world: lane polygons (centreline +- width / 2) contain their centrelines, no lights
    or stop signs (known-empty), the whole plane is mapped; what it does not model is unknown."""
    m = generate(family, 3).map
    assert m.unknown == PROCEDURAL_UNKNOWN
    assert m.knows("traffic_lights") and m.num_lights == 0 and len(m.stop_signs) == 0
    assert len(m.mapped_area) == 0 and m.knows("mapped_area")
    for lane, poly, w in zip(m.lanes, m.lane_polygons, m.lane_widths):
        assert len(poly) >= 3
        shape = Polygon(poly).buffer(1e-6)
        assert shape.contains(LineString(lane)) and shape.area == pytest.approx(
            LineString(lane).length * w, rel=0.05)


MOVES = {"left": {"left"}, "straight": {"straight"}, "right": {"right"}, "leftStraight": {"left", "straight"},
         "straightRight": {"straight", "right"}, "leftRight": {"left", "right"}, "all": {"left", "straight", "right"}}


def _cr_oracle(path: Path) -> tuple[dict, dict, object]:
    """From the XML itself (ElementTree): each lanelet's referenced lights, MAX_SPEED values and successors with
    the movement an intersection incoming names each for; each light's movements; and a light's state per step
    from its cycle (CommonRoad 2020a: the cycle starts at timeOffset and repeats)."""
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    colour = {"red": LightState.STOP, "redYellow": LightState.STOP, "yellow": LightState.CAUTION,
              "green": LightState.GO, "inactive": LightState.UNKNOWN}
    limits = {s.get("id"): [float(e.findtext("additionalValue")) for e in s.iter("trafficSignElement")
                            if e.findtext("trafficSignID") == "R2-1"] for s in root.iter("trafficSign")}
    cycles, moves = {}, {}
    for tl in root.iter("trafficLight"):
        elems = [(int(c.findtext("duration")), colour[c.findtext("color")]) for c in tl.iter("cycleElement")]
        cycles[tl.get("id")] = (int(tl.findtext("cycle/timeOffset") or 0), elems)
        moves[tl.get("id")] = MOVES[tl.findtext("direction") or "all"]
    named = {}
    for inc in root.iter("incoming"):
        kinds = {int(e.get("ref")): m for tag, m in (("successorsLeft", "left"), ("successorsStraight", "straight"),
                                                      ("successorsRight", "right")) for e in inc.findall(tag)}
        for e in inc.findall("incomingLanelet"):
            named.setdefault(int(e.get("ref")), {}).update(kinds)
    lanelets = {}
    for ll in root.findall("lanelet"):
        lid = int(ll.get("id"))
        refs = [r.get("ref") for r in ll.findall("trafficLightRef")]
        vmax = [v for r in ll.findall("trafficSignRef") for v in limits.get(r.get("ref"), [])]
        succ = [(int(e.get("ref")), named.get(lid, {}).get(int(e.get("ref")))) for e in ll.findall("successor")]
        lanelets[lid] = (sorted(refs, key=int), vmax, succ)

    def state(light: str, t: int) -> int:
        offset, elems = cycles[light]
        m = (t - offset) % sum(d for d, _ in elems)
        for d, c in elems:
            if m < d:
                return int(c)
            m -= d
        raise AssertionError

    return lanelets, moves, state


@pytest.mark.data
def test_commonroad_lights_and_limits_match_the_xml(shared_data):
    """A lanelet whose lights all govern every movement: one signal per light on the lanelet. Otherwise one signal
    per successor some light governs (the movement its intersection incoming names), showing the most specific
    governing light's state where that one shows any (a dark right arrow hands over to the general light)."""
    import warnings as _w

    from commonroad.common.file_reader import CommonRoadFileReader

    from scenarios.importers.commonroad_map import lanelet_semantics

    path = shared_data / "commonroad" / "USA_Lanker-2_17_T-1.xml"
    with _w.catch_warnings():
        _w.simplefilter("ignore")
        net = CommonRoadFileReader(str(path)).open()[0].lanelet_network
    ids = [ll.lanelet_id for ll in net.lanelets]
    sem = lanelet_semantics(net, ids, 120)
    lanelets, moves, state = _cr_oracle(path)
    want = []
    for i, lid in enumerate(ids):
        refs, _, succ = lanelets[lid]
        if refs and all(moves[r] == MOVES["all"] for r in refs):
            want += [(i, tuple(state(r, t) for t in range(120))) for r in refs]
            continue
        for s, move in succ if refs else ():
            assert move is not None  # every successor of a lanelet with arrows is named by its incoming here
            governing = sorted((r for r in refs if move in moves[r]), key=lambda r: -len(moves[r]))
            if governing:
                shown = [[state(r, t) for r in governing if state(r, t) != LightState.UNKNOWN] for t in range(120)]
                want.append((ids.index(s), tuple(v[-1] if v else int(LightState.UNKNOWN) for v in shown)))
    got = [(int(lane), tuple(st.tolist())) for lane, st in zip(sem["light_lanes"], sem["light_states"])]
    assert len(got) > 0 and sorted(got) == sorted(want)
    assert any(len({frozenset(moves[r]) for r in lanelets[lid][0]}) > 1 for lid in ids)  # the sample has arrows
    for i, lid in enumerate(ids):
        vmax = lanelets[lid][1]
        assert (np.isnan(sem["lane_speed_limits"][i]) and not vmax) or sem["lane_speed_limits"][i] == min(vmax)
    assert sem["unknown"] == ()


@pytest.mark.data
def test_waymo_json_tl_states_in_nocturnes_layout(tmp_path, shared_data):
    """A filled ``tl_states`` (Nocturne's layout) becomes lights on the named lane, state per time index."""
    import json

    from scenarios.importers.waymo_json import load_waymo_json

    d = json.loads((shared_data / "waymo_json" / "womd_test.json").read_text())
    assert not d["tl_states"]  # as Nocturne writes it (an empty dict): no lights -> unknown
    assert "traffic_lights" in load_waymo_json(shared_data / "waymo_json" / "womd_test.json")[0].map.unknown
    ego = d["objects"][d["metadata"]["sdc_track_index"]]["position"][10]
    lanes = [r for r in d["roads"] if r["type"] == "lane" and r.get("map_element_id") != 3 and len(r["geometry"]) > 1]
    lane = min(lanes, key=lambda r: min(np.hypot(p["x"] - ego["x"], p["y"] - ego["y"]) for p in r["geometry"]))
    end = lane["geometry"][-1]
    names = ["stop", "arrow_go", "caution"]
    d["tl_states"] = {str(lane["id"]): {"state": names, "x": [end["x"]] * 3, "y": [end["y"]] * 3,
                                        "time_index": [0, 11, 40]}}
    (tmp_path / "s.json").write_text(json.dumps(d))
    scene = load_waymo_json(tmp_path / "s.json")[0]
    m = scene.map
    assert m.knows("traffic_lights") and m.num_lights == 1
    want = np.zeros(scene.num_steps, np.int8)
    want[[0, 11, 40]] = [LightState.STOP, LightState.GO, LightState.CAUTION]
    assert m.light_states[0].tolist() == want.tolist()
    assert np.allclose(m.light_stop_points[0] + scene.world_origin, [end["x"], end["y"]])
    lane_xy = np.array([[p["x"], p["y"]] for p in lane["geometry"]]) - scene.world_origin
    assert np.allclose(m.lanes[m.light_lanes[0]][-1], lane_xy[-1])
