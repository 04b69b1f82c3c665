"""load_scenes: one bad scene never sinks a sweep (real files on disk, real training loader)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scenarios.io import FORMAT_NAME, FORMAT_VERSION, _block_arrays, load_scenarios
from scenarios.loading import load_scenes
from scenarios.scenario import ScenarioError
from tests.scenarios.test_formats import _scene
from training.config import TrainError
from training.data import split_scenes


def _npz_with_a_nan_scene(path, good_id: str = "good") -> None:
    """Two scenes, the second with NaN at a valid step (written by hand: save_scenarios refuses it)."""
    arrays = {"__format__": np.array(FORMAT_NAME), "__version__": np.array(FORMAT_VERSION), "__count__": np.array(2)}
    good, bad = _scene(good_id), _scene("nan-scene")
    arrays.update(_block_arrays(0, [good, bad]))
    arrays["b0/agents/data"][good.agents.size + 5 * 7] = np.nan  # scene 1, agent 0, step 5, x
    np.savez_compressed(path, **arrays)


@pytest.fixture
def folder(tmp_path):
    _npz_with_a_nan_scene(tmp_path / "a_mixed.npz")
    (tmp_path / "b_broken.json").write_text("{not json")
    (tmp_path / "c_no_objects.json").write_text(json.dumps({"objects": [], "metadata": {"sdc_track_index": 0}}))
    return tmp_path


def test_bad_scene_inside_a_file_skips_only_that_scene(folder):
    report = load_scenes(folder)
    assert [s.id for s in report.scenes] == ["good"]
    where = {(item.file.split("/")[-1], item.scene_id) for item in report.skipped}
    assert where == {("a_mixed.npz", "nan-scene"), ("b_broken.json", ""), ("c_no_objects.json", "")}
    for item in report.skipped:
        line = item.line()
        assert "\n" not in line and line.startswith("skipped ") and item.reason
    assert "NaN" in next(i.reason for i in report.skipped if i.scene_id == "nan-scene")


def test_strict_makes_the_first_skip_an_error(folder):
    with pytest.raises(ScenarioError, match=r"a_mixed.npz:nan-scene.*--strict"):
        load_scenes(folder, strict=True)


def test_single_file_without_skipped_list_still_raises(folder):
    with pytest.raises(ScenarioError, match="scene 1"):
        load_scenarios(folder / "a_mixed.npz")


def test_training_loads_through_load_scenes(folder, capsys):
    for i in range(9):  # enough scenes for a val split (every 10th, from the 5th)
        _npz_with_a_nan_scene(folder / f"d{i}.npz", good_id=f"good-{i}")
    train = split_scenes(str(folder), "train")
    assert len(train) == 9 and all(s.id.startswith("good") for s in train)
    assert "skipped" in capsys.readouterr().err
    with pytest.raises(TrainError, match="--strict"):
        split_scenes(str(folder), "train", strict=True)


@pytest.mark.data
def test_a_gap_in_the_recorded_ego_keeps_its_longest_run_and_says_so(shared_data, tmp_path):
    """A Waymo scene whose ego has one non-finite sample at step 5: the scene keeps steps 6 on (its id says
    ``@6``), and the load report's notes say what was left out."""
    src = sorted((shared_data / "waymo_json").glob("*.json"))[0]
    doc = json.loads(src.read_text())
    ego = doc["objects"][doc["metadata"]["sdc_track_index"]]
    ego["position"][5]["x"] = float("nan")
    (tmp_path / src.name).write_text(json.dumps(doc))
    report = load_scenes(tmp_path, progress=False)
    (scene,) = report.scenes
    assert scene.id == f"{doc['scenario_id']}@6"
    (note,) = [n for n in report.notes if "has a gap" in n]
    assert note.startswith(f"{tmp_path / src.name}: scene ") and "steps 6-" in note and "5 valid steps left out" in note
