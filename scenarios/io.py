"""The project's own on-disk scenario format (``.npz``, versioned, no pickle).

A file holds one or more scenes. Keys: ``__format__`` (``"driving-scenarios"``),
``__version__`` (int), ``__count__``, and the scenes' arrays. Version 3 (written) stores them by column, in blocks of
:data:`BLOCK` scenes: block ``k`` holds, per field, ``b{k}/<field>/data`` (the block's arrays of that field, each
flattened, one after the other) and ``b{k}/<field>/shape`` (int64 ``[n, ndim]``, each array's shape), plus
``b{k}/meta``, a JSON list of one object per scene (id, source, family, tags, ego, dt, init_step, ``world_origin``,
``map_unknown``). The fields are ``agents``, ``valid``, ``agent_type``, ``route``, ``lane_widths``,
``<polyline>/points`` and ``<polyline>/offsets`` for each of ``RoadMap.POLYLINE_FIELDS``, and ``map/<name>`` for each
of ``RoadMap.ARRAY_FIELDS``. A block reads as a few dozen archive members whatever its number of scenes (versions 1
and 2 stored about 29 per scene, and reading them cost about 7 ms per scene).
Versions 1 and 2 (one ``s{i}/<field>`` member per scene and field, ``s{i}/meta``) still load. Version 2 added the
map's semantics (``RoadMap.ARRAY_FIELDS``, ``lane_polygons``, ``mapped_area``); version-1 files load with those
semantics recorded as unknown, and files without ``world_origin`` or ``map_unknown`` read as ``(0, 0)`` and "every
map semantic unknown".
Written atomically (temp file in the same folder, fsync, ``os.replace``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from scenarios.scenario import Polylines, RoadMap, Scenario, ScenarioError

FORMAT_NAME = "driving-scenarios"
FORMAT_VERSION = 3
SUFFIX = ".npz"
BLOCK = 64  # scenes per block of columns (version 3)


def _fields(s: Scenario) -> tuple[dict[str, np.ndarray], dict]:
    """A scene's arrays by field name (module docstring) and its JSON meta."""
    out = {
        "agents": s.agents.astype(np.float32),
        "valid": s.valid.astype(np.bool_),
        "agent_type": s.agent_type.astype(np.int8),
        "route": s.route.astype(np.float64),
        "lane_widths": s.map.lane_widths.astype(np.float64),
    }
    for name in RoadMap.POLYLINE_FIELDS:
        pl: Polylines = getattr(s.map, name)
        out[name + "/points"] = pl.points
        out[name + "/offsets"] = pl.offsets
    for name in RoadMap.ARRAY_FIELDS:
        out["map/" + name] = np.asarray(getattr(s.map, name), dtype=RoadMap.ARRAY_DTYPES[name])
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
    return out, meta


def _block_arrays(k: int, scenes: Sequence[Scenario]) -> dict[str, np.ndarray]:
    """Version-3 members of block ``k`` of ``scenes`` (validated by the caller)."""
    fields, metas = zip(*(_fields(s) for s in scenes), strict=True)
    out = {f"b{k}/meta": np.array(json.dumps(list(metas)))}
    for name in fields[0]:
        col = [f[name] for f in fields]
        out[f"b{k}/{name}/data"] = np.concatenate([a.reshape(-1) for a in col])
        out[f"b{k}/{name}/shape"] = np.array([a.shape for a in col], np.int64).reshape(len(col), col[0].ndim)
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
    for s in scenes:
        s.validate()
    for k, i in enumerate(range(0, len(scenes), BLOCK)):
        arrays.update(_block_arrays(k, scenes[i : i + BLOCK]))
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


def _scene(get: Callable[[str], np.ndarray], has: Callable[[str], bool], meta: dict) -> Scenario:
    """One scene from its fields (``get(field)``; ``has(field)``: whether the file holds it) and its meta."""
    lines = {
        name: Polylines(np.asarray(get(name + "/points"), dtype=np.float64),
                        np.asarray(get(name + "/offsets"), dtype=np.int64))
        for name in RoadMap.POLYLINE_FIELDS
        if has(name + "/points")  # lane_polygons and mapped_area: version 2 on
    }
    arrays = {name: np.asarray(get("map/" + name), dtype=RoadMap.ARRAY_DTYPES[name])
              for name in RoadMap.ARRAY_FIELDS if has("map/" + name)}
    unknown = tuple(meta["map_unknown"]) if "map_unknown" in meta else RoadMap.unknown
    road = RoadMap(lane_widths=np.asarray(get("lane_widths"), dtype=np.float64), unknown=unknown, **lines, **arrays)
    return Scenario(
        id=str(meta["id"]),
        source=str(meta["source"]),
        agents=np.asarray(get("agents"), dtype=np.float32),
        valid=np.asarray(get("valid"), dtype=np.bool_),
        agent_type=np.asarray(get("agent_type"), dtype=np.int8),
        ego=int(meta["ego"]),
        map=road,
        route=np.asarray(get("route"), dtype=np.float64),
        dt=float(meta["dt"]),
        init_step=int(meta["init_step"]),
        family=str(meta.get("family", "")),
        tags=tuple(meta.get("tags", ())),
        world_origin=tuple(float(v) for v in meta.get("world_origin", (0.0, 0.0))),
    )


