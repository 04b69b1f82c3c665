"""``python -m sim.report RUN_DIR [--out report.html]``: one self-contained HTML report of an evaluated run.

The verdict, the report card, the closed-loop table with intervals, the entropy and metric figures and the
per-type breakdown, in one file with its figures inline (no server): for a paper's appendix or a pull request.
The builder is :mod:`sim.selection.report_html`; the dashboard offers the same file as a download.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("sim.report", "python -m sim.report")

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from scenarios.cli_config import add_dataclass_arguments, dataclass_from_args


@dataclass(frozen=True)
class ReportConfig:
    """Settings of one ``sim.report`` call.

    Attributes:
        run: a run folder evaluated by ``sim.evaluate`` (or its results file).
        out: the HTML file to write (None: ``<run>/report.html``).
    """

    run: str = ""
    out: str | None = field(default=None, metadata={"help": "HTML file to write (default RUN_DIR/report.html)",
                                                    "metavar": "PATH"})


def parse_args(argv: Sequence[str] | None = None) -> ReportConfig:
    """Parse the command line into a :class:`ReportConfig`."""
    p = argparse.ArgumentParser(prog="python -m sim.report", description=__doc__.split("\n")[0])
    p.add_argument("run", metavar="RUN_DIR", help="run folder evaluated by sim.evaluate (or its results file)")
    add_dataclass_arguments(p, ReportConfig, exclude=("run",))
    a = p.parse_args(argv)
    return dataclass_from_args(ReportConfig, a, run=a.run)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the report; one line on success or on any error (exit 2)."""
    from sim.results.errors import ResultsError
    from sim.selection.report_html import write_report

    cfg = parse_args(argv)
    try:
        info = write_report(cfg.run, cfg.out)
    except ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: --out {cfg.out}: cannot write ({e.strerror or e})", file=sys.stderr)
        return 2
    print(f"wrote {info.path} ({info.bytes / 1024:.0f} KiB in {info.seconds:.2f} s)")
    return 0
