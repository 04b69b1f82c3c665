"""Load a scenario source for a sweep: unusable scenes are skipped with a one-line reason, never fatal.

``load_scenes(spec)`` is what every command that takes ``--scenarios`` calls (training,
evaluation, the data report). A bundled suite loads as a whole; a file or a folder loads file by
file, and a file that cannot be read (parse error, no ego valid long enough, NaNs, ...) becomes
one :class:`SkippedScene` instead of aborting the sweep; a file holding several scenes (a project
``.npz``, windows of a recording) loses only its unusable scenes. ``strict=True`` turns the first skip into
a :class:`~scenarios.scenario.ScenarioError` (``--strict``). A project ``.npz`` of version 3 holding more scenes
than the caller's ``window`` is streamed (:class:`scenarios.scene_file.SceneFile`: scenes decoded when asked for,
none held).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scenarios.importers.repair import ImportNote
from scenarios.scenario import Scenario, ScenarioError


@dataclass(frozen=True)
class SkippedScene:
    """A scene (or a whole file) that could not be used.

    Attributes:
        file: path of the source file as given (or the suite spec).
        scene_id: the scene's id when known, else "" (the whole file was unreadable).
        reason: one line saying why.
    """

    file: str
    scene_id: str
    reason: str

    def detail(self) -> str:
        """``file[:scene]: reason``: what was skipped and why (a list under a "skipped" heading)."""
        where = f"{self.file}:{self.scene_id}" if self.scene_id else self.file
        return f"{where}: {self.reason}"

    def line(self) -> str:
        """``skipped file[:scene]: reason`` for logs and summaries."""
        return f"skipped {self.detail()}"


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_scenes` produced.

    Attributes:
        scenes: the usable, validated scenes in source order: a list, or a streamed
            :class:`~scenarios.scene_file.SceneFile`.
        skipped: one entry per unusable file or scene.
        notes: one line per file whose scenes import with parts left out (map elements without usable
            points, recorded ego driving beyond a gap in its track, ...): ``file: what was left out``.
        files: the file each scene came from (parallel to ``scenes``; the suite spec for a bundled suite).
    """

    scenes: Sequence[Scenario]
    skipped: list[SkippedScene] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def duplicate_ids(ids: Sequence[str], files: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(scene id, file of its first occurrence, file of the next)`` for every repeated id, in order.

    Results are keyed by scene id, so two scenes with one id cannot both be evaluated (``sim.evaluate``
    evaluates the first and skips the others, or stops with ``--strict``; ``scenarios.check`` flags them).
    """
    return [(ids[i], files[j], files[i]) for j, i in _repeats(ids, range(len(ids)))]


def _repeats(ids: Sequence[str], idx: Sequence[int]) -> list[tuple[int, int]]:
    """``(first position, repeat position)`` of every position in ``idx`` whose id an earlier one in ``idx`` has."""
    first: dict[str, int] = {}
    return [(j, i) for i in idx if (j := first.setdefault(ids[i], i)) != i]


def first_of_each_id(ids: Sequence[str], files: Sequence[str], idx: Sequence[int] | None = None,
                     used_as: str = "the first is used") -> tuple[list[int], list[SkippedScene]]:
    """Positions ``idx`` (default: all) without the scenes whose id an earlier one has, and those as skipped scenes
    naming both files: a repeated id is one bad scene (results and splits are keyed by scene id).

    Args:
        ids, files: each scene's id and source file ("" when unknown). idx: positions to keep from, in order.
        used_as: what happens to the first of a repeated id, for the skip reason.

    Returns:
        (kept positions in order, one :class:`SkippedScene` per repeat).
    """
    files = list(files) or [""] * len(ids)
    idx = range(len(ids)) if idx is None else idx
    pairs = _repeats(ids, idx)
    dropped = {i for _, i in pairs}
    repeated = [SkippedScene(files[i], ids[i], f"{duplicate_line((ids[i], files[j], files[i]))}; {used_as} (scenes "
                                               "are keyed by id: rename one to use both)") for j, i in pairs]
    return [i for i in idx if i not in dropped], repeated


def duplicate_line(dup: tuple[str, str, str]) -> str:
    """One line naming a repeated scene id and both files it is in."""
    sid, a, b = dup
    where = f"twice in {a}" if a == b else f"in both {a} and {b}"
    return f"scene id {sid!r} is {where}"


def load_scenes(spec: str | os.PathLike, *, split: str | None = None, cache_dir: str | os.PathLike | None = None,
                options=None, strict: bool = False, progress: bool = True, window: int | None = None) -> LoadReport:
    """Scenes of a bundled suite split, a scenario file or a folder, skipping what cannot be used.

    Args:
        spec: suite name (``procedural:test``), a scenario file, or a folder of files.
        split: split of a bundled suite (see :func:`scenarios.suites.load_suite`).
        cache_dir: on-disk cache for generated suites.
        options: :class:`scenarios.formats.ImportOptions` for recorded sources.
        strict: raise on the first skip instead of recording it.
        progress: show the generation bar of a bundled suite (``--no-progress`` silences it).
        window: scenes the caller holds at once (``sim.evaluate --scene-window``; None: any number). A version-3
            project file of more scenes is returned as a :class:`~scenarios.scene_file.SceneFile` that keeps the
            decoded blocks of about ``window`` scenes per thread (:func:`~scenarios.scene_file.blocks_for`).

    Returns:
        A :class:`LoadReport`.

    Raises:
        SuiteError: unknown suite or a path that does not exist (nothing to skip: the spec is wrong).
        ScenarioError: with ``strict``, the first unusable file or scene; also when nothing at all is usable.
    """
    from scenarios.suites import load_suite, parse_spec

    spec = str(spec)
    if parse_spec(spec, split) is not None:
        scenes = load_suite(spec, split, cache_dir=cache_dir, progress=progress)
        return LoadReport(scenes, [], files=[spec] * len(scenes))
    if split is not None:
        from scenarios.suites import SuiteError

        raise SuiteError(f"{spec}: split={split!r} applies to bundled suites only, not to files")
    from scenarios.formats import load_file, scenario_files

    path = Path(spec)
    if not path.exists():
        from scenarios.suites import SuiteError

        raise SuiteError(f"unknown suite {spec!r}; not a bundled suite, nor a scenario file or folder that exists")
    streamed = _streamed(path, window, strict) if window else None
    if streamed is not None:
        return streamed
    scenes: list[Scenario] = []
    skipped: list[SkippedScene] = []
    notes: list[str] = []
    files: list[str] = []
    for f in scenario_files(path):
        try:
            inner: list[tuple[str, str]] = []
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ImportNote)
                got = load_file(f, options, skipped=inner)
            scenes.extend(got)
            files.extend([str(f)] * len(got))
            notes.extend(f"{f}: {w.message}" for w in caught if issubclass(w.category, ImportNote))
            for scene_id, reason in inner:
                item = SkippedScene(str(f), scene_id, reason)
                if strict:
                    raise ScenarioError(f"{item.line()} (--strict)")
                skipped.append(item)
        except ScenarioError as e:
            if strict and str(e).endswith("(--strict)"):
                raise
            msg = str(e)
            prefix = f"{f}: "
            item = SkippedScene(str(f), "", msg[len(prefix):] if msg.startswith(prefix) else msg)
            if strict:
                raise ScenarioError(f"{item.line()} (--strict)") from None
            skipped.append(item)
    if not scenes:
        reasons = "; ".join(s.line() for s in skipped[:3])
        raise ScenarioError(f"{spec}: no usable scene ({reasons})")
    return LoadReport(scenes, skipped, notes, files)


def streams(version: int, count: int, window: int | None) -> bool:
    """Whether :func:`load_scenes` streams a project file of format ``version`` holding ``count`` scenes for a
    caller that holds ``window`` scenes at once (None or 0: any number): version 3 and more scenes than the window."""
    return bool(window) and version >= 3 and count > window


def _streamed(path: Path, window: int, strict: bool) -> LoadReport | None:
    """The report of a version-3 project file of more than ``window`` scenes, streamed; None for any other path (and
    for a file that cannot be indexed: the whole-file path reports it as usual)."""
    import numpy as np

    from scenarios.io import SUFFIX, check_header
    from scenarios.scene_file import SceneFile, blocks_for

    if not path.is_file() or path.suffix != SUFFIX:
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            version, count = check_header(z)
        if not streams(version, count, window):
            return None
        inner: list[tuple[str, str]] = []
        scenes = SceneFile.open(path, inner, cache_blocks=blocks_for(window))
    except Exception:  # noqa: BLE001 - any unreadable file: the whole-file path names the problem
        return None
    skipped = [SkippedScene(str(path), sid, reason) for sid, reason in inner]
    if strict and skipped:
        raise ScenarioError(f"{skipped[0].line()} (--strict)")
    return LoadReport(scenes, skipped, [], [str(path)] * len(scenes))
