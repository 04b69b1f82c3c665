"""ScenarioNet importer on small hand-built scenario dicts: every map feature kind, track layout and signal layout
that ScenarioNet's converters write (waymo, nuscenes, nuplan, argoverse2, pg) imports, or is left out with a note."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon

from scenarios.import_options import ImportOptions
from scenarios.importers.common import Recording, recording_to_scenes
from scenarios.importers.repair import FieldFallback, ImportNote, MapElementSkipped
from scenarios.importers.scenarionet import scenarionet_recording
from scenarios.importers.scenarionet_features import join_outlines
from scenarios.importers.scenarionet_kinds import KMH, MPH
from scenarios.scenario import LENGTH, VX, VY, WIDTH, AgentType, LightState, ScenarioError

N_T = 60


def _line(x0: float, x1: float, y: float, n: int = 21) -> np.ndarray:
    return np.stack([np.linspace(x0, x1, n), np.full(n, y), np.zeros(n)], axis=1)


def _rect(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _track(kind: str = "VEHICLE", y: float = 0.0, speed: float = 10.0) -> dict:
    t = np.arange(N_T) * 0.1
    return {"type": kind, "state": {
        "position": np.stack([speed * t, np.full(N_T, y), np.zeros(N_T)], axis=1),
        "heading": np.zeros(N_T), "velocity": np.tile([speed, 0.0], (N_T, 1)), "valid": np.ones(N_T, bool),
        "length": np.full(N_T, 4.5), "width": np.full(N_T, 2.0)}}


def _sd(features: dict | None = None, dataset: str = "unit", dms: dict | None = None, **meta) -> dict:
    """A 6 s scene: the ego drives along y = 0 at 10 m/s over a street lane from x = -20 to 100."""
    street = {"type": "LANE_SURFACE_STREET", "polyline": _line(-20.0, 100.0, 0.0)}
    return {"id": "unit", "version": "test",
            "metadata": {"sdc_id": "ego", "dataset": dataset, "ts": np.arange(N_T) * 0.1, **meta},
            "tracks": {"ego": _track()}, "dynamic_map_states": dms or {},
            "map_features": {"street": street} if features is None else features}


def _record(d: dict) -> tuple[Recording, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = scenarionet_recording(d)
    return rec, [w for w in caught if issubclass(w.category, ImportNote)]


def _area(rec: Recording) -> shapely.Geometry:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scene = recording_to_scenes(rec, ImportOptions())[0]
    return shapely.union_all([Polygon(p).buffer(0) for p in scene.map.drivable])


# --- map feature kinds -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dataset", "polygon", "street_flag"),
                         [("nuscenes", False, 0), ("nuplan", True, 0), ("metadrive", True, -1)])
def test_lane_connectors_are_driving_lanes_through_intersections(dataset, polygon, street_flag):
    """``LANE_SURFACE_UNSTRUCTURE`` (nuScenes since 2023-09 without a polygon, nuPlan and PG with one) is a driving
    lane through an intersection; a bike lane is no driving lane."""
    feats = {"street": {"type": "LANE_SURFACE_STREET", "polyline": _line(-20.0, 60.0, 0.0),
                        "polygon": _rect(-20.0, 60.0, -1.75, 1.75)},
             "conn": {"type": "LANE_SURFACE_UNSTRUCTURE", "polyline": _line(60.0, 100.0, 0.0),
                      "entry_lanes": ["street"], "exit_lanes": []},
             "bike": {"type": "LANE_BIKE_LANE", "polyline": _line(-20.0, 100.0, 3.0)}}
    if polygon:
        feats["conn"]["polygon"] = _rect(60.0, 100.0, -1.75, 1.75)
    rec, notes = _record(_sd(feats, dataset))
    assert len(rec.lanes) == 2 and not notes
    assert rec.lane_intersection.tolist() == [street_flag, 1]
    assert rec.lane_successors.tolist() == [[0, 1]] and "intersections" not in rec.unknown
    assert rec.lane_has_polygon.tolist() == [True, polygon]


def test_sidewalk_polygon_is_neither_road_nor_kerb():
    """A walkway (``ROAD_EDGE_SIDEWALK``, a polygon) adds no road edge, no road and no note, even across the road."""
    plain = _sd()
    walks = copy.deepcopy(plain)
    walks["map_features"]["walk"] = {"type": "ROAD_EDGE_SIDEWALK", "polygon": _rect(-20.0, 100.0, 2.5, 5.0)}
    walks["map_features"]["cross"] = {"type": "ROAD_EDGE_SIDEWALK", "polygon": _rect(40.0, 44.0, -8.0, 8.0)}
    rec, notes = _record(walks)
    base, _ = _record(plain)
    assert not notes and len(rec.road_edges) == 0 and "road_edges" in rec.unknown
    assert _area(rec).symmetric_difference(_area(base)).area < 1e-6


def test_edge_and_line_kinds():
    """``UNKNOWN`` (Waymo: an edge or a painted line of unknown type) is a road line, never an edge; speed bumps and
    ``UNKNOWN_LINE`` are left out silently; a kind no converter writes is left out with a note naming it."""
    feats = _sd()["map_features"]
    feats |= {"kerb": {"type": "ROAD_EDGE_BOUNDARY", "polyline": _line(-20.0, 100.0, -3.0)},
              "edge?": {"type": "UNKNOWN", "polyline": _line(-20.0, 100.0, 3.0)},
              "paint": {"type": "ROAD_LINE_BROKEN_SINGLE_WHITE", "polyline": _line(-20.0, 100.0, 1.75)},
              "nopaint": {"type": "UNKNOWN_LINE", "polyline": _line(-20.0, 100.0, -1.75)},
              "bump": {"type": "SPEED_BUMP", "polygon": _rect(30.0, 31.0, -2.0, 2.0)},
              "drive": {"type": "DRIVEWAY", "polygon": _rect(50.0, 55.0, 3.0, 10.0)},
              "walk": {"type": "CROSSWALK", "polygon": _rect(70.0, 74.0, -3.0, 3.0)},
              "odd": {"type": "GUARDRAIL", "polygon": _rect(0.0, 1.0, 5.0, 6.0)}}
    rec, notes = _record(_sd(feats))
    assert len(rec.road_edges) == 1 and len(rec.road_lines) == 2 and len(rec.crosswalks) == 1
    assert len(rec.drivable_extra) == 1 and "road_edges" not in rec.unknown
    assert len(notes) == 1 and issubclass(notes[0].category, MapElementSkipped)
    assert "odd (GUARDRAIL)" in str(notes[0].message) and notes[0].message.count == 1


def _ring(cx: float, r: float, n: int) -> np.ndarray:
    a = np.linspace(0.0, 2 * np.pi, n + 1)
    return np.stack([cx + r * np.cos(a), r * np.sin(a)], axis=1)  # closed: first point repeated


def test_join_outlines_whole_cut_and_broken():
    """Whole rings (nuScenes, nuPlan) and rings cut into consecutive 20-point pieces (Argoverse 2) give the same
    rings; Argoverse 2's ids ``boundary_{ring}{start}`` collide (ring 1 at 20 = ring 12 at 0), and the piece that
    lands in another ring's place (or a lost piece) leaves a ring that cannot close: no outline at all."""
    rings = [_ring(0.0, 10.0, 45), _ring(40.0, 5.0, 12), _ring(80.0, 8.0, 60)]
    cut = [r[i:i + 20] for r in rings for i in range(0, len(r), 20)]
    assert [len(p) for p in cut] == [20, 20, 6, 13, 20, 20, 20, 1]
    for pieces in (cut, rings):
        joined = join_outlines(list(pieces))
        assert len(joined) == 3
        for got, want in zip(joined, rings):
            np.testing.assert_array_equal(got, want)
    assert join_outlines([cut[0], cut[3], cut[2]] + cut[4:]) is None  # ring 1's piece written over ring 0's second
    assert join_outlines(cut[:4] + cut[5:]) is None  # ring 2's first piece lost


