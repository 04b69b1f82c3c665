"""Families on a single road: lane following, lead braking, cut-in, stopped vehicle, on-ramp merge.

Each builder takes a fresh :class:`Scene` and returns the ego's route path id. Frames are local
(road along +x, right-hand traffic); ``Scene.finish`` transforms them.
"""

from __future__ import annotations

import numpy as np

from scenarios.procedural.geometry import Path, smoothstep5, strip_polygon
from scenarios.procedural.planner import Conflict
from scenarios.procedural.roads import Road, build_road, curved_ref, safe_gap, straight_ref, stream
from scenarios.procedural.scene import DT, T_STEPS, Scene, sample_size
from scenarios.scenario import AgentType

ROAD_LEN = 360.0


def _ego_and_adjacent_lane(rng: np.random.Generator, n_fwd: int) -> tuple[int, int]:
    """A random ego lane among ``n_fwd`` forward lanes and a neighbour (left or right at random where both exist)."""
    i_e = int(rng.integers(n_fwd))
    i_n = i_e + 1 if i_e == 0 or (i_e + 1 < n_fwd and rng.uniform() < 0.5) else i_e - 1
    return i_e, i_n


def _road(sc: Scene, n_fwd: tuple[int, int], n_bwd: tuple[int, int], curved: bool = False) -> Road:
    rng = sc.rng
    nf, nb = int(rng.integers(*n_fwd)), int(rng.integers(*n_bwd))
    if nf + nb < 2:
        nb = 1  # at least two lanes: a single-lane road carries too little traffic to be interesting
    width = float(rng.uniform(3.3, 3.8))
    if curved:
        pts, kmax = curved_ref(rng, ROAD_LEN)
        sc.tags.append("curved")
    else:
        pts = straight_ref(ROAD_LEN)
        sc.tags.append("straight")
    sc.tags.append(f"lanes_{nf}+{nb}")
    return build_road(sc, pts, nf, nb, width)


def _background(sc: Scene, road: Road, skip_fwd: tuple[int, ...], v_base: float) -> None:
    """Queue independent streams in every lane except ``skip_fwd`` (forward lane indices)."""
    rng = sc.rng
    for i, p in enumerate(road.fwd):
        if i not in skip_fwd:
            stream(sc, p, 5.0, ROAD_LEN - 10.0, v_base * rng.uniform(0.85, 1.15), density=rng.uniform(0.8, 2.0))
    for p in road.bwd:
        stream(sc, p, 5.0, ROAD_LEN - 10.0, v_base * rng.uniform(0.85, 1.15), density=rng.uniform(0.8, 2.0))


def _ego_lane(
    sc: Scene, path: int, s_ego: float, v_ego: float, gap_ahead: float, *, lead_override=None, followers: bool = True
) -> tuple[int, int | None]:
    """Queue the ego's lane: traffic ahead, an optional lead at ``gap_ahead``, the ego, followers behind.

    Returns (ego track id, lead track id or None).
    """
    rng = sc.rng
    lead = None
    leader = None
    s_lead = s_ego + gap_ahead
    if s_lead < ROAD_LEN - 20:
        ahead = stream(
            sc,
            path,
            s_lead + safe_gap(v_ego, 5, 12, 2.0) + 10,
            ROAD_LEN - 10.0,
            v_ego * 1.05,
            density=rng.uniform(0.6, 1.2),
        )
        leader = ahead[-1] if ahead else None
        v_lead = v_ego * (1.0 if lead_override is not None else rng.uniform(0.9, 1.1))
        lead = sc.vehicle(
            path, s_lead, v_lead, v_lead, leader=leader, override=lead_override, key=lead_override is not None
        )
        leader = lead
    ego = sc.vehicle(path, s_ego, v_ego, v_ego * rng.uniform(1.0, 1.15), ego=True, leader=leader)
    if followers:
        stream(sc, path, 5.0, s_ego - safe_gap(v_ego, 4.8, 12.0, 2.2), v_ego, leader=ego, density=rng.uniform(0.6, 1.2))
    return ego, lead


