"""The real ScenarioNet samples rewritten in memory as other converters and versions write the same scene (lane
connectors as ``LANE_SURFACE_UNSTRUCTURE``, walkways, Argoverse 2's cut outlines, nuPlan's keys, older signal
layouts, other track shapes): each variant must import as the original does (skipped without ../shared)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon

from scenarios.import_options import ImportOptions
from scenarios.importers.common import Recording, recording_to_scenes
from scenarios.importers.repair import ImportNote, MapElementSkipped
from scenarios.importers.safe_pickle import safe_load
from scenarios.importers.scenarionet import scenarionet_recording
from scenarios.importers.scenarionet_kinds import MPH
from scenarios.scenario import VX, VY, Scenario

pytestmark = pytest.mark.data
NUSCENES = ("sd_nuscenes_v1.0-mini_scene-0553.pkl", "sd_nuscenes_v1.0-mini_scene-1100.pkl")
# MetaDrive's simplify_light_status (metadrive/type.py): the TRAFFIC_LIGHT_* names nuPlan's and MetaDrive's
# exports write, for the Waymo states in the sample.
SIMPLIFIED = {"LANE_STATE_STOP": "TRAFFIC_LIGHT_RED", "LANE_STATE_ARROW_STOP": "TRAFFIC_LIGHT_RED",
              "LANE_STATE_GO": "TRAFFIC_LIGHT_GREEN", "LANE_STATE_ARROW_GO": "TRAFFIC_LIGHT_GREEN",
              "LANE_STATE_CAUTION": "TRAFFIC_LIGHT_YELLOW", "LANE_STATE_ARROW_CAUTION": "TRAFFIC_LIGHT_YELLOW",
              "LANE_STATE_UNKNOWN": "TRAFFIC_LIGHT_UNKNOWN", None: "TRAFFIC_LIGHT_UNKNOWN"}


def _sample(shared_data, name: str) -> dict:
    return safe_load(shared_data / "scenarionet" / name)


def _waymo(shared_data) -> dict:
    return _sample(shared_data, next((shared_data / "scenarionet").glob("sd_waymo*.pkl")).name)


def _import(d: dict) -> tuple[Scenario, list[warnings.WarningMessage]]:
    """The whole-scene import of a scenario dict, and the importer's notes other than track repairs."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = recording_to_scenes(scenarionet_recording(d), ImportOptions())[0]
    return scene, [w for w in caught if issubclass(w.category, MapElementSkipped)]


def _record(d: dict) -> Recording:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scenarionet_recording(d)


def _area(scene: Scenario) -> shapely.Geometry:
    return shapely.union_all([Polygon(p).buffer(0) for p in scene.map.drivable])


def _same_map(a: Scenario, b: Scenario) -> None:
    """Same lanes, intersection flags, lane polygons, road edges and drivable area (shapely, independent of tiling)."""
    assert len(a.map.lanes) == len(b.map.lanes)
    np.testing.assert_array_equal(a.map.lanes.points, b.map.lanes.points)
    np.testing.assert_array_equal(a.map.lane_intersection, b.map.lane_intersection)
    np.testing.assert_array_equal(a.map.lane_polygons.points, b.map.lane_polygons.points)
    assert len(a.map.road_edges) == len(b.map.road_edges)
    area_a, area_b = _area(a), _area(b)
    assert area_a.symmetric_difference(area_b).area <= 1e-6 * area_a.area


def _relabel_connectors(d: dict, dataset: str) -> dict:
    """The older nuScenes conversion's lane connectors (street lanes without a polygon) as ScenarioNet's newer
    nuScenes converter writes them (``LANE_SURFACE_UNSTRUCTURE``, entry/exit lanes), or as nuPlan's (m/s limits)."""
    v = copy.deepcopy(d)
    v["metadata"]["dataset"] = dataset
    for mf in v["map_features"].values():
        if mf["type"] == "LANE_SURFACE_STREET" and "polygon" not in mf:
            mf["type"] = "LANE_SURFACE_UNSTRUCTURE"
            mf |= {"entry_lanes": [], "exit_lanes": []}
            if dataset == "nuplan":
                mf["speed_limit_mps"] = mf.pop("speed_limit_kmh") / 3.6
    return v


