"""Argoverse 2 importer on the real sample in ../shared/data/av2 (skipped when absent or without ``av2``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from scipy.signal import savgol_filter
from shapely.geometry import LineString, Polygon

from scenarios.formats import ImportOptions, detect_format, load_any, scenario_files
from scenarios.importers.av2 import AV_TRACK, CATEGORY_SIZE, TYPES
from scenarios.io import load_scenarios, save_scenarios
from scenarios.scenario import LENGTH, WIDTH, YAW, AgentType, RoadMap, ScenarioError, X, Y

pytest.importorskip("av2", reason="the av2 extra is not installed (pip install 'driveselect[av2]')")
pytestmark = pytest.mark.data
REPO = Path(__file__).resolve().parents[2]
ACCEL_MIN = -4.05  # m/s^2, nuPlan's lower longitudinal bound (independent copy for the oracle below)


@pytest.fixture(scope="module")
def folder(shared_data) -> Path:
    (d,) = sorted(p for p in (shared_data / "av2").iterdir() if p.is_dir())
    return d


@pytest.fixture(scope="module")
def parquet(folder) -> Path:
    (p,) = folder.glob("scenario_*.parquet")
    return p


@pytest.fixture(scope="module")
def tracks(parquet) -> pd.DataFrame:
    """The parquet read with pandas (an oracle independent of the av2 package)."""
    return pd.read_parquet(parquet)


@pytest.fixture(scope="module")
def scene(folder):
    (s,) = load_any(folder)
    return s


def _log(tracks: pd.DataFrame, track_id: str) -> pd.DataFrame:
    return tracks[tracks.track_id == track_id].sort_values("timestep")


def test_folder_and_parquet_are_detected_and_the_map_is_not_a_scene(folder, parquet):
    assert scenario_files(folder) == [parquet]
    assert detect_format(parquet) == "av2"
    (m,) = folder.glob("log_map_archive_*.json")
    with pytest.raises(ScenarioError, match="Argoverse 2 map archive") as e:
        load_any(m)
    assert "\n" not in str(e.value)


def test_shapes_types_and_the_av_as_ego(scene, tracks):
    s = scene.validate()
    ids = list(dict.fromkeys(sorted(tracks.track_id.unique())))
    assert s.source == "argoverse2" and s.id == tracks.scenario_id.iloc[0] and "real" in s.tags
    assert s.num_steps == int(tracks.num_timestamps.iloc[0]) and s.dt == pytest.approx(0.1) and s.ego == 0
    assert s.num_agents == len(ids)
    av = _log(tracks, AV_TRACK)
    xy = av[["position_x", "position_y"]].to_numpy() - np.asarray(s.world_origin)
    np.testing.assert_allclose(s.ego_log[:, [X, Y]], xy, atol=1e-3)
    np.testing.assert_allclose(s.ego_log[:, YAW], av.heading.to_numpy(), atol=1e-5)
    assert np.allclose(s.ego_log[s.init_step, [X, Y]], 0.0)
    # types and per-category sizes: one agent per track, counted by category
    kinds = tracks.groupby("track_id").object_type.first()
    want = sorted(int(TYPES.get(k, AgentType.OTHER)) for k in kinds)
    assert sorted(s.agent_type.tolist()) == want
    sizes = {tuple(CATEGORY_SIZE[k]) for k in kinds}
    got = {tuple(np.round(s.agents[i, s.valid[i]][0, [LENGTH, WIDTH]], 4)) for i in range(s.num_agents)}
    assert got == {tuple(np.round(np.float32(v), 4)) for v in sizes}
    # validity: each agent is valid at exactly as many steps as its track has rows
    assert sorted(s.valid.sum(1).tolist()) == sorted(tracks.groupby("track_id").size().tolist())


def test_lane_polygons_contain_their_centrelines(scene):
    road = scene.map
    assert len(road.lanes) > 0 and len(road.lane_polygons) == len(road.lanes) == len(road.lane_widths)
    for i, (centre, poly) in enumerate(zip(road.lanes, road.lane_polygons)):
        p = Polygon(poly)
        assert p.is_valid and p.area > 0, i
        assert p.buffer(1e-6).covers(LineString(centre)), f"lane {i}: centreline leaves its polygon"
        # the mean width and the polygon agree: area ~ width x length
        assert p.area == pytest.approx(road.lane_widths[i] * LineString(centre).length, rel=0.25), i


def test_lane_graph_and_semantics_agree_with_geometry(scene, folder):
    road = scene.map
    assert set(road.lane_intersection.tolist()) <= {0, 1} and road.lane_intersection.sum() > 0
    assert len(road.lane_successors) > 0 and len(road.lane_neighbours) > 0
    for a, b in road.lane_successors:
        assert np.hypot(*(road.lanes[a][-1] - road.lanes[b][0])) < 0.5, (a, b)
    for a, b, side in road.lane_neighbours:
        pa = road.lanes[a]
        u = pa[-1] - pa[0]
        v = Polygon(road.lane_polygons[b]).centroid.coords[0] - pa[0]
        assert np.sign(u[0] * v[1] - u[1] * v[0]) == side, (a, b, side)
    for name in ("lane_polygons", "lane_graph", "intersections"):
        assert road.knows(name)
    for name in ("traffic_lights", "speed_limits", "stop_signs"):
        assert not road.knows(name)
    assert road.num_lights == 0 and len(road.crosswalks) > 0
    from shapely.ops import unary_union

    from scenarios.importers.common import MAP_MARGIN
    from scenarios.importers.mapgeom import path_zone

    # every lane lies in the drivable area, up to the distance from the ego's path and route the scene keeps
    area = unary_union([Polygon(p).buffer(0) for p in road.drivable])
    kept = path_zone([scene.agents[0, scene.valid[0], :2], scene.route], MAP_MARGIN - 1.0)
    for i, poly in enumerate(road.lane_polygons):
        if len(poly) >= 3:
            lane = Polygon(poly).buffer(0).intersection(kept)
            assert lane.difference(area).area <= 0.01 * lane.area + 1e-6, i


def test_logged_ego_on_the_drivable_area(scene):
    """shapely oracle: every ego box corner at every step within 0.3 m (nuPlan's threshold) of the drivable union."""
    ego = scene.ego_log.astype(np.float64)
    c, s = np.cos(ego[:, YAW]), np.sin(ego[:, YAW])
    corners = np.concatenate([
        np.stack([ego[:, X] + a * ego[:, LENGTH] / 2 * c - b * ego[:, WIDTH] / 2 * s,
                  ego[:, Y] + a * ego[:, LENGTH] / 2 * s + b * ego[:, WIDTH] / 2 * c], 1)
        for a, b in ((1, 1), (1, -1), (-1, 1), (-1, -1))])
    union = shapely.union_all([Polygon(p).buffer(0) for p in scene.map.drivable])
    assert shapely.distance(union, shapely.points(corners)).max() <= 0.3


def test_round_trip_through_the_project_format(scene, tmp_path):
    (back,) = load_scenarios(save_scenarios(tmp_path / "av2.npz", [scene]))
    for name in ("agents", "valid", "agent_type", "route"):
        np.testing.assert_array_equal(getattr(back, name), getattr(scene, name))
    for name in RoadMap.POLYLINE_FIELDS:
        a, b = getattr(back.map, name), getattr(scene.map, name)
        np.testing.assert_array_equal(a.points, b.points)
        np.testing.assert_array_equal(a.offsets, b.offsets)
    for name in RoadMap.ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(back.map, name), getattr(scene.map, name))
    np.testing.assert_array_equal(back.map.lane_widths, scene.map.lane_widths)
    assert (back.id, back.world_origin, back.map.unknown) == (scene.id, scene.world_origin, scene.map.unknown)


