"""python -m scenarios.check: the data report, on synthetic files and on the real samples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scenarios.check import check
from scenarios.formats import ImportOptions
from scenarios.io import save_scenarios
from scenarios.scenario import ScenarioError
from tests.scenarios.test_formats import _scene
from tests.scenarios.test_loading import _npz_with_a_nan_scene

REPO = Path(__file__).resolve().parents[2]
SHARED = (REPO / ".." / "shared").resolve()


def test_report_lists_imports_skips_and_log_replay_sanity(tmp_path):
    save_scenarios(tmp_path / "a.npz", [_scene("one"), _scene("two")])
    _npz_with_a_nan_scene(tmp_path / "b.npz")
    (tmp_path / "c.json").write_text("{broken")
    r = check(tmp_path, ImportOptions(), progress=False)
    assert sorted(s["id"] for s in r["scenes"]) == ["good", "one", "two"]
    assert {(Path(k["file"]).name, k["scene_id"]) for k in r["skipped"]} == {("b.npz", "nan-scene"), ("c.json", "")}
    for s in r["scenes"]:
        assert s["agents"] == 2 and s["steps"] == 20 and tuple(s["world_origin"]) == (0.0, 0.0)
        assert s["sanity"]["ade"] == pytest.approx(0.0, abs=1e-5) and s["sanity"]["collision_at_fault"] == 0.0
        assert s["sanity"]["route_completion"] == pytest.approx(1.0) and s["failures"] == []
    assert r["sources"]["test"]["scenes"] == 3 and r["sources"]["test"]["on_road_pct"] == 100.0
    assert "skipped" in r["text"] and "on-road%" in r["text"]


def test_cli_writes_json_and_exits_zero(tmp_path):
    save_scenarios(tmp_path / "a.npz", [_scene("one")])
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "scenarios.check", str(tmp_path / "a.npz"), "--json", str(out),
                           "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["scenes"][0]["id"] == "one"
    missing = subprocess.run([sys.executable, "-m", "scenarios.check", str(tmp_path / "nope")], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr


@pytest.mark.data
def test_recorded_humans_on_waymo_and_nuscenes_are_plausible():
    """Issue 10 targets on every real Waymo and nuScenes sample: |long. accel| <= 8 m/s^2 at every
    step, comfortable in >= 80 % of scenes, on-road in >= 97 %; NGSIM is reported, not bent."""
    folders = [SHARED / "data" / "scenarionet", SHARED / "data" / "waymo_json"]
    if not all(f.is_dir() for f in folders):
        pytest.skip(f"real samples not found under {SHARED / 'data'}")
    scenes = []
    for f in folders:
        scenes += check(f, ImportOptions(), progress=False)["scenes"]
    assert len(scenes) >= 5
    assert max(s["sanity"]["max_abs_accel"] for s in scenes) <= 8.0
    assert sum(s["sanity"]["comfortable"] for s in scenes) >= 0.8 * len(scenes)
    assert sum(1 - s["sanity"]["offroad"] for s in scenes) >= 0.97 * len(scenes)
    assert all(s["sanity"]["ade"] < 1e-3 and s["sanity"]["route_completion"] > 0.99 for s in scenes)


@pytest.mark.data
def test_report_lists_the_map_semantics_and_what_is_unknown():
    """Per scene: lights, limits, stop signs, lanes with polygons, and the semantics the source lacks."""
    from scenarios.formats import load_file

    folder = SHARED / "data" / "scenarionet"
    if not folder.is_dir():
        pytest.skip(f"real samples not found under {folder}")
    for path in (next(folder.glob("sd_waymo*.pkl")), next(folder.glob("sd_nuscenes*.pkl"))):
        r = check(path, ImportOptions(), progress=False)
        m = load_file(path)[0].map
        sem = r["scenes"][0]["semantics"]
        assert sem["traffic_lights"] == m.num_lights and sem["unknown"] == list(m.unknown)
        assert sem["lanes_with_polygon"] == sum(len(p) > 0 for p in m.lane_polygons)
        line = next(ln for ln in r["text"].splitlines() if "map: lanes" in ln)
        if m.knows("traffic_lights"):
            assert f"traffic lights {m.num_lights}" in line and line.endswith("unknown: -")
        else:
            assert "traffic lights ?" in line and "traffic_lights" in line.split("unknown:")[1]


@pytest.mark.data
def test_the_recorded_drivers_rule_breaking_is_reported_per_source(cases, tmp_path):
    """c10 runs a red light, c11 drives against its lane, c12 speeds (the case files' right values); c01's control
    breaks none. Each appears once in the source's rates, over the scenes where its rule can be judged."""
    for name in ("c01_control", "c10_red_light", "c11_wrong_way", "c12_speeding"):
        (tmp_path / f"{name}.pkl").symlink_to(cases / f"{name}.pkl")
    r = check(tmp_path, ImportOptions(), progress=False)
    broke = {s["id"].split("@")[0]: s for s in r["scenes"]}
    assert broke["c10_red_light"]["sanity"]["traffic_light_compliance"] == 0.0
    assert broke["c11_wrong_way"]["sanity"]["driving_direction_compliance"] < 1.0
    assert broke["c12_speeding"]["sanity"]["speed_limit_compliance"] < 1.0
    waymo = r["sources"]["scenarionet/waymo"]
    assert (waymo["red_light_scenes"], waymo["wrong_way_scenes"], waymo["speeding_scenes"]) == (1, 1, 1)
    assert waymo["red_light_judged"] == waymo["wrong_way_judged"] == waymo["speeding_judged"] == 3
    assert waymo["wrong_way_pct"] == pytest.approx(100 / 3)
    nus = r["sources"]["scenarionet/nuscenes"]  # c01: lanes without lights or limits
    assert (nus["red_light_judged"], nus["wrong_way_judged"], nus["speeding_judged"]) == (0, 1, 0)
    assert nus["wrong_way_scenes"] == 0 and np.isnan(nus["red_light_pct"])
    text = r["text"]
    for said in ("ran a red light", "drove against the lane direction", "exceeded the speed limit"):
        assert said in text
    assert "1 of 3" in text and "0 of 1" in text and "n/a" in text


@pytest.mark.data
def test_ego_agent_imports_that_vehicle_as_the_ego(shared_data):
    """``ImportOptions.ego_agent = k``: the scene's ego is agent k of the default import, its track unchanged in world
    coordinates over the steps both scenes hold (the re-import recentres on the new ego and keeps its valid span)."""
    from scenarios.check import moving_vehicles
    from scenarios.formats import load_file

    files = [sorted((shared_data / "scenarionet").glob("sd_waymo*.pkl"))[0],
             sorted(shared_data.glob("waymo_json/*.json"))[0]]
    for path in files:
        base = load_file(path)[0]
        ks = [k for k in moving_vehicles(base, 10) if k][:4]
        assert ks, path
        for k in ks:
            s = load_file(path, ImportOptions(ego_agent=k))[0]
            assert s.id.startswith(f"{base.id}+ego{k}")
            world_new = s.agents[0, :, :2] + np.asarray(s.world_origin)
            world_old = base.agents[k, :, :2] + np.asarray(base.world_origin)
            v_new, v_old = s.valid[0], base.valid[k]
            # the re-imported scene starts at the new ego's first valid step: align on the recorded positions
            start = int(np.flatnonzero(v_old)[0])
            n = int(v_new.sum())
            np.testing.assert_allclose(world_new[v_new][:n], world_old[start:start + n], atol=1e-3)
    with pytest.raises(ScenarioError, match="--ego-agent 9999"):
        load_file(path, ImportOptions(ego_agent=9999))


@pytest.mark.data
@pytest.mark.slow
def test_every_vehicle_agrees_with_the_shapely_oracle_on_waymo(shared_data, tmp_path):
    """``--every-vehicle``: the simulator's log replay of every moving Waymo vehicle, each as the ego, is on the road
    for at least 99 % of them (issue "The field's score"), and it counts the same vehicles, and the same ones on the
    road, as the shapely oracle of tests/scenarios/test_drivable_area.py."""
    from tests.scenarios.test_drivable_area import on_road_share

    files = sorted((shared_data / "scenarionet").glob("sd_waymo*.pkl")) + sorted(shared_data.glob("waymo_json/*.json"))
    for f in files:
        (tmp_path / f.name).symlink_to(f)
    r = check(tmp_path, ImportOptions(), progress=False, every=True)
    got = r["every_vehicle"]["sources"]
    vehicles = sum(int(s["scenes"]) for s in got.values())
    on_road = sum(round(s["scenes"] * s["on_road_pct"] / 100) for s in got.values())
    oracle = np.array([on_road_share(f)[:2] for f in files]).sum(0)
    assert vehicles == oracle[1] and vehicles > 20
    assert on_road == oracle[0] and on_road >= 0.99 * vehicles
    assert "every moving vehicle" in r["text"]


def test_ego_agent_on_a_scene_file_is_refused_in_one_line(tmp_path):
    from scenarios.formats import load_file

    save_scenarios(tmp_path / "a.npz", [_scene("one")])
    with pytest.raises(ScenarioError, match=r"a\.npz: --ego-agent 2: a \.npz holds scenes, not recordings"):
        load_file(tmp_path / "a.npz", ImportOptions(ego_agent=2))
    with pytest.raises(ScenarioError, match=r"a\.npz: --ego 7: a \.npz holds scenes, not recordings"):
        load_file(tmp_path / "a.npz", ImportOptions(ego="7"))
    assert [s.id for s in load_file(tmp_path / "a.npz", ImportOptions())] == ["one"]


@pytest.mark.data
def test_an_ego_id_is_refused_where_the_format_has_none(shared_data):
    """``--ego ID`` names a CommonRoad obstacle or an Argoverse 2 track: on a Waymo JSON or ScenarioNet file it is
    a one-line skip reason pointing at --ego-agent, not silently ignored (the file then imported with its own ego)."""
    from scenarios.formats import load_file

    files = sorted(shared_data.glob("waymo_json/*.json"))[:1] + sorted((shared_data / "scenarionet").glob("*.pkl"))[:1]
    for path in files:
        with pytest.raises(ScenarioError, match=f"{path.name}: --ego nosuch: .* use --ego-agent K"):
            load_file(path, ImportOptions(ego="nosuch"))
