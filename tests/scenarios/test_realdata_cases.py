"""The right values of ../shared/cases/realdata/README.md, one test per case (skipped when absent)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from scenarios.formats import ImportOptions, load_file
from scenarios.importers.repair import MapElementSkipped
from sim.baselines import constant_velocity_policy
from sim.batch import make_batch
from sim.metrics.registry import MetricContext, compute_metrics
from sim.rollout import rollout

pytestmark = pytest.mark.data
CASES = (Path(__file__).resolve().parents[2] / ".." / "shared" / "cases" / "realdata").resolve()
DATA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()


def case(name: str) -> Path:
    path = CASES / name
    if not path.is_file():
        pytest.skip(f"real-data case {name} not found at {CASES} (only present in the team's checkout)")
    return path


def run(path: Path, baseline: str = "log-replay", options: ImportOptions | None = None):
    """``(metrics {name: float}, context)`` of one baseline on the single scene of ``path``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (scene,) = load_file(path, options)
    batch = make_batch([scene])
    policy = None if baseline == "log-replay" else constant_velocity_policy(batch.dt)
    ro = rollout(batch, policy)
    return {k: float(v[0]) for k, v in compute_metrics(ro, batch).items()}, MetricContext(ro, batch)


def test_far_from_origin_imports_and_log_replay_is_exact():
    m, _ = run(case("far_from_origin.json"))
    assert m["ade"] == pytest.approx(0.0, abs=1e-4) and m["fde"] == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("baseline", ["log-replay", "constant-velocity"])
def test_utm_offset_changes_no_metric(baseline):
    local, _ = run(case("offset_local.pkl"), baseline)
    utm, _ = run(case("offset_utm.pkl"), baseline)
    for k in local:
        assert utm[k] == pytest.approx(local[k], abs=1e-3, nan_ok=True), k


@pytest.mark.parametrize("name", ["late_agent.pkl", "late_agent_few_tracks.pkl"])
def test_late_agent_collides_at_14_s(name):
    m, c = run(case(name))
    assert m["collision"] == 1.0 and m["collision_time"] == pytest.approx(14.0, abs=1e-6)
    assert int(c.batch.agents_dropped[0]) == 0


def test_commonroad_static_obstacle_is_an_agent():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (scene,) = load_file(case("static_obstacle.xml"))
    assert scene.static_agents().sum() >= 1
    m, _ = run(case("static_obstacle.xml"))
    assert m["collision"] == 1.0


@pytest.mark.parametrize("name", ["stopped_ego_side_hit.pkl", "stopped_ego_rear_hit.pkl"])
def test_stopped_ego_is_never_at_fault(name):
    m, _ = run(case(name))
    assert m["collision"] == 1.0 and m["collision_at_fault"] == 0.0


def test_empty_road_line_is_skipped_with_a_warning_and_changes_nothing():
    with pytest.warns(MapElementSkipped, match="road_line.*0 points"):
        load_file(case("empty_road_line.json"))
    reference = DATA / "waymo_json" / "womd_test.json"  # the same scene without the empty line
    if not reference.is_file():
        pytest.skip(f"{reference} not found")
    for baseline in ("log-replay", "constant-velocity"):
        got, _ = run(case("empty_road_line.json"), baseline)
        ref, _ = run(reference, baseline)
        for k in ref:
            assert got[k] == pytest.approx(ref[k], abs=1e-6, nan_ok=True), (baseline, k)


def test_lane_beyond_grid_constant_velocity_stays_on_road():
    m, c = run(case("lane_beyond_grid.xml"), "constant-velocity", ImportOptions(ego="484"))
    assert m["offroad"] == 0.0
    assert float(c.offroad_dist[0, c.controlled[0]].max()) < 0.3


def test_nuscenes_moving_ego_log_replay_is_a_plausible_human():
    m, c = run(case("nuscenes_moving_ego.pkl"))
    steps = c.controlled[0]
    assert float(c.accel[0, steps].abs().max()) <= 8.0
    assert m["comfortable"] == 1.0 and m["route_completion"] == pytest.approx(1.0)
    assert not math.isnan(m["ade"]) and m["ade"] == pytest.approx(0.0, abs=1e-4)


