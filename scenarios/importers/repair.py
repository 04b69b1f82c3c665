"""Import-time repairs of recorded tracks: recentring, velocities that contradict positions, map warnings.

- Recentring: a scene is moved so that the ego's position at ``init_step`` is the local origin
  (float64 arithmetic, before anything becomes float32); the offset is kept in
  :attr:`~scenarios.scenario.Scenario.world_origin`. Metrics then do not depend on where the
  source's world origin is (UTM-referenced logs sit millions of metres from theirs).
- Velocities: the velocity the source recorded is compared with the velocity its own positions
  imply (Savitzky-Golay derivative, quadratic fit over :data:`VEL_WINDOW` steps: smoothed as
  nuPlan smooths ego states before its comfort metrics). Where they differ by more than
  :data:`VEL_TOLERANCE` (ScenarioNet's nuScenes egos record 0 m/s on their last step while
  moving), the positions win.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
from scipy.signal import savgol_coeffs, savgol_filter

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
    reason = ""
    if len(pts) < min_points:
        reason = f"{len(pts)} points (needs >= {min_points})"
    elif not np.isfinite(pts).all():
        reason = "non-finite coordinates"
    elif not (pts != pts[0]).any():
        reason = "all points coincide"
    if reason:
        notes.append(f"{what}: {reason}")
    return not reason


@lru_cache(maxsize=8)
def _edge_coeffs(window: int, dt: float) -> np.ndarray:
    """``[W, W]``: row ``p`` = Savitzky-Golay first-derivative weights (quadratic fit) at window position ``p``."""
    return np.stack([savgol_coeffs(window, 2, deriv=1, delta=dt, pos=p, use="dot") for p in range(window)])


def repair_velocities(states: np.ndarray, valid: np.ndarray, dt: float) -> int:
    """In place: replace recorded (VX, VY) that contradict the positions, per run of valid steps.

    Args:
        states: float64 ``[A, T, 7]`` (X, Y, YAW, VX, VY, LENGTH, WIDTH), m, m/s.
        valid: bool ``[A, T]``.
        dt: s between steps.

    Returns:
        The number of (agent, step) velocities replaced.
    """
    n_a, n_t = valid.shape
    if n_a == 0 or n_t < 3:
        return 0
    t = np.arange(n_t)
    prev = np.concatenate([np.zeros((n_a, 1), bool), valid[:, :-1]], axis=1)
    nxt = np.concatenate([valid[:, 1:], np.zeros((n_a, 1), bool)], axis=1)
    start = np.maximum.accumulate(np.where(valid & ~prev, t, -1), axis=1)  # first step of each step's run
    end = np.minimum.accumulate(np.where(valid & ~nxt, t, n_t)[:, ::-1], axis=1)[:, ::-1]  # last step
    length = end - start + 1
    w = VEL_WINDOW
    v_pos = np.full((n_a, n_t, 2), np.nan)
    long = valid & (length >= w)  # one vectorised pass: the fit window slides inside the run
    if long.any():
        a_idx, t_idx = np.nonzero(long)
        s0 = np.clip(t_idx - w // 2, start[a_idx, t_idx], end[a_idx, t_idx] - w + 1)
        win = states[a_idx[:, None], s0[:, None] + np.arange(w)][..., [X, Y]]  # [M, W, 2]
        coef = _edge_coeffs(w, float(dt))[t_idx - s0]  # [M, W]
        v_pos[a_idx, t_idx] = np.einsum("mk,mkc->mc", coef, win)
    for a, b0 in zip(*np.nonzero(valid & ~prev & (length < w) & (length >= 3))):  # short runs: rare
        n = int(length[a, b0])
        ww = n if n % 2 else n - 1
        v_pos[a, b0:b0 + n] = savgol_filter(states[a, b0:b0 + n][:, [X, Y]], ww, min(2, ww - 1), deriv=1,
                                            delta=dt, axis=0, mode="interp")
    v_rec = states[..., [VX, VY]]
    bad = np.isfinite(v_pos[..., 0]) & (np.linalg.norm(v_rec - np.nan_to_num(v_pos), axis=-1) > VEL_TOLERANCE)
    states[..., VX] = np.where(bad, v_pos[..., 0], states[..., VX])
    states[..., VY] = np.where(bad, v_pos[..., 1], states[..., VY])
    return int(bad.sum())
