"""The scenes of a version-3 scenario file, read block by block when asked for: :class:`SceneFile`.

A sweep over more scenes than it holds batches of (``sim.evaluate --scene-window``) streams its scenes from the file
instead of holding them all: memory then grows with the window, not with the scene set (docs/performance.md).
:func:`scene_ids`, :func:`scene_keys` and :func:`take` read what the evaluation needs of any scene sequence (a list
or a :class:`SceneFile`) without decoding a streamed one.
"""

from __future__ import annotations

import math
import os
import threading
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from scenarios.io import BLOCK, _read_block, _take, check_header
from scenarios.scenario import Scenario, ScenarioError

_DECODE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, TypeError, IndexError,
                  OverflowError, NotImplementedError)  # every way a damaged .npz member fails to decode


def blocks_for(scenes: int) -> int:
    """Decoded blocks a thread keeps to revisit ``scenes`` consecutive scenes without reading them twice: the blocks
    they span, plus one on each side (a batch of scenes need not start at a block's first scene)."""
    return max(1, math.ceil(max(0, scenes) / BLOCK)) + 2


class SceneFile(Sequence[Scenario]):
    """A read-only sequence of the usable scenes of a version-3 scenario file (:mod:`scenarios.io`) that holds none
    of them: scene ``i`` is decoded from its block when asked for, and each thread keeps its ``cache_blocks`` most
    recently used decoded blocks (the same :class:`Scenario` object while its block stays; at most
    ``cache_blocks * BLOCK`` scenes per thread, whatever the file's size). Iterating decodes each block once.
    Picklable as its path and index alone: a worker process reads the file itself. Build it with :meth:`open`.

    Attributes:
        path: the file. ids: each scene's id. keys: each scene's ``(init_step, dt)`` (what a batch shares).
    """

    def __init__(self, path: str | os.PathLike, entries: Sequence[tuple[int, int]], ids: Sequence[str],
                 keys: Sequence[tuple[int, float]], cache_blocks: int = 3) -> None:
        if not len(entries) == len(ids) == len(keys):
            raise ValueError(f"{len(entries)} entries, {len(ids)} ids and {len(keys)} keys")
        self.path = Path(path)
        self.entries = tuple(entries)  # (block, position in the block) of each scene
        self.ids = tuple(ids)
        self.keys = tuple(keys)
        self.cache_blocks = max(1, int(cache_blocks))
        self._local = threading.local()

    @classmethod
    def open(cls, path: str | os.PathLike, skipped: list[tuple[str, str]] | None = None,
             cache_blocks: int = 3) -> SceneFile:
        """Index a version-3 file, validating every scene once (one block decoded at a time, none kept).

        Args:
            path: the ``.npz`` file. skipped: as :func:`scenarios.io.load_scenarios` (a scene unusable on its own is
                appended as ``(id, reason)``; None: it raises). cache_blocks: decoded blocks each thread keeps.

        Raises:
            ScenarioError: one line naming the file and the problem, as :func:`scenarios.io.load_scenarios`; also
                for a file of version 1 or 2 (load those whole with :func:`scenarios.io.load_scenarios`).
        """
        path = Path(path)
        if not path.is_file():
            raise ScenarioError(f"{path}: no such scenario file")
        entries, ids, keys = [], [], []
        try:
            with np.load(path, allow_pickle=False) as z:
                version, count = check_header(z)
                if version < 3:
                    raise ScenarioError(f"format version {version} is read whole, not streamed (rewrite it with "
                                        "scenarios.io.save_scenarios to stream it)")
                names = frozenset(z.files)
                for k in range(-(-count // BLOCK)):
                    metas, read = _read_block(z, k, names)
                    for j, meta in enumerate(metas):
                        got: list[Scenario] = []
                        _take(lambda read=read, j=j: read(j), k * BLOCK + j, meta, got, skipped)
                        if got:
                            entries.append((k, j))
                            ids.append(got[0].id)
                            keys.append((int(got[0].init_step), float(got[0].dt)))
                if not entries:
                    raise ScenarioError(f"no usable scene ({skipped[0][0]}: {skipped[0][1]})" if skipped
                                        else "no usable scene")
        except ScenarioError as e:
            raise ScenarioError(f"{path}: {e}") from None
        except _DECODE_ERRORS as e:
            raise ScenarioError(f"{path}: unreadable or truncated scenario file ({type(e).__name__}: {e})") from None
        return cls(path, entries, ids, keys, cache_blocks)

    def __len__(self) -> int:
        return len(self.entries)

    @overload
    def __getitem__(self, i: int) -> Scenario: ...

    @overload
    def __getitem__(self, i: slice) -> SceneFile: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.take(range(len(self))[i])
        k, j = self.entries[i]  # IndexError past the end, as a list
        block = self._block(k)
        if block[1][j] is None:
            block[1][j] = block[0](j)
        return block[1][j]

    def __iter__(self) -> Iterator[Scenario]:
        for i in range(len(self)):
            yield self[i]

    def take(self, indices: Sequence[int]) -> SceneFile:
        """The scenes at ``indices``, in that order, as a :class:`SceneFile` of the same file (nothing decoded)."""
        idx = [range(len(self))[i] for i in indices]
        return SceneFile(self.path, [self.entries[i] for i in idx], [self.ids[i] for i in idx],
                         [self.keys[i] for i in idx], self.cache_blocks)

    def _block(self, k: int) -> list:
        """``[reader of scene j, decoded scenes]`` of block ``k``, from this thread's cache or the file."""
        local = self._local
        if not hasattr(local, "cache"):
            local.cache = OrderedDict()
            local.z = None
        cache: OrderedDict = local.cache
        if k in cache:
            cache.move_to_end(k)
            return cache[k]
        try:
            if local.z is None:
                local.z = np.load(self.path, allow_pickle=False)
                local.names = frozenset(local.z.files)
            metas, read = _read_block(local.z, k, local.names)
        except _DECODE_ERRORS as e:
            raise ScenarioError(f"{self.path}: block {k} unreadable since the file was indexed "
                                f"({type(e).__name__}: {e})") from None
        cache[k] = block = [read, [None] * len(metas)]
        while len(cache) > self.cache_blocks:
            cache.popitem(last=False)
        return block

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"SceneFile({str(self.path)!r}, {len(self)} scenes)"


def scene_ids(scenes: Sequence[Scenario]) -> list[str]:
    """Each scene's id (a :class:`SceneFile`'s without decoding it)."""
    return list(scenes.ids) if isinstance(scenes, SceneFile) else [s.id for s in scenes]


def scene_keys(scenes: Sequence[Scenario]) -> list[tuple[int, float]]:
    """Each scene's ``(init_step, dt)`` (a :class:`SceneFile`'s without decoding it)."""
    if isinstance(scenes, SceneFile):
        return list(scenes.keys)
    return [(int(s.init_step), float(s.dt)) for s in scenes]


def take(scenes: Sequence[Scenario], indices: Sequence[int]) -> Sequence[Scenario]:
    """The scenes at ``indices``: a :class:`SceneFile` of them (nothing decoded), or a list."""
    return scenes.take(indices) if isinstance(scenes, SceneFile) else [scenes[i] for i in indices]
