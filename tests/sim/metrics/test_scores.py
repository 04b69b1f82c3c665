"""The two scores (sim/metrics/scores.py, formulas in catalogue.py: NAVSIM v2 EPDMS with the human filter, nuPlan's
closed-loop score), on
synthetic scenes and as formulas, and their NaN (not applicable) handling in the verdict and the dashboard."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.metrics.catalogue import (
    EPDMS_MULTIPLIERS,
    EPDMS_WEIGHTS,
    JUDGED_METRICS,
    MAKING_PROGRESS,
    METRIC_NAMES,
    NUPLAN_WEIGHTS,
    epdms,
    nuplan_score,
    score_terms,
)
from sim.selection.verdict import VerdictInput, compute_verdict
from tests.rules_helpers import ego_states, replay, road_map, scene, straight

EAST = np.array([[-300.0, 0.0], [300.0, 0.0]])
ONES = {n: 1.0 for n in (*EPDMS_MULTIPLIERS, *EPDMS_WEIGHTS, *NUPLAN_WEIGHTS)}


def terms(**kw) -> dict[str, float]:
    return {**ONES, **kw}


# ----------------------------------------------------------------------------- formulas
def test_epdms_weights_and_multipliers():
    assert epdms(ONES) == 1.0
    assert epdms(terms(no_at_fault_collision=0.5)) == 0.5
    assert epdms(terms(driving_direction_compliance=0.0)) == 0.0
    assert epdms(terms(traffic_light_compliance=0.0)) == 0.0
    assert epdms(terms(ttc_ok=0.0)) == pytest.approx(9 / 14)  # 5 EP + 5 TTC + 2 LK + 2 HC, EC dropped
    assert epdms(terms(lane_keeping=0.0, comfortable=0.0)) == pytest.approx(10 / 14)


def test_not_applicable_terms_never_lower_a_score():
    assert epdms(terms(traffic_light_compliance=math.nan)) == 1.0  # a NaN multiplier counts as 1
    assert epdms(terms(lane_keeping=math.nan, ttc_ok=0.0)) == pytest.approx(7 / 12)  # dropped with its weight
    assert nuplan_score(terms(speed_limit_compliance=math.nan, ttc_ok=0.0)) == pytest.approx(7 / 12)


def test_human_filter():
    """A term the recorded driver scores 0 on is 1 for the policy; a 0.5 of the human filters nothing."""
    human = terms(driving_direction_compliance=0.0, no_at_fault_collision=0.5)
    policy = terms(driving_direction_compliance=0.0, no_at_fault_collision=0.5, ttc_ok=0.0)
    assert epdms(policy, human) == pytest.approx(0.5 * 9 / 14)
    assert epdms(terms(driving_direction_compliance=0.5), ONES) == 0.5  # the human complied: no filter


def test_nuplan_score():
    assert nuplan_score(ONES) == 1.0
    assert nuplan_score(terms(speed_limit_compliance=0.0)) == pytest.approx(12 / 16)
    assert nuplan_score(terms(progress=MAKING_PROGRESS - 1e-6)) == 0.0  # not making progress
    p = MAKING_PROGRESS
    assert nuplan_score(terms(progress=p)) == pytest.approx((5 * p + 11) / 16)
    assert nuplan_score(terms(traffic_light_compliance=0.0)) == 1.0  # no red-light term in nuPlan's score


unit = st.one_of(st.just(math.nan), st.sampled_from([0.0, 0.5, 1.0]), st.floats(0.0, 1.0))


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(ONES)), unit), st.dictionaries(st.sampled_from(sorted(ONES)), unit))
def test_formulas_agree_on_floats_numpy_and_torch(pol, hum):
    """One formula for every array kind: floats, numpy arrays and torch tensors give the same value, in [0, 1]."""
    p, h = terms(**pol), terms(**hum)
    want = epdms(p, h)
    for conv in (lambda x: np.array([x]), lambda x: torch.tensor([x], dtype=torch.float64)):
        got = epdms({k: conv(v) for k, v in p.items()}, {k: conv(v) for k, v in h.items()})
        assert float(got[0]) == pytest.approx(want, nan_ok=True)
        got = nuplan_score({k: conv(v) for k, v in p.items()})
        assert float(got[0]) == pytest.approx(nuplan_score(p), nan_ok=True)
    weighted = ("progress", "ttc_ok", "lane_keeping", "comfortable")
    if all(math.isnan(p[n]) for n in weighted):  # no applicable weighted term: no score (NaN), never an error
        assert math.isnan(want)
    else:
        assert 0.0 <= want <= 1.0
    assert math.isnan(nuplan_score(p)) or 0.0 <= nuplan_score(p) <= 1.0


@pytest.mark.parametrize("nc", [0.0, 0.5, 1.0])
def test_nc_comes_from_no_at_fault_collisions_through_one_function(nc):
    m = {n: 1.0 for n in ("driving_direction_compliance", "traffic_light_compliance", "progress", "ttc_ok",
                          "lane_keeping", "comfortable", "speed_limit_compliance")}
    t = score_terms({**m, "no_at_fault_collisions": nc, "offroad": 0.0})
    assert t["no_at_fault_collision"] == nc and t["drivable"] == 1.0
    assert nuplan_score(t) == pytest.approx(nc)  # every other term 1: the score is the multiplier


# ----------------------------------------------------------------------------- on synthetic scenes
def test_wrong_way_human_is_filtered_in_score_not_in_nuplan_score():
    """The recorded driver goes 10 m/s against the lane: DDC 0, nuPlan 0 (no filter), EPDMS 1 (human filter)."""
    ego = ego_states(straight(0.0, -10.0), math.pi)
    m = replay([scene(ego, road_map([EAST]))])
    assert m["driving_direction_compliance"][0] == 0.0  # stored unfiltered
    assert m["nuplan_score"][0] == 0.0 and m["score"][0] == 1.0


def test_policy_that_goes_wrong_way_where_the_human_did_not_loses_the_score():
    human = ego_states(straight(0.0, 10.0), 0.0)
    policy = ego_states(straight(0.0, -10.0), math.pi)
    policy[:11] = human[:11]  # same history up to init_step
    m = replay([scene(human, road_map([EAST]))], [policy])
    assert m["driving_direction_compliance"][0] == 0.0 and m["score"][0] == 0.0 and m["nuplan_score"][0] == 0.0


def test_speeding_costs_nuplan_score_only():
    limit = 10.0
    ego = ego_states(straight(-100.0, limit + 2.23), 0.0)
    m = replay([scene(ego, road_map([EAST], limits=[limit], known=["speed_limits"]))])
    assert m["speed_limit_compliance"][0] == pytest.approx(0.0, abs=2e-3)
    assert m["nuplan_score"][0] == pytest.approx(12 / 16, abs=1e-3) and m["score"][0] == 1.0


# ----------------------------------------------------------------------------- NaN in the verdict and dashboard
def test_catalogue_lists_the_new_metrics():
    for name in ("traffic_light_compliance", "driving_direction_compliance", "speed_limit_compliance",
                 "lane_keeping", "nuplan_score"):
        assert name in METRIC_NAMES and name in JUDGED_METRICS


def test_verdict_by_nuplan_score_with_a_metric_that_is_never_applicable():
    rng = np.random.default_rng(0)
    c, s = 5, 30
    nup = rng.random((c, s))
    inp = VerdictInput(keys=tuple(f"k{i}" for i in range(c)), names=tuple(f"ep{i}" for i in range(c)),
                       episodes=np.arange(c) * 10, entropy=rng.normal(size=c), train_reward=np.full(c, np.nan),
                       roles=tuple(() for _ in range(c)),
                       metrics={"nuplan_score": nup, "traffic_light_compliance": np.full((c, s), np.nan),
                                "score": rng.random((c, s))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        v = compute_verdict(inp, metric="nuplan_score", n_resamples=50)
    assert v["metric"] == "nuplan_score"
    assert v["best"] is not None and v["best"]["key"] == f"k{int(np.argmax(nup.mean(1)))}"


def test_dashboard_shows_an_all_nan_metric_as_na():
    pd = pytest.importorskip("pandas")
    from dashboard.app import plain_table

    ck = pd.DataFrame({"roles": [("candidate",), ("bc",)], "score": [0.5, 0.7],
                       "traffic_light_compliance": [math.nan, math.nan], "lane_keeping": [math.nan, 1.0]})
    shown = plain_table(ck)
    assert list(shown["traffic_light_compliance"]) == ["n/a", "n/a"]
    assert math.isnan(shown["lane_keeping"][0]) and shown["lane_keeping"][1] == 1.0  # partly applicable: a mean
