"""Import-time repairs of recorded tracks: recentring, velocities that contradict positions, map warnings.

- Recentring: a scene is moved so that the ego's position at ``init_step`` is the local origin
  (float64 arithmetic, before anything becomes float32); the offset is kept in
  :attr:`~scenarios.scenario.Scenario.world_origin`. Metrics then do not depend on where the
  source's world origin is (UTM-referenced logs sit millions of metres from theirs).
- Velocities: the velocity the source recorded is compared with the velocity its own positions
  imply (Savitzky-Golay derivative, quadratic fit over :data:`VEL_WINDOW` steps, the window
  kept inside each run of valid steps, one fit over runs shorter than that: smoothed as
  nuPlan smooths ego states before its comfort metrics). Where they differ by more than
  :data:`VEL_TOLERANCE` (ScenarioNet's nuScenes egos record 0 m/s on their last step while
  moving), the positions win.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

from scenarios.scenario import VX, VY, X, Y

VEL_WINDOW = 11  # steps (1.1 s at 10 Hz) of the quadratic fit that differentiates positions
VEL_TOLERANCE = 1.0  # m/s: recorded velocity further than this from the positions' is replaced


class MapElementSkipped(UserWarning):
    """Map elements (or obstacles) without usable points were left out; the scene itself imports.

    Attributes:
        count: how many elements one warning stands for (one warning per file).
    """

    def __init__(self, message: str, count: int = 1):
        super().__init__(message)
        self.count = count


def warn_skipped(notes: list[str]) -> None:
    """One warning (one line) for every element noted by :func:`usable_line` in a file, if any."""
    if notes:
        shown = "; ".join(notes[:3]) + (f"; ... ({len(notes) - 3} more)" if len(notes) > 3 else "")
        warnings.warn(MapElementSkipped(f"{len(notes)} map element(s) skipped: {shown}", len(notes)), stacklevel=3)


def usable_line(pts: np.ndarray, what: str, min_points: int, notes: list[str]) -> bool:
    """Whether ``pts [n, 2]`` is a usable polyline (``min_points=2``) or polygon (3); notes why not.

    Degenerate means fewer than ``min_points`` points, non-finite values, or all points equal.
    """
    return bool(usable_lines([pts], [what], min_points, notes)[0])


def usable_lines(lines: list[np.ndarray], names: list[str], min_points: int, notes: list[str]) -> np.ndarray:
    """bool ``[L]``: :func:`usable_line` for many lines at once (a few numpy calls, not a few per line)."""
    n = np.array([len(p) for p in lines], dtype=np.int64)
    ok = n >= min_points
    if ok.any():
        idx = np.flatnonzero(ok)
        pts = np.concatenate([lines[i] for i in idx]).reshape(-1, 2)
        starts = np.concatenate([[0], np.cumsum(n[idx])[:-1]])
        finite = np.logical_and.reduceat(np.isfinite(pts).all(axis=1), starts)
        safe = np.where(np.isfinite(pts), pts, 0.0)
        spread = (np.maximum.reduceat(safe, starts) - np.minimum.reduceat(safe, starts)).max(axis=1)
        for j, i in enumerate(idx):
            if not finite[j]:
                notes.append(f"{names[i]}: non-finite coordinates")
            elif spread[j] <= 0.0:
                notes.append(f"{names[i]}: all points coincide")
        ok[idx] = finite & (spread > 0.0)
    for i in np.flatnonzero(n < min_points):
        notes.append(f"{names[i]}: {n[i]} points (needs >= {min_points})")
    return ok


@lru_cache(maxsize=64)
def _deriv_coeffs(window: int, dt: float) -> np.ndarray:
    """``[W, W]``: row ``p`` = weights giving the first derivative, at window position ``p``, of the
    least-squares quadratic through ``window`` samples ``dt`` apart (Savitzky-Golay; numpy only, so
    importing a scene does not load scipy.signal)."""
    k = np.arange(window, dtype=np.float64)
    order = min(2, window - 1)
    rows = []
    for p in range(window):
        u = (k - p) * dt
        design = np.stack([u**j for j in range(order + 1)], axis=1)  # [W, order + 1]
        rows.append(np.linalg.pinv(design)[1])  # the linear coefficient = derivative at u = 0
    return np.stack(rows)


def repair_velocities(states: np.ndarray, valid: np.ndarray, dt: float) -> int:
    """In place: replace recorded (VX, VY) that contradict the positions, per run of valid steps.

    Args:
        states: float64 ``[A, T, 7]`` (X, Y, YAW, VX, VY, LENGTH, WIDTH), m, m/s.
        valid: bool ``[A, T]``.
        dt: s between steps.

    Returns:
        The number of (agent, step) velocities replaced.
    """
    n_t = valid.shape[1]
    if valid.shape[0] == 0 or n_t < 3:
        return 0
    # cheap screen: agents whose recorded velocity agrees with central differences everywhere are kept as is
    xy_all, v_all = states[..., X:Y + 1], states[..., VX:VY + 1]  # views (X, Y and VX, VY are adjacent)
    fd = np.empty_like(xy_all)
    fd[:, 1:-1] = (xy_all[:, 2:] - xy_all[:, :-2]) * (0.5 / dt)
    fd[:, 0], fd[:, -1] = (xy_all[:, 1] - xy_all[:, 0]) / dt, (xy_all[:, -1] - xy_all[:, -2]) / dt
    fd -= v_all
    suspect = valid & (fd[..., 0] ** 2 + fd[..., 1] ** 2 > VEL_TOLERANCE**2)
    rows = np.flatnonzero(suspect.any(axis=1))
    if len(rows) == 0:
        return 0
    sub = states[rows]
    n_fixed = _repair_rows(sub, valid[rows], dt)
    states[rows] = sub
    return n_fixed


def _repair_rows(states: np.ndarray, valid: np.ndarray, dt: float) -> int:
    """:func:`repair_velocities` on every valid step of ``states [A', T, 7]`` (in place).

    Every step of a suspect agent is compared with the smoothed derivative (not only the steps the
    finite differences flag): mixing raw and smoothed velocities would create jumps of its own.
    """
    n_a, n_t = valid.shape
    t = np.arange(n_t)
    prev = np.concatenate([np.zeros((n_a, 1), bool), valid[:, :-1]], axis=1)
    nxt = np.concatenate([valid[:, 1:], np.zeros((n_a, 1), bool)], axis=1)
    start = np.maximum.accumulate(np.where(valid & ~prev, t, -1), axis=1)  # first step of each step's run
    end = np.minimum.accumulate(np.where(valid & ~nxt, t, n_t)[:, ::-1], axis=1)[:, ::-1]  # last step
    length = end - start + 1
    w = VEL_WINDOW
    xy = states[..., X:Y + 1]
    v_pos = np.full((n_a, n_t, 2), np.nan)
    coeffs = _deriv_coeffs(w, float(dt))
    full = valid.all(axis=1) if n_t >= w else np.zeros(n_a, bool)
    if full.any():  # agents valid throughout: a sliding window (no gather), edge rows for the ends
        f = np.flatnonzero(full)
        h = w // 2
        windows = np.lib.stride_tricks.sliding_window_view(xy[f], w, axis=1)  # [F, T - w + 1, 2, W]
        v_pos[f, h:n_t - h] = windows @ coeffs[h]
        v_pos[f, :h] = np.einsum("pk,fkc->fpc", coeffs[:h], xy[f, :w])
        v_pos[f, n_t - h:] = np.einsum("pk,fkc->fpc", coeffs[h + 1:], xy[f, n_t - w:])
    long = valid & (length >= w) & ~full[:, None]  # the others: the fit window slides inside each run
    if long.any():
        a_idx, t_idx = np.nonzero(long)
        s0 = np.clip(t_idx - w // 2, start[a_idx, t_idx], end[a_idx, t_idx] - w + 1)
        win = xy[a_idx[:, None], s0[:, None] + np.arange(w)]  # [M, W, 2]
        coef = _deriv_coeffs(w, float(dt))[t_idx - s0]  # [M, W]
        v_pos[a_idx, t_idx] = np.einsum("mk,mkc->mc", coef, win)
    short = valid & ~prev & (length < w) & (length >= 3)
    for a, b0 in zip(*np.nonzero(short)):  # runs shorter than the window (rare): one quadratic over the run
        n = int(length[a, b0])
        v_pos[a, b0:b0 + n] = _deriv_coeffs(n, float(dt)) @ xy[a, b0:b0 + n]
    diff = states[..., VX:VY + 1] - v_pos  # NaN where no fit: compares False below
    with np.errstate(invalid="ignore"):
        bad = valid & (diff[..., 0] ** 2 + diff[..., 1] ** 2 > VEL_TOLERANCE**2)
    states[..., VX:VY + 1] = np.where(bad[..., None], v_pos, states[..., VX:VY + 1])
    return int(bad.sum())
