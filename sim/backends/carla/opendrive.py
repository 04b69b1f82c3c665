"""Export a scene's lane centrelines to OpenDRIVE 1.4 (``.xodr``) for ``generate_opendrive_world``.

One road per lane centreline. The road's reference line is the centreline itself, written as
a chain of ``paramPoly3`` pieces (cubic Hermite through every polyline point, tangents from
neighbouring points, so the line is smooth and passes through each point exactly). Each road
has a single right-hand driving lane (``id=-1``, travelling along the reference line) and a
``laneOffset`` of ``+width / 2`` so that the lane's centre is the reference line.

OpenDRIVE is right-handed like the project frame; CARLA flips y when it builds its world, so
coordinates are written as they are (no conversion here). Pure numpy: no ``carla`` import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import numpy as np

from sim.backends.carla import CarlaError

#: Gauss-Legendre nodes/weights on [0, 1] for the arc length of each cubic piece.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)
_GL_X = 0.5 * (_GL_X + 1.0)
_GL_W = 0.5 * _GL_W


@dataclass(frozen=True)
class Piece:
    """One ``paramPoly3`` geometry record (``pRange="normalized"``).

    Attributes:
        s: arc-length start along the road, m.
        x, y: start point, world m.
        hdg: start heading, rad.
        length: arc length, m.
        u, v: cubic coefficients ``(a, b, c, d)`` of the local coordinates (m) in ``p in [0, 1]``.
    """

    s: float
    x: float
    y: float
    hdg: float
    length: float
    u: tuple[float, float, float, float]
    v: tuple[float, float, float, float]


def _clean(points: np.ndarray, min_step: float = 0.05) -> np.ndarray:
    """Drop points closer than ``min_step`` (m) to the previous kept point. ``[n, 2] -> [m, 2]``."""
    keep = [0]
    for i in range(1, len(points)):
        if np.hypot(*(points[i] - points[keep[-1]])) >= min_step:
            keep.append(i)
    if len(keep) >= 2 and keep[-1] != len(points) - 1:
        keep[-1] = len(points) - 1
    return points[keep]


def _tangents(p: np.ndarray) -> np.ndarray:
    """Unit tangents ``[n, 2]`` of a polyline ``[n, 2]``: central differences, second-order one-sided at the ends."""
    d = np.empty_like(p)
    d[1:-1] = p[2:] - p[:-2]
    if len(p) >= 3:  # second-order one-sided differences at the ends
        d[0] = -3 * p[0] + 4 * p[1] - p[2]
        d[-1] = 3 * p[-1] - 4 * p[-2] + p[-3]
    else:
        d[0] = d[-1] = p[1] - p[0]
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def fit_pieces(points: np.ndarray) -> list[Piece]:
    """Fit a smooth reference line through a polyline.

    Args:
        points: float ``[n, 2]`` world m, ``n >= 2``, in the direction of travel.

    Returns:
        ``n' - 1`` cubic Hermite pieces (``n'`` points after dropping near-duplicates), in order.

    Raises:
        CarlaError: when fewer than two distinct points remain.
    """
    p = _clean(np.asarray(points, dtype=np.float64).reshape(-1, 2))
    if len(p) < 2:
        raise CarlaError("a lane centreline needs at least two distinct points to become an OpenDRIVE road")
    t = _tangents(p)
    pieces: list[Piece] = []
    s = 0.0
    for i in range(len(p) - 1):
        p0, p1, t0, t1 = p[i], p[i + 1], t[i], t[i + 1]
        c = float(np.hypot(*(p1 - p0)))
        # Hermite in world frame: P(q) = p0 + b q + c2 q^2 + c3 q^3
        b = c * t0
        c2 = 3 * (p1 - p0) - 2 * c * t0 - c * t1
        c3 = 2 * (p0 - p1) + c * t0 + c * t1
        hdg = math.atan2(t0[1], t0[0])
        ch, sh = math.cos(hdg), math.sin(hdg)
        rot = np.array([[ch, sh], [-sh, ch]])  # world -> local (u along heading, v to the left)
        bu, bv = rot @ b
        cu, cv = rot @ c2
        du, dv = rot @ c3
        deriv = b[None] + 2 * c2[None] * _GL_X[:, None] + 3 * c3[None] * _GL_X[:, None] ** 2
        length = float(np.sum(_GL_W * np.linalg.norm(deriv, axis=1)))
        pieces.append(Piece(s, float(p0[0]), float(p0[1]), hdg, length, (0.0, bu, cu, du), (0.0, bv, cv, dv)))
        s += length
    return pieces


_PROJ = "+proj=tmerc +lat_0=0 +lon_0=0 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m"


def _f(x: float) -> str:
    return f"{x:.9g}"


def _road_xml(road_id: int, pieces: list[Piece], width: float) -> str:
    length = pieces[-1].s + pieces[-1].length
    geo = []
    for pc in pieces:
        geo.append(
            f'      <geometry s="{_f(pc.s)}" x="{_f(pc.x)}" y="{_f(pc.y)}" hdg="{_f(pc.hdg)}" '
            f'length="{_f(pc.length)}">\n'
            f'        <paramPoly3 aU="{_f(pc.u[0])}" bU="{_f(pc.u[1])}" cU="{_f(pc.u[2])}" dU="{_f(pc.u[3])}" '
            f'aV="{_f(pc.v[0])}" bV="{_f(pc.v[1])}" cV="{_f(pc.v[2])}" dV="{_f(pc.v[3])}" pRange="normalized"/>\n'
            f"      </geometry>"
        )
    w = _f(width)
    return (
        f'  <road name="lane{road_id}" length="{_f(length)}" id="{road_id}" junction="-1">\n'
        f"    <link/>\n"
        f'    <type s="0" type="town"><speed max="30" unit="m/s"/></type>\n'
        f"    <planView>\n" + "\n".join(geo) + "\n    </planView>\n"
        f'    <elevationProfile><elevation s="0" a="0" b="0" c="0" d="0"/></elevationProfile>\n'
        f"    <lateralProfile/>\n"
        f"    <lanes>\n"
        f'      <laneOffset s="0" a="{_f(width / 2)}" b="0" c="0" d="0"/>\n'
        f'      <laneSection s="0">\n'
        f'        <center><lane id="0" type="none" level="false"><link/>'
        f'<roadMark sOffset="0" type="none" weight="standard" color="standard" width="0"/></lane></center>\n'
        f"        <right>\n"
        f'          <lane id="-1" type="driving" level="false"><link/>\n'
        f'            <width sOffset="0" a="{w}" b="0" c="0" d="0"/>\n'
        f'            <roadMark sOffset="0" type="solid" weight="standard" color="standard" width="0.12"/>\n'
        f"          </lane>\n"
        f"        </right>\n"
        f"      </laneSection>\n"
        f"    </lanes>\n"
        f"  </road>"
    )


def lanes_to_xodr(lanes: list[np.ndarray], widths: np.ndarray | list[float], name: str = "scene") -> str:
    """OpenDRIVE 1.4 text for a set of lane centrelines.

    Args:
        lanes: centrelines, each float ``[n_i, 2]`` world m (right-handed), direction of travel.
        widths: ``[L]`` lane widths, m (constant along each lane).
        name: map name written in the header.

    Returns:
        The ``.xodr`` document. Road ``i + 1`` is lane ``i``; its driving lane has ``id = -1``.

    Raises:
        CarlaError: no lanes, a width that is not positive, or a lane with fewer than two points.
    """
    widths = np.asarray(widths, dtype=np.float64).reshape(-1)
    if len(lanes) == 0:
        raise CarlaError(f"map {name!r} has no lane centrelines: nothing to export to OpenDRIVE")
    if len(widths) != len(lanes) or not np.all(np.isfinite(widths) & (widths > 0)):
        raise CarlaError(f"map {name!r}: need one positive width per lane ({len(lanes)}), got {widths.tolist()}")
    roads = []
    allp = []
    for i, (pts, w) in enumerate(zip(lanes, widths)):
        try:
            pieces = fit_pieces(pts)
        except CarlaError as exc:
            raise CarlaError(f"map {name!r} lane {i}: {exc}") from None
        roads.append(_road_xml(i + 1, pieces, float(w)))
        allp.append(np.asarray(pts, dtype=np.float64).reshape(-1, 2))
    pts = np.concatenate(allp)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    header = (
        '<?xml version="1.0" standalone="yes"?>\n<OpenDRIVE>\n'
        f'  <header revMajor="1" revMinor="4" name={quoteattr(name)} version="1" '
        f'north="{_f(hi[1])}" south="{_f(lo[1])}" east="{_f(hi[0])}" west="{_f(lo[0])}">\n'
        f"    <geoReference><![CDATA[{_PROJ}]]></geoReference>\n  </header>\n"
    )
    return header + "\n".join(roads) + "\n</OpenDRIVE>\n"


def usable_lanes(scene) -> tuple[list[np.ndarray], np.ndarray]:
    """A scene's lane centrelines ``[n_i, 2]`` with at least two distinct points, and their widths ``[L']``."""
    lanes = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in scene.map.lanes]
    keep = [i for i, p in enumerate(lanes) if len(_clean(p)) >= 2]
    return [lanes[i] for i in keep], np.asarray(scene.map.lane_widths, dtype=np.float64)[keep]


def scenario_to_xodr(scene) -> str:
    """OpenDRIVE text for a :class:`scenarios.scenario.Scenario`'s lanes (``scene.map.lanes``, ``lane_widths``)."""
    lanes, widths = usable_lanes(scene)
    return lanes_to_xodr(lanes, widths, name=scene.id)
