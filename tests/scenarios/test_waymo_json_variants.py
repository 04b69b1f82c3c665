"""Waymo JSON scenes as the other writers of the layout spell them, built at test time from the real samples.

Each variant is one of the real scenes rewritten the way Nocturne, GPUDrive's first converter or ScenarioMax write
it (headings in degrees, no ``metadata``, ``is_av``, other type spellings, points as lists, traffic lights by step)
and must import as the original does, or say in one note what it left out.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Polygon
from shapely.ops import unary_union

from scenarios.importers.repair import EgoChosen, MapElementSkipped
from scenarios.importers.waymo_json import load_waymo_json
from scenarios.scenario import LightState, Scenario

pytestmark = pytest.mark.data
SAMPLES = ("womd_test.json", "tfrecord-00002-of-01000_407.json")


def _scene(shared_data: Path, name: str) -> dict:
    return json.loads((shared_data / "waymo_json" / name).read_text())


def _load(d: dict, path: Path) -> tuple[Scenario, list]:
    path.write_text(json.dumps(d))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (s,) = load_waymo_json(path)
    return s, [w.message for w in caught]


def _area(s: Scenario) -> float:
    return unary_union([Polygon(p).buffer(0) for p in s.map.drivable]).area


def assert_same_scene(a: Scenario, b: Scenario) -> None:
    """Same agents (headings to float32 rounding after a trip through degrees), map and drivable area."""
    assert a.valid.tolist() == b.valid.tolist() and a.agent_type.tolist() == b.agent_type.tolist()
    np.testing.assert_allclose(a.agents[..., [0, 1, 3, 4, 5, 6]], b.agents[..., [0, 1, 3, 4, 5, 6]], atol=1e-4)
    dyaw = np.angle(np.exp(1j * (a.agents[..., 2].astype(np.float64) - b.agents[..., 2])))
    assert np.abs(dyaw).max() < 1e-4
    assert a.world_origin == b.world_origin
    for name in ("lanes", "road_edges", "road_lines", "crosswalks"):
        np.testing.assert_allclose(getattr(a.map, name).points, getattr(b.map, name).points, atol=1e-9)
    assert _area(a) == pytest.approx(_area(b), rel=1e-9)


@pytest.mark.parametrize("name", SAMPLES)
def test_nocturne_layout_imports_as_the_gpudrive_scene(shared_data, tmp_path, name):
    """Nocturne's converter writes headings in degrees (``math.degrees``, unwrapped) and no ``metadata``; its
    reader takes the ego from ``is_av``. The same scene in that layout is the same scenario."""
    d = _scene(shared_data, name)
    base, _ = _load(d, tmp_path / f"{d['scenario_id']}.json")
    noc = copy.deepcopy(d)
    sdc = noc.pop("metadata")["sdc_track_index"]
    rng = np.random.default_rng(0)
    for i, o in enumerate(noc["objects"]):
        o.pop("id")
        o["is_av"] = i == sdc
        turns = rng.integers(-1, 2, len(o["heading"]))  # unwrapped, as Nocturne's -310.4 degrees
        o["heading"] = [float(np.degrees(h) + 360 * k) if v else -10000.0
                        for h, v, k in zip(o["heading"], o["valid"], turns)]
    del noc["scenario_id"]
    (tmp_path / "nocturne").mkdir()
    other, notes = _load(noc, tmp_path / "nocturne" / f"{d['scenario_id']}.json")  # the id: the file's name
    assert other.id == base.id and not [n for n in notes if isinstance(n, EgoChosen)]
    assert_same_scene(other, base)


def test_without_any_ego_the_longest_recorded_farthest_vehicle_is_chosen_and_named(shared_data, tmp_path):
    d = _scene(shared_data, "womd_test.json")
    del d["metadata"]
    s, notes = _load(d, tmp_path / "s.json")
    objs = d["objects"]
    full = [i for i, o in enumerate(objs) if o["type"] == "vehicle" and all(o["valid"])]
    path = {i: np.array([(p["x"], p["y"]) for p in objs[i]["position"]]) for i in full}
    best = max(full, key=lambda i: np.hypot(*np.diff(path[i], axis=0).T).sum())
    np.testing.assert_allclose(s.ego_log[:, :2] + s.world_origin, path[best], atol=1e-3)
    chosen = [str(n) for n in notes if isinstance(n, EgoChosen)]
    assert len(chosen) == 1 and f"object {best} " in chosen[0] and f"ego={objs[best]['id']}" in s.tags


def _respelled(d: dict, how: str) -> dict:
    d = copy.deepcopy(d)
    for o in d["objects"]:
        if how == "object types":
            o["type"] = {"vehicle": "TYPE_VEHICLE", "pedestrian": "Pedestrian", "cyclist": "CYCLIST"}[o["type"]]
        elif how == "points as lists":
            o["position"] = [[p["x"], p["y"], p["z"]] for p in o["position"]]
            o["velocity"] = [[v["x"], v["y"]] for v in o["velocity"]]
        elif how == "sizes per step":
            o["length"], o["width"] = [o["length"]] * len(o["valid"]), [o["width"]] * len(o["valid"])
        elif how == "valid as numbers":
            o["valid"] = [int(v) for v in o["valid"]]
        elif how == "headings in degrees":  # GPUDrive's first converter: math.degrees, metadata kept here
            o["heading"] = [float(np.degrees(h)) if v else -10000.0 for h, v in zip(o["heading"], o["valid"])]
    for r in d["roads"]:
        if how == "road types":
            r["type"] = r["type"].upper() if r["map_element_id"] % 2 else "".join(
                w.capitalize() for w in r["type"].split("_"))  # ROAD_EDGE and RoadEdge
        elif how == "points as lists":
            r["geometry"] = [[p["x"], p["y"]] for p in r["geometry"]]
    return d


@pytest.mark.parametrize("how", ["object types", "road types", "points as lists", "sizes per step",
                                 "valid as numbers", "headings in degrees"])
def test_other_spellings_of_the_layout_import_the_same_scene(shared_data, tmp_path, how):
    d = _scene(shared_data, "tfrecord-00002-of-01000_407.json")
    d["objects"][3]["type"], d["objects"][5]["type"] = "pedestrian", "cyclist"  # every type spelled
    base, _ = _load(d, tmp_path / "base.json")
    other, _ = _load(_respelled(d, how), tmp_path / "other.json")
    assert_same_scene(other, base)


def test_a_road_element_of_an_unknown_type_is_left_out_with_a_note(shared_data, tmp_path):
    d = _scene(shared_data, "womd_test.json")
    base, _ = _load(d, tmp_path / "base.json")
    d["roads"].append({"geometry": d["roads"][0]["geometry"], "type": "parking_lot", "id": 99999})
    s, notes = _load(d, tmp_path / "s.json")
    skipped = [str(n) for n in notes if isinstance(n, MapElementSkipped)]
    assert len(skipped) == 1 and "'parking_lot' x1" in skipped[0]
    assert_same_scene(s, base)


def _lane_near_ego(d: dict) -> dict:
    ego = d["objects"][d["metadata"]["sdc_track_index"]]["position"][10]
    lanes = [r for r in d["roads"] if r["type"] == "lane" and r["map_element_id"] != 3 and len(r["geometry"]) > 1]
    return min(lanes, key=lambda r: min(np.hypot(p["x"] - ego["x"], p["y"] - ego["y"]) for p in r["geometry"]))


def test_traffic_lights_by_step_read_as_by_lane_and_a_bad_record_is_noted(shared_data, tmp_path):
    """GPUDrive/Nocturne collect the per-step lane states by lane; the same states listed by step (their per-step
    dicts, or Waymo's ``lane_states`` records) are the same lights. A record that cannot be read is left out with a
    note; the scene imports."""
    d = _scene(shared_data, "womd_test.json")
    lane, end = _lane_near_ego(d), _lane_near_ego(d)["geometry"][-1]
    names = ["stop"] * 30 + ["ARROW_GO"] * 30 + [6] * 20  # 80 of 91 steps recorded, a name in capitals, an enum
    steps = list(range(5, 85))
    by_lane = copy.deepcopy(d)
    by_lane["tl_states"] = {str(lane["id"]): {"state": names, "x": [end["x"]] * 80, "y": [end["y"]] * 80,
                                              "z": [0.0] * 80, "time_index": steps}}
    want = np.full(91, LightState.UNKNOWN, np.int8)
    want[5:35], want[35:85] = LightState.STOP, LightState.GO
    per_step = [{} for _ in range(91)]
    lane_states = [[] for _ in range(91)]
    for k, state in zip(steps, names):
        per_step[k][str(lane["id"])] = {"state": state, "x": end["x"], "y": end["y"]}
        lane_states[k].append({"lane": lane["id"], "state": state, "stop_point": {"x": end["x"], "y": end["y"]}})
    for tl in (by_lane["tl_states"], per_step, lane_states, [{"lane_states": s} for s in lane_states]):
        v = copy.deepcopy(d)
        v["tl_states"] = tl
        s, _ = _load(v, tmp_path / "s.json")
        m = s.map
        assert m.knows("traffic_lights") and m.num_lights == 1 and m.light_states[0].tolist() == want.tolist()
        assert np.allclose(m.light_stop_points[0] + s.world_origin, [end["x"], end["y"]])
    by_lane["tl_states"]["1"] = {"state": "stop", "x": 0.0, "y": 0.0}  # one state, not a list: unreadable
    s, notes = _load(by_lane, tmp_path / "s.json")
    assert s.map.num_lights == 1 and any("tl_states['1']" in str(n) for n in notes if isinstance(n, MapElementSkipped))


@pytest.mark.parametrize("kind", ["lane", "driveway"])
def test_a_map_point_beyond_any_frame_leaves_its_element_out(shared_data, tmp_path, kind):
    """A lane or driveway with one corrupt point (x = 1e30, or 200 km away) is left out with one note; the rest of the
    scene imports as before. Before, the drivable area's construction sampled it every metre: a ValueError
    traceback (1e30) or memory exhausted."""
    d = _scene(shared_data, "womd_test.json")
    base, _ = _load(d, tmp_path / "base.json")
    for far, word in ((1e30, "beyond"), (base.world_origin[0] + 2e5, "spans")):
        v = copy.deepcopy(d)
        ego = v["objects"][v["metadata"]["sdc_track_index"]]["position"][0]
        road = min((r for r in v["roads"] if r["type"] == kind),  # one in the scene's map (cropped to the ego's area)
                   key=lambda r: min(np.hypot(q["x"] - ego["x"], q["y"] - ego["y"]) for q in r["geometry"]))
        road["geometry"][len(road["geometry"]) // 2]["x"] = far
        s, notes = _load(v, tmp_path / "far.json")
        skipped = [str(n) for n in notes if isinstance(n, MapElementSkipped)]
        assert len(skipped) == 1 and word in skipped[0], skipped
        assert len(s.map.lanes) == len(base.map.lanes) - (kind == "lane")
        assert _area(s) <= _area(base) + 1e-6
