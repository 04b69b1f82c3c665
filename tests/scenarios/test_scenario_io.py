"""The Scenario type's validation and the versioned .npz format: round trip and bad files."""

from __future__ import annotations

import dataclasses
import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.io import BLOCK, FORMAT_NAME, FORMAT_VERSION, _fields, load_scenarios, save_scenarios
from scenarios.scenario import (
    AgentType,
    Polylines,
    RoadMap,
    Scenario,
    ScenarioError,
    wrap_angle,
)


def make_scene(num_agents: int = 3, num_steps: int = 30, seed: int = 0, sid: str = "t/0") -> Scenario:
    """A small straight-road scene with agents driving along +x."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_steps) * 0.1
    agents = np.zeros((num_agents, num_steps, 7), np.float32)
    for a in range(num_agents):
        v = rng.uniform(5, 15)
        agents[a, :, 0] = rng.uniform(0, 50) + v * t
        agents[a, :, 1] = rng.choice([-1.75, 1.75])
        agents[a, :, 3] = v
        agents[a, :, 5] = 4.5
        agents[a, :, 6] = 1.9
    valid = np.ones((num_agents, num_steps), bool)
    if num_agents > 1:
        valid[-1, :5] = False
        agents[-1, :5] = 0.0
    road = RoadMap(
        lanes=Polylines.from_list([np.c_[np.arange(0, 200.0), np.full(200, -1.75)]]),
        lane_widths=np.array([3.5]),
        road_edges=Polylines.from_list([np.array([[0, -3.5], [200, -3.5]]), np.array([[200, 3.5], [0, 3.5]])]),
        drivable=Polylines.from_list([np.array([[0, -3.5], [200, -3.5], [200, 3.5], [0, 3.5]])]),
    )
    return Scenario(
        id=sid,
        source="test",
        agents=agents,
        valid=valid,
        agent_type=np.full(num_agents, AgentType.VEHICLE, np.int8),
        ego=0,
        map=road,
        route=agents[0, :, :2].astype(np.float64),
        family="straight",
        tags=("unit",),
    )


def assert_same(a: Scenario, b: Scenario) -> None:
    for f in dataclasses.fields(Scenario):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        elif isinstance(x, RoadMap):
            np.testing.assert_array_equal(x.lane_widths, y.lane_widths)
            for name in RoadMap.POLYLINE_FIELDS:
                np.testing.assert_array_equal(getattr(x, name).points, getattr(y, name).points)
                np.testing.assert_array_equal(getattr(x, name).offsets, getattr(y, name).offsets)
        else:
            assert x == y, f.name


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(3, 40), st.integers(0, 10_000))
def test_round_trip(tmp_path_factory, num_agents, num_steps, seed):
    path = tmp_path_factory.mktemp("rt") / "scenes.npz"
    scenes = [make_scene(num_agents, num_steps, seed, "a"), make_scene(num_agents, num_steps, seed + 1, "b")]
    for s in scenes:
        dataclasses.replace(s, init_step=min(s.init_step, num_steps - 2)).validate()
    scenes = [dataclasses.replace(s, init_step=min(s.init_step, num_steps - 2)) for s in scenes]
    save_scenarios(path, scenes)
    back = load_scenarios(path)
    assert len(back) == 2
    for a, b in zip(scenes, back):
        assert_same(a, b)


def test_polylines_pack_and_index():
    lines = [np.zeros((3, 2)), np.ones((1, 2)), np.full((5, 2), 2.0)]
    pl = Polylines.from_list(lines)
    assert len(pl) == 3
    for a, b in zip(lines, pl):
        np.testing.assert_array_equal(a, b)
    assert len(Polylines.empty()) == 0


@pytest.mark.parametrize("angle", [0.0, np.pi, -np.pi, 3 * np.pi, -3 * np.pi + 1e-9, 7.0, -7.0])
def test_wrap_angle_range(angle):
    w = wrap_angle(angle)
    assert -np.pi < w <= np.pi
    assert np.isclose(np.cos(w), np.cos(angle)) and np.isclose(np.sin(w), np.sin(angle))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: dataclasses.replace(s, agents=s.agents[:, :, :5]), "agents must be"),
        (lambda s: dataclasses.replace(s, agents=np.where(True, np.nan, s.agents)), "NaN"),
        (lambda s: dataclasses.replace(s, ego=7), "ego index"),
        (lambda s: dataclasses.replace(s, valid=s.valid[:, :-1]), "valid must be"),
        (lambda s: dataclasses.replace(s, agents=s.agents[:, :0]), "empty"),
        (lambda s: dataclasses.replace(s, route=np.zeros((1, 2))), "route"),
        (lambda s: dataclasses.replace(s, dt=0.0), "dt"),
        (lambda s: dataclasses.replace(s, agent_type=np.full(s.num_agents, 9, np.int8)), "agent_type"),
        (
            lambda s: dataclasses.replace(s, map=dataclasses.replace(s.map, lane_widths=np.zeros(0))),
            "lane_widths",
        ),
    ],
)
def test_validate_names_the_problem(change, message):
    with pytest.raises(ScenarioError, match=message):
        change(make_scene()).validate()


def test_ego_must_be_valid_throughout():
    s = make_scene()
    valid = s.valid.copy()
    valid[0, 3] = False
    with pytest.raises(ScenarioError, match="not valid at every step"):
        dataclasses.replace(s, valid=valid).validate()


def test_save_refuses_invalid_scene_and_keeps_old_file(tmp_path):
    path = tmp_path / "s.npz"
    save_scenarios(path, [make_scene()])
    before = path.read_bytes()
    bad = dataclasses.replace(make_scene(), ego=99)
    with pytest.raises(ScenarioError):
        save_scenarios(path, [bad])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]


def test_truncated_file(tmp_path):
    path = tmp_path / "s.npz"
    save_scenarios(path, [make_scene()])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ScenarioError, match=r"s\.npz.*(truncated|unreadable)"):
        load_scenarios(path)


def test_empty_and_foreign_files(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ScenarioError, match="empty.npz"):
        load_scenarios(empty)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(ScenarioError, match="foreign.npz: not a scenario file"):
        load_scenarios(foreign)
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenarios(tmp_path / "missing.npz")


def _rewrite(path, edit):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _write_v2(path, scenes) -> None:
    """Scenes in the version-2 layout (one ``s{i}/<field>`` member per scene and field), as files written before
    version 3 hold them."""
    arrays = {"__format__": np.array(FORMAT_NAME), "__version__": np.array(2), "__count__": np.array(len(scenes))}
    for i, scene in enumerate(scenes):
        fields, meta = _fields(scene)
        arrays.update({f"s{i}/{k}": v for k, v in fields.items()})
        arrays[f"s{i}/meta"] = np.array(json.dumps(meta))
    np.savez_compressed(path, **arrays)


def test_blocks_round_trip_and_version_2_files_still_load(tmp_path):
    scenes = [make_scene(num_agents=1 + i % 4, num_steps=12 + i % 7, seed=i, sid=f"t/{i}") for i in range(BLOCK + 3)]
    path = save_scenarios(tmp_path / "s.npz", scenes)
    with zipfile.ZipFile(path) as zf:
        assert {n.split("/")[0] for n in zf.namelist() if "/" in n} == {"b0", "b1"}  # two blocks, by column
        n_fields = len(_fields(scenes[0])[0])
        assert len(zf.namelist()) == 3 + 2 * (1 + 2 * n_fields)  # header, then per block: meta, data and shapes
    for a, b in zip(load_scenarios(path), scenes, strict=True):
        assert_same(a, b)
    _write_v2(tmp_path / "v2.npz", scenes[:5])
    for a, b in zip(load_scenarios(tmp_path / "v2.npz"), scenes[:5], strict=True):
        assert_same(a, b)


def test_a_bad_scene_in_a_later_block_is_skipped_by_its_id(tmp_path):
    scenes = [make_scene(seed=i, sid=f"t/{i}") for i in range(BLOCK + 2)]
    path = save_scenarios(tmp_path / "s.npz", scenes)

    def nan_in_second_of_block_1(a):
        x = a["b1/agents/data"].copy()
        x[scenes[BLOCK].agents.size] = np.nan  # scene BLOCK + 1, agent 0, step 0, x
        a["b1/agents/data"] = x

    _rewrite(path, nan_in_second_of_block_1)
    skipped: list = []
    back = load_scenarios(path, skipped)
    assert [s.id for s in back] == [s.id for i, s in enumerate(scenes) if i != BLOCK + 1]
    assert [k for k, _ in skipped] == [f"t/{BLOCK + 1}"] and "NaN" in skipped[0][1]
    with pytest.raises(ScenarioError, match=rf"s\.npz: scene {BLOCK + 1}: .*NaN"):
        load_scenarios(path)

    # a shape table one row short: the block's last scene is skipped by its id, the others load
    save_scenarios(path, scenes)
    _rewrite(path, lambda a: a.__setitem__("b1/route/shape", a["b1/route/shape"][:-1]))
    skipped = []
    back = load_scenarios(path, skipped)
    assert [s.id for s in back] == [s.id for s in scenes[:-1]] and [k for k, _ in skipped] == [scenes[-1].id]


def test_newer_version_and_bad_arrays_in_file(tmp_path):
    path = tmp_path / "s.npz"
    save_scenarios(path, [make_scene()])
    _rewrite(path, lambda a: a.__setitem__("__version__", np.array(FORMAT_VERSION + 1)))
    with pytest.raises(ScenarioError, match="newer"):
        load_scenarios(path)

    save_scenarios(path, [make_scene()])

    def nan_agents(a):
        x = a["b0/agents/data"].copy()
        x[0] = np.nan  # scene 0, agent 0, step 0, x
        a["b0/agents/data"] = x

    _rewrite(path, nan_agents)
    with pytest.raises(ScenarioError, match=r"s\.npz: scene 0: .*NaN"):
        load_scenarios(path)

    save_scenarios(path, [make_scene()])
    _rewrite(path, lambda a: a.__setitem__("b0/valid/shape", np.array([[a["b0/valid/shape"][0, 0], 3]])))
    with pytest.raises(ScenarioError, match=r"scene 0: valid must be"):
        load_scenarios(path)

    save_scenarios(path, [make_scene()])
    _rewrite(path, lambda a: a.pop("b0/route/data"))
    with pytest.raises(ScenarioError, match="missing array"):
        load_scenarios(path)


def test_file_holds_no_pickle(tmp_path):
    path = tmp_path / "s.npz"
    save_scenarios(path, [make_scene()])
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert "b0/meta.npy" in names and "b0/agents/data.npy" in names
    with np.load(path, allow_pickle=False) as z:
        (meta,) = json.loads(str(z["b0/meta"][()]))
    assert meta["id"] == "t/0" and meta["family"] == "straight"


def test_map_semantics_round_trip_and_version_1_files_load_as_unknown(tmp_path):
    """Format 2 keeps lane polygons, limits, the lane graph, stop signs and per-step light states;
    a version-1 file (no semantics) loads with every semantic recorded as unknown."""
    import dataclasses

    from scenarios.scenario import MAP_SEMANTICS, LightState, Polylines, RoadMap
    from scenarios.suites import load_suite

    scene = load_suite("procedural-small")[0]
    n, t = len(scene.map.lanes), scene.num_steps
    rng = np.random.default_rng(0)
    states = rng.integers(0, len(LightState), size=(2, t)).astype(np.int8)
    road = dataclasses.replace(
        scene.map,
        lane_polygons=Polylines.from_list([np.array([[0, 0], [1, 0], [1, 1.0]])] + [np.zeros((0, 2))] * (n - 1)),
        lane_speed_limits=np.where(np.arange(n) % 2 == 0, 13.4, np.nan),
        lane_intersection=(np.arange(n) % 3 - 1).astype(np.int8),
        lane_successors=np.array([[0, n - 1]]),
        lane_neighbours=np.array([[0, n - 1, 1]]),
        stop_signs=np.array([[3.0, 4.0]]),
        stop_sign_lanes=np.array([0]),
        light_lanes=np.array([0, -1]),
        light_stop_points=np.array([[1.0, 2.0], [5.0, 6.0]]),
        light_states=states,
        unknown=("mapped_area",),
    )
    scene = dataclasses.replace(scene, map=road).validate()
    path = save_scenarios(tmp_path / "s.npz", [scene])
    back = load_scenarios(path)[0].map
    assert back.unknown == ("mapped_area",)
    for name in RoadMap.ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(back, name), getattr(road, name), err_msg=name)
    np.testing.assert_array_equal(back.lane_polygons.points, road.lane_polygons.points)
    np.testing.assert_array_equal(back.lane_polygons.offsets, road.lane_polygons.offsets)
    # a version-1 file: the version-2 layout without every key that version 2 added
    _write_v2(tmp_path / "v2.npz", [scene])
    assert_same(load_scenarios(tmp_path / "v2.npz")[0], scene)
    with np.load(tmp_path / "v2.npz", allow_pickle=False) as z:
        old = {k: z[k] for k in z.files if "/map/" not in k and "lane_polygons" not in k and "mapped_area" not in k}
    meta = json.loads(str(old["s0/meta"][()]))
    del meta["map_unknown"]
    old["s0/meta"] = np.array(json.dumps(meta))
    old["__version__"] = np.array(1)
    np.savez(tmp_path / "v1.npz", **old)
    v1 = load_scenarios(tmp_path / "v1.npz")[0].map
    assert v1.unknown == MAP_SEMANTICS
    assert len(v1.lane_polygons) == n and np.isnan(v1.lane_speed_limits).all() and v1.num_lights == 0


def test_light_states_must_cover_every_step():
    import dataclasses

    from scenarios.scenario import ScenarioError
    from scenarios.suites import load_suite

    scene = load_suite("procedural-small")[0]
    road = dataclasses.replace(scene.map, light_lanes=np.array([0]), light_stop_points=np.zeros((1, 2)),
                               light_states=np.zeros((1, scene.num_steps - 1), dtype=np.int8))
    with pytest.raises(ScenarioError, match="light_states"):
        dataclasses.replace(scene, map=road).validate()
