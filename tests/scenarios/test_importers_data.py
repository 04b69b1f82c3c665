"""Importers on the real recorded samples in ../shared/data (skipped when absent)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon

from scenarios.formats import ImportOptions, load_any, scenario_files
from scenarios.io import load_scenarios
from scenarios.scenario import AgentType, ScenarioError

pytestmark = pytest.mark.data
REPO = Path(__file__).resolve().parents[2]
FORMATS = ("scenarionet", "waymo_json", "commonroad")


@pytest.fixture(scope="module")
def imported(shared_data) -> dict[str, list]:
    """Every sample, imported once: {format folder: [(file, scenes)]}."""
    return {fmt: [(f, load_any(f)) for f in scenario_files(shared_data / fmt)] for fmt in FORMATS}


def _corners(ego: np.ndarray) -> np.ndarray:
    """``[T * 4, 2]`` box corners of ``[T, 7]`` states."""
    x, y, yaw, ln, wd = (ego[:, i].astype(np.float64) for i in (0, 1, 2, 5, 6))
    c, s = np.cos(yaw), np.sin(yaw)
    out = [np.stack([x + a * ln / 2 * c - b * wd / 2 * s, y + a * ln / 2 * s + b * wd / 2 * c], 1)
           for a, b in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
    return np.concatenate(out)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_sample_imports(imported, fmt):
    files = imported[fmt]
    assert files, f"no {fmt} samples"
    for f, scenes in files:
        assert len(scenes) == 1, f
        s = scenes[0].validate()
        assert s.ego == 0 and s.valid[0].all() and s.dt == pytest.approx(0.1) and s.init_step == 10
        assert s.num_steps >= 60 and len(s.map.lanes) > 0 and len(s.map.drivable) > 0
        assert "real" in s.tags


@pytest.mark.parametrize("fmt", FORMATS)
def test_logged_ego_stays_on_the_drivable_area(imported, fmt):
    """Independent oracle (shapely): every ego corner at every step within 0.3 m of the drivable union."""
    for f, (s,) in imported[fmt]:
        union = shapely.union_all([Polygon(p).buffer(0) for p in s.map.drivable])
        d = shapely.distance(union, shapely.points(_corners(s.ego_log)))
        assert d.max() <= 0.3, f"{f}: ego corner {d.max():.2f} m outside the drivable area"


@pytest.mark.parametrize("fmt", FORMATS)
def test_headings_and_velocities_agree_with_finite_differences(imported, fmt):
    for f, (s,) in imported[fmt]:
        a = s.agents.astype(np.float64)
        m = s.valid[:, 2:] & s.valid[:, 1:-1] & s.valid[:, :-2]
        fd = (a[:, 2:, :2] - a[:, :-2, :2]) / (2 * s.dt)  # central differences, m/s
        err = np.hypot(*(fd - a[:, 1:-1, 3:5]).transpose(2, 0, 1))[m]
        assert np.median(err) < 0.6 and np.percentile(err, 95) < 1.0, f"{f}: velocity vs finite differences"
        speed = np.hypot(fd[..., 0], fd[..., 1])
        moving = m & (speed > 2.0) & (s.agent_type[:, None] == AgentType.VEHICLE)
        head = np.abs(np.angle(np.exp(1j * (np.arctan2(fd[..., 1], fd[..., 0]) - a[:, 1:-1, 2]))))[moving]
        assert moving.sum() > 50, f
        assert np.median(head) < 0.05 and np.percentile(head, 95) < 0.2, f"{f}: heading vs direction of motion"


def test_long_nuscenes_scene_cut_into_windows(shared_data, imported):
    path = shared_data / "scenarionet" / "sd_nuscenes_v1.0-mini_scene-0553.pkl"
    (whole,) = dict(imported["scenarionet"])[path]
    wins = load_any(path, ImportOptions(window=91, stride=91))
    assert whole.num_steps == 201 and len(wins) == 2
    for w, start in zip(wins, (0, 91)):
        assert w.num_steps == 91 and w.id == f"scene-0553@{start}"
        np.testing.assert_array_equal(w.ego_log, whole.ego_log[start : start + 91])


def _commonroad_obstacles(path: Path):
    from commonroad.common.file_reader import CommonRoadFileReader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc, _ = CommonRoadFileReader(str(path)).open()
    out = {}
    for o in sc.dynamic_obstacles:
        sts = [o.initial_state, *o.prediction.trajectory.state_list]
        out[str(o.obstacle_id)] = (o.obstacle_type.name, np.array([s.position for s in sts]), sts[-1].time_step)
    return out


def test_commonroad_default_ego_is_the_farthest_full_horizon_vehicle(imported):
    for f, (s,) in imported["commonroad"]:
        obs = _commonroad_obstacles(f)
        horizon = max(end for kind, _, end in obs.values() if kind in ("CAR", "TRUCK", "BUS"))
        full = {k: np.hypot(*np.diff(p, axis=0).T).sum() for k, (kind, p, end) in obs.items()
                if kind in ("CAR", "TRUCK", "BUS") and end == horizon}
        best = max(full, key=full.get)
        assert f"ego={best}" in s.tags and s.num_steps == horizon + 1
        np.testing.assert_allclose(s.ego_log[:, :2] + s.world_origin, obs[best][1], atol=1e-3)


def test_commonroad_ego_by_id(shared_data):
    path = shared_data / "commonroad" / "USA_Peach-4_8_T-1.xml"
    obs = _commonroad_obstacles(path)
    default = load_any(path)[0]
    other = next(k for k, (_, p, end) in obs.items() if f"ego={k}" not in default.tags and end >= 20)
    (s,) = load_any(path, ImportOptions(ego=other))
    assert f"ego={other}" in s.tags and s.num_steps == obs[other][2] + 1
    np.testing.assert_allclose(s.ego_log[:, :2] + s.world_origin, obs[other][1], atol=1e-3)
    with pytest.raises(ScenarioError, match="--ego 999999: no dynamic obstacle"):
        load_any(path, ImportOptions(ego="999999"))


def _convert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scenarios.convert", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_convert_every_sample_round_trips(shared_data, imported, tmp_path):
    dst = tmp_path / "real.npz"
    r = _convert(str(shared_data), str(dst))
    assert r.returncode == 0, r.stderr
    written = {s.id: s for s in load_scenarios(dst)}
    av2 = [s for f in scenario_files(shared_data / "av2") for s in load_any(f)]  # the folder holds every format
    direct = [s for fmt in FORMATS for _, scenes in imported[fmt] for s in scenes] + av2
    assert sorted(written) == sorted(s.id for s in direct)
    for s in direct:
        np.testing.assert_array_equal(written[s.id].agents, s.agents)
        np.testing.assert_array_equal(written[s.id].route, s.route)
    assert f"wrote {len(direct)} scenes" in r.stdout


def test_damaged_real_files_give_one_line_errors_and_write_nothing(shared_data, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    pkl = shared_data / "scenarionet" / "sd_waymo_v1.2_eb4b91b10ca94ff2.pkl"
    data = pkl.read_bytes()
    (src / "sd_cut.pkl").write_bytes(data[: len(data) // 3])
    xml = (shared_data / "commonroad" / "USA_US101-1_1_T-1.xml").read_text()
    (src / "other_version.xml").write_text(xml.replace('commonRoadVersion="2020a"', 'commonRoadVersion="2018b"'))
    js = (shared_data / "waymo_json" / "womd_test.json").read_text()
    (src / "cut.json").write_text(js[: len(js) // 2])
    for name, what in (("sd_cut.pkl", "truncated or corrupt pickle"), ("other_version.xml", "version '2018b'"),
                       ("cut.json", "malformed JSON")):
        with pytest.raises(ScenarioError, match=what) as e:
            load_any(src / name)
        assert str(e.value).startswith(str(src / name)) and "\n" not in str(e.value)
    shutil.copy(pkl, src / "sd_good.pkl")
    dst = tmp_path / "out.npz"
    r = _convert(str(src), str(dst))
    assert r.returncode == 1 and "Traceback" not in r.stderr and not dst.exists()
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")



def test_commonroad_polygon_circle_and_group_shaped_obstacles_import(shared_data, tmp_path):
    """Dynamic obstacles whose shape is a polygon, a circle or a shape group (CommonRoad 2020a shapes) are agents
    with the box around the shape, placed by the obstacle's pose; the file imports (a polygon rejected it)."""
    import xml.etree.ElementTree as ET

    src = shared_data / "commonroad" / "USA_US101-22_1_T-1.xml"
    root = ET.parse(src).getroot()
    obstacles = root.findall("dynamicObstacle")[1:4]
    shapes = [  # (shape XML, box length, width, centre ahead of the obstacle's position along its heading)
        ("<polygon>" + "".join(f"<point><x>{x}</x><y>{y}</y></point>"
                               for x, y in [(-2, -1), (2, -1), (2.5, 0), (2, 1), (-2, 1)]) + "</polygon>",
         4.5, 2.0, 0.25),
        ("<circle><radius>0.8</radius></circle>", 1.6, 1.6, 0.0),
        ("<rectangle><length>2</length><width>2</width><center><x>-1</x><y>0</y></center></rectangle>"
         "<rectangle><length>2</length><width>2</width><center><x>1</x><y>0</y></center></rectangle>", 4.0, 2.0, 0.0),
    ]
    for obs, (xml, *_) in zip(obstacles, shapes):
        shape = obs.find("shape")
        shape.clear()
        shape.extend(ET.fromstring(f"<shape>{xml}</shape>"))
    path = tmp_path / src.name
    ET.ElementTree(root).write(path)
    (scene,) = load_any(path)
    for obs, (_, length, width, ahead) in zip(obstacles, shapes):
        init = obs.find("initialState")
        x, y = (float(init.find(f"position/point/{c}").text) for c in "xy")
        yaw = float(init.find("orientation/exact").text)
        want = np.array([x + ahead * np.cos(yaw), y + ahead * np.sin(yaw)]) - scene.world_origin
        first = scene.agents[:, 0, :2]
        k = int(np.argmin(np.hypot(*(first - want).T)))
        assert np.hypot(*(first[k] - want)) < 1e-3, obs.get("id")
        assert scene.agents[k, 0, 2] == pytest.approx(yaw, abs=1e-5)
        np.testing.assert_allclose(scene.agents[k, scene.valid[k], 5:7], [[length, width]] * int(scene.valid[k].sum()),
                                   atol=1e-4)
