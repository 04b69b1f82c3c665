"""What every ``python -m`` command of the project shares: Ctrl-C, and the command lines it prints.

- :func:`run_main` is each command's ``__main__`` guard, at the top of its module, before the module's heavy
  imports (torch, scipy: seconds)::

      if __name__ == "__main__":
          from scenarios.commands import run_main

          run_main("training.train", "python -m training.train")

  It imports the module under its own name and exits with its ``main()``'s status. Ctrl-C while the module loads
  prints one line and exits 130 (no traceback). The first Ctrl-C raises ``KeyboardInterrupt``; later ones are
  ignored, so the command's cleanup (removing a half-made run), its one-line message and the interpreter's exit
  all finish: the status is 130, never death by SIGINT (a second Ctrl-C while Python shuts down would otherwise
  kill it: CPython restores the default SIGINT action first). Ctrl-\\ (SIGQUIT) still stops a command at once.
- :func:`command` and :func:`quote` write a command for the user to paste: each argument shell-quoted, so a path
  with spaces or quotes stays one argument.

Standard library only (it is imported before anything else of a command).
"""

from __future__ import annotations

import contextlib
import importlib
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT, as shells report it)."""


def quote(arg: object) -> str:
    """``arg`` (a path, a flag value) as one shell word: unchanged when it needs no quoting, else single-quoted."""
    return shlex.quote(str(arg))


def command(prog: str, *args: object) -> str:
    """A command line for the user to paste: ``prog`` as it is (``python -m training.train``), then each argument
    shell-quoted (:func:`quote`)."""
    return " ".join([prog, *(quote(a) for a in args)])


def _first_interrupt(signum: int, frame: Any) -> None:
    """SIGINT handler of a command: the first Ctrl-C raises ``KeyboardInterrupt``, later ones are ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


@contextlib.contextmanager
def no_interrupts() -> Iterator[None]:
    """Ignore Ctrl-C in the block: a cleanup that must finish (removing a run that failed before its first
    checkpoint). The previous handler is restored afterwards; off the main thread (where no signal arrives) a
    no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        if old is not None:  # None: a handler not set from Python; leave SIGINT ignored rather than guess
            signal.signal(signal.SIGINT, old)


def _exit(status: Any) -> NoReturn:
    """``sys.exit(status)``, with the status this process chose even after a Ctrl-C it handled.

    CPython marks a ``KeyboardInterrupt`` that left code run by ``exec``/``eval`` of a string (``dataclasses`` and
    ``namedtuple`` build their methods that way, at import and later) as unhandled, for good, and at exit kills the
    process with SIGINT although the program caught it (exit status -2, not 130). Running a string through
    ``exec`` clears that mark (``run_eval_code_obj`` resets it before it runs the code).
    """
    exec("")
    sys.exit(status)


def exit_interrupted(message: str) -> NoReturn:
    """Print ``message`` (one line) on stderr and exit with status 130, ignoring any further Ctrl-C."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(message, file=sys.stderr, flush=True)
    _exit(INTERRUPTED)


def run_main(module: str, prog: str) -> NoReturn:
    """Run ``python -m <module>``: import ``module`` and exit with the status its ``main()`` returns.

    Ctrl-C while ``module`` is imported, or one that ``main()`` lets through, prints one line and exits 130;
    after the first Ctrl-C the others are ignored (see the module's docstring).
    """
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when started with SIGINT ignored
        signal.signal(signal.SIGINT, _first_interrupt)
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        exit_interrupted(f"interrupted while {prog} was starting; nothing was written")
    try:
        status = main()
    except KeyboardInterrupt:  # a command without a message of its own for Ctrl-C
        exit_interrupted(f"interrupted: {prog} stopped")
    except SystemExit as e:  # --help, a refused flag
        status = e.code
    _exit(status)
