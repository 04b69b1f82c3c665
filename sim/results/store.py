"""The one writer of results files (schema: :mod:`sim.results.schema`, ``docs/results_schema.md``).

A commit's cost does not depend on what the file already holds. Each commit (new scenes, one checkpoint's
rows or attributes, the verdict, the skipped table) writes its data to a small HDF5 file of its own in the
sidecar folder ``<name>.parts/`` (temporary name, fsync, ``os.replace``), then replaces the main file, an index of HDF5
external links plus the root attributes, verdict and skipped table, by an updated copy (temporary name,
fsync, ``os.replace``). The index holds one link per scene and per checkpoint, so copying it costs
kilobytes whatever the sidecar holds. Guarantees:

- kill -9 at any moment leaves the previous or the new index, both readable, each pointing only at commit
  files already in place: every completed checkpoint survives;
- readers that opened the index keep a consistent snapshot: a commit file is deleted only when the published
  index no longer links to it (a file several links share, such as an adopted ``whole-<id>.h5``, stays while
  any does), at the end of the writer's session (:meth:`ResultsWriter.lock`) or, in a long session, once it has
  been superseded for :data:`SUPERSEDED_GRACE_S` seconds; :mod:`sim.results.reader` re-reads a snapshot a
  commit overtook;
- resume (:meth:`ResultsWriter.done`) and merge of split commits (rows of a key committed twice are
  merged into one new commit file for that key).

A file is one experiment: the root attributes given to :meth:`ResultsWriter.prepare` / :meth:`ResultsWriter.commit`
carry it (:meth:`sim.results.identity.Experiment.to_attrs`, built by :func:`sim.evaluation.settings.identity_root`,
which refuses a call of another experiment before anything is written).

:meth:`ResultsWriter.consolidate` copies everything into one self-contained file, checks the copy (no link left,
every group and dataset there, every dataset read back) and only then replaces the index and removes the
sidecar; it holds the lock. The lock is an ``flock`` on the sidecar folder itself: no lock file is left behind.
A file given as the output must be a results file (:meth:`ResultsWriter.preflight`): another program's HDF5
file is refused untouched.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from scenarios.scene_file import scene_ids
from sim.results.consolidate_check import differs
from sim.results.errors import EvaluationError
from sim.results.opening import external_links, open_read
from sim.results.reader import open_index, read_sampled_group, read_schema_version, scenario_ids_of
from sim.results.schema import (
    LAYOUT_ATTR,
    LAYOUT_INDEX,
    MAP_KINDS,
    SAMPLED_GROUP,
    SCHEMA_VERSION,
    SKIPPED_FIELDS,
    STR,
    TMP_PREFIX,
    CheckpointAttrs,
    CheckpointRows,
    SampledRows,
    SceneRecord,
    attr_value,
    parts_dir,
    scene_record,
    to_json,
    tool_version,
    utc_now,
)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish(tmp: Path, dest: Path) -> None:
    """Make a finished temporary file visible atomically: shared permissions, fsync, rename, fsync the folder."""
    os.chmod(tmp, 0o666 & ~_umask())  # temporary files are private; results are meant to be shared
    _fsync_path(tmp)
    os.replace(tmp, dest)
    _fsync_path(dest.parent)


def _write_scene(g: h5py.Group, s: SceneRecord) -> None:
    g.attrs.update(s.header_hdf5())
    g.create_dataset("log_ego", data=np.asarray(s.log_ego, dtype=np.float32))
    g.create_dataset("agents", data=np.asarray(s.agents, dtype=np.float32))
    g.create_dataset("valid", data=np.asarray(s.valid, dtype=np.bool_))
    g.create_dataset("agent_type", data=np.asarray(s.agent_type, dtype=np.int8))
    g.create_dataset("route", data=np.asarray(s.route, dtype=np.float32).reshape(-1, 2))
    kinds = [k for k in MAP_KINDS if k in s.map and len(s.map[k][0])]  # a kind the scene lacks is not written
    mp = g.create_group("map")
    for kind in kinds:
        pts, off = s.map[kind]
        kg = mp.create_group(kind)
        kg.create_dataset("points", data=np.asarray(pts, dtype=np.float32).reshape(-1, 2))
        kg.create_dataset("offsets", data=np.asarray(off, dtype=np.int64))


def _write_rows(g: h5py.Group, attrs: Mapping[str, Any], rows: CheckpointRows, scene_rows: Sequence[int]) -> None:
    for k, v in attrs.items():
        g.attrs[k] = v
    g.attrs["completed"] = utc_now()
    g.create_dataset("scenario", data=np.asarray(scene_rows, dtype=np.int32))
    g.create_dataset("scenario_id", data=np.array(rows.scenario_ids, dtype=object), dtype=STR)
    m = g.create_group("metrics")
    for k, v in rows.metrics.items():
        m.create_dataset(k, data=np.asarray(v, dtype=np.float64))
    g.create_dataset("ego_traj", data=np.asarray(rows.ego_traj, dtype=np.float32))
    if rows.sampled is not None:
        _write_sampled(g.create_group(SAMPLED_GROUP), rows.sampled)


def _write_sampled(g: h5py.Group, rows: SampledRows) -> None:
    """``/checkpoints/<key>/sampled``: ``scenario_id`` str [M], ``rollout`` int32 [M], ``metrics/<name>`` [M]."""
    g.create_dataset("scenario_id", data=np.array(rows.scenario_ids, dtype=object), dtype=STR)
    g.create_dataset("rollout", data=np.asarray(rows.rollout, dtype=np.int32))
    m = g.create_group("metrics")
    for k, v in rows.metrics.items():
        m.create_dataset(k, data=np.asarray(v, dtype=np.float64))


def _set_attr(attrs: h5py.AttributeManager, key: str, value: Any) -> None:
    """Set attribute ``key`` unless it already holds ``value``. HDF5 does not reuse the space of a rewritten large
    attribute: the root's (a digest per scene, about 50 bytes each) written again at every commit grew the index by
    its size each time, and every commit copies the index (10,000 scenes: about 0.5 MB more per commit)."""
    if key in attrs:
        try:
            if np.array_equal(np.asarray(attrs[key]), np.asarray(value)):
                return
        except (TypeError, ValueError):  # not comparable: written again
            pass
    attrs[key] = value


SUPERSEDED_GRACE_S = 300.0
"""Seconds a commit file superseded by a merge is kept, in a long session, before it is deleted (the rest wait for
the end of the session): a reader's snapshot stays readable at least this long, and a sweep committing every few
seconds does not keep every generation of a key's rows on disk."""

