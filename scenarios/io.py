"""The project's own on-disk scenario format (``.npz``, versioned, no pickle).

A file holds one or more scenes. Keys: ``__format__`` (``"driving-scenarios"``),
``__version__`` (int), ``__count__``, and per scene ``s{i}/<field>`` arrays plus
``s{i}/meta`` (a JSON string with id, source, family, tags, ego, dt, init_step,
``world_origin``, ``map_unknown``; files without them read as ``(0, 0)`` and "every map semantic unknown").
Version 2 added the map's semantics (``RoadMap.ARRAY_FIELDS``, ``lane_polygons``, ``mapped_area``); version-1
files still load, with those semantics recorded as unknown.
Written atomically (temp file in the same folder, fsync, ``os.replace``).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scenarios.scenario import Polylines, RoadMap, Scenario, ScenarioError

FORMAT_NAME = "driving-scenarios"
FORMAT_VERSION = 2
SUFFIX = ".npz"


def _scene_arrays(i: int, s: Scenario) -> dict[str, np.ndarray]:
    p = f"s{i}/"
    out = {
        p + "agents": s.agents.astype(np.float32),
        p + "valid": s.valid.astype(np.bool_),
        p + "agent_type": s.agent_type.astype(np.int8),
        p + "route": s.route.astype(np.float64),
        p + "lane_widths": s.map.lane_widths.astype(np.float64),
    }
    for name in RoadMap.POLYLINE_FIELDS:
        pl: Polylines = getattr(s.map, name)
        out[p + name + "/points"] = pl.points
        out[p + name + "/offsets"] = pl.offsets
    for name in RoadMap.ARRAY_FIELDS:
        out[p + "map/" + name] = np.asarray(getattr(s.map, name), dtype=RoadMap.ARRAY_DTYPES[name])
    meta = {
        "id": s.id,
        "source": s.source,
        "family": s.family,
        "tags": list(s.tags),
        "ego": int(s.ego),
        "dt": float(s.dt),
        "init_step": int(s.init_step),
        "world_origin": [float(v) for v in s.world_origin],
        "map_unknown": list(s.map.unknown),
    }
    out[p + "meta"] = np.array(json.dumps(meta))
    return out


def save_scenarios(path: str | os.PathLike, scenes: Sequence[Scenario]) -> Path:
    """Write scenes to ``path`` atomically after validating each one.

    Args:
        path: destination file (``.npz``).
        scenes: the scenes; each must pass :meth:`Scenario.validate`.

    Returns:
        The path written.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "__format__": np.array(FORMAT_NAME),
        "__version__": np.array(FORMAT_VERSION),
        "__count__": np.array(len(scenes)),
    }
    for i, s in enumerate(scenes):
        s.validate()
        arrays.update(_scene_arrays(i, s))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    mask = os.umask(0o022)
    os.umask(mask)
    try:
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _read_scene(z, i: int, names: frozenset[str]) -> Scenario:
    """Scene ``i`` of the open archive ``z`` (``names``: its member names, a set: ``z.files`` is a list)."""
    p = f"s{i}/"
    meta = json.loads(str(z[p + "meta"][()]))
    lines = {
        name: Polylines(
            np.asarray(z[p + name + "/points"], dtype=np.float64),
            np.asarray(z[p + name + "/offsets"], dtype=np.int64),
        )
        for name in RoadMap.POLYLINE_FIELDS
        if p + name + "/points" in names  # lane_polygons and mapped_area: version 2 on
    }
    arrays = {name: np.asarray(z[p + "map/" + name], dtype=RoadMap.ARRAY_DTYPES[name])
              for name in RoadMap.ARRAY_FIELDS if p + "map/" + name in names}
    unknown = tuple(meta["map_unknown"]) if "map_unknown" in meta else RoadMap.unknown
    road = RoadMap(lane_widths=np.asarray(z[p + "lane_widths"], dtype=np.float64), unknown=unknown, **lines, **arrays)
    return Scenario(
        id=str(meta["id"]),
        source=str(meta["source"]),
        agents=np.asarray(z[p + "agents"], dtype=np.float32),
        valid=np.asarray(z[p + "valid"], dtype=np.bool_),
        agent_type=np.asarray(z[p + "agent_type"], dtype=np.int8),
        ego=int(meta["ego"]),
        map=road,
        route=np.asarray(z[p + "route"], dtype=np.float64),
        dt=float(meta["dt"]),
        init_step=int(meta["init_step"]),
        family=str(meta.get("family", "")),
        tags=tuple(meta.get("tags", ())),
        world_origin=tuple(float(v) for v in meta.get("world_origin", (0.0, 0.0))),
    )


def _scene_name(z, i: int) -> str:
    """The stored id of scene ``i`` when readable, else ``scene i``."""
    try:
        return str(json.loads(str(z[f"s{i}/meta"][()]))["id"]) or f"scene {i}"
    except (KeyError, ValueError, TypeError):
        return f"scene {i}"


def load_scenarios(path: str | os.PathLike, skipped: list[tuple[str, str]] | None = None) -> list[Scenario]:
    """Read and validate every scene in a file written by :func:`save_scenarios`.

    Args:
        path: the ``.npz`` file.
        skipped: when given, a scene that is unusable on its own (bad shapes, NaN...) is appended
            here as ``(scene id or "scene i", reason)`` and the other scenes are still returned;
            when None such a scene raises.

    Raises:
        ScenarioError: one line naming the file and what is wrong (missing, truncated,
            not this format, a newer version, bad shapes, NaN...).
    """
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: no such scenario file")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "__format__" not in z.files or str(z["__format__"][()]) != FORMAT_NAME:
                raise ScenarioError("not a scenario file of this project (no __format__ marker)")
            version = int(z["__version__"][()])
            if version > FORMAT_VERSION:
                raise ScenarioError(
                    f"format version {version} is newer than this tool reads ({FORMAT_VERSION}); upgrade"
                )
            count = int(z["__count__"][()])
            if count < 1:
                raise ScenarioError("file holds no scenes")
            scenes = []
            names = frozenset(z.files)
            for i in range(count):
                try:
                    scenes.append(_read_scene(z, i, names).validate())
                except (ScenarioError, KeyError) as e:
                    reason = f"missing array {e}" if isinstance(e, KeyError) else str(e)
                    if skipped is None:
                        raise ScenarioError(f"scene {i}: {reason}") from None
                    skipped.append((_scene_name(z, i), reason))
            if not scenes:
                raise ScenarioError(f"no usable scene ({skipped[0][0]}: {skipped[0][1]})")
            return scenes
    except ScenarioError as e:
        raise ScenarioError(f"{path}: {e}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, TypeError, IndexError,
            OverflowError, NotImplementedError) as e:  # every way a damaged .npz member fails to decode
        raise ScenarioError(f"{path}: unreadable or truncated scenario file ({type(e).__name__}: {e})") from None
