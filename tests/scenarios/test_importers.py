"""Importers on synthetic files written here (no shared data needed): content, time, windows, bad input."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scenarios.formats import ImportOptions, load_any
from scenarios.importers.commonroad import load_commonroad
from scenarios.importers.safe_pickle import safe_loads
from scenarios.importers.scenarionet import load_scenarionet
from scenarios.importers.waymo_json import load_waymo_json
from scenarios.io import load_scenarios
from scenarios.scenario import LENGTH, WIDTH, AgentType, ScenarioError

REPO = Path(__file__).resolve().parents[2]


def _track(x0, y0, vx, vy, n_t, dt, kind="VEHICLE", size=(4.5, 2.0), valid=None):
    t = np.arange(n_t) * dt
    pos = np.stack([x0 + vx * t, y0 + vy * t, np.zeros(n_t)], axis=1)
    return {
        "type": kind,
        "state": {
            "position": pos,
            "heading": np.full(n_t, np.arctan2(vy, vx)),
            "velocity": np.tile([vx, vy], (n_t, 1)),
            "valid": np.ones(n_t) if valid is None else valid.astype(float),
            "length": np.full((n_t, 1), size[0]),
            "width": np.full((n_t, 1), size[1]),
            "height": np.full((n_t, 1), 1.5),
        },
        "metadata": {"object_id": "x"},
    }


def _sd(n_t=120, dt=0.1) -> dict:
    gap = np.ones(n_t, bool)
    gap[30:40] = False
    return {
        "id": "synthetic",
        "version": "test",
        "length": n_t,
        "metadata": {"sdc_id": "ego", "dataset": "unit", "ts": np.arange(n_t) * dt, "sample_rate": dt},
        "tracks": {
            "car": _track(0.0, 3.5, 8.0, 0.0, n_t, dt, valid=gap),
            "ego": _track(0.0, 0.0, 10.0, 0.0, n_t, dt, size=(1.8, 4.4)),  # width > length: swapped
            "ped": _track(20.0, 8.0, 0.0, -1.0, n_t, dt, kind="PEDESTRIAN", size=(0.5, 0.5)),
            "cone": _track(50.0, -3.0, 0.0, 0.0, n_t, dt, kind="TRAFFIC_CONE", size=(0.3, 0.3)),
        },
        "dynamic_map_states": {},
        "map_features": {
            "1": {"type": "LANE_SURFACE_STREET", "polyline": np.array([[-20.0, 0, 0], [400.0, 0, 0]])},
            "2": {"type": "ROAD_EDGE_BOUNDARY", "polyline": np.array([[-20.0, -2.5], [400.0, -2.5]])},
            "3": {"type": "ROAD_LINE_BROKEN_SINGLE_WHITE", "polyline": np.array([[-20.0, 1.75], [400.0, 1.75]])},
        },
    }


def _write_pickle(path: Path, obj) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def test_scenarionet_content(tmp_path):
    sd = _sd()
    sd["tracks"]["car"]["state"]["length"][:5] = 0.0  # missing sizes at valid steps: filled with the median
    (s,) = load_scenarionet(_write_pickle(tmp_path / "sd_a.pkl", sd))
    assert s.ego == 0 and s.num_steps == 120 and s.num_agents == 4
    ego = s.ego_log
    np.testing.assert_allclose(ego[:, 0] + s.world_origin[0], np.arange(120) * 1.0, atol=1e-4)
    assert ego[0, LENGTH] == pytest.approx(4.4) and ego[0, WIDTH] == pytest.approx(1.8)
    types = sorted(s.agent_type.tolist())
    assert types == sorted([AgentType.VEHICLE, AgentType.VEHICLE, AgentType.PEDESTRIAN, AgentType.OTHER])
    car = int(np.flatnonzero(~s.valid.all(axis=1))[0])
    assert not s.valid[car, 30:40].any() and s.valid[car, :30].all() and s.valid[car, 40:].all()
    assert np.all(s.agents[car, 30:40] == 0)
    assert np.all(s.agents[car, s.valid[car], LENGTH] == pytest.approx(4.5))
    assert len(s.map.lanes) == 1 and len(s.map.road_edges) == 1 and len(s.map.road_lines) == 1
    assert s.source == "scenarionet/unit" and s.init_step == 10 and s.dt == pytest.approx(0.1)


def test_windows_are_slices_of_the_whole(tmp_path):
    path = _write_pickle(tmp_path / "sd_a.pkl", _sd(200))
    (whole,) = load_scenarionet(path)
    wins = load_scenarionet(path, ImportOptions(window=91, stride=50))
    assert [w.id for w in wins] == ["synthetic@0", "synthetic@50", "synthetic@100"]
    for w, start in zip(wins, (0, 50, 100)):
        assert w.num_steps == 91
        np.testing.assert_array_equal(w.ego_log, whole.ego_log[start : start + 91])
        assert w.route[0] == pytest.approx(w.ego_log[0, :2].astype(float), abs=1e-4)


def test_window_too_short_for_init_step(tmp_path):
    with pytest.raises(ScenarioError, match="--window 5"):
        load_scenarionet(_write_pickle(tmp_path / "sd_a.pkl", _sd()), ImportOptions(window=5))


def test_resampled_from_5_hz(tmp_path):
    (s,) = load_scenarionet(_write_pickle(tmp_path / "sd_a.pkl", _sd(n_t=50, dt=0.2)))
    assert s.num_steps == 99 and "resampled" in s.tags
    np.testing.assert_allclose(s.ego_log[:, 0] + s.world_origin[0], np.arange(99) * 1.0, atol=1e-4)  # 10 m/s
    car = int(np.flatnonzero(~s.valid.all(axis=1))[0])
    # source gap at 5 Hz steps 30..39 = 6.0..7.8 s; new steps strictly inside (5.8, 8.0) s are invalid
    assert not s.valid[car, 59:80].any() and s.valid[car, 58] and s.valid[car, 80]


def test_route_covers_the_logged_path(tmp_path):
    (s,) = load_scenarionet(_write_pickle(tmp_path / "sd_a.pkl", _sd()))
    r = s.route
    seg = np.hypot(*np.diff(r, axis=0).T)
    assert seg.max() <= 1.0 + 1e-9
    assert r[-1, 0] == pytest.approx(float(s.ego_log[-1, 0]) + 10.0, abs=1e-3)  # 10 m straight extension
    d = np.min(np.hypot(*(s.ego_log[:, None, :2] - r[None]).transpose(2, 0, 1)), axis=1)
    assert d.max() < 0.51


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = _write_pickle(tmp_path / "sd_evil.pkl", {"tracks": _Evil(str(marker))})
    with pytest.raises(ScenarioError, match="refused to unpickle global") as e:
        load_any(path)
    assert str(e.value).startswith(str(path)) and "system" in str(e.value)
    assert not marker.exists()
    pickle.loads(pickle.dumps(1))  # the real pickle module is untouched
    with pytest.raises(ScenarioError, match="builtins.eval"):
        safe_loads(b"cbuiltins\neval\n(S'1+1'\ntR.")


def test_truncated_pickle(tmp_path):
    data = pickle.dumps(_sd(), protocol=4)
    path = tmp_path / "sd_cut.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ScenarioError, match="truncated or corrupt pickle") as e:
        load_any(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_pickle_of_wrong_shape(tmp_path):
    with pytest.raises(ScenarioError, match="not a ScenarioNet scenario dict"):
        load_any(_write_pickle(tmp_path / "sd_list.pkl", [1, 2, 3]))
    sd = _sd()
    del sd["tracks"]["ego"]
    with pytest.raises(ScenarioError, match="sdc_id 'ego' is not a track"):
        load_any(_write_pickle(tmp_path / "sd_noego.pkl", sd))


def _waymo_json(n_t=91) -> dict:
    def obj(i, x0, vx, kind="vehicle", invalid=()):
        pos = [{"x": x0 + vx * 0.1 * k, "y": 0.0, "z": 0.0} for k in range(n_t)]
        vel = [{"x": vx, "y": 0.0} for _ in range(n_t)]
        head = [0.0] * n_t
        valid = [True] * n_t
        for k in invalid:
            pos[k], vel[k] = {"x": -10000, "y": -10000, "z": -10000}, {"x": -10000, "y": -10000}
            head[k], valid[k] = -10000, False
        return {"position": pos, "velocity": vel, "heading": head, "valid": valid, "width": 2.0, "length": 4.6,
                "height": 1.5, "type": kind, "id": i, "goalPosition": pos[-1], "mark_as_expert": False}

    def road(i, pts, kind, code):
        return {"geometry": [{"x": x, "y": y} for x, y in pts], "type": kind, "map_element_id": code, "id": i}

    return {
        "name": "t.json",
        "scenario_id": "wj",
        "objects": [obj(10, 30.0, 0.0, "pedestrian", invalid=range(50, 60)), obj(11, 0.0, 12.0)],
        "roads": [
            road(1, [(-10.0, 0.0), (200.0, 0.0)], "lane", 2),
            road(2, [(-10.0, 5.0), (200.0, 5.0)], "lane", 3),
            road(3, [(-10.0, -2.0), (200.0, -2.0)], "road_edge", 15),
            road(4, [(5.0, 5.0)], "stop_sign", 17),
        ],
        "tl_states": {},
        "metadata": {"sdc_track_index": 1},
    }


def test_waymo_json_content(tmp_path):
    p = tmp_path / "w.json"
    p.write_text(json.dumps(_waymo_json()))
    (s,) = load_waymo_json(p)
    assert s.id == "wj" and s.num_steps == 91 and s.ego == 0 and s.source == "waymo_json"
    np.testing.assert_allclose(s.ego_log[:, 0] + s.world_origin[0], np.arange(91) * 1.2, atol=1e-4)
    assert s.agent_type.tolist() == [AgentType.VEHICLE, AgentType.PEDESTRIAN]
    assert not s.valid[1, 50:60].any() and np.all(s.agents[1, 50:60] == 0) and s.valid[1, :50].all()
    assert len(s.map.lanes) == 1  # the bike lane (map type 3) is not a driving lane
    assert len(s.map.road_edges) == 1


def test_radian_headings_along_the_x_axis_stay_radians(tmp_path):
    """The only mover heads 0.004 rad (a street along the x axis) with its velocity 0.006 rad to the right of its
    heading, a steady offset; cross traffic stands heading north. The headings are radians: read as degrees (the
    unit that fitted the mover's course better by 0.004 rad), the standing cars turned from pi/2 to 0.027 rad."""
    d = _waymo_json()
    ego = d["objects"][1]
    ego["heading"] = [0.004] * 91
    ego["velocity"] = [{"x": 12.0 * np.cos(-0.002), "y": 12.0 * np.sin(-0.002)}] * 91
    for k, x in enumerate((60.0, 66.0)):
        d["objects"].append({**d["objects"][1], "id": 20 + k, "position": [{"x": x, "y": 8.0, "z": 0.0}] * 91,
                             "velocity": [{"x": 0.0, "y": 0.0}] * 91, "heading": [np.pi / 2] * 91})
    p = tmp_path / "w.json"
    p.write_text(json.dumps(d))
    (s,) = load_waymo_json(p)
    np.testing.assert_allclose(s.agents[0, :, 2], 0.004, atol=1e-6)
    np.testing.assert_allclose(s.agents[2:, :, 2], np.pi / 2, atol=1e-6)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"objects": [', "malformed JSON"),
        ("[1, 2]", "top level is list"),
        (json.dumps({"objects": [], "metadata": {"sdc_track_index": 0}}), "no objects"),
    ],
)
def test_bad_json(tmp_path, text, match):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(ScenarioError, match=match) as e:
        load_any(p)
    assert str(e.value).startswith(str(p)) and "\n" not in str(e.value)


