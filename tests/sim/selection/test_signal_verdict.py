"""Signal verdict: rank correlations agree with scipy, regrets of pick-max / pick-min, ranking, edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from sim.selection.signal_verdict import STEP_SIGNAL, judge_signals

KEYS = [f"ep{i:05d}.pt" for i in range(6)]


@pytest.fixture
def metric():
    rng = np.random.default_rng(0)
    quality = np.array([0.1, 0.5, 0.9, 0.7, 0.3, 0.2])  # best checkpoint: index 2
    return quality[:, None] + rng.normal(0, 0.05, (6, 40))


def test_correlations_regrets_and_ranking(metric):
    mean = metric.mean(1)
    good = mean + 0.0  # a perfect signal
    entropy = np.array([3.0, 2.5, 2.0, 1.5, 1.0, 0.5])  # falls steadily: max picks the first checkpoint
    v = judge_signals(metric, {"entropy": entropy, "oracle": good}, KEYS, headline="entropy",
                      steps=[0, 100, 200, 300, 400, 500], n_resamples=300)
    o = v.judgement("oracle")
    assert o.spearman == pytest.approx(1.0) and o.kendall == pytest.approx(1.0)
    assert o.regret_max == 0.0 and o.pick_max == KEYS[2] and o.rule == "max"
    e = v.judgement("entropy", "max")
    assert e.headline and v.headline == "entropy" and not v.judgement("entropy", "min").headline
    # every signal's two directions are two fixed rules, each ranked at its own regret
    assert {(j.signal, j.rule) for j in v.ranking} == {(s, r) for s in ("entropy", "oracle", STEP_SIGNAL)
                                                      for r in ("max", "min")}
    assert all(j.regret == (j.regret_max if j.rule == "max" else j.regret_min) for j in v.ranking)
    assert e.spearman == pytest.approx(stats.spearmanr(entropy, mean).statistic)
    assert e.kendall == pytest.approx(stats.kendalltau(entropy, mean).statistic)
    assert e.pick_max == KEYS[0] and e.regret_max == pytest.approx(mean[2] - mean[0])
    assert e.pick_min == KEYS[5] and e.regret_min == pytest.approx(mean[2] - mean[5])
    lo, hi = e.spearman_ci
    assert lo <= e.spearman <= hi
    assert v.ranking[0].signal == "oracle"
    assert [j.regret for j in v.ranking] == sorted(j.regret for j in v.ranking)
    assert v.judgement(STEP_SIGNAL).pick_max == KEYS[-1]  # "last"
    assert v.lines()[1].startswith("  #") and "(headline)" in v.lines()[1]
    json.dumps(v.to_dict())  # JSON-serialisable


def test_lower_is_better_metric(metric):
    v = judge_signals(-metric, {"s": metric.mean(1)}, KEYS, higher_is_better=False, n_resamples=50)
    j = v.judgement("s")
    assert v.best_checkpoint == KEYS[2] and j.regret_max == 0.0 and j.regret_min > 0


def test_fewer_than_three_checkpoints_no_correlation(metric):
    sig = np.array([1.0, 2.0, np.nan, np.nan, np.nan, np.nan])
    v = judge_signals(metric, {"sparse": sig}, KEYS, n_resamples=50)
    j = v.judgement("sparse")
    assert j.n_checkpoints == 2 and j.spearman is None and j.spearman_ci is None
    assert j.pick_max == KEYS[1] and j.regret_max == pytest.approx(metric.mean(1)[2] - metric.mean(1)[1])


def test_constant_and_empty_signals_are_left_out_with_a_note(metric):
    v = judge_signals(metric, {"lr": np.full(6, 3e-4), "none": np.full(6, np.nan), "ok": np.arange(6.0)}, KEYS,
                      n_resamples=50)
    assert [(j.signal, j.rule) for j in v.ranking] == [("ok", "max"), ("ok", "min")] or \
        [(j.signal, j.rule) for j in v.ranking] == [("ok", "min"), ("ok", "max")]
    assert any(n.startswith("lr: constant") for n in v.notes) and any(n.startswith("none: defined at no")
                                                                       for n in v.notes)
    d = v.to_dict()
    assert d["ranking"][0]["signal"] == "ok" and not any(
        isinstance(x, float) and math.isnan(x) for x in d["ranking"][0].values())


def test_bootstrap_is_seeded_and_shapes_checked(metric):
    a = judge_signals(metric, {"s": np.arange(6.0)}, KEYS, n_resamples=100, seed=3).to_dict()
    b = judge_signals(metric, {"s": np.arange(6.0)}, KEYS, n_resamples=100, seed=3).to_dict()
    assert a == b
    with pytest.raises(ValueError, match=r"signal 's' must be \[6\]"):
        judge_signals(metric, {"s": [1.0, 2.0]}, KEYS)
    with pytest.raises(ValueError, match="NaN"):
        judge_signals(np.full((6, 3), np.nan), {}, KEYS)


def test_printed_ranking_headline_first_then_one_row_per_signal_in_rank_order(metric):
    rng = np.random.default_rng(1)
    sig = {"entropy": metric.mean(1)[::-1].copy(), "oracle": metric.mean(1), "noise": rng.normal(size=6)}
    v = judge_signals(metric, sig, KEYS, headline="entropy", n_resamples=50)
    rows = [ln.strip() for ln in v.lines()[1:] if ln.strip().startswith("#")]
    assert "entropy (headline)" in rows[0]
    ranks = [int(r.split()[0][1:]) for r in rows[1:]]
    assert ranks == sorted(ranks) and ranks[0] == 1
    names = [r.split(":")[0].split()[-1] for r in rows[1:]]
    assert sorted(names) == sorted(set(names)) and set(names) == {j.signal for j in v.ranking}
