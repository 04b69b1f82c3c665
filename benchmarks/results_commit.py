"""Benchmark: time of one results commit against the size of what the results file already holds.

``python -m benchmarks.results_commit [--sizes-mb 50 500 1500]`` fills a results file (untimed) with
checkpoints of large trajectories until it holds each size in turn, then times ``--repeats`` commits of one
typical checkpoint (``--scenes`` scenes x 91 steps; fsync included, the filler synced first) through
:class:`sim.results.store.ResultsWriter` and prints one JSON line: ``sizes_mb`` (held before the timed
commits), ``commit_s`` (median per size),
``max_over_min`` (flat: close to 1) and ``held_bytes``.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("benchmarks.results_commit", "python -m benchmarks.results_commit")

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import cli
from sim.results.schema import CheckpointRows, SceneRecord, parts_dir
from sim.results.store import ResultsWriter

METRICS = ("ade", "fde", "collision", "score")
ROOT = {"backend": "kinematic", "suite": "benchmark", "config": "{}", "run_dir": ""}


def _scene(i: int, t: int = 91) -> SceneRecord:
    xy = np.stack([np.arange(t, dtype=np.float32), np.zeros(t, np.float32), np.zeros(t, np.float32)], -1)
    return SceneRecord(id=f"s{i}", source="benchmark", family="straight", tags=(), dt=0.1, init_step=10,
                       num_steps=t, log_ego=xy, agents=np.zeros((2, t, 5), np.float32), valid=np.ones((2, t), bool),
                       agent_type=np.zeros(2, np.int8), route=xy[:, :2], map={})


def _rows(ids: list[str], t: int, value: float) -> CheckpointRows:
    n = len(ids)
    return CheckpointRows(tuple(ids), {m: np.full(n, value) for m in METRICS}, np.full((n, t, 4), value, np.float32))


def held_bytes(path: Path) -> int:
    """Bytes of the results file and its sidecar folder."""
    return path.stat().st_size + sum(p.stat().st_size for p in parts_dir(path).glob("*.h5"))


@cli.one_line_errors
def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print the JSON line (bad input: one line on stderr, exit status 2)."""
    ap = cli.parser("python -m benchmarks.results_commit", __doc__.splitlines()[0])
    cli.flag(ap, "--sizes-mb", "sizes (MB) the file holds before each size's timed commits", nargs="+",
             default=[50.0, 500.0, 1500.0], type=float, range=cli.above(0), metavar="MB")
    cli.flag(ap, "--scenes", "scenes per timed commit", default=100, type=int, range=cli.at_least(1))
    cli.flag(ap, "--repeats", "timed commits per size (the median is reported)", default=5, type=int,
             range=cli.at_least(1))
    cli.flag(ap, "--dir", "existing folder for the file (default: a temporary folder)")
    a = ap.parse_args(argv)
    if a.dir is not None and not Path(a.dir).is_dir():
        ap.error(f"--dir {a.dir}: {'not a folder' if Path(a.dir).exists() else 'no such folder'}")
    with tempfile.TemporaryDirectory(prefix="results_commit_", dir=a.dir) as tmp:
        path = Path(tmp) / "results.h5"
        w = ResultsWriter(path)
        scenes = [_scene(i) for i in range(a.scenes)]
        ids = [s.id for s in scenes]
        w.prepare(scenes, ROOT)
        filler = _rows(ids, 8000, 1.0)  # about 13 MB per filler checkpoint
        sizes, times = [], []
        k = 0
        for mb in sorted(a.sizes_mb):
            while held_bytes(path) < mb * 1e6:
                w.commit(f"fill{k:05d}", {"name": f"fill{k}", "kind": "checkpoint"}, filler, scenes, ROOT)
                k += 1
            os.sync()  # untimed: the filler's dirty pages must not land in a timed commit's fsync
            time.sleep(1.0)
            sizes.append(round(held_bytes(path) / 1e6, 1))
            runs = []
            for r in range(a.repeats):
                rows = _rows(ids, 91, float(r))
                t0 = time.perf_counter()
                w.commit(f"timed{len(sizes)}-{r}", {"name": "timed", "kind": "checkpoint"}, rows, scenes, ROOT)
                runs.append(time.perf_counter() - t0)
            times.append(round(statistics.median(runs), 4))
        res = {"sizes_mb": sizes, "commit_s": times, "max_over_min": round(max(times) / min(times), 3),
               "scenes_per_commit": a.scenes, "held_bytes": held_bytes(path)}
    print(json.dumps(res))
    return res