def test_json_with_inconsistent_lengths(tmp_path):
    d = _waymo_json()
    d["objects"][0]["heading"] = d["objects"][0]["heading"][:10]
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ScenarioError, match="lengths"):
        load_any(p)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('<?xml version="1.0"?><commonRoad commonRoadVersion="2020a"><lanelet', "malformed XML"),
        ('<?xml version="1.0"?><commonRoad commonRoadVersion="2018b" timeStepSize="0.1"/>', "version '2018b'"),
        ('<?xml version="1.0"?><OpenDRIVE/>', "not a CommonRoad file"),
    ],
)
def test_bad_xml(tmp_path, text, match):
    p = tmp_path / "bad.xml"
    p.write_text(text)
    with pytest.raises(ScenarioError, match=match) as e:
        load_commonroad(p)
    assert str(e.value).startswith(str(p)) and "\n" not in str(e.value)


def _convert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scenarios.convert", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_convert_cli_round_trip_and_bad_input(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _write_pickle(src / "sd_a.pkl", _sd())
    (src / "w.json").write_text(json.dumps(_waymo_json()))
    dst = tmp_path / "out" / "all.npz"
    r = _convert(str(src), str(dst))
    assert r.returncode == 0, r.stderr
    assert "wrote 2 scenes" in r.stdout and "synthetic" in r.stdout and "wj" in r.stdout
    written = load_scenarios(dst)
    direct = load_any(src)
    assert [s.id for s in written] == [s.id for s in direct]
    for a, b in zip(written, direct):
        np.testing.assert_array_equal(a.agents, b.agents)
        np.testing.assert_array_equal(a.map.drivable.points, b.map.drivable.points)

    (src / "z.json").write_text("{not json")
    dst2 = tmp_path / "out" / "bad.npz"
    r = _convert(str(src), str(dst2))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and str(src / "z.json") in last
    assert not dst2.exists() and list(dst.parent.iterdir()) == [dst]