@pytest.mark.parametrize("name", NUSCENES)
@pytest.mark.parametrize("dataset", ["nuscenes", "nuplan"])
def test_lane_connectors_as_unstructure_lanes_import_alike(shared_data, name, dataset):
    d = _sample(shared_data, name)
    base, _ = _import(d)
    scene, notes = _import(_relabel_connectors(d, dataset))
    assert (base.map.lane_intersection == 1).sum() > 10 and not notes
    _same_map(scene, base)
    bike = copy.deepcopy(d)
    first = next(mf for mf in bike["map_features"].values() if mf["type"] == "LANE_SURFACE_STREET")
    first["type"] = "LANE_BIKE_LANE"
    assert len(_record(bike).lanes) == len(_record(d).lanes) - 1  # never a driving lane


@pytest.mark.parametrize("name", NUSCENES)
def test_walkway_polygons_change_nothing(shared_data, name):
    """Walkways (``ROAD_EDGE_SIDEWALK`` polygons, as ScenarioNet's newer nuScenes and its nuPlan converter write
    them) around and across the road: no road edge, no drivable area, no note."""
    d = _sample(shared_data, name)
    base, _ = _import(d)
    v = copy.deepcopy(d)
    rings = [np.asarray(mf["polyline"]) for fid, mf in d["map_features"].items() if fid.startswith("boundary_")]
    ego = np.asarray(d["tracks"]["ego"]["state"]["position"])[:, :2]
    walks = [np.asarray(Polygon(r).buffer(3.0).exterior.coords) for r in rings[:5]]
    walks.append(np.asarray(shapely.LineString(ego).buffer(2.0).exterior.coords))  # under the ego's path
    for k, w in enumerate(walks):
        v["map_features"][f"walkway_{k}"] = {"type": "ROAD_EDGE_SIDEWALK", "polygon": w}
    scene, notes = _import(v)
    assert not notes and scene.map.unknown == base.map.unknown
    _same_map(scene, base)


def _cut_outlines(d: dict, drop_first_of: int | None = None) -> dict:
    """The ``boundary_*`` rings cut into consecutive pieces of 20 points, as ScenarioNet's Argoverse 2 converter
    writes its drivable-area outline; ``drop_first_of``: leave out that ring's first piece."""
    v = copy.deepcopy(d)
    feats = {}
    for fid, mf in v["map_features"].items():
        if not fid.startswith("boundary_"):
            feats[fid] = mf
            continue
        k, pts = int(fid.split("_")[1]), np.asarray(mf["polyline"])
        for i in range(20 if k == drop_first_of else 0, len(pts), 20):
            feats[f"boundary_{k}_{i}"] = {"type": mf["type"], "polyline": pts[i:i + 20]}
    v["map_features"] = feats
    return v


@pytest.mark.parametrize("name", NUSCENES)
def test_outlines_cut_into_pieces_import_alike(shared_data, name):
    d = _sample(shared_data, name)
    base, _ = _import(d)
    assert max(len(mf["polyline"]) for fid, mf in d["map_features"].items() if fid.startswith("boundary_")) > 40
    scene, notes = _import(_cut_outlines(d))
    assert not notes
    _same_map(scene, base)
    broken, notes = _import(_cut_outlines(d, drop_first_of=0))  # a piece missing: no outline, said once
    assert len(notes) == 1 and "do not close into rings" in str(notes[0].message)
    assert "road_edges" in broken.map.unknown and len(broken.map.road_edges) == 0


@pytest.mark.parametrize("name", NUSCENES)
def test_argoverse_constants_are_unknown(shared_data, name):
    """ScenarioNet's Argoverse 2 converter writes 85 mph, ``interpolating`` True and zero widths on every lane:
    converter constants, so limits and intersections are unknown and the drivable area is the original's."""
    d = _sample(shared_data, name)
    base, _ = _import(d)
    v = copy.deepcopy(d)
    v["metadata"]["dataset"] = "av2"
    for mf in v["map_features"].values():
        if mf["type"] == "LANE_SURFACE_STREET":
            mf |= {"speed_limit_mph": 85.0, "speed_limit_kmh": 136.79, "interpolating": True,
                   "width": np.zeros((len(mf["polyline"]), 2))}
    scene, _ = _import(v)
    assert {"speed_limits", "intersections"} <= set(scene.map.unknown)
    assert np.isnan(scene.map.lane_speed_limits).all() and (scene.map.lane_intersection == -1).all()
    assert _area(scene).symmetric_difference(_area(base)).area <= 1e-6 * _area(base).area


