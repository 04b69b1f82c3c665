"""Every ``python -m`` command of the project starts through scenarios.commands.run_main, so Ctrl-C while torch or
scipy loads (the first seconds) is one line and exit status 130, not a traceback."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("training", "sim", "scenarios", "benchmarks")


def _is_main_guard(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"


def _commands() -> list[Path]:
    """The modules with a top-level ``if __name__ == "__main__":``."""
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                  if any(_is_main_guard(n) for n in ast.parse(p.read_text()).body))


def _module(path: Path) -> str:
    return path.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")


def test_the_commands_are_found():
    found = {_module(p) for p in _commands()}
    assert {"training.train", "training.rl.train_rl_delta_waypoint", "sim.evaluate", "sim.across", "sim.report",
            "sim.backends.carla.__main__", "scenarios.check", "scenarios.convert"} <= found


@pytest.mark.parametrize("path", _commands(), ids=_module)
def test_each_command_runs_its_main_through_run_main_before_its_other_imports(path):
    tree = ast.parse(path.read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    body = [n for n in body if not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    guard = body[0]
    assert _is_main_guard(guard), f"{path}: the __main__ guard is not the first statement"
    call = guard.body[-1]
    want = f"run_main({_module(path)!r}, 'python -m {_module(path).removesuffix('.__main__')}')"
    assert ast.unparse(call) == want
    assert [n for n in ast.walk(tree) if _is_main_guard(n)] == [guard], f"{path}: a second __main__ guard"


def _interrupt_while_torch_loads(module: str) -> subprocess.CompletedProcess:
    """Start ``python -m module --help``; SIGINT once the first torch submodule has loaded (torch itself, seconds
    long, is still loading: -X importtime reports a package after its submodules)."""
    cmd = [sys.executable, "-X", "importtime", "-m", module, "--help"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if re.search(r"\|\s+torch\.", line):
            proc.send_signal(signal.SIGINT)
            break
    else:
        pytest.fail(f"{module} never imported torch: {''.join(seen[-5:])}")
    out, err = proc.communicate(timeout=60)
    err = "".join(seen) + err
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize("module", ["training.train", "training.rl.train_rl_delta_waypoint", "sim.evaluate"])
def test_ctrl_c_while_torch_loads_is_one_line_and_exit_130(module):
    proc = _interrupt_while_torch_loads(module)
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:")]
    prog = "python -m " + module
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert lines == [f"interrupted while {prog} was starting; nothing was written"], lines