def test_another_track_as_ego(folder, tracks):
    focal = str(tracks.focal_track_id.iloc[0])
    (s,) = load_any(folder, ImportOptions(ego=focal))
    log = _log(tracks, focal)
    assert len(log) == s.num_steps  # the focal track is observed at every step
    xy = log[["position_x", "position_y"]].to_numpy() - np.asarray(s.world_origin)
    np.testing.assert_allclose(s.ego_log[:, [X, Y]], xy, atol=1e-3)
    av = _log(tracks, AV_TRACK)[["position_x", "position_y"]].to_numpy() - np.asarray(s.world_origin)
    others = s.agents[1:, :, [X, Y]]
    assert np.any(np.all(np.abs(others - av[None].astype(np.float32)) < 1e-3, axis=(1, 2))), "the AV is an agent"
    with pytest.raises(ScenarioError, match="no track 'nope' to use as ego") as e:
        load_any(folder, ImportOptions(ego="nope"))
    assert "\n" not in str(e.value)


def _check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scenarios.check", "--no-progress", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=170)


def test_log_replay_figures(folder, scene, tmp_path):
    """Exact, on the road, no at-fault collision, route completed; comfort judged like an independent oracle."""
    out = tmp_path / "check.json"
    r = _check(str(folder), "--json", str(out))
    assert r.returncode == 0, r.stderr
    (rep,) = json.loads(out.read_text())["scenes"]
    sanity = rep["sanity"]
    assert sanity["ade"] == 0.0 and sanity["offroad"] == 0.0 and sanity["collision_at_fault"] == 0.0
    assert sanity["route_completion"] == 1.0
    # oracle: the logged positions' own longitudinal acceleration (central differences, then a quadratic
    # Savitzky-Golay derivative over 0.7 s): a human braking harder than nuPlan's bound is reported uncomfortable
    ego = scene.ego_log.astype(np.float64)
    speed = np.hypot(*np.gradient(ego[:, [X, Y]], scene.dt, axis=0).T)
    a = savgol_filter(speed, 7, 2, deriv=1, delta=scene.dt)[scene.init_step:]
    if a.min() < ACCEL_MIN:
        assert sanity["comfortable"] == 0.0 and rep["failures"] == ["comfort"]
        assert sanity["max_abs_accel"] > -ACCEL_MIN
    else:
        assert sanity["max_abs_accel"] <= np.abs(a).max() + 1.0