def test_ego_invalid_at_the_start_keeps_its_valid_span(tmp_path):
    sd = _sd()
    sd["tracks"]["ego"]["state"]["valid"][:5] = 0.0
    (s,) = load_scenarionet(_write_pickle(tmp_path / "sd_a.pkl", sd))
    assert s.id == "synthetic@5" and s.num_steps == 115 and s.valid[0].all()
    np.testing.assert_allclose(s.ego_log[0, 0] + s.world_origin[0], 5.0, atol=1e-5)
    sd["tracks"]["ego"]["state"]["valid"][:] = 0.0
    sd["tracks"]["ego"]["state"]["valid"][50:58] = 1.0
    with pytest.raises(ScenarioError, match="valid for 8 consecutive steps"):
        load_scenarionet(_write_pickle(tmp_path / "sd_b.pkl", sd))


def test_convert_cli_rejects_bad_destination(tmp_path):
    src = _write_pickle(tmp_path / "sd_a.pkl", _sd())
    r = _convert(str(src), str(tmp_path / "out.h5"))
    assert r.returncode == 1 and "output must be a .npz file" in r.stderr and "Traceback" not in r.stderr
    r = _convert(str(src), str(tmp_path / "o.npz"), "--window", "-3")
    assert r.returncode == 1 and "must be >= 0" in r.stderr
    r = _convert(str(src), str(tmp_path / "o.npz"), "--stride", "50")
    assert r.returncode == 1 and r.stderr.strip().startswith("error: --stride 50: steps between windows")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sd_a.pkl"]