@pytest.mark.parametrize("name", NUSCENES)
def test_dataset_read_from_the_version(shared_data, name):
    """A nuScenes dict without ``metadata.dataset`` (its ``version`` says nuscenes) imports as with it."""
    d = _sample(shared_data, name)
    base, _ = _import(d)
    v = copy.deepcopy(d)
    del v["metadata"]["dataset"]
    scene, _ = _import(v)
    _same_map(scene, base)
    assert scene.map.unknown == base.map.unknown and scene.source == base.source


def _lights(scene: Scenario) -> tuple:
    m = scene.map
    return m.light_lanes.tolist(), m.light_stop_points.round(6).tolist(), m.light_states.tolist()


def test_waymo_signals_in_other_layouts(shared_data):
    """Waymo's lights as nuPlan/MetaDrive write theirs (``TRAFFIC_LIGHT_*``, ``lane`` a str, 2-value stop point) and
    in MetaDrive's older per-step layout; stop-sign lanes as an array: the same signals."""
    d = _waymo(shared_data)
    base, _ = _import(d)
    assert base.map.num_lights > 0
    simple = copy.deepcopy(d)
    for sig in simple["dynamic_map_states"].values():
        sig["state"]["object_state"] = [SIMPLIFIED[s] for s in sig["state"]["object_state"]]
        sig |= {"lane": str(sig["lane"]), "stop_point": list(np.asarray(sig["stop_point"])[:2])}
    assert _lights(_import(simple)[0]) == _lights(base)
    old = copy.deepcopy(d)
    for sig in old["dynamic_map_states"].values():
        n = len(sig["state"]["object_state"])
        sig["state"] |= {"stop_point": np.tile(sig.pop("stop_point"), (n, 1)), "lane": np.full(n, sig.pop("lane"))}
        sig["state"]["stop_point"][:3] = 0.0  # not yet in effect: lane 0
        sig["state"]["lane"][:3] = 0
    assert _lights(_import(old)[0]) == _lights(base)
    arr = copy.deepcopy(d)
    for mf in arr["map_features"].values():
        if mf["type"] == "STOP_SIGN":
            mf["lane"] = np.asarray(mf["lane"] + mf["lane"], dtype=np.int64)
    assert _record(arr).stop_sign_lanes.tolist() == _record(d).stop_sign_lanes.tolist() * 2


def test_waymo_lines_of_unknown_type_and_nuplan_limits(shared_data):
    """``UNKNOWN`` (Waymo's converter writes it for a painted line, or an edge, of unknown type) is a road line:
    the scene's painted lines relabelled so leave the drivable area as it was (as edges they would stop the kerb
    fill at the paint); limits in m/s (nuPlan's key) read as Waymo's mph."""
    d = _waymo(shared_data)
    base, _ = _import(d)
    v = copy.deepcopy(d)
    for mf in v["map_features"].values():
        if mf["type"].startswith("ROAD_LINE_"):
            mf["type"] = "UNKNOWN"
        if "speed_limit_mph" in mf:
            mf["speed_limit_mps"] = mf.pop("speed_limit_mph") * MPH
            del mf["speed_limit_kmh"]
    scene, notes = _import(v)
    _same_map(scene, base)
    assert len(scene.map.road_lines) == len(base.map.road_lines) > 0
    np.testing.assert_allclose(scene.map.lane_speed_limits, base.map.lane_speed_limits)
    assert scene.map.unknown == base.map.unknown


def test_waymo_tracks_in_other_shapes(shared_data):
    """Sizes and headings ``[T, 1]`` (nuScenes, nuPlan) import alike; without velocities (derived from positions,
    then repaired as any) the velocities stay close to the recorded ones."""
    d = _waymo(shared_data)
    base, _ = _import(d)
    v = copy.deepcopy(d)
    for tr in v["tracks"].values():
        for key in ("heading", "length", "width"):
            tr["state"][key] = np.asarray(tr["state"][key]).reshape(-1, 1)
    scene, _ = _import(v)
    np.testing.assert_array_equal(scene.agents, base.agents)
    for tr in v["tracks"].values():
        del tr["state"]["velocity"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = recording_to_scenes(scenarionet_recording(v), ImportOptions())[0]
    assert any("without velocity" in str(w.message) for w in caught if issubclass(w.category, ImportNote))
    np.testing.assert_array_equal(scene.agents[..., :3], base.agents[..., :3])
    err = np.hypot(*(scene.agents[..., [VX, VY]] - base.agents[..., [VX, VY]])[scene.valid].T)
    assert np.median(err) < 0.1 and np.percentile(err, 95) < 0.5
