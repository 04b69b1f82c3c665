"""Import speed of the recorded-scene importers on the real samples.

``python -m benchmarks.import_speed [--data ../shared/data] [--min-seconds 2]`` imports every
sample of each format (ScenarioNet pickles, Waymo JSON, CommonRoad XML) repeatedly for at
least ``--min-seconds`` and prints one JSON line per format:
``{"format", "scenes_per_s", "scenes_per_cpu_s", "files", "scenes", "seconds"}`` (whole-scene
imports, validation, drivable area and route included; one thread). ``scenes_per_s`` is wall
clock; ``scenes_per_cpu_s`` divides by this process's CPU time, which other jobs sharing the
cores disturb less.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("benchmarks.import_speed", "python -m benchmarks.import_speed")

import json
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import cli
from scenarios.formats import ImportOptions, load_file, scenario_files

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("scenarionet", "waymo_json", "commonroad")


@dataclass(frozen=True)
class BenchConfig:
    """Command-line configuration."""

    data: Path
    min_seconds: float


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    """Parse the command line."""
    p = cli.parser("python -m benchmarks.import_speed", __doc__.split("\n\n")[0])
    cli.flag(p, "--data", f"folder of sample folders ({', '.join(FORMATS)}; default: ../shared/data)",
             type=Path, default=ROOT / ".." / "shared" / "data")
    cli.flag(p, "--min-seconds", "time spent per format, after one warm-up pass", default=2.0, type=float,
             range=cli.above(0))
    a = p.parse_args(argv)
    if not a.data.is_dir():
        p.error(f"--data {a.data}: {'not a folder' if a.data.exists() else 'no such folder'}")
    return BenchConfig(data=a.data.resolve(), min_seconds=a.min_seconds)


def measure(files: list[Path], min_seconds: float) -> dict[str, float]:
    """Import ``files`` round-robin until ``min_seconds`` have passed (after one warm-up pass).

    Returns:
        ``{"scenes_per_s", "scenes_per_cpu_s", "scenes", "seconds"}``.
    """
    opts = ImportOptions()
    for f in files:  # warm-up: imports, caches of the file system
        load_file(f, opts)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        for f in files:
            n += len(load_file(f, opts))
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            cpu = time.process_time() - c0
            return {"scenes_per_s": n / elapsed, "scenes_per_cpu_s": n / cpu, "scenes": n, "seconds": elapsed}


@cli.one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (bad input: one line on stderr, exit status 2)."""
    cfg = parse_args(argv)
    for fmt in FORMATS:
        with cli.blame(f"--data {cfg.data}"):
            files = scenario_files(cfg.data / fmt)
        r = measure(files, cfg.min_seconds)
        line = {"format": fmt, "scenes_per_s": round(r["scenes_per_s"], 2),
                "scenes_per_cpu_s": round(r["scenes_per_cpu_s"], 2), "files": len(files),
                "scenes": r["scenes"], "seconds": round(r["seconds"], 2)}
        print(json.dumps(line), flush=True)
    return 0