@pytest.mark.parametrize("bad", ["empty", "nan"])
def test_an_outline_piece_without_ring_geometry_leaves_the_other_rings(bad):
    """A ``boundary_*`` ring with no points, or a non-finite one, is one element skipped with a note (as at 379617e);
    the other rings still outline the road (it cost the whole outline, or raised a GEOSException traceback)."""
    road = np.vstack([_rect(-40.0, 120.0, -8.0, 8.0), [[-40.0, -8.0]]])  # closed: first point repeated
    feats = {"street": {"type": "LANE_SURFACE_STREET", "polyline": _line(-20.0, 100.0, 0.0)},
             "boundary_0": {"type": "ROAD_LINE_SOLID_SINGLE_WHITE", "polyline": road}}
    base, _ = _record(_sd(feats))
    broken = copy.deepcopy(feats)
    ring = np.vstack([_rect(0.0, 10.0, 30.0, 40.0), [[0.0, 30.0]]])
    ring[1] = np.nan
    broken["boundary_1"] = {"type": "ROAD_LINE_SOLID_SINGLE_WHITE", "polyline": ring if bad == "nan" else []}
    rec, notes = _record(_sd(broken))
    assert len(rec.drivable_outlines) == len(base.drivable_outlines) == 1 and "road_edges" not in rec.unknown
    assert len(notes) == 1 and "boundary_1" in str(notes[0].message) and "close" not in str(notes[0].message)
    assert _area(rec).symmetric_difference(_area(base)).area < 1e-6