def lane_follow(sc: Scene, curved: bool) -> int:
    """Follow the ego's lane in traffic, straight or with bends."""
    rng = sc.rng
    road = _road(sc, (1, 4), (0, 3), curved=curved)
    i_e = int(rng.integers(len(road.fwd)))
    v = float(rng.uniform(8.0, 16.0))
    s_e = float(rng.uniform(40.0, 70.0))
    v0 = min(v, float(sc.vcaps[road.fwd[i_e]][int(s_e)]))
    gap = safe_gap(v0, 4.8, 12.0, rng.uniform(1.5, 3.0)) + rng.uniform(0.0, 40.0)
    _ego_lane(sc, road.fwd[i_e], s_e, v0, gap)
    _background(sc, road, (i_e,), v)
    sc.run()
    return road.fwd[i_e]


def lead_brake(sc: Scene) -> int:
    """The vehicle ahead brakes hard (to a stop or to a crawl); the ego brakes within comfort limits."""
    rng = sc.rng
    road = _road(sc, (1, 4), (0, 3))
    i_e = int(rng.integers(len(road.fwd)))
    v = float(rng.uniform(9.0, 15.0))
    s_e = float(rng.uniform(40.0, 70.0))
    gap = safe_gap(v, 4.8, 4.8, rng.uniform(2.0, 2.6)) + 4.0
    t_b = int(rng.integers(20, 45))
    decel = float(rng.uniform(4.5, 6.0))
    ov = np.full(T_STEPS, np.nan)
    if rng.uniform() < 0.6:
        ov[t_b:] = -decel
        sc.tags.append("lead_stops")
    else:
        ov[t_b : t_b + int(rng.integers(10, 20))] = -decel
        ov[t_b + 20 : t_b + 30] = 0.0
        sc.tags.append("lead_slows")
    _ego_lane(sc, road.fwd[i_e], s_e, v, gap, lead_override=ov)
    _background(sc, road, (i_e,), v)
    sc.run()
    return road.fwd[i_e]


def cut_in(sc: Scene) -> int:
    """A vehicle from the adjacent lane changes into the ego's lane ahead of the ego."""
    rng = sc.rng
    road = _road(sc, (2, 4), (0, 3))
    i_e, i_c = _ego_and_adjacent_lane(rng, len(road.fwd))
    sc.tags.append("from_left" if i_c < i_e else "from_right")
    v_e = float(rng.uniform(9.0, 15.0))
    v_c = v_e + float(rng.uniform(-1.5, 1.5))
    s_e = float(rng.uniform(40.0, 60.0))
    t_c = float(rng.uniform(1.5, 3.5))
    size_c = (float(rng.uniform(4.3, 5.0)), float(rng.uniform(1.8, 2.0)))
    g = float(rng.uniform(6.0, 12.0)) + v_e * float(rng.uniform(0.4, 0.8))
    s_c = s_e + v_e * t_c + 2.4 + size_c[0] / 2 + g - v_c * t_c
    x_a, dur = s_c + v_c * t_c, max(25.0, v_c * float(rng.uniform(3.0, 4.5)))
    x = road.ref.s
    y = road.y_fwd(i_c) + (road.y_fwd(i_e) - road.y_fwd(i_c)) * smoothstep5((x - x_a) / dur)
    p_c = sc.path(np.stack([x, y], axis=1))
    # stage 1: ego-lane traffic well ahead, adjacent-lane traffic ahead of the cutter, other lanes
    far = s_c + v_c * 6.0 + 35.0
    stream(sc, road.fwd[i_e], far, ROAD_LEN - 10.0, v_e * 1.05, density=rng.uniform(0.6, 1.2))
    stream(sc, road.fwd[i_c], s_c + safe_gap(v_c, 5, 12, 2.0) + 10, ROAD_LEN - 10.0, v_c, density=rng.uniform(0.6, 1.2))
    _background(sc, road, (i_e, i_c), v_e)
    known = sc.run()
    # stage 2: the cutter
    cutter = sc.vehicle(p_c, s_c, v_c, v_c, key=True, size=size_c)
    sc.run(obstacles=known)
    known = known + [cutter]
    # stage 3: ego with followers, adjacent-lane followers behind the cutter
    ego = sc.vehicle(road.fwd[i_e], s_e, v_e, v_e * rng.uniform(1.0, 1.1), ego=True)
    stream(sc, road.fwd[i_e], 5.0, s_e - safe_gap(v_e, 4.8, 12.0, 2.2), v_e, leader=ego)
    stream(sc, road.fwd[i_c], 5.0, min(s_c, s_e) - safe_gap(v_c, 5, 12, 2.2) - 10, v_c)
    sc.run(obstacles=known)
    return road.fwd[i_e]