def _read_scene(z, i: int, names: frozenset[str]) -> Scenario:
    """Scene ``i`` of a version-1 or -2 archive ``z`` (``names``: its member names, a set: ``z.files`` is a list)."""
    p = f"s{i}/"
    meta = json.loads(str(z[p + "meta"][()]))
    return _scene(lambda f: z[p + f], lambda f: p + f in names, meta)


class _Column:
    """One field of a version-3 block: its flat data and each scene's slice of it."""

    def __init__(self, data: np.ndarray, shape: np.ndarray):
        if shape.ndim != 2 or (shape < 0).any():
            raise ValueError(f"bad shape table {shape.shape}")
        self.data = data
        self.shapes = [tuple(r) for r in shape.tolist()]
        self.ends = np.cumsum(np.prod(shape, axis=1)).tolist()

    def get(self, j: int) -> np.ndarray:
        end, shape = self.ends[j], self.shapes[j]
        if end > self.data.size:
            raise ValueError(f"data holds {self.data.size} values, the shape table needs {end}")
        return self.data[end - math.prod(shape) : end].reshape(shape)


def _read_block(z, k: int, names: frozenset[str]) -> tuple[list[dict], Callable[[int], Scenario]]:
    """Block ``k`` of a version-3 archive: its scenes' metas and a reader of its scene ``j``."""
    metas = json.loads(str(z[f"b{k}/meta"][()]))
    if not isinstance(metas, list):
        raise ValueError(f"b{k}/meta is not a list")
    cols: dict[str, _Column] = {}
    for name in names:
        if name.startswith(f"b{k}/") and name.endswith("/data"):
            field = name[len(f"b{k}/") : -len("/data")]
            cols[field] = _Column(z[name], z[f"b{k}/{field}/shape"])

    def scene(j: int) -> Scenario:
        def get(field: str) -> np.ndarray:
            if field not in cols:
                raise KeyError(field)
            return cols[field].get(j)

        return _scene(get, lambda f: f in cols, metas[j])

    return metas, scene


def _take(read: Callable[[], Scenario], i: int, meta: dict | None, scenes: list[Scenario],
          skipped: list[tuple[str, str]] | None, name: Callable[[], str] | None = None) -> None:
    """Append scene ``i`` (``read()``), validated, to ``scenes``; an unusable one goes to ``skipped`` when it is
    given, else raises :class:`ScenarioError` naming it."""
    try:
        scenes.append(read().validate())
    except (ScenarioError, KeyError, ValueError, TypeError, IndexError) as e:  # IndexError: a short shape table
        reason = f"missing array {e}" if isinstance(e, KeyError) else str(e)
        if skipped is None:
            raise ScenarioError(f"scene {i}: {reason}") from None
        if name is not None:
            sid = name()
        else:
            sid = str(meta.get("id", "")) if isinstance(meta, dict) else ""
        skipped.append((sid or f"scene {i}", reason))


def _scene_name(z, i: int) -> str:
    """The stored id of scene ``i`` when readable, else ``scene i``."""
    try:
        return str(json.loads(str(z[f"s{i}/meta"][()]))["id"]) or f"scene {i}"
    except (KeyError, ValueError, TypeError):
        return f"scene {i}"


def check_header(z) -> tuple[int, int]:
    """``(version, count)`` of an opened archive ``z`` of this format.

    Raises:
        ScenarioError: not this format, a newer version, or no scenes (the caller names the file).
    """
    if "__format__" not in z.files or str(z["__format__"][()]) != FORMAT_NAME:
        raise ScenarioError("not a scenario file of this project (no __format__ marker)")
    version = int(z["__version__"][()])
    if version > FORMAT_VERSION:
        raise ScenarioError(f"format version {version} is newer than this tool reads ({FORMAT_VERSION}); upgrade")
    count = int(z["__count__"][()])
    if count < 1:
        raise ScenarioError("file holds no scenes")
    return version, count


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
            version, count = check_header(z)
            scenes: list[Scenario] = []
            names = frozenset(z.files)
            if version >= 3:
                for k in range(-(-count // BLOCK)):
                    metas, read = _read_block(z, k, names)
                    for j, meta in enumerate(metas):
                        _take(lambda read=read, j=j: read(j), k * BLOCK + j, meta, scenes, skipped)
            else:
                for i in range(count):
                    _take(lambda i=i: _read_scene(z, i, names), i, None, scenes, skipped,
                          lambda i=i: _scene_name(z, i))
            if not scenes:
                raise ScenarioError(f"no usable scene ({skipped[0][0]}: {skipped[0][1]})")
            return scenes
    except ScenarioError as e:
        raise ScenarioError(f"{path}: {e}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, TypeError, IndexError,
            OverflowError, NotImplementedError) as e:  # every way a damaged .npz member fails to decode
        raise ScenarioError(f"{path}: unreadable or truncated scenario file ({type(e).__name__}: {e})") from None
