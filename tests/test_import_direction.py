"""The one-way imports of docs/architecture.md, checked on every import statement, those inside functions too.

``policy`` imports nothing of the project; ``scenarios`` nothing of ``sim``/``training``/``policy``/``dashboard``
(its data-report CLI ``scenarios/check.py`` runs the simulator and is the documented exception); ``sim``
nothing of ``training``/``dashboard``; ``dashboard`` nothing of ``training``/``policy`` (and no torch: see
``tests/dashboard/test_app.py``), except the torch-free constants in ``policy/gaussian.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "policy": {"scenarios", "sim", "training", "dashboard"},
    "scenarios": {"sim", "training", "policy", "dashboard"},
    "sim": {"training", "dashboard"},
    "dashboard": {"training", "policy", "torch"},
}
EXCEPTIONS = {"scenarios/check.py"}
ALLOWED_MODULES = {"policy.gaussian"}  # torch-free constants of the policy head (the entropy constant's one home)


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names if a.name not in ALLOWED_MODULES)
        elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
              and node.module not in ALLOWED_MODULES):
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_go_one_way(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in EXCEPTIONS:
            continue
        hit = _imported_packages(path) & FORBIDDEN[package]
        if hit:
            bad.append(f"{rel} imports {sorted(hit)}")
    assert not bad, "; ".join(bad)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from training.train import main\n    import sim.batch\n")
    assert _imported_packages(f) == {"training", "sim"}
