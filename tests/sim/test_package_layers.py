"""The packages of ``sim`` import one way (docs/architecture.md), checked on every import statement at package level.

- the simulator (``sim``'s own modules, ``sim.backends``) imports nothing of ``sim.metrics``' consumers:
  results, selection, evaluation, rl;
- ``sim.metrics`` imports the simulator, never results, selection, evaluation or rl;
- ``sim.results`` (torch-free) imports only itself and ``sim.metrics.catalogue``;
- ``sim.selection`` (torch-free) imports only itself, ``sim.results`` and ``sim.metrics.catalogue``;
- ``sim.rl`` imports the simulator and metrics, never results, selection or evaluation;
- ``sim.evaluation`` imports anything in ``sim`` but ``sim.rl``;
- ``dashboard`` imports of ``sim`` only the torch-free ``sim.results``, ``sim.selection`` and ``sim.metrics.catalogue``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("results", "selection", "evaluation", "rl", "metrics", "backends")
TORCH_FREE = {"sim.results", "sim.selection", "sim.metrics.catalogue"}


def package_of(module: str) -> str:
    """``sim.results.store`` -> ``sim.results``; ``sim.metrics.catalogue`` stays itself; ``sim.batch`` -> ``sim``."""
    parts = module.split(".")
    if parts[0] != "sim" or len(parts) < 2:
        return parts[0]
    if module.startswith("sim.metrics.catalogue"):
        return "sim.metrics.catalogue"
    return f"sim.{parts[1]}" if parts[1] in LAYERS else "sim"


ALLOWED: dict[str, set[str]] = {
    "sim": {"sim", "sim.backends", "sim.metrics", "sim.metrics.catalogue"},
    "sim.backends": {"sim", "sim.backends"},
    "sim.metrics": {"sim", "sim.backends", "sim.metrics", "sim.metrics.catalogue"},
    "sim.metrics.catalogue": set(),
    "sim.results": {"sim.results", "sim.metrics.catalogue"},
    "sim.selection": {"sim.selection", "sim.results", "sim.metrics.catalogue"},
    "sim.rl": {"sim", "sim.backends", "sim.metrics", "sim.metrics.catalogue", "sim.rl"},
    "sim.evaluation": {"sim", "sim.backends", "sim.metrics", "sim.metrics.catalogue", "sim.results", "sim.selection",
                       "sim.evaluation"},
    "dashboard": TORCH_FREE,
}
CLI_MODULES = {"sim/evaluate.py", "sim/across.py", "sim/report.py"}  # thin CLIs: they wire the packages


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names if node.module == "sim")
    return out


def _own_package(rel: str) -> str:
    mod = rel[:-3].replace("/", ".").removesuffix(".__init__")
    return package_of(mod) if mod.startswith("sim") else mod.split(".")[0]


def _files():
    for path in sorted([*(ROOT / "sim").rglob("*.py"), *(ROOT / "dashboard").rglob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if rel not in CLI_MODULES:
            yield rel, path


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_one_way(package):
    bad = []
    for rel, path in _files():
        if _own_package(rel) != package:
            continue
        for mod in _imports(path):
            if mod.split(".")[0] != "sim" or package_of(mod) in ALLOWED[package] or package_of(mod) == package:
                continue
            bad.append(f"{rel} imports {mod}")
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("package", sorted(TORCH_FREE))
def test_torch_free_packages_import_no_torch(package):
    bad = [rel for rel, path in _files() if _own_package(rel) == package
           and any(m.split(".")[0] == "torch" for m in _imports(path))]
    assert not bad, f"{package} imports torch in {bad}"


def test_the_rules_see_a_wrong_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from sim.evaluation.executors import run_units\n    import torch\n")
    got = {package_of(m) for m in _imports(f)}
    assert got == {"sim.evaluation", "torch"} and "sim.evaluation" not in ALLOWED["sim.results"]
