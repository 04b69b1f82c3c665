"""Import-time repairs of recorded tracks: recentring, glitches in poses and velocities, map warnings.

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
- Position jumps (:func:`repair_position_jumps`): a single sample displaced from the path its neighbours
  describe (nuScenes egos: speed 8.9 -> 19.1 -> 8.9 m/s within 0.2 s from one displaced pose). The
  midpoint residual ``e_k = p_k - (p_{k-1} + p_{k+1}) / 2`` of a sample displaced by ``d`` is ``d``, and its
  neighbours' are ``-d / 2`` each; a change of velocity (a corner of a piecewise-linear track, a brake)
  leaves the neighbours at 0. A sample is moved to its neighbours' midpoint only when ``|e_k|`` exceeds
  :data:`JUMP_TOLERANCE` and both neighbours show the displaced-sample pattern within :data:`JUMP_PATTERN`.
- Flipped headings (:func:`repair_flipped_headings`): vehicle headings that turn by more than
  :data:`FLIP_JUMP` in one step (impossible at 10 Hz) split a track into stretches; a stretch that points
  against the direction of motion while the vehicle moves (>= :data:`FLIP_MIN_SPEED`), between stretches
  that agree with it, and shorter than them, is turned by pi. A vehicle reversing keeps its heading (no jump).
- Position steps (:func:`position_steps`): one interval too long or too short between consistent stretches
  (a timing glitch): positions stay as recorded, velocities are derived as if the step were not there.
- :func:`repair_tracks` runs them all and reports the counts per kind in one :class:`TracksRepaired`
  warning per recording (``scenarios.check`` shows them per scene).
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

from scenarios.scenario import VX, VY, YAW, X, Y

VEL_WINDOW = 11  # steps (1.1 s at 10 Hz) of the quadratic fit that differentiates positions
VEL_TOLERANCE = 1.0  # m/s: recorded velocity further than this from the positions' is replaced
JUMP_TOLERANCE = 0.1  # m: a midpoint residual below this is consistent motion (implied accel < 20 m/s^2 at 10 Hz)
JUMP_PATTERN = 0.25  # neighbours' residuals within this fraction of |e_k| of -e_k / 2: a displaced sample
FLIP_JUMP = 0.75 * np.pi  # rad: a heading change per step beyond this is a flip, not a turn
FLIP_MIN_SPEED = 1.0  # m/s: slower, the direction of motion says nothing about the heading
REPAIR_KINDS = ("position_jumps", "position_steps", "flipped_headings", "velocities")


class ImportNote(UserWarning):
    """Something an importer did to a recording that a user should hear of, once per recording or file (the scene
    imports): the base of :class:`TracksRepaired`, :class:`EgoSpanCut`, :class:`EgoChosen`, :class:`FieldFallback` and
    :class:`MapElementSkipped`. Callers catch it and print one ``note:`` line each."""


class TracksRepaired(ImportNote):
    """Recorded glitches were repaired on import (one warning per recording).

    Attributes:
        counts: ``{kind: samples repaired}`` for every kind of :data:`REPAIR_KINDS`.
    """

    def __init__(self, message: str, counts: dict[str, int]):
        super().__init__(message)
        self.counts = dict(counts)


class EgoSpanCut(ImportNote):
    """The recorded ego has a gap (invalid or non-finite samples between valid ones): the scene keeps the longest
    run of valid steps and leaves recorded driving out (one warning per recording)."""


class FieldFallback(ImportNote):
    """A field the importer reads was missing or unusable and a documented fallback took its place (velocities
    derived from positions, default sizes, a step from ``sample_rate``; one warning per file)."""


class EgoChosen(ImportNote):
    """The source names no ego (a Waymo JSON scene without ``metadata.sdc_track_index``): the importer chose one
    recorded vehicle, as it does for CommonRoad (one warning per recording, naming the choice)."""


class MapElementSkipped(ImportNote):
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


MAX_COORD = 1e8  # m: beyond this a map point is in no metric frame on Earth (UTM northings stay below 1e7)
MAX_EXTENT = 1e5  # m: a map element longer or wider than 100 km is not one element of a recorded scene


def usable_line(pts: np.ndarray, what: str, min_points: int, notes: list[str]) -> bool:
    """Whether ``pts [n, 2]`` is a usable polyline (``min_points=2``) or polygon (3); notes why not.

    Unusable means fewer than ``min_points`` points, non-finite values, all points equal, a coordinate beyond
    :data:`MAX_COORD` or an extent beyond :data:`MAX_EXTENT` (such a point, a corrupt value, would make every
    step of the map's construction sample billions of points).
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
        far = np.maximum.reduceat(np.abs(safe).max(axis=1), starts) > MAX_COORD
        for j, i in enumerate(idx):
            if not finite[j]:
                notes.append(f"{names[i]}: non-finite coordinates")
            elif far[j]:
                notes.append(f"{names[i]}: a coordinate beyond {MAX_COORD:.0e} m")
            elif spread[j] > MAX_EXTENT:
                notes.append(f"{names[i]}: spans {spread[j] / 1000:.3g} km (more than {MAX_EXTENT / 1000:.0f} km)")
            elif spread[j] <= 0.0:
                notes.append(f"{names[i]}: all points coincide")
        ok[idx] = finite & ~far & (spread <= MAX_EXTENT) & (spread > 0.0)
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


def _runs(valid: np.ndarray) -> np.ndarray:
    """int ``[A, T]``: an id per run of consecutive valid steps (unique within the array), -1 where invalid."""
    start = valid & ~np.concatenate([np.zeros((valid.shape[0], 1), bool), valid[:, :-1]], axis=1)
    ids = np.cumsum(start.reshape(-1)).reshape(valid.shape) - 1
    return np.where(valid, ids, -1)


def repair_position_jumps(states: np.ndarray, valid: np.ndarray) -> int:
    """In place: move single displaced samples back onto the path of their neighbours (module docstring).

    Args:
        states: float64 ``[A, T, 7]`` (X, Y, ...), m.
        valid: bool ``[A, T]``.

    Returns:
        The number of (agent, step) positions moved. A sample whose midpoint residual is at most
        :data:`JUMP_TOLERANCE`, or whose neighbours do not show the displaced-sample pattern, or that lacks
        two valid neighbours on each side, is never moved.
    """
    n_a, n_t = valid.shape
    if n_a == 0 or n_t < 5:
        return 0
    xy = states[..., X:Y + 1]
    e, same = _midpoint_residuals(xy, valid)
    mag = np.linalg.norm(e, axis=-1)  # [A, T]
    k = np.zeros_like(valid)
    k[:, 2:-2] = same[:, 1:-1] & same[:, :-2] & same[:, 2:] & (mag[:, 2:-2] > JUMP_TOLERANCE)
    half = e / 2
    for side in (-1, 1):
        nb = np.roll(e, -side, axis=1)  # e[k + side]
        k &= np.linalg.norm(nb + half, axis=-1) <= JUMP_PATTERN * mag
    a_idx, t_idx = np.nonzero(k)
    xy[a_idx, t_idx] = (xy[a_idx, t_idx - 1] + xy[a_idx, t_idx + 1]) / 2
    return int(len(a_idx))


def position_steps(states: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int]:
    """The steps in recorded positions: one interval too long or too short between consistent stretches.

    A step of ``delta`` between samples ``j - 1`` and ``j`` leaves midpoint residuals ``e_{j-1} = -delta / 2``
    and ``e_j = +delta / 2`` and consistent samples around them (ScenarioNet's nuScenes egos: forward-difference
    speed 12.2 -> 16.9 -> 11.9 m/s; the larger set shows 8.9 -> 19.1 -> 8.9 m/s). The pose record is exact on
    both sides; the odd interval is a timing glitch, so positions stay as recorded and only the velocities
    derived from them skip the step (:func:`repair_tracks`).

    Args:
        states: float64 ``[A, T, 7]`` (X, Y, ...), m.
        valid: bool ``[A, T]``.

    Returns:
        ``(offset float64 [A, T, 2], count)``: the sum of the steps up to each sample (m; positions minus
        ``offset`` have none) and the number of steps found. Both residuals must exceed
        :data:`JUMP_TOLERANCE`, cancel within :data:`JUMP_PATTERN`, and the outer neighbours' residuals stay
        within :data:`JUMP_PATTERN` of them.
    """
    n_a, n_t = valid.shape
    offset = np.zeros((n_a, n_t, 2))
    if n_a == 0 or n_t < 5:
        return offset, 0
    e, same = _midpoint_residuals(states[..., X:Y + 1], valid)
    mag = np.linalg.norm(e, axis=-1)
    j = np.zeros_like(valid)  # j: the later sample of the odd interval
    m = mag[:, 2:-1]
    j[:, 2:-1] = same[:, :-1] & same[:, 1:] & (mag[:, 1:-2] > JUMP_TOLERANCE) & (m > JUMP_TOLERANCE)
    j[:, 2:-1] &= np.linalg.norm(e[:, 1:-2] + e[:, 2:-1], axis=-1) <= JUMP_PATTERN * m
    j[:, 2:-1] &= (mag[:, :-3] <= JUMP_PATTERN * m) & (mag[:, 3:] <= JUMP_PATTERN * m)
    step = np.where(j[..., None], e - np.roll(e, 1, axis=1), 0.0)  # e_j - e_{j-1} = delta
    offset = np.cumsum(step, axis=1)
    return offset, int(j.sum())


def _midpoint_residuals(xy: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(e [A, T, 2], same [A, T-2])``: ``e_k = p_k - (p_{k-1} + p_{k+1}) / 2`` (0 where the three are not one
    run of valid steps) and whether they are (``same[:, k - 1]`` for step ``k``)."""
    runs = _runs(valid)
    same = (runs[:, 1:-1] >= 0) & (runs[:, :-2] == runs[:, 1:-1]) & (runs[:, 2:] == runs[:, 1:-1])
    e = np.zeros_like(xy)
    e[:, 1:-1] = (xy[:, 1:-1] - (xy[:, :-2] + xy[:, 2:]) / 2) * same[..., None]
    return e, same


def repair_flipped_headings(states: np.ndarray, valid: np.ndarray, agent_type: np.ndarray, dt: float) -> int:
    """In place: turn by pi the vehicle headings that were recorded flipped (module docstring).

    Args:
        states: float64 ``[A, T, 7]`` (X, Y, YAW, ...), m, rad.
        valid: bool ``[A, T]``.
        agent_type: ``[A]`` :class:`~scenarios.scenario.AgentType` values; only vehicles are repaired.
        dt: s between steps.

    Returns:
        The number of (agent, step) headings turned.
    """
    from scenarios.scenario import AgentType, wrap_angle

    n_a, n_t = valid.shape
    if n_a == 0 or n_t < 3:
        return 0
    yaw = states[..., YAW]
    runs = _runs(valid)
    step_ok = (runs[:, 1:] >= 0) & (runs[:, 1:] == runs[:, :-1])
    turn = np.abs(wrap_angle(yaw[:, 1:] - yaw[:, :-1]))
    jump = step_ok & (turn > FLIP_JUMP)
    candidates = np.flatnonzero(jump.any(axis=1) & (np.asarray(agent_type) == AgentType.VEHICLE))
    fixed = 0
    for a in candidates:
        xy = states[a, :, X:Y + 1]
        move = np.zeros((n_t, 2))
        move[1:-1] = (xy[2:] - xy[:-2]) / (2 * dt)
        ok_c = np.zeros(n_t, bool)
        ok_c[1:-1] = (runs[a, 1:-1] >= 0) & (runs[a, :-2] == runs[a, 1:-1]) & (runs[a, 2:] == runs[a, 1:-1])
        moving = ok_c & (np.linalg.norm(move, axis=-1) >= FLIP_MIN_SPEED)
        agree = np.cos(yaw[a]) * move[:, 0] + np.sin(yaw[a]) * move[:, 1] > 0
        parity = np.concatenate([[0], np.cumsum(jump[a])]) % 2  # stretches between flips
        for r in np.unique(runs[a][runs[a] >= 0]):
            in_run = runs[a] == r
            cls = [in_run & (parity == p) for p in (0, 1)]
            against = [int((c & moving & ~agree).sum()) for c in cls]
            along = [int((c & moving & agree).sum()) for c in cls]
            for p in (0, 1):
                q = 1 - p
                if (against[p] > along[p] and along[q] >= against[q] and cls[p].sum() < cls[q].sum()):
                    yaw[a, cls[p]] = wrap_angle(yaw[a, cls[p]] + np.pi)
                    fixed += int(cls[p].sum())
    return fixed


def repair_tracks(states: np.ndarray, valid: np.ndarray, agent_type: np.ndarray, dt: float, what: str = "") -> dict:
    """In place: every repair of recorded tracks, in order: position jumps, flipped headings, velocities.

    Args:
        states: float64 ``[A, T, 7]`` (X, Y, YAW, VX, VY, LENGTH, WIDTH), 0 where invalid.
        valid: bool ``[A, T]``.
        agent_type: ``[A]`` :class:`~scenarios.scenario.AgentType` values.
        dt: s between steps.
        what: the recording's name for the warning.

    Returns:
        ``{kind: count}`` over :data:`REPAIR_KINDS`; when any is non-zero, one :class:`TracksRepaired`
        warning says so.
    """
    counts = {"position_jumps": repair_position_jumps(states, valid)}
    offset, counts["position_steps"] = position_steps(states, valid)
    counts["flipped_headings"] = repair_flipped_headings(states, valid, agent_type, dt)
    if counts["position_steps"]:  # velocities from the positions without their steps; positions stay as recorded
        smooth = states.copy()
        smooth[..., X:Y + 1] -= offset
        smooth[~valid] = 0.0
        counts["velocities"] = repair_velocities(smooth, valid, dt)
        states[..., VX:VY + 1] = smooth[..., VX:VY + 1]
    else:
        counts["velocities"] = repair_velocities(states, valid, dt)
    if any(counts.values()):
        told = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items() if v)
        warnings.warn(TracksRepaired(f"{what + ': ' if what else ''}recorded samples repaired: {told}", counts),
                      stacklevel=2)
    return counts
