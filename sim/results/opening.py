"""Opening ``results.h5`` for reading while ``sim.evaluate`` may be writing it (h5py, numpy-free, torch-free).

Read-only opens without HDF5 file locking (:func:`open_read`), brief retries of a locked or partial file
(:func:`open_results`), the sidecar's commit files checked and named when missing or broken, and a read that a
commit overtook read again from the new index (:func:`reading`, then "try again": :data:`BUSY`). The typed reads
built on them are :mod:`sim.results.reader`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import h5py
from h5py import h5l

from scenarios.commands import quote
from sim.results.errors import ResultsError
from sim.results.schema import parts_dir

T = TypeVar("T")


def external_links(g: h5py.Group | None) -> dict[str, list[str]]:
    """The external links of one group (``/scenarios`` or ``/checkpoints`` of an index), by the file they point
    into: ``{file name relative to the index: [object paths]}`` (hard links left out; about 10 us a link)."""
    out: dict[str, list[str]] = {}
    if g is None:
        return out
    links = g.id.links
    for name in g:
        b = name.encode()
        if links.get_info(b).type == h5l.TYPE_EXTERNAL:
            fn, obj = links.get_val(b)
            out.setdefault(fn.decode(), []).append(obj.decode())
    return out


def _moved_line(p: Path) -> str:
    side = parts_dir(p)
    return (f"{p}: its commit files are missing ({side.name}/ is not beside it): a results file is moved together "
            f"with its {side.name}/ folder, or consolidated first (python -m sim.evaluate --consolidate ... "
            f"--out {quote(p.name)})")


def _missing_part_line(p: Path, part: str, why: str) -> str:
    """One line naming a commit file of index ``p`` that is gone or unreadable (``why``)."""
    return (f"{p}: its commit file {part} {why}: changed outside sim.evaluate; what it held is lost, the rest of "
            f"{p.name} is intact (to evaluate it again, evaluate into another --out)")


def _check_sidecar(f: h5py.File, p: Path) -> None:
    """A schema-2 index whose commit files are gone: one clear line (the whole folder moved away, or one file of it
    deleted). Checks the first link of each group: the full check runs when a read fails (:func:`_broken_part`)."""
    for grp in ("scenarios", "checkpoints"):
        g = f.get(grp)
        if g is None:
            continue
        for name in g:
            link = g.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                target = p.parent / link.filename
                if not target.parent.is_dir():
                    raise ResultsError(_moved_line(p))
                if not target.exists():
                    raise ResultsError(_missing_part_line(p, link.filename, "is missing"))
            break


def _broken_part(f: h5py.File, p: Path) -> str | None:
    """One line naming the first commit file the index ``f`` links to that is missing or unreadable; None when
    every one opens and holds its linked objects."""
    for grp in ("scenarios", "checkpoints"):
        try:
            targets = external_links(f.get(grp))
        except (OSError, KeyError, ValueError):
            continue
        for fn, objs in targets.items():
            target = p.parent / fn
            if not target.parent.is_dir():
                return _moved_line(p)
            if not target.exists():
                return _missing_part_line(p, fn, "is missing")
            try:
                with open_read(target) as part:
                    lost = next((o for o in objs if o not in part), None)
            except OSError as e:
                return _missing_part_line(p, fn, f"cannot be read ({_first_line(e)})")
            if lost is not None:
                return _missing_part_line(p, fn, f"lacks {lost}")
    return None


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


LOCK_MISMATCH = "locking flag values don't match"  # HDF5's refusal of a second open with other locking flags


def open_read(path: str | Path) -> h5py.File:
    """An existing HDF5 file, read-only, without HDF5 file locking (the project's writers replace files whole, under
    a temporary name, so a reader never sees a partial write).

    HDF5 refuses a second open of a file in one process with other locking flags ("file locking flag values don't
    match"): where this process already holds it open with locking (a caller's own ``h5py.File``, or
    :func:`open_results` mid-read while a thread stores scenes), it is opened with those flags instead.

    Raises:
        OSError: h5py's, for a missing, truncated or non-HDF5 file.
    """
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as e:
        if LOCK_MISMATCH not in str(e):
            raise
        return h5py.File(path, "r")


@contextmanager
def open_results(path: str | Path, retries: int = 5, delay_s: float = 0.05) -> Iterator[h5py.File]:
    """Open a results file read-only, retrying briefly while another process holds a lock or is mid-write.

    After ``retries`` failed tries it opens without HDF5 file locking (the writer commits whole groups under a
    temporary name), and raises ``ResultsError`` naming the file if that fails too. A file that is not HDF5 at
    all fails at once; one this process already holds open without locking (the scene writer's thread) is opened
    at once as :func:`open_read` opens it.
    """
    p = Path(path)
    if not p.is_file():
        raise ResultsError(f"{p}: no results file (run: python -m sim.evaluate --ckpt best_entropy.pt)")
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            try:
                f = h5py.File(p, "r") if attempt < retries else open_read(p)
            except OSError as e:
                if LOCK_MISMATCH not in str(e):
                    raise
                f = open_read(p)  # this process holds it open without locking (a writer's thread)
        except OSError as e:  # locked, truncated, or not HDF5 at all
            last = e
            if not h5py.is_hdf5(p):
                break  # not HDF5 at all (or truncated before the superblock): no point waiting
            time.sleep(delay_s * (1 + attempt))
            continue
        try:
            _check_sidecar(f, p)
            yield f
        finally:
            f.close()
        return
    msg = str(last).splitlines()[0] if last else "unknown error"
    raise ResultsError(f"{p}: cannot open as HDF5 (corrupt, or still being written): {msg}")


BUSY = "is being written: sim.evaluate replaced it while it was read; try again"
READ_TRIES = 4  # reads of a results file that a commit replaced mid-read, before saying "try again"
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, ResultsError)


def _opened_inode(f: h5py.File) -> int | None:
    try:
        return os.fstat(f.id.get_vfd_handle()).st_ino
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _inode(p: Path) -> int | None:
    try:
        return p.stat().st_ino
    except OSError:
        return None


def reading(path: str | Path, read: Callable[[h5py.File], T], malformed: str = "malformed results file") -> T:
    """``read(f)`` on the open results file, as one snapshot.

    A commit of ``sim.evaluate`` replaces the index (a new inode) and deletes the commit files only the old one
    linked to once they are superseded (``sim.results.store``), so a read that fails after its index was replaced
    is read again from the new index, up to :data:`READ_TRIES` times, then refused with "try again" (:data:`BUSY`).
    A read that fails on an index nobody replaced names the commit file at fault (:func:`_broken_part`) or, failing
    that, the error (``{path}: {malformed}: ...``); always one line naming the file.
    """
    p = Path(path)
    for attempt in range(READ_TRIES):
        before = _inode(p)
        opened: int | None = None
        try:
            with open_results(p) as f:
                opened = _opened_inode(f) or before
                try:
                    return read(f)
                except _READ_ERRORS as e:
                    err: BaseException = e
                    try:
                        broken = _broken_part(f, p)
                    except Exception:  # noqa: BLE001 - a diagnosis only: a damaged index may fail it in any way
                        broken = None
        except _READ_ERRORS as e:  # open_results itself (its sidecar check): no snapshot was read
            err, broken = e, None
        held = opened if opened is not None else before
        if held is None or _inode(p) == held:  # the same index: the error is the file's, not a race
            if isinstance(err, ResultsError) and not broken:
                raise err
            raise ResultsError(broken or f"{p}: {malformed}: {_first_line(err)}") from None
        time.sleep(0.02 * (attempt + 1))
    raise ResultsError(f"{p} {BUSY}")
