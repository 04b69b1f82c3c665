"""Time handling for recorded tracks: resampling to a fixed step and cutting into windows."""

from __future__ import annotations

import numpy as np

from scenarios.scenario import LENGTH, NUM_FIELDS, VX, VY, WIDTH, YAW, AgentType, ScenarioError, X, Y, wrap_angle

DT = 0.1
DT_TOLERANCE = 0.01  # s: a source whose every step is within this of DT is taken as DT without resampling


def needs_resampling(t: np.ndarray, dt: float = DT) -> bool:
    """Whether timestamps ``t`` (float ``[T]`` seconds, increasing) differ from a ``dt`` grid.

    Small jitter (every step within :data:`DT_TOLERANCE` of ``dt``, as in Waymo's
    timestamps) does not count: those steps are taken as exactly ``dt`` apart.
    """
    if len(t) < 2:
        return False
    steps = np.diff(np.asarray(t, dtype=np.float64))
    return bool(np.any(np.abs(steps - dt) > DT_TOLERANCE))


def resample_tracks(
    t: np.ndarray, states: np.ndarray, valid: np.ndarray, dt: float = DT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample tracks recorded at times ``t`` onto a regular ``dt`` grid.

    Positions, velocities and sizes are interpolated linearly, headings along the shortest
    arc. A new step is valid only where both bracketing source samples are valid (or it
    coincides with a valid source sample), so gaps stay gaps.

    Args:
        t: float ``[T]`` source timestamps, seconds, strictly increasing.
        states: float ``[A, T, 7]`` (X, Y, YAW, VX, VY, LENGTH, WIDTH).
        valid: bool ``[A, T]``.
        dt: output step, seconds.

    Returns:
        ``(t_new [T'], states_new [A, T', 7], valid_new [A, T'])`` with ``t_new = t[0] + k dt``.

    Raises:
        ScenarioError: timestamps not strictly increasing.
    """
    t = np.asarray(t, dtype=np.float64)
    if np.any(np.diff(t) <= 0):
        raise ScenarioError("timestamps are not strictly increasing")
    n_new = int(np.floor((t[-1] - t[0]) / dt + 1e-6)) + 1
    t_new = t[0] + dt * np.arange(n_new)
    j = np.clip(np.searchsorted(t, t_new, side="right") - 1, 0, len(t) - 2)
    w = np.clip((t_new - t[j]) / (t[j + 1] - t[j]), 0.0, 1.0)
    exact_lo = np.isclose(w, 0.0, atol=1e-9)
    exact_hi = np.isclose(w, 1.0, atol=1e-9)
    v_lo, v_hi = valid[:, j], valid[:, j + 1]
    valid_new = (v_lo & v_hi) | (v_lo & exact_lo) | (v_hi & exact_hi)
    lo, hi = states[:, j], states[:, j + 1]
    out = np.zeros((states.shape[0], n_new, NUM_FIELDS), dtype=np.float64)
    ww = w[None, :, None]
    # Where only one side is valid (exact hit), take that side as is.
    lo = np.where(v_lo[..., None], lo, hi)
    hi = np.where(v_hi[..., None], hi, lo)
    for c in (X, Y, VX, VY, LENGTH, WIDTH):
        out[..., c] = (1 - ww[..., 0]) * lo[..., c] + ww[..., 0] * hi[..., c]
    d_yaw = wrap_angle(hi[..., YAW] - lo[..., YAW])
    out[..., YAW] = wrap_angle(lo[..., YAW] + ww[..., 0] * d_yaw)
    out[~valid_new] = 0.0
    return t_new, out, valid_new


def window_starts(num_steps: int, window: int, stride: int) -> list[int]:
    """Start steps of the windows a recording of ``num_steps`` steps is cut into.

    Args:
        num_steps: T, steps in the recording.
        window: steps per window; 0 (or >= T) keeps the whole recording as one window.
        stride: steps between window starts; 0 means ``window`` (no overlap).

    Returns:
        Start indices; each window ``[s, s + window)`` lies inside ``[0, num_steps)``.
    """
    if window <= 0 or window >= num_steps:
        return [0]
    stride = stride if stride > 0 else window
    return list(range(0, num_steps - window + 1, stride))


def longest_runs(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's longest run of consecutive valid steps (the first of equally long runs).

    Args:
        valid: bool ``[A, T]``.

    Returns:
        ``(start [A], stop [A])`` int64: the run is ``[start, stop)``; ``start == stop == 0`` for a row never valid.
    """
    valid = np.asarray(valid, dtype=bool)
    n_a, n_t = valid.shape
    if n_a == 0 or n_t == 0:
        return np.zeros(n_a, np.int64), np.zeros(n_a, np.int64)
    t = np.arange(n_t)
    prev = np.concatenate([np.zeros((n_a, 1), bool), valid[:, :-1]], axis=1)
    run_start = np.maximum.accumulate(np.where(valid & ~prev, t, -1), axis=1)  # start of the run holding each step
    length = np.where(valid, t - run_start + 1, 0)
    stop = np.argmax(length, axis=1) + 1  # first step at which the longest run reaches its length
    best = length[np.arange(n_a), stop - 1]
    start = np.where(best > 0, stop - best, 0)
    return start.astype(np.int64), np.where(best > 0, stop, 0).astype(np.int64)


def longest_farthest_vehicle(xy: np.ndarray, valid: np.ndarray, types: np.ndarray) -> tuple[int, int]:
    """The ego of a source that names none, as Waymax picks the SDC: the vehicle recorded for the longest run of
    consecutive steps (:func:`longest_runs`), the one that travels farthest over its run among equals.

    Args:
        xy: float ``[A, T, 2]`` positions, m; valid: bool ``[A, T]``; types: int ``[A]`` AgentType.

    Returns:
        ``(agent index, steps in its run)``; ``(-1, 0)`` when no vehicle is recorded for 2 consecutive steps.
    """
    start, stop = longest_runs(valid)
    span = np.where(np.asarray(types) == AgentType.VEHICLE, stop - start, 0)
    if span.max(initial=0) < 2:
        return -1, 0
    cands = np.flatnonzero(span == span.max())
    travel = [np.hypot(*np.diff(xy[i, start[i]:stop[i]], axis=0).T).sum() for i in cands]
    best = int(cands[int(np.argmax(travel))])
    return best, int(span[best])


def velocity_from_positions(xy: np.ndarray, valid: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``[T, 2]`` m/s: the mean of the slopes to the previous and next valid samples (one-sided at the ends of a run
    of valid steps, 0 for a lone sample); a central difference on a regular grid.

    Args:
        xy: ``[T, 2]`` positions, m; valid: bool ``[T]``; t: ``[T]`` s.
    """
    dt = np.diff(t)
    ok = (valid[:-1] & valid[1:] & (dt > 0))[:, None]
    slope = np.where(ok, np.diff(xy, axis=0) / np.where(dt > 0, dt, 1.0)[:, None], np.nan)
    pad = np.full((1, 2), np.nan)
    both = np.stack([np.vstack([pad, slope]), np.vstack([slope, pad])])
    n = np.isfinite(both).sum(axis=0)
    return np.where(n > 0, np.nansum(both, axis=0) / np.maximum(n, 1), 0.0)
