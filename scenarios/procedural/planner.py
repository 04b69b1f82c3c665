"""Rule-based longitudinal planner shared by the ego and the traffic (numpy, vectorised over vehicles).

Every vehicle drives along its own :class:`~scenarios.procedural.geometry.Path`. One call plans a
set of vehicles together step by step with IDM (Treiber's Intelligent Driver Model): a vehicle's
leader is the nearest of (a) its predecessor in the same call (``leader`` index), (b) known
trajectories planned earlier (``Obstacle``, already projected onto the vehicle's path), and
(c) a virtual stop wall in front of a conflict zone (``Conflict``: a crossing, a crosswalk, a
merge) until a gap is accepted against the zone's known occupancy. Desired speed is capped by
path curvature (lateral comfort) with look-ahead so the vehicle slows before bends.
Acceleration is clipped and jerk-limited per vehicle; speed never goes negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenarios.procedural.geometry import Path

S0 = 2.0  # m, IDM minimum standstill gap
B_COMF = 2.0  # m/s^2, IDM comfortable deceleration
STOP_TAU = 0.6  # s, braking floor a >= -v / STOP_TAU (smooth stop, bounded jerk)
MARGIN_BEFORE = 1.0  # s of free conflict zone before the predicted entry
MARGIN_AFTER = 1.5  # s after the predicted (conservative) exit


@dataclass
class Vehicles:
    """Per-vehicle inputs of one planning call (all ``[N]`` unless stated).

    ``s0``/``v0``: initial arc length (m, centre) and speed (m/s); ``length`` (m); ``v_des`` (m/s);
    ``leader``: index of the predecessor on the same path, -1 for none; ``path``: index into the
    call's path list; ``a_min``/``a_max`` (m/s^2), ``jerk`` (m/s^3), ``headway`` (s);
    ``override``: ``[N, T]`` forced acceleration (NaN = planner decides).
    """

    s0: np.ndarray
    v0: np.ndarray
    length: np.ndarray
    v_des: np.ndarray
    leader: np.ndarray
    path: np.ndarray
    a_min: np.ndarray
    a_max: np.ndarray
    jerk: np.ndarray
    headway: np.ndarray
    override: np.ndarray | None = None


@dataclass
class Obstacle:
    """A known trajectory seen from one path: centre arc length ``s [T]`` (m), ``length`` (m),
    ``present [T]`` (in the path's corridor and valid), and the path index it applies to."""

    s: np.ndarray
    length: float
    present: np.ndarray
    path: int


@dataclass
class Conflict:
    """A zone ahead on one path: stop wall for the front bumper at ``s_stop``, cleared when the
    centre passes ``s_clear``; ``occupied [T]`` by priority agents (known)."""

    s_stop: float
    s_clear: float
    occupied: np.ndarray
    path: int
    before: float = MARGIN_BEFORE
    after: float = MARGIN_AFTER


def vcap_table(path: Path, a_lat: float, b: float = 1.5, v_max: float = 40.0, n: int | None = None) -> np.ndarray:
    """Speed cap (m/s) on a 1 m grid along ``path`` from lateral comfort ``a_lat`` (m/s^2), with look-ahead
    deceleration ``b`` (m/s^2) so the cap decreases smoothly before bends -> ``[n]``."""
    n = n or int(np.ceil(path.length)) + 2
    s = np.arange(n, dtype=np.float64)
    k = np.abs(path.curvature(np.minimum(s, path.length)))
    vc = np.minimum(np.sqrt(a_lat / np.maximum(k, 1e-6)), v_max)
    key = vc**2 + 2 * b * s
    best = np.minimum.accumulate(key[::-1])[::-1]
    return np.sqrt(np.maximum(best - 2 * b * s, 0.0))


def travel_time(dist, v, a, vmax):
    """Time (s) to cover ``dist`` m from speed ``v`` accelerating at ``a`` up to ``vmax`` (broadcast)."""
    dist = np.maximum(dist, 0.0)
    vmax = np.maximum(vmax, np.maximum(v, 0.1))
    t1 = (vmax - v) / a
    d1 = v * t1 + 0.5 * a * t1 * t1
    t_acc = (-v + np.sqrt(v * v + 2 * a * dist)) / a
    return np.where(dist <= d1, t_acc, t1 + (dist - d1) / vmax)


def plan(
    veh: Vehicles,
    paths: list[Path],
    vcaps: list[np.ndarray],
    steps: int,
    dt: float,
    obstacles: list[Obstacle] = (),
    conflicts: list[Conflict] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Plan ``N`` vehicles over ``steps`` steps.

    Returns:
        ``s [N, T]`` centre arc length along each vehicle's path (m) and ``v [N, T]`` speed (m/s).
    """
    n, t_n = len(veh.s0), steps
    s = np.zeros((n, t_n))
    v = np.zeros((n, t_n))
    s[:, 0], v[:, 0] = veh.s0, veh.v0
    ln = veh.length
    grid = max(len(c) for c in vcaps)
    table = np.stack([np.pad(vcaps[p], (0, grid - len(vcaps[p])), mode="edge") for p in veh.path])
    rows = np.arange(n)
    sqrt_ab = np.sqrt(veh.a_max * B_COMF)
    has_leader = veh.leader >= 0
    lead = np.where(has_leader, veh.leader, 0)
    override = veh.override if veh.override is not None else np.full((n, t_n), np.nan)

    if obstacles:
        o_s = np.stack([o.s for o in obstacles])
        o_len = np.array([o.length for o in obstacles])
        o_pres = np.stack([o.present for o in obstacles])
        o_mask = veh.path[:, None] == np.array([o.path for o in obstacles])[None]
        o_vel = np.maximum(np.gradient(o_s, dt, axis=1), 0.0) if t_n > 1 else np.zeros_like(o_s)
        o_rear = np.where(o_pres, o_s - o_len[:, None] / 2, np.inf)
        o_ctr = np.where(o_pres, o_s, -np.inf)
    if conflicts:
        c_stop = np.array([c.s_stop for c in conflicts])
        c_clear = np.array([c.s_clear for c in conflicts])
        c_cs = np.stack([np.concatenate([[0], np.cumsum(c.occupied)]) for c in conflicts])
        c_mask = veh.path[:, None] == np.array([c.path for c in conflicts])[None]
        committed = np.zeros((n, len(conflicts)), dtype=bool)
        # slowest plausible speed through each zone (curvature cap between wall and clearance)
        c_vmax = np.empty((n, len(conflicts)))
        for j, c in enumerate(conflicts):
            lo, hi = int(max(c.s_stop, 0)), int(max(c.s_clear, c.s_stop + 1)) + 1
            c_vmax[:, j] = np.minimum(table[:, lo : min(hi, grid)].min(axis=1), veh.v_des)
        cidx = np.arange(len(conflicts))
        c_before = np.array([c.before for c in conflicts])[None]
        c_after = np.array([c.after for c in conflicts])[None]
    forced_all = ~np.isnan(override)
    any_forced = bool(forced_all.any())
    inv_2sqrt_ab = 1.0 / (2 * sqrt_ab)
    jdt = veh.jerk * dt
    a_prev = np.zeros(n)
    for t in range(t_n - 1):
        st, vt = s[:, t], v[:, t]
        front = st + ln / 2
        gap = np.where(has_leader, s[lead, t] - ln[lead] / 2 - front, np.inf)
        vl = v[lead, t]
        if obstacles:
            go = np.where(o_mask & (o_ctr[None, :, t] > st[:, None]), o_rear[None, :, t] - front[:, None], np.inf)
            j = np.argmin(go, axis=1)
            gmin = go[rows, j]
            better = gmin < gap
            gap = np.where(better, gmin, gap)
            vl = np.where(better, o_vel[j, t], vl)
        if conflicts:
            dist_in = c_stop[None] - front[:, None]
            react = S0 + vt * veh.headway + vt * vt / (2 * sqrt_ab) + 8.0
            pending = c_mask & ~committed & (dist_in > -0.5) & (dist_in < react[:, None])
            if pending.any():
                vd = veh.v_des[:, None]
                tau_in = travel_time(dist_in, vt[:, None], veh.a_max[:, None], vd)
                tau_out = travel_time(c_clear[None] - st[:, None], vt[:, None], 0.7 * veh.a_max[:, None], 0.85 * c_vmax)
                lo = np.minimum(np.maximum(t + np.floor((tau_in - c_before) / dt).astype(int), 0), t_n)
                hi = np.minimum(np.maximum(t + np.ceil((tau_out + c_after) / dt).astype(int) + 1, 0), t_n)
                busy = c_cs[cidx[None], hi] - c_cs[cidx[None], lo] > 0
                committed |= pending & ~busy
                wall = pending & busy
                gw = np.where(wall, dist_in, np.inf).min(axis=1)
                better = gw < gap
                gap = np.where(better, gw, gap)
                vl = np.where(better, 0.0, vl)
        vd = np.maximum(np.minimum(veh.v_des, table[rows, np.minimum(np.maximum(st.astype(int), 0), grid - 1)]), 0.1)
        sstar = S0 + np.maximum(0.0, vt * veh.headway + vt * (vt - vl) * inv_2sqrt_ab)
        a = veh.a_max * (1.0 - (vt / vd) ** 4 - (sstar / np.maximum(gap, 0.1)) ** 2)
        a = np.minimum(np.maximum(a, veh.a_min), veh.a_max)
        if any_forced:
            forced = forced_all[:, t]
            a = np.where(
                forced, np.minimum(np.maximum(override[:, t], veh.a_min), veh.a_max), np.maximum(a, -vt / STOP_TAU)
            )
        else:
            a = np.maximum(a, -vt / STOP_TAU)
        a = np.minimum(np.maximum(a, a_prev - jdt), a_prev + jdt)
        a = np.maximum(a, -vt / dt)
        s[:, t + 1] = st + vt * dt + 0.5 * a * dt * dt
        v[:, t + 1] = np.maximum(vt + a * dt, 0.0)
        a_prev = a
    return s, v
