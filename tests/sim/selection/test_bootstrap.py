"""The one bootstrap (sim.selection.bootstrap.index_bootstrap) against scipy.stats.bootstrap on the values."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sim.selection.bootstrap import index_bootstrap


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=40), st.integers(0, 2**31 - 1))
def test_one_stratum_equals_scipy_on_the_values(values, seed):
    v = np.asarray(values)
    if np.all(v == v[0]):
        return
    lo, hi = index_bootstrap(lambda idx: v[idx].mean(-1)[None], len(v), 1, 199, seed, 0.9)
    ref = stats.bootstrap((v,), np.mean, n_resamples=199, method="percentile", confidence_level=0.9,
                          rng=np.random.default_rng(seed))
    np.testing.assert_allclose([lo[0], hi[0]], [ref.confidence_interval.low, ref.confidence_interval.high],
                               rtol=1e-9, atol=1e-9)


def test_strata_keep_their_counts_and_undefined_resamples_are_left_out():
    groups = ["a"] * 6 + ["b"] * 4
    is_a = np.array([g == "a" for g in groups])
    lo, hi = index_bootstrap(lambda idx: is_a[idx].sum(-1)[None].astype(float), 10, 1, 99, 0, 0.95, groups=groups)
    assert lo[0] == hi[0] == 6  # within strata every resample keeps six scenes of "a"
    lo, hi = index_bootstrap(lambda idx: is_a[idx].sum(-1)[None].astype(float), 10, 1, 99, 0, 0.95)
    assert lo[0] < 6 < hi[0]  # one stratum: the count varies
    x = np.array([0.0, 0.0, 0.0, 1.0])  # a resample of only zeros makes the ratio undefined (NaN)

    def ratio(idx):
        with np.errstate(invalid="ignore", divide="ignore"):
            return (x[idx].mean(-1) / x[idx].max(-1))[None]

    lo, hi = index_bootstrap(ratio, 4, 1, 199, 0, 0.9)
    assert np.isfinite(lo[0]) and np.isfinite(hi[0]) and 0 <= lo[0] <= hi[0] <= 1
    assert np.isnan(index_bootstrap(ratio, 1, 1, 199, 0, 0.9)[0][0])


def test_many_items_are_resampled_in_small_batches_with_one_stratum_unchanged(monkeypatch):
    """Above 2,048 items, fewer resamples are computed together (the statistic's temporaries stay bounded: a
    [checkpoints, batch, scenes] gather at 10,000 scenes was about 100 MB a batch of 64); with one stratum the
    resamples, hence the interval, are the same as in batches of 64 (the generator's draws come in one stream)."""
    import sim.selection.bootstrap as bs

    assert bs.resample_batch(500) == bs.resample_batch(2048) == 64 and bs.resample_batch(10_000) == 13
    assert bs.resample_batch(10**9) == 1
    v = np.random.default_rng(1).normal(size=10_000)
    sizes: list[int] = []

    def mean(idx):
        sizes.append(np.atleast_2d(idx).shape[0])
        return v[idx].mean(-1)[None]

    small = index_bootstrap(mean, len(v), 1, 99, 3, 0.9)
    assert max(sizes) == 13
    monkeypatch.setattr(bs, "resample_batch", lambda n: 64)
    sizes.clear()
    large = index_bootstrap(mean, len(v), 1, 99, 3, 0.9)
    assert max(sizes) == 64
    np.testing.assert_allclose(small, large, rtol=0, atol=1e-12)
