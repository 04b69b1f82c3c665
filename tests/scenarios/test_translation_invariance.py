"""Translation invariance: a scene anywhere in the world (up to 1e7 m away) gives the same metrics.

The scene goes through the real importer (ScenarioNet dict -> recentred Scenario), then every
baseline is simulated in float32 and every metric compared with the untranslated scene.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.formats import ImportOptions
from scenarios.importers.common import recording_to_scenes
from scenarios.importers.scenarionet import scenarionet_recording
from sim.baselines import constant_velocity_policy
from sim.batch import make_batch
from sim.metrics.registry import compute_metrics
from sim.rollout import rollout

N_T = 80
DT = 0.1


def _track(xy: np.ndarray, kind: str = "VEHICLE", size=(4.5, 1.9)) -> dict:
    vel = np.gradient(xy, DT, axis=0)
    heading = np.arctan2(vel[:, 1], vel[:, 0])
    n = len(xy)
    return {"type": kind, "state": {
        "position": np.concatenate([xy, np.zeros((n, 1))], 1), "heading": heading, "velocity": vel,
        "valid": np.ones(n), "length": np.full(n, size[0]), "width": np.full(n, size[1])}}


def _scene_dict() -> dict:
    """An ego turning left through a junction, a car it meets, a parked car; lanes with a road edge."""
    t = np.arange(N_T) * DT
    s = 9.0 * t
    th = np.clip((s - 25.0) / 20.0, 0.0, 1.0) * (math.pi / 2)  # straight, then a quarter turn of 20 m
    ego = np.stack([np.where(s < 25, s, 25 + 20 * np.sin(th)), np.where(s < 25, 0.0, 20 * (1 - np.cos(th)))], 1)
    ego[s > 45, 1] += s[s > 45] - 45  # after the turn: north
    oncoming = np.stack([60 - 8.0 * t, np.full(N_T, 3.5)], 1)
    parked = np.tile([[15.0, -3.5]], (N_T, 1))
    lane_x = np.array([[-20.0, 0, 0], [120.0, 0, 0]])
    lane_y = np.array([[45.0, -20, 0], [45.0, 120, 0]])
    return {
        "id": "invariance", "version": "test", "length": N_T,
        "metadata": {"sdc_id": "ego", "dataset": "unit", "ts": t, "sample_rate": DT},
        "tracks": {"ego": _track(ego), "oncoming": _track(oncoming), "parked": _track(parked)},
        "dynamic_map_states": {},
        "map_features": {
            "1": {"type": "LANE_SURFACE_STREET", "polyline": lane_x, "width": np.full((2, 2), 1.75)},
            "2": {"type": "LANE_SURFACE_STREET", "polyline": lane_y, "width": np.full((2, 2), 1.75)},
            "3": {"type": "ROAD_EDGE_BOUNDARY", "polyline": np.array([[-20.0, -5.0], [120.0, -5.0]])},
        },
    }


def _shifted(d: dict, dx: float, dy: float) -> dict:
    out = copy.deepcopy(d)
    for tr in out["tracks"].values():
        tr["state"]["position"][:, 0] += dx
        tr["state"]["position"][:, 1] += dy
    for mf in out["map_features"].values():
        mf["polyline"] = np.asarray(mf["polyline"], dtype=np.float64).copy()
        mf["polyline"][:, 0] += dx
        mf["polyline"][:, 1] += dy
    return out


def _metrics(d: dict) -> dict[str, dict[str, float]]:
    (scene,) = recording_to_scenes(scenarionet_recording(d), ImportOptions())
    batch = make_batch([scene])
    out = {}
    for name, policy in (("log-replay", None), ("constant-velocity", constant_velocity_policy(batch.dt))):
        for agents in ("log", "idm"):
            m = compute_metrics(rollout(batch, policy, agents=agents), batch)
            out[f"{name}/{agents}"] = {k: float(v[0]) for k, v in m.items()}
    return out


@pytest.fixture(scope="module")
def reference() -> dict[str, dict[str, float]]:
    return _metrics(_scene_dict())


def test_reference_scene_is_not_trivial(reference):
    cv = reference["constant-velocity/log"]
    assert cv["ade"] > 1.0 and cv["progress"] < 1.0  # the constant-velocity ego misses the turn


@settings(max_examples=12, deadline=None)
@given(dx=st.floats(-1e7, 1e7), dy=st.floats(-1e7, 1e7))
def test_every_metric_of_every_baseline_is_translation_invariant(reference, dx, dy):
    d = _scene_dict()
    got = _metrics(_shifted(d, dx, dy))
    (scene,) = recording_to_scenes(scenarionet_recording(_shifted(d, dx, dy)), ImportOptions())
    assert np.allclose(scene.world_origin, np.array(reference_origin()) + (dx, dy), atol=1e-6)
    for run, metrics in reference.items():
        for k, v in metrics.items():
            assert got[run][k] == pytest.approx(v, abs=1e-3, nan_ok=True), (run, k)


def reference_origin() -> tuple[float, float]:
    (scene,) = recording_to_scenes(scenarionet_recording(_scene_dict()), ImportOptions())
    return scene.world_origin
