"""The naive yardstick ``../shared/bench/proto_step.py``, loaded by path and run side by side.

The yardstick is an eager-torch closed-loop step (MLP policy, pure pursuit, bicycle, log replay,
box overlap, grid off-road, ADE) that bounds what a batched simulator should reach. It is not part
of this repository: :func:`load_yardstick` imports it by file path when it exists and returns None
otherwise (callers then leave the yardstick's fields out and say so).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PATH = REPO.parent / "shared" / "bench" / "proto_step.py"


def load_yardstick(path: str | Path | None = None) -> ModuleType | None:
    """Import the yardstick module from ``path`` (default ``../shared/bench/proto_step.py``); None if absent."""
    p = Path(path) if path is not None else DEFAULT_PATH
    if not p.is_file():
        return None
    spec = importlib.util.spec_from_file_location("proto_step_yardstick", p)
    if spec is None or spec.loader is None:
        return None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def yardstick_rate(mod: ModuleType, device: str, batch: int, agents: int = 32, steps: int = 80) -> float:
    """Scenario-steps/s of one timed yardstick run (policy and metrics on), as the yardstick measures it."""
    rec = mod.run(device, batch, A=agents, T=steps, with_policy=True, with_metrics=True)
    return float(rec["scenario_steps_per_s"])
