"""The broad phase of the collision and TTC tests (:mod:`sim.metrics.pairs`) against the one-pass filters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.metrics import pairs
from sim.metrics.pairs import broad_phase_candidates, chunk_bounds, chunk_starts, pair_candidates


def _record(seed: int, n_b: int, n_a: int, n_t: int, spread: float, nan: bool):
    rng = np.random.default_rng(seed)
    rec = np.zeros((n_b, n_a, n_t, 7), np.float32)
    start = rng.uniform(-spread, spread, (n_b, n_a, 1, 2))
    vel = rng.uniform(-30, 30, (n_b, n_a, 1, 2)) * (rng.random((n_b, n_a, 1, 1)) < 0.7)
    turn = rng.normal(0, 2, (n_b, n_a, n_t, 2))  # wobbles: velocities are not what positions imply
    rec[..., :2] = start + vel * 0.1 * np.arange(n_t)[None, None, :, None] + turn
    rec[..., 2] = rng.uniform(-np.pi, np.pi, (n_b, n_a, n_t))
    rec[..., 3:5] = vel + rng.normal(0, 1, (n_b, n_a, n_t, 2))
    rec[..., 5] = rng.uniform(0.5, 6, (n_b, n_a, 1))
    rec[..., 6] = rng.uniform(0.5, 3, (n_b, n_a, 1))
    valid = rng.random((n_b, n_a, n_t)) < rng.uniform(0.3, 1.0)
    if nan:
        rec[rng.random((n_b, n_a, n_t)) < 0.05] = np.nan
    rows = rng.random((n_b, n_t)) < 0.8
    return torch.from_numpy(rec), torch.from_numpy(valid), torch.from_numpy(rows)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000), n_b=st.integers(1, 3), n_a=st.integers(1, 7), n_t=st.integers(1, 40),
    spread=st.sampled_from([3.0, 20.0, 150.0, 2000.0]), nan=st.booleans(), shared=st.booleans(),
)
def test_broad_phase_equals_the_one_pass_filters(seed, n_b, n_a, n_t, spread, nan, shared):
    rec, valid, rows = _record(seed, n_b, n_a, n_t, spread, nan)
    ego = rec[:, 0]
    want = _flat(pair_candidates(ego, rec, valid, rows))
    for _ in range(2 if shared else 1):  # a shared record: the second call reads the kept bounds
        got = broad_phase_candidates(ego, rec, valid, rows, shared=shared)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def _flat(tables):
    """The tables' True entries as ascending flat indices (what the broad phase returns)."""
    return tuple(t.reshape(-1).nonzero().squeeze(1) for t in tables)


def test_a_shared_record_keeps_its_bounds_and_a_new_valid_mask_is_not_mixed_up():
    rec, valid, rows = _record(1, 2, 5, 30, 20.0, False)
    broad_phase_candidates(rec[:, 0], rec, valid, rows, shared=True)
    kept = pairs._SHARED_BOUNDS.get(rec)
    assert kept is not None and kept[1] is valid
    other_valid = valid.clone()
    other_valid[:, 1:, :10] = False
    got = broad_phase_candidates(rec[:, 0], rec, other_valid, rows, shared=True)
    want = _flat(pair_candidates(rec[:, 0], rec, other_valid, rows))
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert pairs._SHARED_BOUNDS.get(rec)[1] is other_valid


def test_agents_out_of_reach_are_skipped_and_near_ones_kept():
    # the ego drives along x at 10 m/s; one car 3 km away is out of reach in every chunk, one 8 m ahead on the
    # ego's lane (slower) is within reach in every chunk, and one 60 m ahead driving away faster is out of reach
    n_t = 20
    t = torch.arange(n_t, dtype=torch.float32) * 0.1
    rec = torch.zeros(1, 4, n_t, 7)
    rec[..., 5], rec[..., 6] = 4.5, 2.0
    for a, (x0, vx) in enumerate([(0.0, 10.0), (3000.0, 10.0), (8.0, 5.0), (60.0, 15.0)]):
        rec[0, a, :, 0] = x0 + vx * t
        rec[0, a, :, 3] = vx
    valid = torch.ones(1, 4, n_t, dtype=torch.bool)
    k = pairs.BROAD_CHUNK
    keep = pairs._chunks_within_reach(
        chunk_bounds(rec[:, 0], valid[:, 0], k), chunk_bounds(rec.reshape(-1, n_t, 7), valid.reshape(-1, n_t), k), 1)
    assert keep.shape == (1, 3, len(chunk_starts(n_t, k)))
    assert not keep[0, 0].any() and keep[0, 1].all() and not keep[0, 2].any()


@settings(max_examples=50, deadline=None)
@given(n_t=st.integers(1, 200), chunk=st.integers(1, 16))
def test_chunks_cover_every_step_with_whole_chunks(n_t, chunk):
    starts = chunk_starts(n_t, chunk)
    k = min(chunk, n_t)
    covered = set()
    for s in starts:
        assert s >= 0 and s + k <= n_t
        covered.update(range(s, s + k))
    assert covered == set(range(n_t)) and starts == sorted(set(starts))


@pytest.mark.parametrize("n_t", [1, 7, 8, 13, 91])
def test_chunk_bounds_are_the_range_of_each_chunk(n_t):
    rng = np.random.default_rng(n_t)
    x = torch.from_numpy(rng.normal(0, 10, (4, n_t, 7)).astype(np.float32))
    valid = torch.from_numpy(rng.random((4, n_t)) < 0.6)
    b = chunk_bounds(x, valid, 8)
    for c, s in enumerate(chunk_starts(n_t, 8)):
        part = x[:, s : s + min(8, n_t)]
        for j, col in enumerate((0, 1, 3, 4)):
            assert torch.equal(b.lo[j, :, c], part[..., col].amin(1))
            assert torch.equal(b.hi[j, :, c], part[..., col].amax(1))
        diag = torch.hypot(part[..., 5].abs().amax(1), part[..., 6].abs().amax(1)) / 2
        assert torch.allclose(b.half_diag[:, c], diag)
        assert torch.equal(b.any_valid[:, c], valid[:, s : s + min(8, n_t)].any(1))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_a=st.integers(1, 6), n_t=st.integers(1, 30), chunk=st.integers(1, 400))
def test_one_pass_in_chunks_of_scenes_gives_the_same_indices(seed, n_a, n_t, chunk):
    rec, valid, rows = _record(seed, 5, n_a, n_t, 20.0, False)
    want = _flat(pair_candidates(rec[:, 0], rec, valid, rows))
    old = pairs.FILTER_CHUNK
    try:
        pairs.FILTER_CHUNK = chunk  # from one scene per chunk (a ragged last one) to every scene in one
        got = pairs.pair_candidate_indices(rec[:, 0], rec, valid, rows)
    finally:
        pairs.FILTER_CHUNK = old
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
