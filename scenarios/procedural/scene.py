"""Scene assembly for the procedural generator: map parts, planned traffic, verification, export.

A family builds a :class:`Scene` in a local frame (the ego's road along +x or +y), plans vehicles
in stages with :meth:`Scene.run` (each stage sees the earlier stages' trajectories as known
obstacles), then :meth:`Scene.finish` checks every pair of boxes for overlap (dropping
background agents that would collide, failing when the ego or a family-defining agent would),
applies a random rigid transform and returns a validated :class:`~scenarios.scenario.Scenario`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scenarios.importers.drivable import width_polygon
from scenarios.procedural.geometry import Path, box_corners, corners_overlap, rigid
from scenarios.procedural.planner import Conflict, Obstacle, Vehicles, plan, vcap_table
from scenarios.scenario import AgentType, Polylines, RoadMap, Scenario, wrap_angle

T_STEPS = 91
INIT_STEP = 10
DT = 0.1
MAX_AGENTS = 32
EGO_LIMITS = {"a_min": -3.8, "a_max": 1.8, "jerk": 3.5}
OTHER_LIMITS = {"a_min": -6.0, "a_max": 2.5, "jerk": 8.0}
# What the generated world does not model (its lanes have polygons; it has no lights or stop signs, known-empty;
# the whole plane is its map, so mapped_area is empty and known).
PROCEDURAL_UNKNOWN = ("speed_limits", "lane_graph", "intersections")
COLLISION_INFLATE = 0.3  # m added to length and width in the generator's own overlap check


class GenerationFailed(RuntimeError):
    """A sampled layout could not be made collision-free; the caller retries with another draw."""


@dataclass
class Track:
    """One agent: its path, arc length and speed per step, box, type and role."""

    path: int
    s: np.ndarray
    v: np.ndarray
    length: float
    width: float
    kind: AgentType
    key: bool
    ego: bool


class Scene:
    """Mutable builder for one scene in a local frame."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.lanes: list[np.ndarray] = []
        self.widths: list[float] = []
        self.edges: list[np.ndarray] = []
        self.lines: list[np.ndarray] = []
        self.drivable: list[np.ndarray] = []
        self.crosswalks: list[np.ndarray] = []
        self.paths: list[Path] = []
        self.vcaps: list[np.ndarray] = []
        self.tracks: list[Track] = []
        self.pending: list[dict] = []
        self.tags: list[str] = []

    # ----------------------------------------------------------------- map
    def lane(self, pts: np.ndarray, width: float) -> None:
        """Add a lane centreline (resampled every 1 m) of constant ``width``."""
        self.lanes.append(Path(pts).resample(1.0))
        self.widths.append(float(width))

    def path(self, pts: np.ndarray, a_lat: float = 2.0) -> int:
        """Register a driving path; returns its index."""
        p = Path(pts)
        self.paths.append(p)
        self.vcaps.append(vcap_table(p, a_lat))
        return len(self.paths) - 1

    # ------------------------------------------------------------- traffic
    def vehicle(
        self,
        path: int,
        s0: float,
        v0: float,
        v_des: float,
        *,
        ego: bool = False,
        key: bool = False,
        leader: int | None = None,
        size: tuple[float, float] | None = None,
        override: np.ndarray | None = None,
        kind: AgentType = AgentType.VEHICLE,
    ) -> int:
        """Queue a vehicle for the next :meth:`run`; returns its future track id.

        ``leader`` is the track id of the vehicle directly ahead on the same path in the same run.
        """
        rng = self.rng
        if size is None:
            size = (4.8, 2.0) if ego else sample_size(rng)
        lim = EGO_LIMITS if ego else OTHER_LIMITS
        a_max = lim["a_max"] if ego else float(rng.uniform(1.4, lim["a_max"]))
        self.pending.append(
            dict(
                path=path,
                s0=s0,
                v0=v0,
                v_des=v_des,
                ego=ego,
                key=key,
                leader=leader,
                size=size,
                override=override,
                kind=kind,
                a_max=a_max,
                a_min=lim["a_min"],
                jerk=lim["jerk"],
                headway=1.5 if ego else float(rng.uniform(1.2, 2.0)),
            )
        )
        return len(self.tracks) + len(self.pending) - 1

    def scripted(
        self, path: int, s: np.ndarray, v: np.ndarray, size: tuple[float, float], kind: AgentType, key: bool = False
    ) -> int:
        """Add an agent whose profile is given (pedestrians, parked cars); returns its track id."""
        assert not self.pending, "run() queued vehicles before adding scripted agents"
        self.tracks.append(Track(path, np.asarray(s, float), np.asarray(v, float), size[0], size[1], kind, key, False))
        return len(self.tracks) - 1

    def run(self, obstacles: tuple[int, ...] | list[int] = (), conflicts: list[Conflict] = ()) -> list[int]:
        """Plan the queued vehicles together; ``obstacles`` are earlier track ids they must not hit."""
        q, self.pending = self.pending, []
        if not q:
            return []
        base = len(self.tracks)
        ids = list(range(base, base + len(q)))
        veh = Vehicles(
            s0=np.array([d["s0"] for d in q], float),
            v0=np.array([d["v0"] for d in q], float),
            length=np.array([d["size"][0] for d in q], float),
            v_des=np.array([d["v_des"] for d in q], float),
            leader=np.array([-1 if d["leader"] is None else d["leader"] - base for d in q]),
            path=np.array([d["path"] for d in q]),
            a_min=np.array([d["a_min"] for d in q], float),
            a_max=np.array([d["a_max"] for d in q], float),
            jerk=np.array([d["jerk"] for d in q], float),
            headway=np.array([d["headway"] for d in q], float),
            override=np.stack([d["override"] if d["override"] is not None else np.full(T_STEPS, np.nan) for d in q]),
        )
        obs = []
        for p in sorted({d["path"] for d in q}):
            width = max(d["size"][1] for d in q if d["path"] == p)
            obs += [self.obstacle(o, p, width) for o in obstacles]
        s, v = plan(veh, self.paths, self.vcaps, T_STEPS, DT, [o for o in obs if o.present.any()], conflicts)
        for i, d in enumerate(q):
            self.tracks.append(Track(d["path"], s[i], v[i], d["size"][0], d["size"][1], d["kind"], d["key"], d["ego"]))
        return ids

    def xy(self, tid: int) -> np.ndarray:
        """Centre positions ``[T, 2]`` of a track (local frame)."""
        tr = self.tracks[tid]
        return self.paths[tr.path].xy(tr.s)

    def valid(self, tid: int) -> np.ndarray:
        """``[T]`` steps at which the track is on its path (tracks end when they drive off the map)."""
        tr = self.tracks[tid]
        return (tr.s >= -0.5) & (tr.s <= self.paths[tr.path].length + 0.5)

    def obstacle(self, tid: int, path: int, self_width: float, margin: float = 0.4) -> Obstacle:
        """Track ``tid`` seen from ``path``: present while its box reaches into the path's corridor."""
        tr = self.tracks[tid]
        p = self.paths[path]
        if tr.path == path:
            return Obstacle(tr.s, tr.length, self.valid(tid), path)
        xy = self.xy(tid)
        ok = self.valid(tid)
        if p.monotone:
            # vertical offset >= distance >= 0.8 x vertical offset on gentle paths along +x
            dy = xy[:, 1] - np.interp(xy[:, 0], p.pts[:, 0], p.pts[:, 1])
            near = ok & (0.8 * np.abs(dy) < 0.5 * math.hypot(tr.length, tr.width) + self_width / 2 + margin)
            near &= (xy[:, 0] > p.pts[0, 0]) & (xy[:, 0] < p.pts[-1, 0])
            s = np.interp(xy[:, 0], p.pts[:, 0], p.s)  # approximate away from the path, exact where near
            present = np.zeros(T_STEPS, dtype=bool)
            if not near.any():
                return Obstacle(s, tr.length, present, path)
            s[near], lat = p.project(xy[near])
            rel = self.paths[tr.path].heading(tr.s[near]) - p.heading(s[near])
            half_lat = np.abs(tr.length / 2 * np.sin(rel)) + np.abs(tr.width / 2 * np.cos(rel))
            half_lon = np.abs(tr.length / 2 * np.cos(rel)) + np.abs(tr.width / 2 * np.sin(rel))
            inside = np.abs(lat) < half_lat + self_width / 2 + margin
            present[near] = inside
            present &= (s > 0.1) & (s < p.length - 0.1)
            return Obstacle(s, float(2 * half_lon[inside].max()) if inside.any() else tr.length, present, path)
        # coarse test first (path every ~4 m, track every 0.2 s): most tracks never come near the corridor
        reach = tr.length / 2 + self_width / 2 + margin + 2.0 + 2.0 + 2.0
        coarse = xy[::2]
        sub = p.pts[::8]
        d2 = (coarse[:, None, 0] - sub[None, :, 0]) ** 2 + (coarse[:, None, 1] - sub[None, :, 1]) ** 2
        if d2.min() > reach * reach:
            return Obstacle(np.zeros(T_STEPS), tr.length, np.zeros(T_STEPS, dtype=bool), path)
        s, lat = p.project(xy)
        rel = self.paths[tr.path].heading(tr.s) - p.heading(s)
        half_lat = np.abs(tr.length / 2 * np.sin(rel)) + np.abs(tr.width / 2 * np.cos(rel))
        half_lon = np.abs(tr.length / 2 * np.cos(rel)) + np.abs(tr.width / 2 * np.sin(rel))
        present = self.valid(tid) & (np.abs(lat) < half_lat + self_width / 2 + margin) & (s > 0.1)
        present &= s < p.length - 0.1
        return Obstacle(s, float(2 * half_lon[present].max()) if present.any() else tr.length, present, path)

    def conflict(
        self,
        path: int,
        zone: tuple[float, float, float, float],
        priority: list[int],
        ego_radius: float = 2.7,
        s_after: float | None = None,
        enter_radius: float | None = None,
        nominal: list[tuple[int, float, float, float, float]] = (),
    ) -> Conflict:
        """A stop-and-go conflict for vehicles on ``path`` crossing the rectangle ``zone`` (xmin, xmax, ymin, ymax).

        The zone on the path is where the path comes within ``enter_radius`` (default ``ego_radius``) of
        the rectangle; it is occupied while any ``priority`` track's box is near the part of the rectangle
        that the path sweeps. ``s_after`` (m) ends the zone early (merges); ``nominal`` adds agents not
        planned yet as (path, s0, v0, length, width) moving at constant speed.
        """
        p = self.paths[path]
        x0, x1, y0, y1 = zone
        pts = p.pts
        r_in = ego_radius if enter_radius is None else enter_radius
        inside = (pts[:, 0] > x0 - r_in) & (pts[:, 0] < x1 + r_in) & (pts[:, 1] > y0 - r_in) & (pts[:, 1] < y1 + r_in)
        idx = np.flatnonzero(inside)
        i0 = idx[0]
        i1 = idx[-1] if s_after is None else int(np.searchsorted(p.s, p.s[i0] + s_after))
        i1 = min(i1, len(pts) - 1)
        swept = pts[i0 : i1 + 1]
        bx0, by0 = swept.min(0) - ego_radius
        bx1, by1 = swept.max(0) + ego_radius
        occ = np.zeros(T_STEPS, dtype=bool)
        movers = [(self.xy(tid), self.valid(tid), self.tracks[tid].length, self.tracks[tid].width) for tid in priority]
        tt = np.arange(T_STEPS) * DT
        for pi, s0, v0, ln, wd in nominal:
            s = s0 + v0 * tt
            movers.append((self.paths[pi].xy(s), (s >= 0) & (s <= self.paths[pi].length), ln, wd))
        for xy, ok, ln, wd in movers:
            r = 0.5 * math.hypot(ln, wd) + 0.8
            occ |= ok & (xy[:, 0] > bx0 - r) & (xy[:, 0] < bx1 + r) & (xy[:, 1] > by0 - r) & (xy[:, 1] < by1 + r)
        # the front bumper stops where the centre would first touch the zone
        ego_len = 4.8
        return Conflict(
            s_stop=float(p.s[i0] + ego_len / 2 - 0.5),
            s_clear=float(p.s[i1] + ego_len / 2 + 0.5),
            occupied=occ,
            path=path,
        )

    # ---------------------------------------------------------------- export
    def states(self, tid: int) -> np.ndarray:
        """``[T, 7]`` float64 states (x, y, yaw, vx, vy, length, width) of a track."""
        tr = self.tracks[tid]
        p = self.paths[tr.path]
        xy = p.xy(tr.s)
        yaw = p.heading(tr.s)
        out = np.empty((T_STEPS, 7))
        out[:, 0:2] = xy
        out[:, 2] = yaw
        out[:, 3] = tr.v * np.cos(yaw)
        out[:, 4] = tr.v * np.sin(yaw)
        out[:, 5] = tr.length
        out[:, 6] = tr.width
        return out

    def finish(self, family: str, seed: int, route_path: int) -> Scenario:
        """Verify, drop colliding background agents, cap the agent count, transform and export."""
        ego = next(i for i, t in enumerate(self.tracks) if t.ego)
        order = [ego] + [i for i in range(len(self.tracks)) if i != ego]
        states = np.stack([self.states(i) for i in order])
        valid = np.stack([self.valid(i) for i in order])
        key = np.array([self.tracks[i].key or self.tracks[i].ego for i in order])
        keep = resolve_collisions(states, valid, key)
        keep &= valid.any(axis=1)
        if keep.sum() > MAX_AGENTS:
            d = np.hypot(*(states[:, :, :2] - states[:1, :, :2]).transpose(2, 0, 1))
            d = np.where(valid, d, np.inf).min(axis=1)
            d[key] = -1.0
            d[~keep] = np.inf
            keep = np.zeros_like(keep)
            keep[np.argsort(d, kind="stable")[:MAX_AGENTS]] = True
        states, valid = states[keep], valid[keep]
        kinds = np.array([int(self.tracks[i].kind) for i in order], dtype=np.int8)[keep]
        theta = float(self.rng.uniform(-math.pi, math.pi))
        shift = self.rng.uniform(-150.0, 150.0, size=2)
        states[..., 0:2] = rigid(states[..., 0:2], theta, shift)
        states[..., 3:5] = rigid(states[..., 3:5], theta, np.zeros(2))
        states[..., 2] = wrap_angle(states[..., 2] + theta)
        states[~valid] = 0.0
        rp = self.paths[route_path]
        tr = self.tracks[ego]
        # the route runs from 10 m behind the ego's start to well past its logged end (4 s at the final speed)
        s_lo = max(0.0, tr.s[0] - 10.0)
        s_hi = min(rp.length, tr.s[-1] + max(30.0, 4.0 * tr.v[-1] + 10.0))
        route = rp.xy(np.append(np.arange(s_lo, s_hi, 1.0), s_hi))

        def poly(lines: list[np.ndarray]) -> Polylines:
            return Polylines.from_list([rigid(np.asarray(p, float), theta, shift) for p in lines])

        lanes, widths = poly(self.lanes), np.array(self.widths, dtype=np.float64)
        road = RoadMap(
            lanes=lanes,
            lane_widths=widths,
            road_edges=poly(self.edges),
            road_lines=poly(self.lines),
            drivable=poly(self.drivable),
            crosswalks=poly(self.crosswalks),
            lane_polygons=Polylines.from_list([width_polygon(c, np.full((len(c), 2), w / 2))
                                               for c, w in zip(lanes, widths)]),
            light_states=np.zeros((0, len(states[0])), dtype=np.int8),
            unknown=PROCEDURAL_UNKNOWN,
        )
        return Scenario(
            id=f"procedural/{family}/{seed}",
            source="procedural",
            agents=states.astype(np.float32),
            valid=valid,
            agent_type=kinds,
            ego=0,
            map=road,
            route=rigid(route, theta, shift),
            dt=DT,
            init_step=INIT_STEP,
            family=family,
            tags=tuple(["procedural", *self.tags]),
        ).validate()


