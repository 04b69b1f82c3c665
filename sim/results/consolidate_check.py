"""Checks of a consolidated results file against the index it was copied from (``ResultsWriter.consolidate``):
the copy must hold no link but hard ones, every group and dataset the index reaches (following its external links)
and no other, the same root attributes, and every dataset must read back. HDF5 copies data exactly; what goes wrong
is an object missing, or an external link left in place because its target could not be opened."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5d, h5l, h5o, h5s

from sim.results.opening import open_read
from sim.results.schema import LAYOUT_ATTR


def _links(g: h5py.Group) -> dict[str, int]:
    """Every link below ``g``, recursively (external links not followed): relative path -> link type (``h5l``)."""
    out: dict[str, int] = {}

    def visit(name: bytes, info: Any) -> None:
        out[name.decode()] = info.type

    g.id.links.visit(visit, info=True)
    return out


def _logical_tree(src: h5py.File, folder: Path) -> dict[str, int]:
    """The links of the index ``src`` as a self-contained copy must hold them: each external link replaced by the
    object it points at (a hard link) and everything below it. Raises OSError / KeyError for a part that cannot
    be read (checked before by ``_broken_part``)."""
    tree = _links(src)
    with ExitStack() as stack:
        parts: dict[str, h5py.File] = {}
        for name, kind in list(tree.items()):
            if kind != h5l.TYPE_EXTERNAL:
                continue
            fn, obj = (x.decode() for x in src.id.links.get_val(name.encode()))
            if fn not in parts:
                parts[fn] = stack.enter_context(open_read(folder / fn))
            tree[name] = h5l.TYPE_HARD
            target = parts[fn][obj]
            if isinstance(target, h5py.Group):
                tree.update({f"{name}/{sub}": t for sub, t in _links(target).items()})
    return tree


def _read_back(dst: h5py.File, name: str) -> None:
    """Read one object of the copy whole (a dataset's every value)."""
    oid = h5o.open(dst.id, name.encode())
    if isinstance(oid, h5d.DatasetID):
        if oid.dtype.kind == "O" or not oid.shape or 0 in oid.shape:
            h5py.Dataset(oid)[()]
        else:
            oid.read(h5s.ALL, h5s.ALL, np.empty(oid.shape, oid.dtype))


def differs(src: h5py.File, dst: h5py.File, folder: Path) -> str | None:
    """Why the consolidated file ``dst`` is not a whole copy of the index ``src`` (None when it is): another set
    of root attributes, a link left in it (HDF5 leaves an external link it cannot follow in place), a group or
    dataset missing or extra, or one that does not read back."""
    if set(src.attrs) - {LAYOUT_ATTR} != set(dst.attrs):
        return "the root attributes differ in the copy"
    got = _links(dst)
    for name in sorted(n for n, kind in got.items() if kind != h5l.TYPE_HARD):
        link = dst.get(name, getlink=True)
        target = f" (in {folder / link.filename})" if isinstance(link, h5py.ExternalLink) else ""
        return f"/{name}{target} cannot be read: the copy holds a {type(link).__name__} there"
    want = _logical_tree(src, folder)
    for name in sorted(set(want) ^ set(got)):
        return f"/{name} is missing in the copy" if name in want else f"/{name} is in the copy only"
    for name in sorted(got):
        try:
            _read_back(dst, name)
        except (OSError, KeyError, ValueError, TypeError) as e:
            return f"/{name} does not read back ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    return None