TOP_LEVEL = frozenset({"scenarios", "checkpoints", "verdict", "skipped"})  # every member a results file may hold
ALWAYS = ("schema_version", "created", "tool_version", "updated")  # root attributes every results file holds


class ResultsWriter:
    """Appends to one results file: index ``path`` plus commit files in ``<path>.parts/``.

    Args:
        path: the results file; created on the first commit. Its folder must be writable.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.parts = parts_dir(self.path)
        self._locked = False  # this writer holds the lock (lock() is re-entrant: consolidate() inside a session)
        self._superseded: dict[str, float] = {}  # commit file name -> when a merge superseded it (time.monotonic)

    # --- checks and lock ------------------------------------------------------------------------------

    def preflight(self) -> None:
        """Check, before any work, that the file can be read (if present) and written.

        Raises:
            EvaluationError: newer schema, not a results file (another program's HDF5 file: members or root
                attributes other than a results file's), or folder not writable. Nothing is written then.
        """
        folder = self.path.parent
        if self.path.exists():
            if not self.path.is_file():
                raise EvaluationError(f"{self.path}: output exists and is not a file")
            v = read_schema_version(self.path)
            if v > SCHEMA_VERSION:
                raise EvaluationError(
                    f"{self.path}: results schema version {v} is newer than this tool supports ({SCHEMA_VERSION});"
                    " upgrade")
            self._check_ours()
        if not folder.is_dir():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise EvaluationError(f"{self.path}: cannot create output folder ({e.strerror or e})") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise EvaluationError(f"{self.path}: output folder is not writable")

    def _check_ours(self) -> None:
        """Refuse (one line, nothing written) an existing file that is not a results file: another program's HDF5
        file with a ``schema_version`` attribute would otherwise be adopted and its other members dropped."""
        with open_read(self.path) as f:
            foreign = sorted(set(f) - TOP_LEVEL)
            lacks = [a for a in ALWAYS if a not in f.attrs]
        if foreign or lacks:
            what = f"holds {', '.join(map(repr, foreign[:3]))}" if foreign else f"lacks the attribute {lacks[0]!r}"
            raise EvaluationError(f"{self.path}: not a results file ({what}; a results file holds only "
                                  f"{', '.join(sorted(TOP_LEVEL))}): left as it is; evaluate into another --out")

    def _take(self) -> tuple[int, bool]:
        """Open and ``flock`` the sidecar folder (made if absent); returns (fd, whether this call made it)."""
        for _ in range(3):
            created = not self.parts.exists()
            try:
                self.parts.mkdir(exist_ok=True)
                fd = os.open(self.parts, os.O_RDONLY)
            except OSError as e:
                raise EvaluationError(f"{self.path}: cannot create {self.parts.name}/ ({e.strerror or e})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise EvaluationError(f"{self.path}: another evaluation is writing this file") from None
            try:
                same = os.stat(self.parts).st_ino == os.fstat(fd).st_ino
            except OSError:
                same = False
            if same:
                return fd, created
            os.close(fd)  # the folder was removed (a session that ended, a consolidation) while it was locked: again
        raise EvaluationError(f"{self.path}: another evaluation is writing this file")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock for one evaluation (``flock`` on the sidecar folder: no lock file).

        On entry, leftovers of killed writers (temporary files) are removed; on exit, commit files no index
        points at any more are deleted, and an empty sidecar folder is removed. A writer that already holds the
        lock enters again at no cost (:meth:`consolidate` inside an evaluation's session). A refused call
        changes nothing.

        Raises:
            EvaluationError: another evaluation holds the lock, or the sidecar folder cannot be made.
        """
        if self._locked:
            yield
            return
        fd, created = self._take()
        self._locked = True
        try:
            for stale in [*self.parts.glob(TMP_PREFIX + "*"), *self.path.parent.glob(f"{TMP_PREFIX}{self.path.name}*")]:
                stale.unlink(missing_ok=True)
            yield
        finally:
            try:
                self._collect_garbage()
                if created and self.parts.is_dir() and not any(self.parts.iterdir()):
                    self.parts.rmdir()
            finally:
                self._locked = False
                os.close(fd)

    # --- reading what is there ----------------------------------------------------------------------------

    def done(self) -> dict[str, set[str]]:
        """Scenario ids already committed, per checkpoint key (empty when no file).

        Raises:
            EvaluationError: a commit file of the stored scenes or rows cannot be read (one line naming it;
                nothing is written).
        """
        if not self.path.exists():
            return {}
        with open_index(self.path) as f:
            self._check_scene_parts(f)
            grp = f.get("checkpoints")
            if grp is None:
                return {}
            out = {}
            for k in grp:
                if k.startswith(TMP_PREFIX):
                    continue
                try:
                    out[k] = set(scenario_ids_of(grp[k]))
                except (KeyError, OSError) as e:  # its commit file is truncated, overwritten or gone
                    link = grp.get(k, getlink=True)
                    where = self.path.parent / link.filename if isinstance(link, h5py.ExternalLink) else self.path
                    raise EvaluationError(f"{where}: the stored rows of checkpoint {k} cannot be read "
                                          f"({str(e).splitlines()[0]}): changed outside sim.evaluate; evaluate "
                                          f"into another --out ({self.path.name} is left as it is)") from None
            return out

    def _broken_part(self, f: h5py.File, groups: Sequence[str]) -> tuple[Path, str] | None:
        """The first commit file that the links of ``groups`` of the index ``f`` point into and that is missing,
        cannot be opened, or lacks a linked object, and why; None when every one is whole."""
        for grp in groups:
            for fn, objs in external_links(f.get(grp)).items():
                part = self.path.parent / fn
                try:
                    with open_read(part) as pf:
                        lost = next((o for o in objs if o not in pf), None)
                except OSError as e:
                    return part, "it is missing" if not part.exists() else str(e).splitlines()[0]
                if lost is not None:
                    return part, f"it lacks {lost}"
        return None

    def _check_scene_parts(self, f: h5py.File) -> None:
        """Every commit file the index's scenes link into opens and holds the linked scenes (a broken one would
        be linked again by this call's rows and copied into a consolidated file as a dangling link)."""
        broken = self._broken_part(f, ("scenarios",))
        if broken:
            raise EvaluationError(f"{broken[0]}: the stored scenes cannot be read ({broken[1]}): changed outside "
                                  f"sim.evaluate; evaluate into another --out ({self.path.name} is left as it is)")

    # --- commits ----------------------------------------------------------------------------------------------

    def _new_part(self, label: str) -> tuple[Path, Path]:
        name = f"{label}-{uuid.uuid4().hex[:12]}.h5"
        return self.parts / (TMP_PREFIX + name), self.parts / name

    @contextmanager
    def _part(self, label: str) -> Iterator[tuple[h5py.File, str]]:
        """A new commit file: yields (file, its name relative to the index); renamed into place on success."""
        self.parts.mkdir(exist_ok=True)
        tmp, final = self._new_part(label)
        try:
            with h5py.File(tmp, "w", locking=False) as f:
                yield f, f"{self.parts.name}/{final.name}"
            _publish(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @contextmanager
    def _index(self) -> Iterator[h5py.File]:
        """An updated copy of the index (kilobytes), atomically moved over ``path``."""
        tmp = self.path.with_name(f"{TMP_PREFIX}{self.path.name}-{uuid.uuid4().hex[:8]}")
        try:
            if self.path.exists() and not self._is_index():
                self._adopt(tmp)
                f = h5py.File(tmp, "r+", locking=False)
            elif self.path.exists():
                shutil.copyfile(self.path, tmp)
                f = h5py.File(tmp, "r+", locking=False)
            else:
                f = h5py.File(tmp, "w", locking=False)
                f.attrs["created"] = utc_now()
            try:
                yield f
                f.attrs["schema_version"] = SCHEMA_VERSION
                f.attrs[LAYOUT_ATTR] = LAYOUT_INDEX
                f.attrs["tool_version"] = tool_version()
                f.attrs["updated"] = utc_now()
            finally:
                f.close()
            _publish(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _is_index(self) -> bool:
        with open_read(self.path) as f:
            return attr_value(f.attrs.get(LAYOUT_ATTR, "")) == LAYOUT_INDEX

    def _adopt(self, tmp: Path) -> None:
        """Write at ``tmp`` an index over a self-contained file (version 1, or consolidated), whose data joins
        the sidecar as one commit file (a hard link: no copy). Its root attributes, ``/verdict`` and ``/skipped``
        move into the index."""
        self._check_ours()  # a member the index would not link to would be lost with the whole file
        self.parts.mkdir(exist_ok=True)
        legacy = self.parts / f"whole-{uuid.uuid4().hex[:12]}.h5"
        try:
            os.link(self.path, legacy)
        except OSError:  # no hard links here (another file system): copy once
            shutil.copyfile(self.path, legacy)
        rel = f"{self.parts.name}/{legacy.name}"
        with open_read(legacy) as old, h5py.File(tmp, "w", locking=False) as f:
            for k, v in old.attrs.items():
                if k != LAYOUT_ATTR:
                    f.attrs[k] = v
            for grp in ("scenarios", "checkpoints"):
                if grp in old:
                    g = f.require_group(grp)
                    for k, v in old[grp].attrs.items():
                        g.attrs[k] = v
                    for name in old[grp]:
                        g[name] = h5py.ExternalLink(rel, f"/{grp}/{name}")
            if "verdict" in old:
                f.create_group("verdict").attrs.update(dict(old["verdict"].attrs))
            if "skipped" in old:
                old.copy(old["skipped"], f, name="skipped")

    @staticmethod
    def _set_root(f: h5py.File, root: Mapping[str, Any]) -> None:
        for k, v in root.items():
            _set_attr(f.attrs, k, v if not isinstance(v, Mapping | list | tuple) else to_json(v))

    def _add_scenes(self, f: h5py.File, scenes: Sequence[Any],
                    record: Callable[[Any], SceneRecord] | None = None) -> dict[str, int]:
        """Write the scenes not yet indexed into one commit file and link them; returns id -> row. Each scene is
        converted to its record (``record``, default :func:`sim.results.schema.scene_record`) just before it is
        written, so one record is held at a time."""
        grp = f.require_group("scenarios")
        ids = list(json.loads(attr_value(grp.attrs["ids"]))) if "ids" in grp.attrs else []
        rows = {s: i for i, s in enumerate(ids)}
        given = scene_ids(scenes)  # a streamed SceneFile's without decoding: only new scenes are read
        fresh = list({sid: j for j, sid in enumerate(given) if sid not in rows}.items())
        if fresh:
            to_record = record or scene_record
            with self._part("scenes") as (pf, rel):
                for sid, j in fresh:
                    rows[sid] = len(ids)
                    ids.append(sid)
                    s = scenes[j]
                    _write_scene(pf.create_group(f"scenarios/s{rows[sid]:05d}"),
                                 s if isinstance(s, SceneRecord) else to_record(s))
            for sid, _ in fresh:
                grp[f"s{rows[sid]:05d}"] = h5py.ExternalLink(rel, f"/scenarios/s{rows[sid]:05d}")
            _set_attr(grp.attrs, "ids", to_json(ids))
        return rows

    def prepare(self, scenes: Sequence[Any], root: Mapping[str, Any],
                record: Callable[[Any], SceneRecord] | None = None) -> None:
        """Store the scenes not yet in the file and the root attributes, in one commit.

        Args:
            scenes: :class:`SceneRecord` or :class:`scenarios.scenario.Scenario` objects (a scene converted with
                ``record``, default :func:`sim.results.schema.scene_record`, one at a time as it is written).
            root: root attributes to set.
        """
        with self._index() as f:
            self._set_root(f, root)
            self._add_scenes(f, scenes, record)

    def commit(self, key: str, attrs: CheckpointAttrs | Mapping[str, Any], rows: CheckpointRows,
               scenes: Sequence[Any], root: Mapping[str, Any]) -> None:
        """Add ``rows`` for checkpoint ``key``, merged with rows already stored for it, in one commit.

        Cost: the new rows plus, for a key committed before, that key's stored rows; never the rest of the file.

        Args:
            key: group name (16 hex digits of the weights' sha256, or ``baseline-<name>``).
            attrs: the group's attributes (:class:`CheckpointAttrs`, or a dict as stored).
            rows: the new rows. scenes: the scenes of ``rows`` (stored when new).
            root: root attributes to set (backend, suite, config, run_dir).

        Raises:
            EvaluationError: the stored rows of ``key`` have another metric set than ``rows``.
        """
        stored = attrs.to_hdf5() if isinstance(attrs, CheckpointAttrs) else \
            {k: v if not isinstance(v, Mapping | list | tuple) else to_json(v) for k, v in attrs.items()}
        superseded = None  # the commit file the key's link pointed at: kept for readers (see _prune)
        with self._index() as f:
            self._set_root(f, root)
            scene_rows = self._add_scenes(f, scenes)
            cps = f.require_group("checkpoints")
            merged = rows
            if key in cps:
                merged = CheckpointRows.concat([self._old_rows(cps, key, rows), rows])
                link = cps.get(key, getlink=True)
                superseded = Path(link.filename).name if isinstance(link, h5py.ExternalLink) else None
            with self._part("ckpt-" + key) as (pf, rel):
                _write_rows(pf.create_group(f"checkpoints/{key}"), stored, merged,
                            [scene_rows[s] for s in merged.scenario_ids])
            if key in cps:
                del cps[key]
            cps[key] = h5py.ExternalLink(rel, f"/checkpoints/{key}")
        if superseded and superseded != Path(rel).name:
            self._superseded.setdefault(superseded, time.monotonic())
        self._prune()

    def _prune(self) -> None:
        """Delete the commit files superseded more than :data:`SUPERSEDED_GRACE_S` ago that the published index
        no longer links to (a file other links share, such as an adopted ``whole-<id>.h5``, stays)."""
        now = time.monotonic()
        due = [n for n, t in self._superseded.items() if now - t >= SUPERSEDED_GRACE_S]
        if not due:
            return
        keep = self._referenced()
        for name in due:
            del self._superseded[name]
            if name not in keep:
                (self.parts / name).unlink(missing_ok=True)

    def set_checkpoint_attrs(self, changes: Mapping[str, Mapping[str, Any]]) -> None:
        """Set attributes of stored checkpoints (``key -> {name: value}``), their rows unchanged, in one commit.

        Each group is copied with its new attributes into a commit file of its own (cost: that key's stored rows,
        never the rest of the file), so a kill leaves the old or the new attributes, and readers of the old index
        keep theirs. A key not in the file is ignored.
        """
        if not changes:
            return
        with self._index() as f:
            cps = f.require_group("checkpoints")
            for key, new in changes.items():
                if key not in cps:
                    continue
                link = cps.get(key, getlink=True)
                if not isinstance(link, h5py.ExternalLink):  # a group held in the index itself
                    cps[key].attrs.update(dict(new))
                    continue
                with open_read(self.path.parent / link.filename) as part, self._part("ckpt-" + key) as (pf, rel):
                    part.copy(part[link.path], pf.require_group("checkpoints"), name=key)
                    pf[f"checkpoints/{key}"].attrs.update(dict(new))
                del cps[key]
                cps[key] = h5py.ExternalLink(rel, f"/checkpoints/{key}")
        # the commit files no index points at any more go when the lock is released (_collect_garbage)

    def _old_rows(self, cps: h5py.Group, key: str, rows: CheckpointRows) -> CheckpointRows:
        """Stored rows of ``key`` not in ``rows``, read from its commit file opened read-only (following the
        link from the writable index would open that file for writing, and a kill would leave it flagged)."""
        link = cps.get(key, getlink=True)
        with open_read(self.path.parent / link.filename) as part:
            return self._rows_not_in(part[link.path], key, rows)

    def _rows_not_in(self, old: h5py.Group, key: str, rows: CheckpointRows) -> CheckpointRows:
        old_ids = scenario_ids_of(old)
        new = set(rows.scenario_ids)
        keep = [i for i, s in enumerate(old_ids) if s not in new]
        if set(old["metrics"]) != set(rows.metrics):
            raise EvaluationError(f"{self.path}: stored metrics of {key} differ from this tool's "
                                  f"({sorted(old['metrics'])})")
        sampled = read_sampled_group(old)
        if sampled is not None:
            sampled = sampled.only(rows.scenario_ids, keep=False)
        if (sampled is None) != (rows.sampled is None) and len(keep):
            raise EvaluationError(f"{self.path}: stored rows of {key} and this call's differ in sampled rollouts "
                                  "(--rollouts); results of other settings are never mixed")
        return CheckpointRows(tuple(old_ids[i] for i in keep),
                              {k: np.asarray(old["metrics"][k][()])[keep] for k in rows.metrics},
                              np.asarray(old["ego_traj"][()])[keep], sampled)

    def write_verdict(self, verdict: Mapping[str, Any], root: Mapping[str, Any] | None = None,
                      signals: Mapping[str, Any] | None = None) -> None:
        """Store the selection verdict JSON under ``/verdict`` (one commit), and the signal verdict
        (``signals_json``; removed when None, so it always belongs to the last evaluation)."""
        with self._index() as f:
            if root:
                self._set_root(f, root)
            g = f.require_group("verdict")
            g.attrs["json"] = to_json(verdict)
            if signals is not None:
                g.attrs["signals_json"] = to_json(signals)
            elif "signals_json" in g.attrs:
                del g.attrs["signals_json"]

    def write_skipped(self, skipped: Sequence[Any]) -> None:
        """Store the scenes that could not be used as the ``/skipped`` table (``file, scene_id, reason``).

        Args:
            skipped: objects with those attributes (:class:`scenarios.loading.SkippedScene`); replaces the table.
        """
        with self._index() as f:
            if "skipped" in f:
                del f["skipped"]
            g = f.create_group("skipped")
            for name in SKIPPED_FIELDS:
                g.create_dataset(name, data=np.array([str(getattr(s, name)) for s in skipped], dtype=object),
                                 dtype=STR)

    # --- housekeeping ----------------------------------------------------------------------------------------

    def _referenced(self) -> set[str]:
        """Names of the commit files any link of the published index points into."""
        if not self.path.exists():
            return set()
        with open_read(self.path) as f:
            return {Path(fn).name for grp in ("scenarios", "checkpoints") for fn in external_links(f.get(grp))}

    def _collect_garbage(self) -> None:
        """Delete commit files that no index points at (superseded by a merge, or orphaned by a kill)."""
        self._superseded.clear()
        if not self.parts.is_dir():
            return
        keep = self._referenced()
        for p in self.parts.glob("*.h5"):
            if p.name not in keep:
                p.unlink(missing_ok=True)

    def consolidate(self) -> None:
        """Copy every linked group into one self-contained file at ``path``; remove the sidecar folder.

        Holds the lock (:meth:`lock`; inside an evaluation's session, that session's). Costs a copy of the whole
        file and a read of the copy: run it once, at the end (``sim.evaluate --consolidate``). Every commit file is
        checked first (it opens and holds its linked groups), and the copy before anything is replaced or deleted:
        it holds no link but hard ones, every group and dataset the index reaches (following its links) and no
        other, the same root attributes, and every dataset reads back.

        Raises:
            EvaluationError: another evaluation holds the lock, or a commit file cannot be read, or the copy
                differs (one line; the file and its sidecar are left as they are).
        """
        if not self.path.exists():
            return
        with self.lock():
            tmp = self.path.with_name(f"{TMP_PREFIX}{self.path.name}-{uuid.uuid4().hex[:8]}")
            try:
                with open_read(self.path) as src:
                    broken = self._broken_part(src, ("scenarios", "checkpoints"))
                    if broken:
                        raise EvaluationError(f"{self.path}: not consolidated, nothing deleted: its commit file "
                                              f"{broken[0]} cannot be read ({broken[1]})")
                    try:
                        with h5py.File(tmp, "w", locking=False) as dst:
                            for k, v in src.attrs.items():
                                if k != LAYOUT_ATTR:
                                    dst.attrs[k] = v
                            for name in src:
                                src.copy(src[name], dst, name=name, expand_external=True)
                    except (KeyError, ValueError, RuntimeError) as e:  # h5py's, for a part it could not copy
                        problem = f"the copy failed ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                    else:
                        with open_read(tmp) as dst:
                            try:
                                problem = differs(src, dst, self.path.parent)
                            except (OSError, KeyError, ValueError) as e:  # a part that changed while it was copied
                                problem = f"the check of the copy failed ({str(e).splitlines()[0]})"
                if problem:
                    raise EvaluationError(f"{self.path}: not consolidated, nothing deleted: {problem}")
                _publish(tmp, self.path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            shutil.rmtree(self.parts, ignore_errors=True)

