"""``python -m sim.across RUN_DIR [RUN_DIR ...]``: the verdict across seeds (independent training runs).

Example (three seeds, each trained and evaluated the same way)::

    python -m sim.across out/seed0 out/seed1 out/seed2 --metric score --json across.json

Reads each run's ``results.h5``, judges it by ``--metric`` (the stored verdict, or one recomputed from the
stored per-scenario rows when it was judged by another metric) and prints, per selection rule, the mean
regret over seeds with a seed-bootstrap interval, how often it picks the best checkpoint and its mean rank
(:mod:`sim.selection.across`). Runs evaluated on other scenes or settings, or partially, are refused with one
line. A thin CLI: loading is :mod:`sim.selection.across_data`, the math :mod:`sim.selection.across`.

``--compare-traffic`` compares one run under two models of the other traffic instead
(:mod:`sim.selection.traffic_compare`)::

    python -m sim.evaluate --run out/seed0                 # -> out/seed0/results.h5 (logged agents)
    python -m sim.evaluate --run out/seed0 --agents idm    # -> out/seed0/results.agents-idm.h5
    python -m sim.across out/seed0 --compare-traffic       # or: ... results.h5 results.agents-idm.h5 --compare-traffic

and prints both rankings side by side, whether the pick changes, their rank correlation and each rule's regret
under both.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("sim.across", "python -m sim.across")

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scenarios.cli_config import SEED, OneLineParser, add_dataclass_arguments, at_least, dataclass_from_args
from scenarios.commands import command
from sim.metrics.catalogue import JUDGED_METRICS


@dataclass(frozen=True)
class AcrossConfig:
    """Settings of one ``sim.across`` call.

    Attributes:
        runs: run folders (or results files). metric: what defines the best checkpoint.
        json: where to write ``AcrossVerdict.to_json()`` (None: nowhere). n_resamples, seed: seed bootstrap.
    """

    runs: tuple[str, ...] = ()
    metric: str = field(default="score", metadata={"help": "metric that defines the best checkpoint",
                                                   "choices": JUDGED_METRICS})
    json: str | None = field(default=None, metadata={"help": "also write the verdict as JSON", "metavar": "PATH"})
    n_resamples: int = field(default=9999, metadata={"help": "seed bootstrap resamples",
                                                     "range": at_least(1, 1_000_000)})
    seed: int = field(default=0, metadata={"help": "bootstrap seed", "range": SEED})
    compare_traffic: bool = field(default=False, metadata={
        "help": "compare one run's rankings under two traffic models: give its two results files that differ only "
                "in --agents (results.h5 results.agents-idm.h5), or the run folder"})


def parse_args(argv: Sequence[str] | None = None) -> AcrossConfig:
    """Parse the command line into an :class:`AcrossConfig` (flags generated from its fields)."""
    p = OneLineParser(prog="python -m sim.across", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders evaluated by sim.evaluate")
    add_dataclass_arguments(p, AcrossConfig, exclude=("runs",))
    a = p.parse_args(argv)
    return dataclass_from_args(AcrossConfig, a, runs=tuple(a.runs))


def run(cfg: AcrossConfig):
    """Load the runs, compare them, print the table, write the JSON. Returns the :class:`AcrossVerdict`."""
    from sim.selection.across import compare_runs, format_table
    from sim.selection.across_data import labels, load_seed

    _check_json(cfg.json)
    if cfg.compare_traffic:
        return _traffic(cfg)
    seeds = [load_seed(r, cfg.metric, label) for r, label in zip(cfg.runs, labels(cfg.runs), strict=True)]
    verdict = compare_runs(seeds, n_resamples=cfg.n_resamples, seed=cfg.seed)
    print("distinct policies per run: " + ", ".join(f"{s.run} {s.n_checkpoints}" for s in seeds))
    print(format_table(verdict))
    if cfg.json:
        from sim.results.schema import to_json

        out = Path(cfg.json)
        out.write_text(json.dumps(json.loads(to_json(verdict.to_json())), indent=2) + "\n")
        print(f"JSON: {out}")
    return verdict


def _check_json(path: str | None) -> None:
    """Refuse a ``--json`` path that cannot be written, before any run is read.

    Raises:
        AcrossError: the path is a folder, or its folder does not exist.
    """
    from sim.selection.across import AcrossError

    if not path:
        return
    p = Path(path)
    if p.is_dir():
        raise AcrossError(f"--json {path}: is a folder; give a file name (e.g. {p / 'across.json'})")
    if not p.parent.is_dir():
        raise AcrossError(f"--json {path}: folder {p.parent} does not exist")


def _traffic(cfg: AcrossConfig):
    """``--compare-traffic``: the side-by-side rankings (:func:`sim.selection.traffic_compare.load_traffic`)."""
    from sim.selection.across import AcrossError
    from sim.selection.traffic_compare import format_traffic, load_traffic, traffic_pair

    if len(cfg.runs) == 1 and Path(cfg.runs[0]).is_dir():
        pair = traffic_pair(cfg.runs[0])
        if pair is None:
            raise AcrossError(f"{cfg.runs[0]}: no results file beside results.h5 that differs only in --agents; "
                              "evaluate it with the other model: "
                              f"{command('python -m sim.evaluate', '--run', cfg.runs[0], '--agents', 'idm')}")
    elif len(cfg.runs) == 2:
        folders = [r for r in cfg.runs if Path(r).is_dir()]
        if folders:
            raise AcrossError(f"--compare-traffic compares one run under two traffic models: give one run folder "
                              f"or two results files, not {' and '.join(cfg.runs)} ({folders[0]} is a folder)")
        pair = (Path(cfg.runs[0]), Path(cfg.runs[1]))
    else:
        raise AcrossError(f"--compare-traffic takes one run folder or its two results files, got {len(cfg.runs)} "
                          "paths")
    cmp = load_traffic(pair[0], pair[1], cfg.metric)
    print(format_traffic(cmp))
    if cfg.json:
        from sim.results.schema import to_json

        out = Path(cfg.json)
        out.write_text(json.dumps({"traffic": json.loads(to_json(cmp.to_json()))}, indent=2) + "\n")
        print(f"JSON: {out}")
    return cmp


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: one-line errors on stderr, exit 2."""
    from sim.results.errors import EvaluationError
    from sim.selection.across import AcrossError

    cfg = parse_args(argv)
    try:
        run(cfg)
    except (AcrossError, EvaluationError, OSError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    return 0
