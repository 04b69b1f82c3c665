"""The geometry of a ScenarioNet map: ``map_features`` sorted by kind (:mod:`scenarionet_kinds`) into the lanes, road
edges, road lines, crosswalks, drivable polygons and drivable-area outlines of a
:class:`~scenarios.importers.common.Recording`.

Outlines: ``boundary_*`` features typed as a road line or edge that form closed rings, whole (nuScenes, nuPlan) or
cut into consecutive pieces in file order (Argoverse 2 cuts each ring into pieces of 20 points). A piece without
points or with a non-finite coordinate carries no ring: it is no outline piece, and the road lines skip it with a
note, as any such element. When the other pieces do not close into simple rings (a missing piece), none is an
outline: they stay road lines and a note says so.
"""

from __future__ import annotations

import numpy as np
from shapely.geometry import LinearRing

from scenarios.importers.drivable import CLOSED_TOL
from scenarios.importers.repair import usable_lines
from scenarios.importers.scenarionet_kinds import OUTLINE_PREFIX, role
from scenarios.scenario import ScenarioError

AREA_ROLES = ("crosswalk", "driveway")  # roles read from ``polygon`` (at least 3 points)


def xy(a: object) -> np.ndarray:
    """``[n, 2]`` float64 of a ``[n, 2 or 3]`` polyline (``[0, 2]`` when empty).

    Raises:
        ScenarioError: any other shape.
    """
    arr = np.asarray(a if a is not None else [], dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ScenarioError(f"polyline must be [n, 2 or 3], got {list(arr.shape)}")
    return arr[:, :2]


def join_outlines(pieces: list[np.ndarray]) -> list[np.ndarray] | None:
    """Closed rings from outline pieces in file order: each piece a whole ring, or consecutive pieces of one.

    Args:
        pieces: ``[n, 2]`` polylines, m.

    Returns:
        The rings (first point repeated), or None when the pieces do not close into rings, or a ring joined from
        several pieces is not simple (a piece is missing or out of order).
    """
    rings, todo = [], []
    for p in pieces:
        todo.append(p)
        n = sum(len(q) for q in todo)
        if n >= 4 and len(todo[0]) and len(p) and float(np.hypot(*(todo[0][0] - p[-1]))) <= CLOSED_TOL:
            ring = np.concatenate(todo)
            if len(todo) > 1 and not LinearRing(ring).is_simple:
                return None
            rings.append(ring)
            todo = []
    return None if todo else rings


def _outline_pieces(features: dict) -> tuple[list[object], list[np.ndarray]]:
    """``(ids, points [n, 2])`` of the ``boundary_*`` features typed as a road line or edge that hold at least one
    point, all finite, in file order (module docstring; ``([], [])`` when one has points of another shape)."""
    ids = [fid for fid, mf in features.items()
           if str(fid).startswith(OUTLINE_PREFIX) and role(str(mf.get("type", ""))) in ("line", "edge")]
    try:
        pieces = [xy(features[fid].get("polyline")) for fid in ids]
    except ScenarioError:  # refused with its name below, as any feature
        return [], []
    keep = [k for k, p in enumerate(pieces) if len(p) and np.all(np.isfinite(p))]
    return [ids[k] for k in keep], [pieces[k] for k in keep]


def map_geometry(features: dict, notes: list[str]) -> dict:
    """Sort ``map_features`` into the recording's geometry.

    Args:
        features: ``map_features`` of a scenario dict.
        notes: appended with one entry per element left out (degenerate points, unknown kinds, outline pieces that
            do not close), for one :class:`~scenarios.importers.repair.MapElementSkipped` warning per file.

    Returns:
        ``lanes``, ``lane_fids`` (feature id of each lane, str), ``widths`` (full width, m, NaN unknown),
        ``has_poly``, ``edges``, ``lines``, ``crosswalks``, ``extra`` (drivable polygons), ``outlines`` (lists of
        ``[n, 2]``) and ``edges_known`` (the file has road-edge features or outlines).

    Raises:
        ScenarioError: a feature's points are not ``[n, 2 or 3]`` (message names it).
    """
    out = {k: [] for k in ("lanes", "lane_fids", "widths", "has_poly", "edges", "lines", "crosswalks", "extra",
                           "outlines")}
    outline_ids, pieces = _outline_pieces(features)
    rings = join_outlines(pieces) if pieces else None
    if pieces and rings is None:
        notes.append(f"{len(pieces)} {OUTLINE_PREFIX}* pieces do not close into rings: kept as road lines, no "
                     "drivable-area outline")
    is_outline = set(map(str, outline_ids)) if rings else set()
    todo = []  # (feature id, role, points)
    for fid, mf in features.items():
        kind = str(mf.get("type", ""))
        r = role(kind)
        if r == "other":
            notes.append(f"{fid} ({kind}): a type no converter writes")
        if r not in ("lane", "edge", "line") + AREA_ROLES or str(fid) in is_outline:
            continue
        geom = mf.get("polygon") if r in AREA_ROLES else mf.get("polyline")
        if geom is None and r in AREA_ROLES:
            geom = mf.get("polyline")
        try:
            todo.append((fid, r, xy(geom)))
        except ScenarioError as e:
            raise ScenarioError(f"map feature {fid} ({kind}): {e}") from None
    ok = np.ones(len(todo), dtype=bool)
    for area in (False, True):
        sel = [i for i, (_, r, _) in enumerate(todo) if (r in AREA_ROLES) == area]
        if sel:
            names = [f"{todo[i][0]} ({features[todo[i][0]].get('type')})" for i in sel]
            ok[sel] = usable_lines([todo[i][2] for i in sel], names, 3 if area else 2, notes)
    for (fid, r, pts), good in zip(todo, ok):
        if good:
            _add(out, fid, r, pts, features[fid])
    out["outlines"] = rings or []
    out["edges_known"] = bool(rings) or any(role(str(mf.get("type", ""))) == "edge" for mf in features.values())
    return out


def _add(out: dict, fid: object, r: str, pts: np.ndarray, mf: dict) -> None:
    """Append one usable feature's points to ``out`` by its role."""
    if r == "lane":
        out["lanes"].append(pts)
        out["lane_fids"].append(str(fid))
        w = np.atleast_1d(np.asarray(mf.get("width", np.zeros((0, 2))), dtype=np.float64))
        out["widths"].append(float(np.median(w.reshape(len(w), -1).sum(axis=1))) if w.size else np.nan)
        poly = mf.get("polygon")
        out["has_poly"].append(poly is not None and len(poly) >= 3)
        if out["has_poly"][-1]:
            try:
                out["extra"].append(xy(poly))
            except ScenarioError as e:
                raise ScenarioError(f"map feature {fid} polygon: {e}") from None
    else:
        key = {"edge": "edges", "line": "lines", "crosswalk": "crosswalks", "driveway": "extra"}[r]
        out[key].append(pts)