@pytest.mark.parametrize(("dataset", "keys", "limit"), [
    ("waymo", {"speed_limit_mph": 30.0, "speed_limit_kmh": 48.28}, 30.0 * MPH),
    ("waymo", {"speed_limit_mph": 0.0, "speed_limit_kmh": 0.0}, np.nan),
    ("metadrive", {"speed_limit_kmh": 50.0}, 50.0 * KMH),
    ("nuplan", {"speed_limit_mps": 13.4}, 13.4),
    ("nuplan", {"speed_limit_mps": None}, np.nan),
    ("nuscenes", {"speed_limit_kmh": 100}, None),
    ("av2", {"speed_limit_mph": 85.0, "speed_limit_kmh": 136.8, "interpolating": True}, None),
])
def test_speed_limits_by_source(dataset, keys, limit):
    """Each converter's limit key in m/s; the converters' constants (nuScenes 100 km/h on connectors, Argoverse 2
    85 mph and ``interpolating`` on every lane) are unknown, not limits."""
    d = _sd(dataset=dataset)
    d["map_features"]["street"] |= keys
    rec, _ = _record(d)
    if limit is None:
        assert "speed_limits" in rec.unknown and np.isnan(rec.lane_speed_limits).all()
    else:
        assert "speed_limits" not in rec.unknown
        np.testing.assert_allclose(rec.lane_speed_limits, [limit])
    if dataset == "av2":
        assert "intersections" in rec.unknown and rec.lane_intersection.tolist() == [-1]


def test_plain_id_neighbours_keep_the_adjacent_lane():
    """nuPlan and PG list every lane of the road on a side as plain ids (in any order): the neighbour is the nearest
    lane on that side; Waymo's adjacency dicts are taken as listed."""
    feats = {k: {"type": "LANE_SURFACE_STREET", "polyline": _line(-20.0, 100.0, y)}
             for k, y in (("mid", 0.0), ("left1", 3.5), ("left2", 7.0), ("right1", -3.5))}
    feats["mid"] |= {"left_neighbor": ["left2", "left1", "right1"], "right_neighbor": ["right1", "nowhere"]}
    feats["left2"] |= {"right_neighbor": [{"feature_id": "left1"}, {"feature_id": "mid"}]}
    rec, _ = _record(_sd(feats, "nuplan"))
    assert sorted(map(tuple, rec.lane_neighbours.tolist())) == [(0, 1, 1), (0, 3, -1), (2, 0, -1), (2, 1, -1)]


# --- tracks, ego, time ------------------------------------------------------------------------------------------------


