"""Format detection and folder loading (scenarios.formats) on small synthetic scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scenarios.formats import detect_format, load_any, scenario_files
from scenarios.io import save_scenarios
from scenarios.scenario import Polylines, RoadMap, Scenario, ScenarioError


def _scene(sid: str, n_t: int = 20) -> Scenario:
    agents = np.zeros((2, n_t, 7), dtype=np.float32)
    agents[:, :, 0] = np.arange(n_t) * 0.5
    agents[1, :, 1] = 4.0
    agents[:, :, 3] = 5.0
    agents[:, :, 5:7] = (4.5, 2.0)
    road = RoadMap(drivable=Polylines.from_list([np.array([[-10, -5], [50, -5], [50, 10], [-10, 10.0]])]))
    return Scenario(
        id=sid,
        source="test",
        agents=agents,
        valid=np.ones((2, n_t), bool),
        agent_type=np.zeros(2, np.int8),
        ego=0,
        map=road,
        route=np.array([[0.0, 0.0], [20.0, 0.0]]),
    ).validate()


def test_npz_file_round_trip(tmp_path):
    path = save_scenarios(tmp_path / "a.npz", [_scene("s1"), _scene("s2", 30)])
    scenes = load_any(path)
    assert [s.id for s in scenes] == ["s1", "s2"]
    assert scenes[1].num_steps == 30
    np.testing.assert_array_equal(scenes[0].agents, _scene("s1").agents)


def test_folder_loads_every_file_sorted_and_recursive(tmp_path):
    save_scenarios(tmp_path / "b.npz", [_scene("b")])
    save_scenarios(tmp_path / "a.npz", [_scene("a")])
    (tmp_path / "sub").mkdir()
    save_scenarios(tmp_path / "sub" / "c.npz", [_scene("c")])
    (tmp_path / "README.md").write_text("not a scene")
    (tmp_path / ".hidden.npz").write_bytes(b"junk")
    assert [s.id for s in load_any(tmp_path)] == ["a", "b", "c"]
    assert [p.name for p in scenario_files(tmp_path)] == ["a.npz", "b.npz", "c.npz"]


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ScenarioError, match="holds no scenario files") as e:
        load_any(tmp_path)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["scene.csv", "scene", "scene.tfrecord"])
def test_unknown_extension_names_the_file(tmp_path, name):
    p = tmp_path / name
    p.write_text("1,2,3")
    with pytest.raises(ScenarioError, match="unknown scenario file type") as e:
        load_any(p)
    assert str(p) in str(e.value)


def test_missing_path(tmp_path):
    with pytest.raises(ScenarioError, match="no such"):
        load_any(tmp_path / "nope.npz")


def test_bad_file_in_folder_names_that_file(tmp_path):
    save_scenarios(tmp_path / "a.npz", [_scene("a")])
    bad = tmp_path / "b.json"
    bad.write_text('{"objects": [')
    with pytest.raises(ScenarioError) as e:
        load_any(tmp_path)
    msg = str(e.value)
    assert msg.startswith(str(bad)) and "malformed JSON" in msg and "\n" not in msg


def test_truncated_npz_names_the_file(tmp_path):
    path = save_scenarios(tmp_path / "a.npz", [_scene("a")])
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ScenarioError) as e:
        load_any(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("x.npz", "npz"), ("sd_a.pkl", "scenarionet"), ("a.JSON", "waymo_json"), ("b.xml", "commonroad")],
)
def test_detect_format(name, fmt):
    assert detect_format(name) == fmt


def test_json_that_is_not_a_scene(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ScenarioError, match="missing key 'objects'"):
        load_any(p)
