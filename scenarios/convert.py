"""Convert recorded scenes (any supported format, file or folder) into the project's ``.npz`` format.

Usage::

    python -m scenarios.convert SRC DST.npz [--window STEPS --stride STEPS --init-step N --ego ID] [--force]

Reads everything first, writes ``DST`` atomically only when every file imported, then
prints a summary table and a note per repaired or skipped element (the importers' warnings). An existing ``DST``
is kept unless ``--force``. Errors are one line on stderr and a non-zero exit; nothing is written.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("scenarios.convert", "python -m scenarios.convert")

import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from scenarios.formats import (
    SUFFIXES,
    ImportOptions,
    add_import_arguments,
    detect_format,
    import_options_from_args,
    load_file,
    scenario_files,
)
from scenarios.importers.repair import ImportNote
from scenarios.io import SUFFIX, save_scenarios
from scenarios.scenario import Scenario, ScenarioError


@dataclass(frozen=True)
class ConvertConfig:
    """Command-line configuration of ``python -m scenarios.convert``."""

    src: Path
    dst: Path
    options: ImportOptions
    force: bool = False


def parse_args(argv: list[str] | None = None) -> ConvertConfig:
    """Parse the command line into a :class:`ConvertConfig` (exits on bad usage)."""
    p = argparse.ArgumentParser(prog="python -m scenarios.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help=f"a scenario file ({', '.join(SUFFIXES)}) or a folder of them")
    p.add_argument("dst", type=Path, help=f"output file ({SUFFIX})")
    p.add_argument("--force", action="store_true", help="replace DST if it exists (default: keep it, and stop)")
    add_import_arguments(p)
    a = p.parse_args(argv)
    return ConvertConfig(src=a.src, dst=a.dst, options=import_options_from_args(a), force=a.force)


def summary_rows(scenes: list[Scenario]) -> list[tuple[str, ...]]:
    """One row per scene: id, source, agents, steps, seconds, ego path length (m), drivable polygons."""
    rows = []
    for s in scenes:
        path = float(np.hypot(*np.diff(s.ego_log[:, :2].astype(np.float64), axis=0).T).sum())
        rows.append(
            (s.id, s.source, str(s.num_agents), str(s.num_steps), f"{(s.num_steps - 1) * s.dt:.1f}", f"{path:.1f}",
             str(len(s.map.drivable)))
        )
    return rows


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Plain-text table with aligned columns."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


def convert(cfg: ConvertConfig, notes: list[str] | None = None) -> list[Scenario]:
    """Import ``cfg.src`` and write ``cfg.dst``; return the scenes written.

    Args:
        notes: collects one line per importer note (repaired samples, skipped map elements, a cut ego track).

    Raises:
        ScenarioError: bad or existing destination (without ``force``), or any source file that fails (nothing is
            written).
    """
    notes = [] if notes is None else notes
    if cfg.dst.suffix.lower() != SUFFIX:
        raise ScenarioError(f"{cfg.dst}: output must be a {SUFFIX} file")
    if cfg.dst.is_dir():
        raise ScenarioError(f"{cfg.dst}: is a folder; give an output file name ending in {SUFFIX}")
    if cfg.dst.exists() and not cfg.force:
        raise ScenarioError(f"{cfg.dst}: exists; give --force to replace it, or another output file")
    files = scenario_files(cfg.src)
    scenes: list[Scenario] = []
    for f in tqdm(files, desc="importing", unit="file", disable=len(files) < 2, file=sys.stderr):
        with warnings.catch_warnings(record=True) as caught:  # the importers' notes: one line each, after the bar
            warnings.simplefilter("always", ImportNote)
            scenes.extend(load_file(f, cfg.options))
        notes.extend(f"note: {f}: {w.message}" for w in caught if issubclass(w.category, ImportNote))
    ids = [s.id for s in scenes]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ScenarioError(f"{cfg.src}: duplicate scene ids {dup[:3]} (the same scene given twice?)")
    try:
        save_scenarios(cfg.dst, scenes)
    except OSError as e:
        raise ScenarioError(f"{cfg.dst}: cannot write ({e.strerror or e})") from None
    return scenes


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    notes: list[str] = []
    try:
        cfg = parse_args(argv)
        scenes = convert(cfg, notes)
    except ScenarioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    header = ("id", "source", "agents", "steps", "seconds", "ego path m", "drivable polys")
    print(format_table(header, summary_rows(scenes)))
    for line in notes:
        print(line, file=sys.stderr)
    formats = sorted({detect_format(f) for f in scenario_files(cfg.src)})
    print(f"wrote {len(scenes)} scenes from {cfg.src} ({', '.join(formats)}) to {cfg.dst}")
    return 0