def stopped_vehicle(sc: Scene) -> int:
    """A vehicle stands still in the ego's lane; the ego changes to the next lane to pass and comes back."""
    rng = sc.rng
    road = _road(sc, (2, 4), (0, 3))
    i_e, i_a = _ego_and_adjacent_lane(rng, len(road.fwd))
    v_e = float(rng.uniform(7.0, 13.0))
    s_e = float(rng.uniform(40.0, 60.0))
    size_s = (float(rng.uniform(4.3, 5.5)), float(rng.uniform(1.8, 2.1)))
    x_s = s_e + float(rng.uniform(55.0, 85.0))
    dur = max(30.0, 3.5 * v_e)
    x_a = x_s - size_s[0] / 2 - 2.4 - 4.0 - dur
    x_b = x_s + size_s[0] / 2 + 2.4 + 5.0
    x = road.ref.s
    shift = smoothstep5((x - x_a) / dur) - smoothstep5((x - x_b) / dur)
    y = road.y_fwd(i_e) + (road.y_fwd(i_a) - road.y_fwd(i_e)) * shift
    p_e = sc.path(np.stack([x, y], axis=1))
    sc.tags.append("pass_left" if i_a < i_e else "pass_right")
    stopped = sc.scripted(road.fwd[i_e], np.full(T_STEPS, x_s), np.zeros(T_STEPS), size_s, AgentType.VEHICLE, key=True)
    stream(sc, road.fwd[i_e], x_s + 20.0, ROAD_LEN - 10.0, v_e, density=rng.uniform(0.6, 1.2))
    stream(sc, road.fwd[i_a], s_e + 30.0, ROAD_LEN - 10.0, v_e * rng.uniform(1.05, 1.3), density=rng.uniform(0.5, 1.0))
    _background(sc, road, (i_e, i_a), v_e)
    known = [stopped] + sc.run()
    ego = sc.vehicle(p_e, s_e, v_e, v_e * rng.uniform(1.0, 1.1), ego=True)
    sc.run(obstacles=known)
    stream(sc, road.fwd[i_a], 5.0, s_e - 25.0, v_e, density=rng.uniform(0.5, 1.0))
    stream(sc, road.fwd[i_e], 5.0, s_e - safe_gap(v_e, 4.8, 12, 2.2), v_e, density=rng.uniform(0.5, 1.0))
    sc.run(obstacles=known + [ego])
    return p_e


