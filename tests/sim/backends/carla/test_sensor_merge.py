"""CARLA's collision sensor is ORed into the box-overlap collision metric (no server needed)."""

from __future__ import annotations

import numpy as np

from scenarios.procedural import generate
from sim.batch import make_batch
from sim.evaluation.carla_pool import CarlaRun
from sim.evaluation.unit_eval import _rows, _with_sensor_collision
from sim.rollout import rollout


def _run(sensor: np.ndarray):
    scene = generate("lane_follow_straight", 3)
    batch = make_batch([scene])
    ro = rollout(batch, None)  # log replay: no box-overlap collision
    rows = _rows([scene.id], ro, batch)
    return rows, CarlaRun(scene.id, ro, batch, sensor, ("vehicle.test",), "localhost:2000", 0.0)


def test_sensor_only_contact_counts_as_collision():
    t_steps = 91
    sensor = np.zeros(t_steps, bool)
    sensor[25] = True  # step ending at t = 25, i.e. 15 steps after init_step 10
    rows, run = _run(sensor)
    assert rows.metrics["collision"][0] == 0 and rows.metrics["score"][0] > 0
    merged = _with_sensor_collision(rows, run)
    assert merged.metrics["collision"][0] == 1
    assert merged.metrics["collision_at_fault"][0] == 1
    assert np.isclose(merged.metrics["collision_time"][0], 1.5)
    assert merged.metrics["score"][0] == 0
    assert merged.metrics["ade"][0] == rows.metrics["ade"][0]


def test_no_sensor_contact_leaves_rows_alone():
    rows, run = _run(np.zeros(91, bool))
    assert _with_sensor_collision(rows, run) is rows


def test_sensor_contact_during_history_is_ignored():
    sensor = np.zeros(91, bool)
    sensor[5] = True  # before control starts: not the policy's doing
    rows, run = _run(sensor)
    assert _with_sensor_collision(rows, run).metrics["collision"][0] == 0
