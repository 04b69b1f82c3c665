"""``python -m sim.evaluate``: closed-loop evaluation of a run's checkpoints, HDF5 results, verdict.

Example (right after ``python -m training.train --episodes 500``)::

    python -m sim.evaluate --ckpt best_entropy.pt

``best_entropy.pt`` resolves in ``out/latest/``; since it belongs to a run, the run's whole
comparison set is evaluated (``--only`` to evaluate just the given files). Results go to
``<run>/results.h5`` (schema: ``docs/results_schema.md``), a run's other scenario sets to their own file beside
it (``sim.results.identity.run_results_path``); pairs already there are skipped. A results file is one
experiment: a call of another run, set, setting or metric version is refused with the ``--out`` to use.
A thin CLI: the flags are generated from :class:`EvalConfig`; the work is done in :mod:`sim.evaluation`.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("sim.evaluate", "python -m sim.evaluate")

import argparse
import sys
from collections.abc import Sequence

from scenarios.cli_config import OneLineParser, add_dataclass_arguments, dataclass_from_args
from sim.evaluation.candidates import BASELINES
from sim.evaluation.config import EvalConfig
from sim.evaluation.orchestration import run
from sim.results.errors import EvaluationError

__all__ = ["EvalConfig", "main", "parse_args", "run"]


def parse_args(argv: Sequence[str] | None = None) -> EvalConfig:
    """Parse the command line into an :class:`EvalConfig` (``--ckpt`` and ``--baseline`` may repeat)."""
    p = OneLineParser(prog="python -m sim.evaluate", description=__doc__.split("\n")[0])
    add_dataclass_arguments(p, EvalConfig, exclude=("ckpt", "baselines", "signal_names"))
    p.add_argument("--ckpt", action="append", metavar="PATH", default=argparse.SUPPRESS,
                   help=EvalConfig.__dataclass_fields__["ckpt"].metadata["help"] + " (repeatable)")
    p.add_argument("--signal", action="append", metavar="NAME", dest="signal_names", default=argparse.SUPPRESS,
                   help=EvalConfig.__dataclass_fields__["signal_names"].metadata["help"] + " (repeatable)")
    p.add_argument("--baseline", action="append", choices=BASELINES, dest="baselines", default=argparse.SUPPRESS,
                   help="add a baseline row (repeatable)")
    return dataclass_from_args(EvalConfig, p.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: one-line errors on stderr, non-zero exit."""
    from policy.checkpoint import CheckpointError
    from policy.device import DeviceError
    from scenarios.scenario import ScenarioError
    from sim.config import SimError
    from sim.evaluation.plugins import AgentError
    from sim.selection.signals import SignalError

    errors: tuple[type[BaseException], ...] = (EvaluationError, CheckpointError, ScenarioError, SimError, OSError,
                                               DeviceError, AgentError, SignalError)
    try:
        from sim.backends.carla import CarlaError

        errors += (CarlaError,)
    except ImportError:
        pass
    try:
        cfg = parse_args(argv)
    except SystemExit as e:  # --help, or a flag refused with one line
        return e.code if isinstance(e.code, int) else 2
    except errors as e:  # a value the config refuses as a whole (--budget 2.5)
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    try:
        run(cfg)
    except errors as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt:
        print("interrupted: completed checkpoints are saved; run again to resume", file=sys.stderr)
        return 130
    return 0
