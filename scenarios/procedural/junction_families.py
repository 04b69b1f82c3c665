"""Families with crossing traffic: unprotected left turn at an intersection, pedestrian crosswalk."""

from __future__ import annotations

import numpy as np

from scenarios.procedural.geometry import hermite5, join, smoothstep5, straight
from scenarios.procedural.roads import build_road, safe_gap, straight_ref, stream
from scenarios.procedural.scene import DT, T_STEPS, Scene
from scenarios.scenario import AgentType

PED_SIZE = (0.5, 0.6)


def _plus_outline(half_road: float, h: float, arm: float) -> np.ndarray:
    """Counter-clockwise outline of a four-arm junction: roads of half width ``half_road``, box ``[-h, h]^2``."""
    r = half_road
    q = [[r, -arm], [r, -h], [h, -h], [h, -r], [arm, -r]]
    pts = []
    for k in range(4):
        c, s = np.cos(k * np.pi / 2), np.sin(k * np.pi / 2)
        pts += [[c * x - s * y, s * x + c * y] for x, y in q]
    return np.array(pts, dtype=np.float64)


def left_turn(sc: Scene) -> int:
    """Unprotected left turn across oncoming traffic; the ego waits for a gap, cross traffic waits at red."""
    rng = sc.rng
    n = int(rng.integers(1, 3))
    w = float(rng.uniform(3.3, 3.7))
    h = n * w + float(rng.uniform(3.0, 5.0))
    arm = 150.0
    sc.tags += [f"lanes_{n}+{n}", "junction"]
    outline = _plus_outline(n * w, h, arm)
    sc.drivable.append(outline)
    closed = np.concatenate([outline, outline[:1]])
    for a, b in zip(closed[:-1], closed[1:]):
        if np.hypot(*(b - a)) > 0.5:
            sc.edges.append(straight(a, b, 1.0))
    rot = [
        np.array([[np.cos(k * np.pi / 2), -np.sin(k * np.pi / 2)], [np.sin(k * np.pi / 2), np.cos(k * np.pi / 2)]])
        for k in range(4)
    ]
    # arm k seen as the south arm rotated by k * 90 degrees: inbound lanes head towards the junction
    inbound, through = {}, {}
    for k in range(4):
        r = rot[k]
        sc.lines.append(straight((0, -arm), (0, -h), 1.0) @ r.T)
        for i in range(n):
            x = (i + 0.5) * w
            sc.lane(straight((x, -arm), (x, -h), 1.0) @ r.T, w)
            sc.lane(straight((-x, -h), (-x, -arm), 1.0) @ r.T, w)
            sc.lane(straight((x, -h), (x, h), 1.0) @ r.T, w)
            inbound[k, i] = straight((x, -arm), (x, -h)) @ r.T
            through[k, i] = straight((x, -arm), (x, arm)) @ r.T
            if i:
                sc.lines.append(straight((i * w, -arm), (i * w, -h), 1.0) @ r.T)
                sc.lines.append(straight((-i * w, -h), (-i * w, -arm), 1.0) @ r.T)
    # ego: south arm, inner lane, left turn into the west arm's inner outbound lane
    turn = hermite5((w / 2, -h), np.pi / 2, (-h, w / 2), np.pi)
    sc.lane(turn, w)
    ego_pts = join(inbound[0, 0], turn, straight((-h, w / 2), (-arm, w / 2)))
    p_e = sc.path(ego_pts)
    p_sb = [sc.path(through[2, i]) for i in range(n)]  # arm 2 = north arm, heading south
    # cross traffic stopped at the red light on the east (k=1) and west (k=3) arms
    known = []
    for k in (1, 3):
        for i in range(n):
            p = sc.path(through[k, i])
            s = arm - h - 2.5 - float(rng.uniform(0.0, 2.0))
            for _ in range(int(rng.integers(1, 4))):
                size = (float(rng.uniform(4.2, 5.0)), float(rng.uniform(1.75, 2.0)))
                s -= size[0] / 2
                known.append(sc.scripted(p, np.full(T_STEPS, s), np.zeros(T_STEPS), size, AgentType.VEHICLE))
                s -= size[0] / 2 + float(rng.uniform(1.5, 3.5))
    v_e = float(rng.uniform(6.0, 11.0))
    s_e = arm - h - float(rng.uniform(8.0, 30.0))
    v_o = float(rng.uniform(9.0, 14.0))
    oncoming = []
    t_gap, len_gap = float(rng.uniform(1.0, 6.0)), float(rng.uniform(7.0, 11.0))
    hole = ((arm - v_o * (t_gap + len_gap), arm - v_o * t_gap),)
    for p in p_sb:
        oncoming += stream(sc, p, 5.0, 2 * arm - 10.0, v_o, density=float(rng.uniform(0.6, 1.6)), exclude=hole)
    if n == 2:
        p_nb = sc.path(through[0, 1])
        stream(sc, p_nb, 5.0, 2 * arm - 10.0, v_o, density=float(rng.uniform(0.5, 1.2)))
    known += sc.run()
    conf = sc.conflict(p_e, (-n * w, 0.0, -h, h), oncoming, enter_radius=1.3)
    ego = sc.vehicle(p_e, s_e, v_e, 11.0, ego=True)
    stream(sc, p_e, 5.0, s_e - safe_gap(v_e, 4.8, 12.0, 2.0), v_e, leader=ego, density=float(rng.uniform(0.6, 1.2)))
    sc.run(obstacles=known, conflicts=[conf])
    tr = sc.tracks[ego]
    sc.tags.append("turned" if tr.s[-1] > conf.s_clear - 4.0 else "waiting")
    if tr.v[20:].min() < 0.5:
        sc.tags.append("stopped_for_gap")
    return p_e