def test_damaged_inputs_give_one_line_errors(folder, parquet, tmp_path):
    (m,) = folder.glob("log_map_archive_*.json")
    cut = tmp_path / "cut"
    cut.mkdir()
    data = parquet.read_bytes()
    (cut / parquet.name).write_bytes(data[: len(data) // 2])
    shutil.copy(m, cut / m.name)
    bad_map = tmp_path / "bad_map"
    bad_map.mkdir()
    shutil.copy(parquet, bad_map / parquet.name)
    (bad_map / m.name).write_text(m.read_text()[:5000])
    no_map = tmp_path / "no_map"
    no_map.mkdir()
    shutil.copy(parquet, no_map / parquet.name)
    for d, named, what in ((cut, cut / parquet.name, "unreadable Argoverse 2 scenario parquet"),
                           (bad_map, bad_map / parquet.name, f"its map {m.name} is an unreadable Argoverse 2 map"),
                           (no_map, no_map / parquet.name, "no Argoverse 2 map")):
        with pytest.raises(ScenarioError, match=what) as e:
            load_any(d)
        assert str(e.value).startswith(str(named)) and "\n" not in str(e.value)
    only_map = tmp_path / "only_map"
    only_map.mkdir()
    shutil.copy(m, only_map / m.name)
    with pytest.raises(ScenarioError, match=f"{only_map}: folder holds Argoverse 2 map archives .* but no "
                                            "scenario_<id>.parquet beside them$"):
        load_any(only_map)
    r = _check(str(bad_map))
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout
    assert f"\nskipped:\n  {bad_map / parquet.name}: its map {m.name} is an unreadable" in r.stdout


def test_repeated_boundary_points_keep_every_lane(folder, parquet, scene, tmp_path):
    """A lane boundary that repeats a point (maps are written to the cm) keeps its lane: the centreline is the
    same as without the repeat (av2's interpolation made it NaN and the lane vanished from the scene)."""
    (m,) = folder.glob("log_map_archive_*.json")
    archive = json.loads(m.read_text())
    for seg in archive["lane_segments"].values():
        seg["left_lane_boundary"].append(dict(seg["left_lane_boundary"][-1]))
        seg["right_lane_boundary"].insert(1, dict(seg["right_lane_boundary"][0]))
    copy = tmp_path / folder.name
    copy.mkdir()
    shutil.copy(parquet, copy / parquet.name)
    (copy / m.name).write_text(json.dumps(archive))
    (got,) = load_any(copy)
    assert len(got.map.lanes) == len(scene.map.lanes) > 0
    np.testing.assert_allclose(got.map.lanes.points, scene.map.lanes.points, atol=1e-9)
    assert np.all(np.isfinite(got.map.lanes.points))
