"""scenarios.commands: the commands the project prints are pasteable (shell-quoted), and Ctrl-C is one line and 130."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios.commands import INTERRUPTED, command, no_interrupts, quote, run_main


@pytest.fixture
def sigint_restored():
    """run_main installs a SIGINT handler for the process; put pytest's back afterwards."""
    old = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, old)


@pytest.mark.parametrize("path", ["/tmp/x/sp ace/run 1", "it's here", 'a "b" $HOME `x` ;rm', "plain/run-1"])
def test_a_printed_command_splits_back_into_its_arguments(path):
    line = command("python -m training.train", "--resume", path)
    assert shlex.split(line) == ["python", "-m", "training.train", "--resume", path]
    assert shlex.split(quote(path)) == [path]
    assert command("rm -r", path, f"{path}.parts").startswith("rm -r ")


def test_a_path_that_needs_no_quotes_is_printed_as_it_is():
    assert command("python -m sim.evaluate", "--run", "out/run-20260101-s0") == \
        "python -m sim.evaluate --run out/run-20260101-s0"


def _module(tmp_path, monkeypatch, name: str, body: str) -> str:
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_ctrl_c_while_the_module_loads_is_one_line_and_130(tmp_path, monkeypatch, capsys, sigint_restored):
    name = _module(tmp_path, monkeypatch, "slow_cmd", "raise KeyboardInterrupt\n")
    with pytest.raises(SystemExit) as e:
        run_main(name, "python -m slow_cmd")
    assert e.value.code == INTERRUPTED == 130
    assert capsys.readouterr().err == "interrupted while python -m slow_cmd was starting; nothing was written\n"
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # a second Ctrl-C cannot cut the exit short


def test_ctrl_c_that_main_lets_through_is_one_line_and_130(tmp_path, monkeypatch, capsys, sigint_restored):
    name = _module(tmp_path, monkeypatch, "cmd_raises", "def main():\n    raise KeyboardInterrupt\n")
    with pytest.raises(SystemExit) as e:
        run_main(name, "python -m cmd_raises")
    assert e.value.code == 130
    assert capsys.readouterr().err == "interrupted: python -m cmd_raises stopped\n"


def test_main_status_is_the_exit_status_and_the_first_ctrl_c_raises_the_next_are_ignored(
        tmp_path, monkeypatch, capsys, sigint_restored):
    body = ("import os, signal\n"
            "def main():\n"
            "    try:\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "        for _ in range(10**6): pass\n"
            "    except KeyboardInterrupt:\n"
            "        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C: ignored\n"
            "        for _ in range(10**6): pass\n"
            "        return 7\n"
            "    return 0\n")
    name = _module(tmp_path, monkeypatch, "cmd_twice", body)
    with pytest.raises(SystemExit) as e:
        run_main(name, "python -m cmd_twice")
    assert e.value.code == 7


def test_no_interrupts_ignores_ctrl_c_in_the_block_only():
    before = signal.getsignal(signal.SIGINT)
    with no_interrupts():
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10**5):
            pass
    assert signal.getsignal(signal.SIGINT) is before


def test_a_handled_ctrl_c_inside_exec_code_still_exits_with_the_chosen_status(tmp_path):
    """CPython marks a KeyboardInterrupt that left exec'd string code (dataclass and namedtuple methods are built
    that way) as unhandled and kills the process with SIGINT at exit (-2); a command exits 130 all the same."""
    (tmp_path / "execd_cmd.py").write_text(
        "import os, signal, sys\n"
        "if __name__ == '__main__':\n"
        "    from scenarios.commands import run_main\n\n"
        "    run_main('execd_cmd', 'python -m execd_cmd')\n\n"
        "def main():\n"
        "    try:\n"
        "        exec('import os, signal\\nos.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(10**5): pass\\n')\n"
        "    except KeyboardInterrupt:\n"
        "        print('interrupted: handled', file=sys.stderr)\n"
        "        return 130\n"
        "    return 0\n")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "execd_cmd"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{tmp_path}"}, timeout=60)
    assert (proc.returncode, proc.stderr) == (130, "interrupted: handled\n")


def test_a_refused_flag_keeps_its_exit_status(tmp_path, monkeypatch, sigint_restored):
    name = _module(tmp_path, monkeypatch, "cmd_refuses", "def main():\n    raise SystemExit(2)\n")
    with pytest.raises(SystemExit) as e:
        run_main(name, "python -m cmd_refuses")
    assert e.value.code == 2
