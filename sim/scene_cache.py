"""Prepared scenes on disk: each scene's road grid and lane pieces, keyed by its content, shared across processes.

Preparing a scene for the batched simulator (its drivable area's signed-distance grid, :func:`sim.road_grid.scene_grid`,
and its lane pieces, :func:`sim.lane_map.scene_pieces`) costs tens of milliseconds; a sweep prepares every scene once
per process. A :class:`SceneCache` keeps what was prepared as one ``.npz`` per scene (``allow_pickle=False``, written
atomically), so later calls, worker processes and Ray workers on this machine load it instead.

The key is the scene's :func:`scenarios.scenario.content_digest`, the grid resolution and a digest of the code that
prepares (the source of ``sim/road_grid.py`` and ``sim/lane_map.py``): an edit to either starts a new set of files,
and an entry can never be stale. A file that cannot be read is prepared again and replaced. Results are the same
bit for bit with and without the cache (``tests/sim/test_scene_cache.py``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from scenarios.scenario import Scenario, content_digest
from scenarios.suites import source_digest
from sim.lane_map import ScenePieces, scene_pieces
from sim.road_grid import ExactRoad, SceneGrid, scene_grid

_PIECES = ("box", "lane", "s0", "limit", "inter", "light_seg", "red")


@cache
def code_digest() -> str:
    """12 hex digits over the source of the modules that prepare a scene."""
    import sim.lane_map
    import sim.road_grid

    return source_digest([Path(m.__file__) for m in (sim.road_grid, sim.lane_map)], digits=12)


@dataclass(frozen=True)
class Prepared:
    """One scene, prepared: its road grid (None without drivable polygons) and its lane pieces."""

    grid: SceneGrid | None
    pieces: ScenePieces


def prepare(scene: Scenario, resolution: float) -> Prepared:
    """Prepare one scene (no cache)."""
    return Prepared(scene_grid(scene, float(resolution)), scene_pieces(scene))


class SceneCache:
    """A folder of prepared scenes.

    Args:
        root: the folder (created on first write; ``~`` expanded).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.hits = 0
        self.misses = 0

    def path(self, scene: Scenario, resolution: float) -> Path:
        """The file of ``scene`` prepared at ``resolution`` m per cell."""
        d = content_digest(scene)
        return self.root / code_digest() / d[:2] / f"{d}-{float(resolution):g}m.npz"

    def get(self, scene: Scenario, resolution: float) -> Prepared:
        """The prepared scene: loaded, or prepared now and written."""
        p = self.path(scene, resolution)
        try:
            with np.load(p, allow_pickle=False) as z:
                out = _decode(z)
            self.hits += 1
            return out
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            pass  # absent, partial or from something else: prepare again
        self.misses += 1
        out = prepare(scene, resolution)
        with contextlib.suppress(OSError):  # a read-only or full disk costs the cache, not the run
            _write(p, _encode(out))
        return out


def prepared(scenes: list[Scenario], resolution: float, cache: SceneCache | None) -> list[Prepared]:
    """Each scene prepared, through ``cache`` when given."""
    if cache is None:
        return [prepare(s, resolution) for s in scenes]
    return [cache.get(s, resolution) for s in scenes]


def _encode(p: Prepared) -> dict[str, np.ndarray]:
    out = {f"p_{k}": np.asarray(getattr(p.pieces, k)) for k in _PIECES}
    out["has_grid"] = np.asarray(p.grid is not None)
    if p.grid is not None:
        sdf, origin, yaw, ex = p.grid
        lens = np.asarray([len(q) for q in ex.polys], np.int64)
        out.update(
            sdf=sdf, origin=np.asarray(origin, np.float64), yaw=np.asarray(yaw, np.float64),
            poly_pts=np.concatenate(ex.polys) if len(ex.polys) else np.zeros((0, 2)), poly_len=lens,
            boundary=np.asarray(ex.tree.data) if ex.tree is not None else np.zeros((0, 2)),
            has_tree=np.asarray(ex.tree is not None), edges=ex.edges, edge_of=ex.edge_of,
            anchor=np.asarray(ex.anchor, np.float64), exact_yaw=np.asarray(ex.yaw, np.float64),
        )
    return out


def _decode(z) -> Prepared:
    pieces = ScenePieces(**{k: z[f"p_{k}"] for k in _PIECES})
    if not bool(z["has_grid"]):
        return Prepared(None, pieces)
    ends = np.cumsum(z["poly_len"])
    pts = z["poly_pts"]
    polys = [pts[a:b] for a, b in zip(np.concatenate([[0], ends[:-1]]), ends, strict=True)]
    tree = cKDTree(z["boundary"]) if bool(z["has_tree"]) else None
    exact = ExactRoad(polys, tree, z["edges"], z["edge_of"], z["anchor"], float(z["exact_yaw"]))
    grid = (z["sdf"], z["origin"], float(z["yaw"]), exact)
    return Prepared(grid, pieces)


def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomic: a temporary file in the same folder, then a rename (concurrent writers of one key write the same)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
