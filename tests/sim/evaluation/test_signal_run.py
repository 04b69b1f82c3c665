"""Training signals judged in a call (sim.evaluation.signal_run) on a metric that is not applicable everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from sim.evaluation.signal_run import SignalPlan, judge
from sim.selection.signal_verdict import judge_signals
from sim.selection.signals import MatchedSignals, Signals


def _plan(entropy: list[float]) -> SignalPlan:
    keys = tuple(f"k{i}" for i in range(len(entropy)))
    matched = MatchedSignals(keys, {"entropy": tuple(entropy)}, (), ())
    return SignalPlan("log.json", Signals("log.json"), matched, keys, tuple(range(0, 10 * len(keys), 10)))


def test_signals_are_judged_on_the_scenes_where_the_metric_is_defined():
    """A map-rule metric is NaN where a scene lacks the information: the signals are judged on the scenes defined
    for every checkpoint (the same verdict as on those columns alone), and the notes say how many."""
    rng = np.random.default_rng(0)
    m = rng.uniform(0, 1, (5, 12))
    m[1, 3] = np.nan  # one checkpoint undefined on scene 3
    m[:, 7] = np.nan  # no checkpoint defined on scene 7
    plan = _plan([0.5, 0.1, 0.9, 0.3, 0.7])
    v = judge(plan, {k: m[i] for i, k in enumerate(plan.keys)}, "lane_keeping", 50, 0)
    keep = [j for j in range(12) if j not in (3, 7)]
    want = judge_signals(m[:, keep], plan.matched.values, plan.keys, metric_name="lane_keeping",
                         steps=list(plan.steps), n_resamples=50, seed=0)
    assert v.to_dict()["ranking"] == want.to_dict()["ranking"]
    assert "lane_keeping: judged on the 10 of 12 scenes where it is defined for every checkpoint" in v.notes[-1]


def test_a_metric_defined_nowhere_gives_no_signal_verdict():
    plan = _plan([0.5, 0.1, 0.9])
    assert judge(plan, {k: np.full(4, np.nan) for k in plan.keys}, "traffic_light_compliance", 50, 0) is None
    with pytest.raises(ValueError, match="NaN"):  # the verdict function itself still refuses NaN: judge filters
        judge_signals(np.full((3, 4), np.nan), plan.matched.values, plan.keys)