def test_track_layouts_import_alike():
    """``length``/``width``/``heading`` as ``[T]`` or ``[T, 1]`` give the same states; a track without ``velocity``
    gets its positions' (10 m/s), one without ``length``/``width`` its type's default size, with one note."""
    d = _sd()
    d["tracks"]["ped"] = _track("PEDESTRIAN", y=6.0, speed=1.2)
    base, _ = _record(d)
    shaped = copy.deepcopy(d)
    for tr in shaped["tracks"].values():
        for key in ("heading", "length", "width"):
            tr["state"][key] = tr["state"][key].reshape(-1, 1)
    rec, notes = _record(shaped)
    np.testing.assert_array_equal(rec.states, base.states)
    assert not notes
    bare = copy.deepcopy(d)
    for tr in bare["tracks"].values():
        for key in ("velocity", "length", "width"):
            del tr["state"][key]
    rec, notes = _record(bare)
    np.testing.assert_allclose(rec.states[:, :, [VX, VY]], base.states[:, :, [VX, VY]], atol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scene = recording_to_scenes(rec, ImportOptions())[0]
    assert scene.agents[0, 0, [LENGTH, WIDTH]].tolist() == [4.5, 2.0]
    assert scene.agents[1, 0, [LENGTH, WIDTH]].tolist() == pytest.approx([0.6, 0.6])
    assert [w.category for w in notes] == [FieldFallback]
    assert "2 track(s) without velocity" in str(notes[0].message) and "2 track(s) without length" in str(
        notes[0].message)


def test_track_types():
    d = _sd()
    kinds = ("PEDESTRIAN", "CYCLIST", "TRAFFIC_CONE", "TRAFFIC_BARRIER", "TRAFFIC_OBJECT", "OTHER", "UNSET", None)
    for k, kind in enumerate(kinds):
        d["tracks"][f"t{k}"] = _track(kind, y=5.0 + 3 * k, speed=0.0)
    rec, _ = _record(d)
    assert rec.agent_type.tolist() == [AgentType.VEHICLE, AgentType.PEDESTRIAN, AgentType.CYCLIST] + [
        AgentType.OTHER] * 6


def test_ego_by_int_id_or_by_track_index():
    d = _sd()
    d["tracks"] = {7: _track(y=5.0), 51: _track()}
    d["metadata"]["sdc_id"] = 51
    assert _record(d)[0].ego == 1
    del d["metadata"]["sdc_id"]
    d["metadata"]["sdc_track_index"] = 1
    assert _record(d)[0].ego == 1
    del d["metadata"]["sdc_track_index"]
    with pytest.raises(ScenarioError, match="sdc_id"):
        _record(d)


@pytest.mark.parametrize(("meta", "note"), [
    ({"sample_rate": 0.1}, None),
    ({}, "no metadata.ts: 0.1 s per step (default)"),
    ({"ts": np.arange(N_T - 1) * 0.1, "sample_rate": 0.1}, "metadata.ts unusable (59 values for 60 steps)"),
    ({"timestep": np.arange(N_T) * 0.1}, "no metadata.ts"),
])
def test_timestamps_fall_back_with_a_note(meta, note):
    """``ts`` (MetaDrive's ``SD.TIMESTEP``) is the only timestamp key any converter writes; without a usable one,
    ``sample_rate`` gives the step, else 0.1 s, said in a note unless ``ts`` is simply absent beside a rate."""
    d = _sd()
    del d["metadata"]["ts"]
    d["metadata"] |= meta
    rec, notes = _record(d)
    np.testing.assert_allclose(rec.t, np.arange(N_T) * 0.1)
    if note is None:
        assert not notes
    else:
        assert [w.category for w in notes] == [FieldFallback] and note in str(notes[0].message)


def test_dataset_from_the_version_when_metadata_lacks_it():
    """Older nuScenes conversions: a lane without a polygon is a connector and 100 km/h a constant, also when
    ``metadata.dataset`` is missing (``version`` names the dataset)."""
    feats = {"lane": {"type": "LANE_SURFACE_STREET", "polyline": _line(-20.0, 60.0, 0.0),
                      "polygon": _rect(-20.0, 60.0, -1.75, 1.75)},
             "conn": {"type": "LANE_SURFACE_STREET", "polyline": _line(60.0, 100.0, 0.0), "speed_limit_kmh": 100}}
    d = _sd(feats)
    del d["metadata"]["dataset"]
    d["version"] = "nuscenesv1.0-mini"
    rec, _ = _record(d)
    assert rec.source == "scenarionet/nuscenes" and rec.lane_intersection.tolist() == [0, 1]
    assert "speed_limits" in rec.unknown


# --- signals ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lane", [["street", "other"], np.array(["street"]), "street", None])
def test_stop_sign_lane_layouts(lane):
    d = _sd()
    d["map_features"]["sign"] = {"type": "STOP_SIGN", "position": np.array([50.0, -2.0, 0.3]), "lane": lane}
    rec, notes = _record(d)
    want = [-1] if lane is None else [0] if np.ndim(lane) == 0 or len(lane) == 1 else [0, -1]
    assert rec.stop_sign_lanes.tolist() == want and not notes
    np.testing.assert_allclose(rec.stop_signs, [[50.0, -2.0]] * len(want))


def _light(states: list, **fields) -> dict:
    return {"type": "TRAFFIC_LIGHT", "state": {"object_state": states}, **fields}


@pytest.mark.parametrize("layout", ["waymo", "nuplan", "per_step"])
def test_traffic_light_layouts(layout):
    """Waymo (``lane`` an int, 3-value ``stop_point``, ``LANE_STATE_*``, None unrecorded), nuPlan (a str, 2 values,
    ``TRAFFIC_LIGHT_*``) and MetaDrive's older per-step layout give the same signal."""
    names = {"waymo": ("LANE_STATE_STOP", "LANE_STATE_GO", None),
             "nuplan": ("TRAFFIC_LIGHT_RED", "TRAFFIC_LIGHT_GREEN", "TRAFFIC_LIGHT_UNKNOWN"),
             "per_step": ("LANE_STATE_ARROW_STOP", "LANE_STATE_ARROW_GO", "LANE_STATE_UNKNOWN")}[layout]
    states = [names[0]] * 30 + [names[1]] * 20 + [names[2]] * 10
    feats = {"7": {"type": "LANE_SURFACE_STREET", "polyline": _line(-20.0, 100.0, 0.0)}}
    if layout == "waymo":
        sig = _light(states, lane=7, stop_point=np.array([80.0, 0.0, 1.5]))
    elif layout == "nuplan":
        sig = _light(states, lane="7", stop_point=[80.0, 0.0])
    else:
        sig = _light(states)
        sig["state"] |= {"stop_point": np.array([[0.0, 0.0]] * 5 + [[80.0, 0.0]] * 55),
                         "lane": np.array([0] * 5 + [7] * 55)}
    rec, notes = _record(_sd(feats, "waymo", {"7": sig}))
    assert not notes and rec.light_lanes.tolist() == [0]
    np.testing.assert_allclose(rec.light_stop_points, [[80.0, 0.0]])
    want = [LightState.STOP] * 30 + [LightState.GO] * 20 + [LightState.UNKNOWN] * 10
    assert rec.light_states.tolist() == [want]


@pytest.mark.parametrize("length", [30.0, 5.0])
def test_nuplan_signals_stop_at_the_start_of_their_connector(length):
    """nuPlan's converter writes a signal's ``stop_point`` 8 m along its lane connector (the connector's end when
    shorter), where MetaDrive draws the light: traffic stops at the connector's start (it read the red light
    as starting 8 m inside the intersection, or past the end of a short connector)."""
    along = min(8.0, length)
    feats = {"street": {"type": "LANE_SURFACE_STREET", "polyline": _line(-20.0, 20.0, 0.0)},
             "conn": {"type": "LANE_SURFACE_UNSTRUCTURE", "polyline": _line(20.0, 20.0 + length, 0.0),
                      "polygon": _rect(20.0, 20.0 + length, -2.0, 2.0)}}
    dms = {"conn": _light(["TRAFFIC_LIGHT_RED"] * N_T, lane="conn", stop_point=[20.0 + along, 0.0])}
    rec, notes = _record(_sd(feats, "nuplan", dms))
    assert not notes and rec.light_lanes.tolist() == [1]
    np.testing.assert_allclose(rec.light_stop_points, [[20.0, 0.0]])


def test_unplaceable_signals_are_left_out_with_a_note():
    dms = {"a": _light(["LANE_STATE_GO"] * N_T, lane=1), "b": _light(["LANE_STATE_GO"] * N_T, lane=1,
                                                                  stop_point=[np.nan, 0.0, 0.0])}
    d = _sd(dms=dms)
    d["map_features"]["sign"] = {"type": "STOP_SIGN", "lane": ["street"]}
    rec, notes = _record(d)
    assert len(rec.light_lanes) == 0 and len(rec.stop_signs) == 0 and "traffic_lights" in rec.unknown
    assert len(notes) == 1 and notes[0].message.count == 3
    assert "traffic light a" in str(notes[0].message) and "sign (STOP_SIGN)" in str(notes[0].message)
