"""Bundled scenario suites with disjoint splits, and one entry point for every scenario source.

``load_suite("procedural")`` gives the held-out ``test`` split of the procedural suite;
``load_suite("procedural:train")`` or ``load_suite("procedural", "train")`` another split;
``procedural-small`` is a small version for fast checks. Any other spec is a scenario file or a
folder of files in a supported format, read by :func:`scenarios.formats.load_any`.

Splits are disjoint seed ranges (families cycle with the seed, so every split is balanced over
the eight families). Generated suites are cached in memory per process and, when ``cache_dir``
is given, on disk in the project's ``.npz`` format (the file name carries the generator version
and a hash of its source, so a changed generator regenerates instead of reading stale scenes).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from scenarios.scenario import Scenario, ScenarioError

GENERATOR_VERSION = 1
DEFAULT_SPLIT = "test"
DEFAULT_CACHE_DIR = "out/cache"
PREPARED_SUBDIR = "prepared"  # <cache>/prepared: prepared scenes (sim.scene_cache), whatever their source


def prepared_dir(cache_dir: str | None) -> str:
    """The prepared-scene folder inside a ``--scenario-cache`` folder ("" when the cache is off)."""
    return str(Path(cache_dir) / PREPARED_SUBDIR) if cache_dir else ""
"""Where commands keep generated suites on disk (relative to the working directory; '' or None: memory only)."""


class SuiteError(ScenarioError):
    """Unknown suite or split, or a spec that names nothing loadable."""


@dataclass(frozen=True)
class SuiteSpec:
    """A bundled suite: per split, the first seed and the number of scenes."""

    splits: dict[str, tuple[int, int]]
    description: str


SUITES: dict[str, SuiteSpec] = {
    "procedural": SuiteSpec(
        {"train": (0, 1000), "val": (1_000_000, 100), "test": (2_000_000, 200)},
        "eight procedural families; train 1000, val 100, test 200 scenes",
    ),
    "procedural-small": SuiteSpec(
        {"train": (0, 64), "val": (1_000_000, 16), "test": (2_000_000, 32)},
        "the first scenes of each procedural split, for fast checks",
    ),
}

_MEMORY: dict[tuple[str, str], tuple[Scenario, ...]] = {}


def suite_names() -> tuple[str, ...]:
    """Names of the bundled suites."""
    return tuple(SUITES)


def suite_seeds(name: str, split: str = DEFAULT_SPLIT) -> range:
    """Seeds of a bundled suite's split.

    Raises:
        SuiteError: unknown suite or split.
    """
    spec = _spec(name)
    if split not in spec.splits:
        raise SuiteError(f"unknown split {split!r} for suite {name!r}; known: {', '.join(spec.splits)}")
    first, count = spec.splits[split]
    return range(first, first + count)


def _spec(name: str) -> SuiteSpec:
    if name not in SUITES:
        raise SuiteError(f"unknown suite {name!r}; known: {', '.join(SUITES)} (or a scenario file or folder)")
    return SUITES[name]


def parse_spec(spec: str, split: str | None = None) -> tuple[str, str] | None:
    """``"name[:split]"`` -> (name, split) for a bundled suite, None when ``spec`` is not a suite name.

    Raises:
        SuiteError: a bundled name with an unknown split, or two different splits.
    """
    name, _, inline = spec.partition(":")
    if name not in SUITES:
        return None
    if inline and split and inline != split:
        raise SuiteError(f"suite spec {spec!r} names split {inline!r} but split={split!r} was also given")
    chosen = inline or split or DEFAULT_SPLIT
    suite_seeds(name, chosen)
    return name, chosen


def load_suite(spec: str, split: str | None = None, cache_dir: str | os.PathLike | None = None,
               progress: bool = True) -> list[Scenario]:
    """Scenes of a bundled suite split, a scenario file, or a folder of scenario files.

    Args:
        spec: ``procedural``, ``procedural:test``, ``procedural-small:train``..., or a path.
        split: split of a bundled suite (default ``test``); not allowed with a path.
        cache_dir: folder for an on-disk cache of generated suites (e.g. ``out/cache``); None keeps
            the cache in memory only.

    Returns:
        A new list of validated scenes (the scenes themselves are shared, immutable).

    Raises:
        SuiteError: unknown suite name or split, or a path that does not exist.
        ScenarioError: a file that cannot be read (from the format loaders).
    """
    parsed = parse_spec(spec, split)
    if parsed is None:
        path = Path(spec)
        if not path.exists():
            raise SuiteError(
                f"unknown suite {spec!r}; known: {', '.join(SUITES)}, or a scenario file or folder that exists"
            )
        if split is not None:
            raise SuiteError(f"{spec}: split={split!r} applies to bundled suites only, not to files")
        from scenarios.formats import load_any

        return list(load_any(path))
    name, chosen = parsed
    key = (name, chosen)
    if key not in _MEMORY:
        _MEMORY[key] = tuple(_load_or_generate(name, chosen, cache_dir, progress))
    return list(_MEMORY[key])


def _load_or_generate(name: str, split: str, cache_dir: str | os.PathLike | None,
                      progress: bool = True) -> list[Scenario]:
    from scenarios.procedural import generate_suite

    seeds = suite_seeds(name, split)
    if cache_dir is None:
        return generate_suite(seeds, progress=progress and len(seeds) > 100)
    from scenarios.io import load_scenarios, save_scenarios

    path = Path(cache_dir) / f"{name}-{split}-g{GENERATOR_VERSION}-{generator_fingerprint()}.npz"
    if path.is_file():
        try:
            scenes = load_scenarios(path)
            expected = [f"procedural/{s.family}/{seed}" for s, seed in zip(scenes, seeds)]
            if len(scenes) == len(seeds) and [s.id for s in scenes] == expected:
                return scenes
        except ScenarioError:
            pass  # stale or damaged cache: regenerate and overwrite atomically
    scenes = generate_suite(seeds, progress=progress and len(seeds) > 100)
    save_scenarios(path, scenes)
    return scenes


def source_digest(files: Iterable[Path], digits: int = 8) -> str:
    """``digits`` hex digits of a hash of source files (names and bytes, in the given order): the code part of a
    cache key, so that changed code never reads a stale entry."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:digits]


def generator_fingerprint() -> str:
    """8 hex digits of a hash of the generator's source files: a changed generator never reads a stale cache."""
    return source_digest(sorted((Path(__file__).parent / "procedural").glob("*.py")))


def clear_memory_cache() -> None:
    """Forget suites generated in this process."""
    _MEMORY.clear()