def pedestrian_crossing(sc: Scene) -> int:
    """Pedestrians cross at a zebra crossing; every vehicle yields, the ego included."""
    rng = sc.rng
    nf, nb = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    w = float(rng.uniform(3.3, 3.7))
    length = 300.0
    road = build_road(sc, straight_ref(length), nf, nb, w)
    sc.tags += ["straight", f"lanes_{nf}+{nb}"]
    i_e = int(rng.integers(nf))
    v_e = float(rng.uniform(7.0, 12.0))
    s_e = float(rng.uniform(40.0, 60.0))
    x_cw = s_e + float(rng.uniform(40.0, 70.0))
    cw = float(rng.uniform(3.0, 4.5))
    y_lo, y_hi = -nf * w, nb * w
    sc.crosswalks.append(
        np.array([[x_cw - cw / 2, y_lo], [x_cw + cw / 2, y_lo], [x_cw + cw / 2, y_hi], [x_cw - cw / 2, y_hi]])
    )
    y_e = road.y_fwd(i_e)
    t_arr = (x_cw - cw / 2 - 2.4 - s_e) / v_e
    tt = np.arange(T_STEPS) * DT
    peds = []
    for _ in range(int(rng.integers(1, 4))):
        up = rng.uniform() < 0.5
        y0, y1 = (y_lo - rng.uniform(1.0, 3.0), y_hi + 16.0) if up else (y_hi + rng.uniform(1.0, 3.0), y_lo - 16.0)
        xp = x_cw + float(rng.uniform(-0.3, 0.3)) * cw
        v_p = float(rng.uniform(1.0, 1.6))
        t0 = t_arr + float(rng.uniform(-2.5, 1.5)) - abs(y_e - y0) / v_p
        v = v_p * smoothstep5((tt - t0) / 0.8)
        s = max(0.0, -t0 - 0.4) * v_p + np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * DT)])
        p = sc.path(straight((xp, y0), (xp, y1)))
        peds.append(sc.scripted(p, s, v, PED_SIZE, AgentType.PEDESTRIAN, key=True))
    conflicts = []
    for p, y in [(q, road.y_fwd(i)) for i, q in enumerate(road.fwd)] + [
        (q, (j + 0.5) * w) for j, q in enumerate(road.bwd)
    ]:
        conflicts.append(sc.conflict(p, (x_cw - cw / 2, x_cw + cw / 2, y - w / 2, y + w / 2), peds, enter_radius=2.6))
    ego = sc.vehicle(road.fwd[i_e], s_e, v_e, v_e * rng.uniform(1.0, 1.1), ego=True)
    stream(sc, road.fwd[i_e], 5.0, s_e - safe_gap(v_e, 4.8, 12.0, 2.0), v_e, leader=ego)
    stream(sc, road.fwd[i_e], x_cw + 8.0, length - 10.0, v_e, density=float(rng.uniform(0.6, 1.2)))
    for i, p in enumerate(road.fwd):
        if i != i_e:
            stream(sc, p, 5.0, length - 10.0, v_e, density=float(rng.uniform(0.6, 1.2)))
    for p in road.bwd:
        stream(sc, p, 5.0, length - 10.0, v_e, density=float(rng.uniform(0.6, 1.2)))
    sc.run(obstacles=peds, conflicts=conflicts)
    tr = sc.tracks[ego]
    sc.tags.append("yielded" if tr.v[10:].min() < 0.5 * v_e else "passed")
    return road.fwd[i_e]