def sample_size(rng: np.random.Generator) -> tuple[float, float]:
    """Length and width (m) of a background vehicle: mostly cars, some vans and trucks."""
    u = rng.uniform()
    if u < 0.8:
        return float(rng.uniform(4.2, 5.0)), float(rng.uniform(1.75, 2.0))
    if u < 0.93:
        return float(rng.uniform(5.2, 6.5)), float(rng.uniform(2.0, 2.3))
    return float(rng.uniform(8.0, 12.0)), float(rng.uniform(2.4, 2.55))


def overlapping_pairs(states: np.ndarray, valid: np.ndarray, inflate: float = 0.0) -> np.ndarray:
    """Pairs ``(i, j)``, i < j, whose boxes (grown by ``inflate`` m) overlap at some common valid step -> ``[K, 2]``."""
    a = states.shape[0]
    half = 0.5 * np.hypot(states[..., 5] + inflate, states[..., 6] + inflate)  # [A, T]
    d = np.hypot(states[:, None, :, 0] - states[None, :, :, 0], states[:, None, :, 1] - states[None, :, :, 1])
    near = (d < half[:, None] + half[None]) & valid[:, None] & valid[None]
    near &= np.triu(np.ones((a, a), dtype=bool), 1)[..., None]
    i, j, t = np.nonzero(near)
    if len(i) == 0:
        return np.zeros((0, 2), dtype=int)
    si, sj = states[i, t], states[j, t]
    ci = box_corners(si[:, 0], si[:, 1], si[:, 2], si[:, 5] + inflate, si[:, 6] + inflate)
    cj = box_corners(sj[:, 0], sj[:, 1], sj[:, 2], sj[:, 5] + inflate, sj[:, 6] + inflate)
    hit = corners_overlap(ci, cj)
    return np.unique(np.stack([i[hit], j[hit]], axis=1), axis=0)


def resolve_collisions(states: np.ndarray, valid: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Drop background agents involved in overlaps (the later one of a pair) -> bool keep ``[A]``.

    Raises:
        GenerationFailed: when two agents that define the scene (ego, key agents) would overlap.
    """
    keep = np.ones(len(states), dtype=bool)
    for i, j in overlapping_pairs(states, valid, COLLISION_INFLATE):
        if not (keep[i] and keep[j]):
            continue
        if not key[j]:
            keep[j] = False
        elif not key[i]:
            keep[i] = False
        else:
            raise GenerationFailed(f"agents {i} and {j} overlap")
    return keep