def test_every_recorded_waymo_and_nuscenes_ego_is_a_plausible_comfortable_human():
    """Log replay of every recorded ego of the real Waymo and nuScenes samples (ScenarioNet pickles, Waymo JSON,
    the moving nuScenes ego): |long. accel| <= 8 m/s^2 at every controlled step and comfortable (all six nuPlan
    bounds) in >= 90 % of scenes; the import repairs (position jumps and steps, flipped headings) are what
    keeps recorded glitches from reading as harsh driving."""
    from sim.rollout import rollout

    files = sorted((DATA / "scenarionet").glob("*.pkl")) + sorted((DATA / "waymo_json").glob("*.json"))
    files += [CASES / "nuscenes_moving_ego.pkl"]
    files = [f for f in files if f.is_file()]
    if not files:
        pytest.skip(f"no recorded Waymo or nuScenes sample under {DATA} or {CASES}")
    scenes = []
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scenes += load_file(f)
    comfortable = []
    for s in scenes:
        batch = make_batch([s])
        ro = rollout(batch, None)
        c = MetricContext(ro, batch)
        assert int(batch.agents_dropped[0]) == 0, s.id  # every agent within reach is simulated
        accel = c.accel[0, c.controlled[0]].abs().max()
        assert float(accel) <= 8.0, (s.id, float(accel))
        comfortable.append(float(compute_metrics(ro, batch)["comfortable"][0]))
    assert np.mean(comfortable) >= 0.9, dict(zip([s.id for s in scenes], comfortable))


def test_every_case_log_replay_completes_its_route():
    for path in sorted(CASES.glob("*")) if CASES.is_dir() else []:
        if path.suffix not in (".pkl", ".json", ".xml"):
            continue
        options = ImportOptions(ego="484") if path.name == "lane_beyond_grid.xml" else None
        m, _ = run(path, options=options)
        assert m["route_completion"] == pytest.approx(1.0), path.name
        assert np.isclose(m["ade"], 0.0, atol=1e-4), path.name


def test_results_file_keeps_the_world_offset_and_dropped_agent_count(tmp_path, capsys):
    """Through the real CLI: the recentring offset (UTM) and the agent cap's drop count reach results.h5,
    and a file with map elements left out gets one ``note:`` line, not a Python warning."""
    from sim.evaluate import main
    from sim.results.reader import read_summary

    utm, local = case("offset_utm.pkl"), case("offset_local.pkl")
    out = tmp_path / "r.h5"
    assert main(["--baseline", "log-replay", "--baseline", "constant-velocity", "--scenarios", str(utm),
                 "--out", str(out), "--no-progress"]) == 0
    cap = capsys.readouterr()
    notes = [line for line in cap.out.splitlines() if line.startswith("note: ")]
    assert notes and "map element(s) skipped" in notes[0] and "Warning" not in cap.out + cap.err
    (info,) = read_summary(out).scenarios
    (shifted,) = load_file(utm)
    (plain,) = load_file(local)
    assert info.offset == pytest.approx(tuple(shifted.world_origin), abs=1e-6)
    # the UTM file is the local one moved by (+664000, +3997000) m: the offsets differ by exactly that
    assert np.subtract(shifted.world_origin, plain.world_origin) == pytest.approx((664_000.0, 3_997_000.0), abs=1e-3)
    assert info.agents_dropped == 0


STATIC_RECTANGLE = "<rectangle>\n        <length>4.5</length>\n        <width>1.8</width>\n      </rectangle>"


@pytest.mark.parametrize("corners", [
    [(-2.25, -0.9), (2.25, -0.9), (2.25, 0.9), (-2.25, 0.9)],  # the parked car's rectangle as a polygon
    [(2.25, 0.9), (2.25, 0.0), (2.25, -0.9), (-2.25, -0.9), (-2.25, 0.9)],  # clockwise, another start, 5 points
])
def test_commonroad_polygon_static_obstacle_is_an_agent(tmp_path, corners):
    """A ``staticObstacle`` whose shape is a polygon (CommonRoad allows polygons and shape groups for any
    obstacle) is the same parked car: an agent, box 4.5 x 1.8 m along the road, and log replay collides with it."""
    text = case("static_obstacle.xml").read_text()
    assert text.count(STATIC_RECTANGLE) >= 1
    points = "".join(f"<point><x>{x}</x><y>{y}</y></point>" for x, y in corners)
    path = tmp_path / "static_polygon.xml"
    path.write_text(text.replace(STATIC_RECTANGLE, f"<polygon>{points}</polygon>", 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (scene,) = load_file(path)
    (k,) = np.flatnonzero(scene.static_agents())
    box = scene.agents[k, 0]
    assert box[5] == pytest.approx(4.5, abs=1e-4) and box[6] == pytest.approx(1.8, abs=1e-4)
    assert box[:2] + scene.world_origin == pytest.approx((60.0, 2.75), abs=1e-4)
    assert math.cos(2 * float(box[2])) == pytest.approx(1.0, abs=1e-6)  # along the road (yaw 0 or pi)
    m, _ = run(path)
    assert m["collision"] == 1.0
