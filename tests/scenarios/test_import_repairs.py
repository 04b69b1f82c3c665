"""Import-time repairs of recorded glitches (scenarios/importers/repair.py): single displaced samples, steps in
positions, flipped vehicle headings; consistent samples are never moved (property tests)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.importers.repair import (
    JUMP_TOLERANCE,
    TracksRepaired,
    position_steps,
    repair_flipped_headings,
    repair_position_jumps,
    repair_tracks,
)
from scenarios.scenario import AgentType

DT = 0.1
N_T = 60


def _smooth(rng: np.random.Generator, n_a: int = 3, max_accel: float = 6.0) -> np.ndarray:
    """``[A, T, 7]`` tracks with bounded acceleration (|a| <= max_accel m/s^2): consistent everywhere, since a
    sample's midpoint residual is |a| dt^2 / 2 <= 0.03 m < JUMP_TOLERANCE."""
    states = np.zeros((n_a, N_T, 7))
    acc = rng.uniform(-1, 1, (n_a, N_T, 2))
    acc *= max_accel / np.maximum(1.0, np.linalg.norm(acc, axis=-1, keepdims=True)) / np.sqrt(2)
    v = rng.uniform(-15, 15, (n_a, 1, 2)) + np.cumsum(acc * DT, axis=1)
    states[..., :2] = np.cumsum(v * DT, axis=1)
    states[..., 3:5] = v
    states[..., 2] = np.arctan2(v[..., 1], v[..., 0])
    states[..., 5:7] = (4.5, 2.0)
    return states


def _residual(xy: np.ndarray) -> np.ndarray:
    """``[A, T]`` |p_k - (p_{k-1} + p_{k+1}) / 2| (0 at the ends): the independent definition of consistency."""
    out = np.zeros(xy.shape[:2])
    out[:, 1:-1] = np.linalg.norm(xy[:, 1:-1] - (xy[:, :-2] + xy[:, 2:]) / 2, axis=-1)
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_glitch=st.integers(0, 6), scale=st.floats(0.01, 3.0))
def test_repairs_never_move_a_sample_consistent_with_its_neighbours(seed, n_glitch, scale):
    """Whatever the glitches (random displacements of random samples, some gaps), a sample whose midpoint residual
    is within JUMP_TOLERANCE in the recording keeps its position, and a recording without glitches is untouched."""
    rng = np.random.default_rng(seed)
    states = _smooth(rng)
    valid = rng.random((3, N_T)) > 0.05
    states[~valid] = 0.0
    for _ in range(n_glitch):
        a, t = rng.integers(0, 3), rng.integers(0, N_T)
        states[a, t:t + rng.integers(1, 3), :2] += rng.normal(0, scale, 2)
    before = states.copy()
    resid = _residual(np.where(valid[..., None], before[..., :2], np.nan))
    consistent = valid & (np.nan_to_num(resid, nan=np.inf) <= JUMP_TOLERANCE)
    repair_position_jumps(states, valid)
    offset, _ = position_steps(states, valid)
    np.testing.assert_array_equal(states[consistent][:, :2], before[consistent][:, :2])
    if n_glitch == 0:
        np.testing.assert_array_equal(states, before)
        assert not offset.any()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), t=st.integers(2, N_T - 3), d=st.floats(0.3, 3.0), angle=st.floats(-3.2, 3.2))
def test_a_displaced_sample_goes_back_onto_its_path(seed, t, d, angle):
    rng = np.random.default_rng(seed)
    states = _smooth(rng, n_a=1)
    truth = states.copy()
    states[0, t, :2] += d * np.array([np.cos(angle), np.sin(angle)])
    valid = np.ones((1, N_T), bool)
    assert repair_position_jumps(states, valid) == 1
    # back within the midpoint error of bounded acceleration (|a| dt^2 / 2 <= 0.03 m); no other sample moved
    assert np.linalg.norm(states[0, t, :2] - truth[0, t, :2]) <= 0.03
    others = np.arange(N_T) != t
    np.testing.assert_array_equal(states[0, others], truth[0, others])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), j=st.integers(3, N_T - 3), d=st.floats(0.3, 3.0), angle=st.floats(-3.2, 3.2))
def test_a_step_keeps_the_positions_and_velocities_skip_it(seed, j, d, angle):
    """One odd interval (a timing glitch): positions stay as recorded, velocities come out as without the step."""
    rng = np.random.default_rng(seed)
    truth = _smooth(rng, n_a=1, max_accel=2.0)
    delta = d * np.array([np.cos(angle), np.sin(angle)])
    states = truth.copy()
    states[0, j:, :2] += delta
    states[0, :-1, 3:5] = np.diff(states[0, :, :2], axis=0) / DT  # recorded as forward differences
    valid = np.ones((1, N_T), bool)
    offset, n = position_steps(states, valid)
    assert n == 1
    np.testing.assert_allclose(offset[0, j], delta, atol=0.03)
    recorded = states[..., :2].copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        counts = repair_tracks(states, valid, np.array([AgentType.VEHICLE]), DT, "glitch")
    np.testing.assert_array_equal(states[..., :2], recorded)
    assert counts["position_steps"] == 1 and counts["position_jumps"] == 0
    (w,) = [c.message for c in caught if issubclass(c.category, TracksRepaired)]
    assert w.counts == counts and "glitch" in str(w)
    # the step's 10 d m/s spike in speed is gone: every velocity within 1 m/s of the truth
    assert np.linalg.norm(states[0, :, 3:5] - truth[0, :, 3:5], axis=-1).max() < 1.0


@pytest.mark.parametrize(("start", "length"), [(20, 1), (20, 7), (0, 4), (50, 10)])
def test_flipped_headings_of_a_moving_vehicle_are_turned_back(start, length):
    rng = np.random.default_rng(start + length)
    truth = _smooth(rng, n_a=1, max_accel=1.0)
    truth[0, :, 3:5] += np.sign(truth[0, :, 3:5]) * 3.0  # at least 3 m/s: moving
    truth[0, :, :2] = np.cumsum(truth[0, :, 3:5] * DT, axis=0)
    truth[0, :, 2] = np.arctan2(truth[0, :, 4], truth[0, :, 3])
    states = truth.copy()
    states[0, start:start + length, 2] = (states[0, start:start + length, 2] + 2 * np.pi) % (2 * np.pi) - np.pi
    valid = np.ones((1, N_T), bool)
    assert repair_flipped_headings(states, valid, np.array([AgentType.VEHICLE]), DT) == length
    np.testing.assert_allclose(np.cos(states[0, :, 2] - truth[0, :, 2]), 1.0, atol=1e-9)
    # a pedestrian's heading is its own business; a vehicle reversing the whole time keeps its heading
    ped = truth.copy()
    ped[0, start:start + length, 2] += np.pi
    kept = ped.copy()
    assert repair_flipped_headings(ped, valid, np.array([AgentType.PEDESTRIAN]), DT) == 0
    np.testing.assert_array_equal(ped, kept)
    reverse = truth.copy()
    reverse[0, :, 2] += np.pi
    kept = reverse.copy()
    assert repair_flipped_headings(reverse, valid, np.array([AgentType.VEHICLE]), DT) == 0
    np.testing.assert_array_equal(reverse, kept)
