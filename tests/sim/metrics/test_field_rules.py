"""The right values of ../shared/cases/realdata/field_rules/README.md (nuPlan/NAVSIM rules), one test per case.

Each case is a small edit of a real sample; the folder is only in the team's checkout, so every test skips
with a reason when it is absent.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch

from scenarios.formats import load_file
from scenarios.scenario import AgentType
from sim.batch import make_batch
from sim.metrics.comfort import JERK_MAGNITUDE_MAX, LAT_ACCEL_MAX, YAW_ACCEL_MAX, YAW_RATE_MAX
from sim.metrics.registry import MetricContext, compute_metrics
from sim.rollout import rollout

pytestmark = pytest.mark.data
CASES = (Path(__file__).resolve().parents[3] / ".." / "shared" / "cases" / "realdata" / "field_rules").resolve()


def case(name: str) -> Path:
    path = CASES / name
    if not path.is_file():
        pytest.skip(f"field-rules case {name} not found at {CASES} (only present in the team's checkout)")
    return path


def replay(name: str, agents: str = "log"):
    """``(metrics {name: float}, context)`` of log replay of the single scene of case ``name``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (scene,) = load_file(case(name))
    batch = make_batch([scene])
    ro = rollout(batch, None, agents=agents)
    return {k: float(v[0]) for k, v in compute_metrics(ro, batch).items()}, MetricContext(ro, batch)


@pytest.mark.parametrize("name", ["c01_tailgater.pkl", "c01_control.pkl"])
def test_c01_a_tailgater_behind_a_lane_keeping_ego_is_no_ttc_candidate(name):
    """nuPlan time_to_collision_within_bound / NAVSIM _calculate_ttc: agents behind never count."""
    m, c = replay(name)
    assert m["ttc_ok"] == 1.0 and m["score"] == pytest.approx(1.0)
    assert m["collision"] == 0.0


@pytest.mark.parametrize(("name", "multiplier"), [("c02_barrier.pkl", 0.5), ("c02_parked_car.pkl", 0.0)])
def test_c02_an_at_fault_hit_on_an_object_costs_half(name, multiplier):
    """nuPlan no_ego_at_fault_collisions / NAVSIM NC: 0.5 for an object, 0 for a (parked) vehicle."""
    m, c = replay(name)
    assert m["collision"] == 1.0 and m["collision_at_fault"] == 1.0
    assert m["no_at_fault_collisions"] == multiplier
    hit = (c.agent_overlap & c.controlled[:, None]).any(-1)[0]  # agents the ego touched
    types = c.batch.agent_type[0, 1:][hit]
    want = AgentType.OTHER if multiplier == 0.5 else AgentType.VEHICLE
    assert (types == int(want)).all()
    # nuPlan's score has no human filter: the multiplier shows (speed limits unknown on this nuScenes map)
    assert math.isnan(m["speed_limit_compliance"])
    ddc = 1.0 if math.isnan(m["driving_direction_compliance"]) else m["driving_direction_compliance"]
    weighted = (5 * m["progress"] + 5 * m["ttc_ok"] + 2 * m["comfortable"]) / 12
    assert m["nuplan_score"] == pytest.approx(multiplier * (1 - m["offroad"]) * ddc * weighted)
    # EPDMS filters what the recorded driver did: log replay of the human loses nothing for a term it fails (0),
    # and keeps an object's 0.5, which is not a failed term (NAVSIM's filter lifts zeros only)
    assert m["score"] == pytest.approx(1.0 if multiplier == 0.0 else 0.5 * (1 - m["offroad"]) * ddc)


def test_c03_a_gentle_weave_fails_comfort_on_yaw_acceleration_alone():
    """nuPlan ego_is_comfortable with ego_yaw_acceleration: |yaw accel| <= 1.93 rad/s^2."""
    m, c = replay("c03_weave.pkl")
    steps = c.controlled[0]
    assert float(c.yaw_accel[0, steps].abs().max()) > YAW_ACCEL_MAX
    assert float(c.yaw_rate[0, steps].abs().max()) <= YAW_RATE_MAX
    assert float(c.lat_accel[0, steps].abs().max()) <= LAT_ACCEL_MAX
    assert m["comfortable"] == 0.0
    control, cc = replay("c03_control.pkl")
    assert control["comfortable"] == 1.0
    assert float(cc.yaw_accel[0, cc.controlled[0]].abs().max()) <= YAW_ACCEL_MAX
    assert float(cc.jerk_magnitude[0, cc.controlled[0]].abs().max()) <= JERK_MAGNITUDE_MAX


def test_c05_idm_moves_vehicles_only():
    """nuPlan's reactive agents are vehicles: pedestrians, cyclists and objects keep their logs under IDM."""
    m, c = replay("c05_waiting_pedestrian.pkl", agents="idm")
    assert m["collision"] == 0.0
    b = c.batch
    not_vehicle = b.agent_type[0] != int(AgentType.VEHICLE)
    not_vehicle[0] = False
    assert not_vehicle.sum() > 0
    valid = b.valid[0, not_vehicle]
    moved = (c.ro.traj[0, not_vehicle, :, :2] - b.log[0, not_vehicle, :, :2]).norm(dim=-1)
    assert float(moved[valid].max()) == 0.0
    # and IDM does drive some vehicle off its log (the model is active)
    vehicles = b.agent_type[0] == int(AgentType.VEHICLE)
    vehicles[0] = False
    gap = (c.ro.traj[0, vehicles, :, :2] - b.log[0, vehicles, :, :2]).norm(dim=-1)
    assert float(torch.where(b.valid[0, vehicles], gap, torch.zeros_like(gap)).max()) > 0.1
