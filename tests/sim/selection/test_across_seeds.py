"""The verdict across seeds: statistics against direct computations, refusals, JSON shape."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.selection.across import AcrossError, RulePick, SeedResult, compare_runs, format_table, seed_bootstrap_mean


def _seed(run: str, picks: dict[str, tuple[str, int, float]], rho: float | None = 0.1, **kw) -> SeedResult:
    base = dict(metric="score", n_checkpoints=7, scenario_digest="s1", settings_digest="c1")
    base.update(kw)
    return SeedResult(run=run, picks={k: RulePick(*v) for k, v in picks.items()}, spearman=rho, **base)


def test_three_seed_example_matches_hand_computation():
    # The 3-seed trial: max-entropy ranked 6/7, 1/7 and 1/7.
    seeds = [
        _seed("s0", {"max_entropy": ("ep00050", 6, 0.04), "last": ("ep00500", 1, 0.0)}, rho=-0.9),
        _seed("s1", {"max_entropy": ("ep00300", 1, 0.0), "last": ("ep00500", 2, 0.01)}, rho=0.4),
        _seed("s2", {"max_entropy": ("ep00200", 1, 0.0), "last": ("ep00500", 3, 0.02)}, rho=None),
    ]
    v = compare_runs(seeds, n_resamples=999)
    me, last = v.rule("max_entropy"), v.rule("last")
    assert me.mean_regret == pytest.approx(0.04 / 3)
    assert me.p_best == pytest.approx(2 / 3)
    assert me.mean_rank == pytest.approx(8 / 3)
    assert me.picks == ("ep00050", "ep00300", "ep00200")
    assert last.mean_regret == pytest.approx(0.01) and last.p_best == pytest.approx(1 / 3)
    assert v.rules[0].rule == "last"  # lower mean regret first
    assert v.spearman_per_seed == (-0.9, 0.4, None)
    assert v.spearman_mean == pytest.approx(-0.25)
    lo, hi = me.mean_regret_ci
    assert 0.0 <= lo <= me.mean_regret <= hi <= 0.04
    d = json.loads(json.dumps(v.to_json()))
    assert {"mean_regret", "mean_regret_ci", "p_best"} <= set(d["rules"]["max_entropy"])
    assert "max_entropy" in format_table(v)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=12))
def test_seed_bootstrap_interval_brackets_the_mean(values):
    mean, (lo, hi) = seed_bootstrap_mean(values, n_resamples=500)
    assert mean == pytest.approx(float(np.mean(values)))
    assert min(values) - 1e-12 <= lo <= mean + 1e-9
    assert mean - 1e-9 <= hi <= max(values) + 1e-12


def test_one_seed_has_no_interval():
    assert seed_bootstrap_mean([0.3]) == (0.3, (None, None))
    assert seed_bootstrap_mean([]) == (None, (None, None))


@pytest.mark.parametrize("field,value,word", [
    ("scenario_digest", "other", "scenario set"),
    ("settings_digest", "idm", "evaluation settings"),
    ("metric", "ade", "metric"),
])
def test_runs_judged_differently_are_refused(field, value, word):
    a = _seed("s0", {"last": ("ep1", 1, 0.0)})
    b = _seed("s1", {"last": ("ep1", 1, 0.0)}, **{field: value})
    with pytest.raises(AcrossError, match=f"s1: .*{word}"):
        compare_runs([a, b])


def test_same_run_twice_is_refused():
    a = _seed("s0", {"last": ("ep1", 1, 0.0)})
    with pytest.raises(AcrossError, match="twice"):
        compare_runs([a, a])


def test_runs_of_one_training_seed_are_not_independent():
    a = _seed("s0", {"last": ("ep1", 1, 0.0)}, train_seed=3)
    b = _seed("s0-again", {"last": ("ep1", 1, 0.0)}, train_seed=3)
    with pytest.raises(AcrossError, match="s0-again: trained with seed 3 like s0"):
        compare_runs([a, b])
    c = _seed("s1", {"last": ("ep1", 1, 0.0)}, train_seed=4)
    assert compare_runs([a, c], n_resamples=99).runs == ("s0", "s1")


def test_one_run_says_intervals_need_more_seeds():
    v = compare_runs([_seed("s0", {"last": ("ep1", 1, 0.0)})], n_resamples=99)
    assert "two or more runs" in format_table(v)
