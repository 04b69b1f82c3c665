"""The benchmarks' command-line standard, written once and used by every ``python -m benchmarks.*`` command.

Bad input ends a benchmark with ONE line on stderr naming the flag or file and the problem, exit status 2, and no
traceback (as ``python -m sim.evaluate`` and ``python -m training.train`` do):

- flags: :func:`parser` (a :class:`scenarios.cli_config.OneLineParser`) and :func:`flag`, whose help text shows the
  default and the range and whose parser refuses a value outside the range before anything runs
  (``python -m benchmarks.X: error: --repeats must be >= 1, got 0 (see --help)``);
- the project's own errors raised once the benchmark runs (a device, checkpoint, suite, scenario, results file or
  path it cannot use): :func:`one_line_errors` wraps ``main`` and prints ``error: <message>`` instead of the
  traceback, then exits 2 (``SystemExit(2)``, as the parser does). Any other exception is a bug and keeps its
  traceback.

Imports neither torch nor h5py (``benchmarks.fixture_runs`` needs no torch): the project's error classes are looked up
in ``sys.modules`` when an exception arrives; a module that was never imported cannot have raised its error.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from scenarios.cli_config import SEED, UNIT, OneLineParser, Range, above, at_least, range_type

__all__ = ["SEED", "UNIT", "BenchError", "above", "at_least", "blame", "check_dir", "check_file", "flag",
           "message", "one_line_errors", "parser", "project_errors"]

F = TypeVar("F", bound=Callable[..., Any])


class BenchError(ValueError):
    """A benchmark's own refusal of its input; the message is one line naming the flag or file."""


PROJECT_ERRORS = (
    ("policy.device", "DeviceError"),
    ("policy.checkpoint", "CheckpointError"),
    ("sim.config", "SimError"),
    ("scenarios.scenario", "ScenarioError"),  # SuiteError too
    ("sim.results.errors", "EvaluationError"),  # ResultsError too
    ("training.config", "TrainError"),
    ("sim.evaluation.plugins", "AgentError"),
    ("sim.selection.signals", "SignalError"),
    ("scenarios.cli_config", "RangeError"),
)
"""(module, class) of the errors that mean bad input, each message one line naming what it refuses."""


def project_errors() -> tuple[type[BaseException], ...]:
    """:class:`BenchError`, ``OSError`` (a path that cannot be read or written) and the :data:`PROJECT_ERRORS` of
    every module imported so far."""
    found: list[type[BaseException]] = [BenchError, OSError]
    for module, name in PROJECT_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def message(e: BaseException) -> str:
    """The error as one line (``OSError``: ``PATH: reason``)."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split()) or type(e).__name__


def one_line_errors(main: F) -> F:
    """Decorate a benchmark's ``main``: a :func:`project_errors` exception prints ``error: <message>`` (one line) on
    stderr and exits with status 2 (``SystemExit(2)``); other exceptions propagate with their traceback."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except project_errors() as e:
            print("error: " + message(e), file=sys.stderr, flush=True)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def blame(label: str) -> Iterator[None]:
    """Prefix a project error raised inside the block with ``label`` (``--scenarios nope``, a file name) unless its
    message already starts with it, re-raised as :class:`BenchError`."""
    try:
        yield
    except project_errors() as e:
        text = message(e)
        if text.startswith(label.split()[0]):
            raise
        raise BenchError(f"{label}: {text}") from e


def parser(prog: str, description: str) -> OneLineParser:
    """The benchmark's argument parser: errors are one line (``PROG: error: ... (see --help)``), exit status 2."""
    return OneLineParser(prog=prog, description=description)


def _shown(default: Any) -> str:
    if isinstance(default, (list, tuple)):
        return " ".join(map(str, default)) if default else "none"
    return str(default)


def flag(p: argparse.ArgumentParser, name: str, help: str, *, default: Any = None, type: type | None = None,
         range: Range | None = None, **kwargs: Any) -> argparse.Action:
    """``p.add_argument(name, ...)`` with ``(default: X; range: R)`` after ``help``; an ``int`` or ``float`` flag
    needs a ``range`` (the parser refuses a value outside it, naming the flag). ``default`` None is not shown."""
    notes = [] if default is None or isinstance(default, bool) else [f"default: {_shown(default)}"]
    if range is not None:
        if type not in (int, float):
            raise TypeError(f"{name}: a range needs type=int or float")
        notes.append(f"range: {range.text()}")
        kwargs["type"] = range_type(type, range)
    elif type in (int, float):
        raise TypeError(f"{name}: a numeric flag needs a range")
    elif type is not None:
        kwargs["type"] = type
    text = help + (f" ({'; '.join(notes)})" if notes else "")
    if default is not None:
        kwargs["default"] = default
    return p.add_argument(name, help=text.replace("%", "%%"), **kwargs)


def check_file(label: str, path: str | Path, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a :class:`Path` if it is an existing file (with one of ``suffixes`` when given), else
    :class:`BenchError` naming ``label`` (a flag, or empty for a positional argument) and the path."""
    p = Path(path)
    where = f"{label} {path}" if label else str(path)
    if not p.exists():
        raise BenchError(f"{where}: no such file")
    if not p.is_file():
        raise BenchError(f"{where}: not a file")
    if suffixes and p.suffix.lower() not in suffixes:
        raise BenchError(f"{where}: expected a {' or '.join(suffixes)} file")
    return p


def check_dir(label: str, path: str | Path, must_exist: bool = True) -> Path:
    """``path`` as a :class:`Path` if it is a folder (or, with ``must_exist`` False, absent: to be made), else
    :class:`BenchError` naming ``label`` and the path."""
    p = Path(path)
    where = f"{label} {path}" if label else str(path)
    if p.exists() and not p.is_dir():
        raise BenchError(f"{where}: not a folder")
    if must_exist and not p.exists():
        raise BenchError(f"{where}: no such folder")
    return p
