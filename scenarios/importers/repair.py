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

import numpy as np
from scipy.signal import savgol_filter

from scenarios.scenario import VX, VY, X, Y

VEL_WINDOW = 11  # steps (1.1 s at 10 Hz) of the quadratic fit that differentiates positions
VEL_TOLERANCE = 1.0  # m/s: recorded velocity further than this from the positions' is replaced


class MapElementSkipped(UserWarning):
    """A map element without usable points was left out of the scene (the scene itself imports)."""


def skip_map_element(what: str, reason: str) -> None:
    """Warn (one line) that map element ``what`` was skipped because of ``reason``."""
    warnings.warn(f"map element {what} skipped: {reason}", MapElementSkipped, stacklevel=3)


def usable_line(pts: np.ndarray, what: str, min_points: int = 2) -> bool:
    """Whether ``pts [n, 2]`` is a usable polyline (or polygon with ``min_points=3``); warns when not.

    Degenerate means fewer than ``min_points`` points, non-finite values, or all points equal.
    """
    if len(pts) < min_points:
        skip_map_element(what, f"{len(pts)} points (needs >= {min_points})")
        return False
    if not np.all(np.isfinite(pts)):
        skip_map_element(what, "non-finite coordinates")
        return False
    if np.all(np.abs(pts - pts[:1]) < 1e-9):
        skip_map_element(what, "all points coincide")
        return False
    return True


def _runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """Runs ``[a, b)`` of consecutive True values of a bool ``[T]`` array."""
    v = np.concatenate([[False], valid, [False]])
    d = np.diff(v.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def repair_velocities(states: np.ndarray, valid: np.ndarray, dt: float) -> int:
    """In place: replace recorded (VX, VY) that contradict the positions, per run of valid steps.

    Args:
        states: float64 ``[A, T, 7]`` (X, Y, YAW, VX, VY, LENGTH, WIDTH), m, m/s.
        valid: bool ``[A, T]``.
        dt: s between steps.

    Returns:
        The number of (agent, step) velocities replaced.
    """
    changed = 0
    full = valid.all(axis=1)
    if full.any() and valid.shape[1] >= 3:  # one vectorised pass for agents valid throughout
        changed += _repair_span(states, np.flatnonzero(full), 0, valid.shape[1], dt)
    for i in np.flatnonzero(~full):
        for a, b in _runs(valid[i]):
            if b - a >= 3:
                changed += _repair_span(states, np.array([i]), a, b, dt)
    return changed


def _repair_span(states: np.ndarray, rows: np.ndarray, a: int, b: int, dt: float) -> int:
    """In place for agents ``rows`` over steps ``[a, b)`` (all valid, ``b - a >= 3``); returns the count replaced."""
    n = b - a
    w = min(VEL_WINDOW, n if n % 2 else n - 1)
    xy = states[rows, a:b][..., [X, Y]]  # [R, n, 2]
    v_pos = savgol_filter(xy, w, min(2, w - 1), deriv=1, delta=dt, axis=1, mode="interp")
    v_rec = states[rows, a:b][..., [VX, VY]]
    bad = np.linalg.norm(v_rec - v_pos, axis=-1) > VEL_TOLERANCE  # [R, n]
    if not bad.any():
        return 0
    fixed = np.where(bad[..., None], v_pos, v_rec)
    sub = states[rows, a:b]
    sub[..., VX], sub[..., VY] = fixed[..., 0], fixed[..., 1]
    states[rows, a:b] = sub
    return int(bad.sum())
