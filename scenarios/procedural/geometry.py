"""Planar geometry for the procedural generator (numpy only).

Paths are dense polylines (metres) with arc length, heading and curvature; connectors are
quintic Hermite curves with zero curvature at both ends, so lanes stay curvature-continuous
(smooth enough to export as OpenDRIVE parametric curves later).
"""

from __future__ import annotations

import numpy as np


def smoothstep5(u: np.ndarray | float) -> np.ndarray:
    """Quintic smoothstep on [0, 1] (zero first and second derivatives at both ends)."""
    u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    return u**3 * (10.0 - 15.0 * u + 6.0 * u * u)


class Path:
    """A dense 2-D polyline parameterised by arc length.

    Args:
        pts: float ``[P, 2]`` metres, in the direction of travel (consecutive duplicates dropped).
    """

    __slots__ = ("pts", "s", "seg", "yaw", "kappa", "length", "monotone")

    def __init__(self, pts: np.ndarray):
        pts = np.asarray(pts, dtype=np.float64)
        seg = np.hypot(*np.diff(pts, axis=0).T)
        pts = pts[np.concatenate([[True], seg > 1e-9])]
        self.pts = pts
        self.seg = np.hypot(*np.diff(pts, axis=0).T)
        self.s = np.concatenate([[0.0], np.cumsum(self.seg)])
        d = np.gradient(pts, self.s, axis=0)
        self.yaw = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
        self.kappa = np.gradient(self.yaw, self.s)
        self.length = float(self.s[-1])
        # along +x with gentle headings (straight roads, lane changes, ramps): projection by x look-up
        self.monotone = bool(np.all(np.diff(pts[:, 0]) > 0) and np.all(np.abs(self.yaw) < 0.6))

    def xy(self, s: np.ndarray) -> np.ndarray:
        """Points at arc lengths ``s`` (any shape, m) -> ``[..., 2]``; straight extrapolation beyond the ends."""
        s = np.asarray(s, dtype=np.float64)
        out = np.stack([np.interp(s, self.s, self.pts[:, 0]), np.interp(s, self.s, self.pts[:, 1])], axis=-1)
        under = np.minimum(s, 0.0)[..., None]
        over = np.maximum(s - self.length, 0.0)[..., None]
        y0, y1 = self.yaw[0], self.yaw[-1]
        return out + under * np.array([np.cos(y0), np.sin(y0)]) + over * np.array([np.cos(y1), np.sin(y1)])

    def heading(self, s: np.ndarray) -> np.ndarray:
        """Unwrapped heading (rad) at arc lengths ``s``."""
        return np.interp(s, self.s, self.yaw)

    def curvature(self, s: np.ndarray) -> np.ndarray:
        """Curvature (1/m, left positive) at arc lengths ``s``."""
        return np.interp(s, self.s, self.kappa)

    def project(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest-point projection of ``xy [N, 2]`` -> (arc length ``[N]``, signed lateral offset ``[N]``, left +)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        last = len(self.seg) - 1
        if self.monotone:
            # exact within ~4 m of the path (the nearest point lies a few vertices from the x match);
            # farther away the lateral offset can only be over-estimated
            k = np.searchsorted(self.pts[:, 0], xy[:, 0])
            j = np.clip(k[:, None] + np.arange(-7, 7)[None], 0, last)
        else:
            # nearest vertex, then the better of its two segments
            d2v = (xy[:, 0:1] - self.pts[None, :, 0]) ** 2 + (xy[:, 1:2] - self.pts[None, :, 1]) ** 2
            k = np.argmin(d2v, axis=1)
            j = np.stack([np.maximum(k - 1, 0), np.minimum(k, last)], axis=1)
        a = self.pts[j]
        ab = self.pts[j + 1] - a
        ap = xy[:, None, :] - a
        seg = self.seg[j]
        u = np.clip((ap * ab).sum(-1) / np.maximum(seg**2, 1e-12), 0.0, 1.0)
        diff = ap - u[..., None] * ab
        dist = np.hypot(diff[..., 0], diff[..., 1])
        m = np.argmin(dist, axis=1)
        r = np.arange(len(xy))
        jm = j[r, m]
        cross = ab[r, m, 0] * ap[r, m, 1] - ab[r, m, 1] * ap[r, m, 0]
        d = dist[r, m]
        return self.s[jm] + u[r, m] * self.seg[jm], np.where(cross < 0, -d, d)

    def resample(self, spacing: float = 1.0) -> np.ndarray:
        """Points every ``spacing`` m along the path (both ends included) -> ``[n, 2]``."""
        n = max(2, int(np.ceil(self.length / spacing)) + 1)
        return self.xy(np.linspace(0.0, self.length, n))

    def offset(self, d: float | np.ndarray) -> np.ndarray:
        """The vertices shifted by ``d`` m along the left normal -> ``[P, 2]``."""
        n = np.stack([-np.sin(self.yaw), np.cos(self.yaw)], axis=-1)
        return self.pts + np.asarray(d, dtype=np.float64).reshape(-1, 1) * n


def straight(p0: tuple[float, float], p1: tuple[float, float], spacing: float = 0.5) -> np.ndarray:
    """Points from ``p0`` to ``p1`` every ~``spacing`` m -> ``[n, 2]``."""
    p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    n = max(2, int(np.ceil(np.hypot(*(p1 - p0)) / spacing)) + 1)
    return p0 + np.linspace(0.0, 1.0, n)[:, None] * (p1 - p0)


def hermite5(p0, yaw0: float, p1, yaw1: float, spacing: float = 0.25, scale: float = 1.2) -> np.ndarray:
    """Quintic Hermite curve from pose (p0, yaw0) to (p1, yaw1), zero curvature at both ends -> ``[n, 2]``.

    Tangent magnitudes are ``scale`` times the chord length.
    """
    p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    chord = float(np.hypot(*(p1 - p0)))
    m = scale * chord
    t0 = m * np.array([np.cos(yaw0), np.sin(yaw0)])
    t1 = m * np.array([np.cos(yaw1), np.sin(yaw1)])
    u = np.linspace(0.0, 1.0, max(8, int(np.ceil(3 * chord / spacing))))[:, None]
    h00 = 1 - 10 * u**3 + 15 * u**4 - 6 * u**5
    h10 = u - 6 * u**3 + 8 * u**4 - 3 * u**5
    h01 = 10 * u**3 - 15 * u**4 + 6 * u**5
    h11 = -4 * u**3 + 7 * u**4 - 3 * u**5
    dense = h00 * p0 + h10 * t0 + h01 * p1 + h11 * t1
    return Path(dense).resample(spacing)


def join(*parts: np.ndarray) -> np.ndarray:
    """Concatenate polylines, dropping a repeated joint point."""
    out = [parts[0]]
    for p in parts[1:]:
        out.append(p[1:] if np.allclose(p[0], out[-1][-1]) else p)
    return np.concatenate(out, axis=0)


def strip_polygon(path: Path, half_left: float, half_right: float, spacing: float = 1.0) -> np.ndarray:
    """Counter-clockwise polygon covering ``half_right`` m right to ``half_left`` m left of a path -> ``[n, 2]``."""
    p = Path(path.resample(spacing))
    return np.concatenate([p.offset(-half_right), p.offset(half_left)[::-1]], axis=0)


def box_corners(x, y, yaw, length, width) -> np.ndarray:
    """Corners of oriented boxes (broadcast arrays) -> ``[..., 4, 2]``, counter-clockwise from rear right."""
    c, s = np.cos(yaw), np.sin(yaw)
    hl, hw = np.asarray(length) / 2, np.asarray(width) / 2
    sx = np.array([-1.0, 1.0, 1.0, -1.0])
    sy = np.array([-1.0, -1.0, 1.0, 1.0])
    dx = sx * hl[..., None] if np.ndim(hl) else sx * hl
    dy = sy * hw[..., None] if np.ndim(hw) else sy * hw
    cx = np.asarray(x)[..., None] + dx * np.asarray(c)[..., None] - dy * np.asarray(s)[..., None]
    cy = np.asarray(y)[..., None] + dx * np.asarray(s)[..., None] + dy * np.asarray(c)[..., None]
    return np.stack([cx, cy], axis=-1)


def corners_overlap(c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Separating-axis test for convex quads ``[..., 4, 2]`` -> bool ``[...]`` (touching counts as overlap)."""
    e = np.concatenate([c1[..., 1:3, :] - c1[..., 0:2, :], c2[..., 1:3, :] - c2[..., 0:2, :]], axis=-2)
    axes = np.stack([-e[..., 1], e[..., 0]], axis=-1)  # [..., 4, 2]
    p1 = np.einsum("...ad,...cd->...ac", axes, c1)
    p2 = np.einsum("...ad,...cd->...ac", axes, c2)
    sep = (p1.max(-1) < p2.min(-1)) | (p2.max(-1) < p1.min(-1))
    return ~sep.any(-1)


def rigid(points: np.ndarray, theta: float, shift: np.ndarray) -> np.ndarray:
    """Rotate ``[..., 2]`` points by ``theta`` about the origin, then translate by ``shift``."""
    c, s = np.cos(theta), np.sin(theta)
    r = np.array([[c, -s], [s, c]])
    return points @ r.T + shift