def test_convert_keeps_an_existing_output_unless_forced(tmp_path):
    """An existing DST is kept (one-line error) unless --force; the importers' notes (a repaired track) are one
    ``note:`` line each, not Python warning source lines."""
    sd = _sd()
    sd["tracks"]["ego"]["state"]["velocity"][40] = [60.0, 0.0]  # one recorded velocity glitch: repaired, noted
    src = _write_pickle(tmp_path / "sd_a.pkl", sd)
    dst = tmp_path / "o.npz"
    dst.write_bytes(b"keep me")
    r = _convert(str(src), str(dst))
    assert r.returncode == 1 and r.stderr.strip() == f"error: {dst}: exists; give --force to replace it, or " \
                                                        "another output file"
    assert dst.read_bytes() == b"keep me"
    r = _convert(str(src), str(dst), "--force")
    assert r.returncode == 0, r.stderr
    assert [s.id for s in load_scenarios(dst)] == ["synthetic"]
    notes = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert notes == [f"note: {src}: synthetic: recorded samples repaired: 1 velocities"], notes


@pytest.mark.parametrize("turn, want_angle, want_lw", [(30.0, 30.0, (4.0, 2.0)), (80.0, -10.0, (2.0, 4.0))])
def test_commonroad_shape_box_of_a_turned_polygon(turn, want_angle, want_lw):
    """The box of a polygon obstacle is the smallest rectangle around it, its angle within +-45 degrees of the
    obstacle's heading (a polygon has no heading of its own), centre and sizes exact."""
    from commonroad.geometry.shape import Polygon as CrPolygon

    from scenarios.importers.commonroad import shape_box

    a = np.radians(turn)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    corners = np.array([[-2.0, -1.0], [2.0, -1.0], [2.0, 1.0], [-2.0, 1.0]]) @ rot.T + (0.5, -0.25)
    cx, cy, angle, length, width = shape_box(CrPolygon(corners))
    assert (cx, cy) == pytest.approx((0.5, -0.25), abs=1e-9)
    assert np.degrees(angle) == pytest.approx(want_angle, abs=1e-6)
    assert (length, width) == pytest.approx(want_lw, abs=1e-9)


def test_commonroad_shape_box_of_a_group_of_circles_holds_them():
    """A shape group of circles: its box holds every circle (shapely as the oracle) and is the smallest one up to the
    circumscribing polygon (two unit circles 3 * sqrt(2) m apart: 2 x (3 * sqrt(2) + 2) m)."""
    from commonroad.geometry.shape import Circle, ShapeGroup
    from shapely import affinity
    from shapely.geometry import Point, box

    from scenarios.importers.commonroad import shape_box

    centres = [(0.0, 0.0), (3.0, 3.0)]
    cx, cy, angle, length, width = shape_box(ShapeGroup([Circle(1.0, np.array(c)) for c in centres]))
    outline = affinity.translate(affinity.rotate(box(-length / 2, -width / 2, length / 2, width / 2), angle,
                                                 use_radians=True, origin=(0, 0)), cx, cy)
    for c in centres:
        assert outline.buffer(1e-9).contains(Point(c).buffer(1.0, quad_segs=64))
    assert sorted((length, width)) == pytest.approx([2.0, 3 * np.sqrt(2) + 2.0], rel=3e-3)