def merge(sc: Scene) -> int:
    """The ego joins a highway's right lane from an on-ramp, accepting a gap in the lane's traffic."""
    rng = sc.rng
    nf = int(rng.integers(2, 4))
    width = float(rng.uniform(3.4, 3.8))
    ref = straight_ref(ROAD_LEN)
    road = build_road(sc, ref, nf, 0, width, right_edge=False)
    sc.tags += ["straight", f"lanes_{nf}+0", "on_ramp"]
    y_r = road.y_fwd(nf - 1)
    off = width + float(rng.uniform(6.0, 12.0))
    x_j0, dj = float(rng.uniform(40.0, 70.0)), float(rng.uniform(100.0, 140.0))
    x_m = x_j0 + dj
    xr = np.arange(0.0, x_m + 0.25, 0.5)
    ramp = np.stack([xr, y_r - off * (1 - smoothstep5((xr - x_j0) / dj))], axis=1)
    rp = Path(ramp)
    sc.lane(ramp, width)
    sc.drivable.append(strip_polygon(rp, width / 2 + 0.3, width / 2 + 0.3))
    edge_y = -nf * width
    gore = rp.offset(width / 2 + 0.3)
    touch = int(np.argmax(gore[:, 1] >= edge_y)) if np.any(gore[:, 1] >= edge_y) else len(gore) - 1
    sc.edges.append(Path(gore[: touch + 1][::-1]).resample(1.0))
    sc.edges.append(Path(np.array([[0.0, edge_y], [gore[touch, 0], edge_y]])).resample(1.0))
    outer = rp.offset(-(width / 2 + 0.3))
    sc.edges.append(Path(np.concatenate([outer, [[ROAD_LEN, edge_y]]])).resample(1.0))
    lane_r = road.fwd_pts[nf - 1]
    p_e = sc.path(np.concatenate([ramp, lane_r[lane_r[:, 0] > x_m + 0.25]]))
    v_e = float(rng.uniform(8.0, 13.0))
    v_m = float(rng.uniform(11.0, 16.0))
    pe = sc.paths[p_e]
    s_zone = float(pe.s[np.argmax(pe.pts[:, 1] > y_r - width / 2 - 2.7)])
    s_e = max(5.0, s_zone - v_e * float(rng.uniform(2.5, 5.0)))
    t_m = (s_zone - s_e) / v_e
    # a gap of g m (centre to centre) that is at the merge point when the ego arrives: the vehicles behind
    # need more room (they close in), so the gap centre trails the merge point by ~10 m
    g = float(rng.uniform(45.0, 80.0))
    x_gap = pe.xy(s_zone)[0] - 9.5 + rng.uniform(-0.25, 0.25) * max(g - 33.0, 0.0) - v_m * t_m
    p_r = road.fwd[nf - 1]
    a_ids = stream(sc, p_r, x_gap + g / 2, ROAD_LEN - 10.0, v_m, density=rng.uniform(0.6, 1.2))
    _background(sc, road, (nf - 1,), v_m)
    known = sc.run()
    # vehicles behind the gap (planned after the ego, reacting to it); the ego predicts them at constant speed
    b_rng = np.random.default_rng(rng.integers(2**32))
    b_veh, s = [], x_gap - g / 2
    while s > 5.0:
        b_veh.append((s, v_m * b_rng.uniform(0.9, 1.05), sample_size(b_rng)))
        s -= safe_gap(v_m, 5.0, 12.0, b_rng.uniform(1.5, 2.2)) + b_rng.uniform(0.0, 30.0)
    v_ego_des = max(v_e, v_m) * float(rng.uniform(0.95, 1.05))
    x_z = float(pe.xy(s_zone)[0])
    tt = np.arange(T_STEPS) * DT
    movers = [(sc.tracks[i].s, sc.tracks[i].v, sc.tracks[i].length) for i in a_ids]
    movers += [(s0 + v0 * tt, np.full(T_STEPS, v0), size[0]) for s0, v0, size in b_veh]
    occ = np.zeros(T_STEPS, dtype=bool)
    v_ref = 0.6 * v_ego_des  # the ego may enter below its desired speed (after waiting)
    for x_v, v_v, ln in movers:
        need_ahead = (ln + 4.8) / 2 + 2.0 + np.maximum(0.0, v_ego_des - v_v) ** 2 / 6.0
        need_behind = (ln + 4.8) / 2 + 2.0 + 0.6 * v_v + np.maximum(0.0, v_v - v_ref) ** 2 / 8.0
        occ |= (x_v - x_z < need_ahead) & (x_z - x_v < need_behind)
    # the gap must hold while the ego's nose enters the lane; afterwards it follows the vehicle ahead
    # (obstacles) and the vehicles behind react to it (planned after it)
    conf = Conflict(s_stop=s_zone + 1.9, s_clear=s_zone + 3.0, occupied=occ, path=p_e, before=0.5, after=0.8)
    ego = sc.vehicle(p_e, s_e, v_e, v_ego_des, ego=True)
    sc.run(obstacles=known, conflicts=[conf])
    leader = None
    for s0, v0, size in b_veh:
        leader = sc.vehicle(p_r, s0, v0, v0 * 1.02, leader=leader, size=size)
    sc.run(obstacles=known + [ego])
    sc.tags.append("merged" if sc.tracks[ego].s[-1] > s_zone + 10 else "waiting")
    return p_e
