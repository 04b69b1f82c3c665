"""Road layouts and traffic streams shared by the families (local frame, right-hand traffic)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenarios.procedural.geometry import Path, strip_polygon
from scenarios.procedural.planner import S0
from scenarios.procedural.scene import Scene


@dataclass
class Road:
    """A multi-lane road around a reference line (the centre line when two-way).

    ``fwd[i]``: path id of forward lane ``i`` (0 = next to the centre line, on the right of the
    reference); ``bwd[j]``: path id of backward lane ``j`` (left of the reference, reversed).
    ``fwd_pts`` / ``bwd_pts``: their centreline points.
    """

    ref: Path
    width: float
    fwd: list[int]
    bwd: list[int]
    fwd_pts: list[np.ndarray]
    bwd_pts: list[np.ndarray]

    def y_fwd(self, i: int) -> float:
        """Lateral offset (m, left +) of forward lane ``i`` from the reference."""
        return -(i + 0.5) * self.width


def build_road(
    sc: Scene, ref_pts: np.ndarray, n_fwd: int, n_bwd: int, width: float, drivable: bool = True, right_edge: bool = True
) -> Road:
    """Add lanes, paths, edges, lines and (optionally) the drivable strip of a road to ``sc``."""
    ref = Path(ref_pts)
    fwd, bwd, fpts, bpts = [], [], [], []
    for i in range(n_fwd):
        pts = ref.offset(-(i + 0.5) * width)
        sc.lane(pts, width)
        fwd.append(sc.path(pts))
        fpts.append(pts)
    for j in range(n_bwd):
        pts = ref.offset((j + 0.5) * width)[::-1]
        sc.lane(pts, width)
        bwd.append(sc.path(pts))
        bpts.append(pts)
    if right_edge:
        sc.edges.append(Path(ref.offset(-n_fwd * width)).resample(1.0))
    sc.edges.append(Path(ref.offset(n_bwd * width)[::-1]).resample(1.0))
    if n_bwd:
        sc.lines.append(ref.resample(1.0))
    for i in range(1, n_fwd):
        sc.lines.append(Path(ref.offset(-i * width)).resample(1.0))
    for j in range(1, n_bwd):
        sc.lines.append(Path(ref.offset(j * width)[::-1]).resample(1.0))
    if drivable:
        sc.drivable.append(strip_polygon(ref, n_bwd * width, n_fwd * width))
    return Road(ref, width, fwd, bwd, fpts, bpts)


def straight_ref(length: float, spacing: float = 0.5) -> np.ndarray:
    """Reference line along +x from 0 to ``length`` m -> ``[n, 2]``."""
    x = np.linspace(0.0, length, int(round(length / spacing)) + 1)
    return np.stack([x, np.zeros_like(x)], axis=1)


def curved_ref(rng: np.random.Generator, length: float, spacing: float = 0.5) -> tuple[np.ndarray, float]:
    """A reference line with one or two smooth bends (raised-cosine curvature) -> (points, max |curvature|)."""
    s = np.arange(0.0, length + spacing / 2, spacing)
    k = np.zeros_like(s)
    n_bends = int(rng.integers(1, 3))
    starts = np.sort(rng.uniform(20.0, length - 140.0, size=n_bends))
    for i, s0 in enumerate(starts):
        if i and s0 < starts[i - 1] + 130.0:
            continue
        span = rng.uniform(60.0, 120.0)
        peak = rng.choice([-1.0, 1.0]) * rng.uniform(1 / 250, 1 / 80)
        u = np.clip((s - s0) / span, 0.0, 1.0)
        k += peak * 0.5 * (1 - np.cos(2 * np.pi * u))
    yaw = np.concatenate([[0.0], np.cumsum(0.5 * (k[1:] + k[:-1]) * spacing)])
    x = np.concatenate([[0.0], np.cumsum(0.5 * (np.cos(yaw[1:]) + np.cos(yaw[:-1])) * spacing)])
    y = np.concatenate([[0.0], np.cumsum(0.5 * (np.sin(yaw[1:]) + np.sin(yaw[:-1])) * spacing)])
    return np.stack([x, y], axis=1), float(np.abs(k).max())


def stream(
    sc: Scene,
    path: int,
    s_lo: float,
    s_hi: float,
    v_base: float,
    *,
    leader: int | None = None,
    density: float = 1.0,
    exclude: tuple[tuple[float, float], ...] = (),
    first_gap: float = 0.0,
) -> list[int]:
    """Queue a platoon on ``path`` from ``s_hi`` back to ``s_lo`` (centres, m), front first.

    Gaps are safe for IDM at the sampled speeds plus a random slack scaled by 1 / ``density``;
    ``leader`` (a queued track id) is the vehicle ahead of the first one. Returns the track ids.
    """
    rng = sc.rng
    ids: list[int] = []
    s = s_hi - rng.uniform(0.0, 25.0) / density - first_gap
    while s > s_lo:
        if any(a <= s <= b for a, b in exclude):
            s = min(a for a, b in exclude if a <= s <= b) - 3.0
            continue
        vd = v_base * rng.uniform(0.85, 1.1)
        v0 = vd * rng.uniform(0.8, 1.0)
        tid = sc.vehicle(path, s, v0, vd, leader=leader)
        ln = sc.pending[-1]["size"][0]
        ids.append(tid)
        leader = tid
        s -= ln / 2 + 6.0 + S0 + v0 * rng.uniform(1.4, 2.2) + rng.uniform(0.0, 35.0) / density
    return ids


def safe_gap(v: float, length_a: float = 4.8, length_b: float = 5.0, headway: float = 1.8) -> float:
    """Centre-to-centre distance (m) that leaves ``headway`` s plus the standstill gap at speed ``v``."""
    return length_a / 2 + length_b / 2 + S0 + v * headway
