"""Optional ``torch.compile`` of the simulator's hot parts, with a clean eager fallback.

Selected by a config value (:class:`StepCompile`, passed to :func:`sim.rollout.rollout` and
:func:`sim.metrics.compute_metrics`), never by an environment variable. Two parts can be compiled:

- ``"observation"``: the per-step :func:`~sim.observation.observe`. On CUDA the default mode is
  ``"reduce-overhead"`` (CUDA graphs: the step's few dozen kernels replay as one launch). On the
  CPU it is not compiled by default: measured on 2 cores at B=1024, inductor's observation took
  9.9 ms against 1.7 ms eager (and it changes the last bits of some features, max 5e-6).
- ``"metric_filters"``: the conservative candidate filters of the collision and TTC metrics
  (:func:`sim.metrics.pair_candidates`), elementwise work
  over every (scene, agent, step). The exact tests run eager on the candidates, so compiling them
  changes no metric. Measured on 2 cores at B=1024: 50 ms -> 10 ms per rollout, 8 s to compile once.

Compiling is off unless ``StepCompile(enabled=True)``. If ``torch.compile`` is missing, rejects the
settings, or fails on the first call, the eager function is used and one warning says why.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class StepCompile:
    """Whether and how to compile the per-step observation.

    Attributes:
        enabled: compile (True) or run eager (False, the default).
        mode: ``torch.compile`` mode; None = ``"reduce-overhead"`` on CUDA, the default elsewhere.
        backend: ``torch.compile`` backend (``"inductor"``).
        parts: which of :data:`PARTS` to compile; None = every part on CUDA, ``"metric_filters"`` on the CPU.
    """

    enabled: bool = False
    mode: str | None = None
    backend: str = "inductor"
    parts: tuple[str, ...] | None = None

    def compiles(self, part: str, device: torch.device) -> bool:
        """Whether ``part`` (one of :data:`PARTS`) is compiled on ``device``."""
        if part not in PARTS:
            raise ValueError(f"unknown compile part {part!r}; known: {', '.join(PARTS)}")
        if not self.enabled:
            return False
        parts = self.parts if self.parts is not None else DEFAULT_PARTS[device.type == "cuda"]
        return part in parts


PARTS = ("observation", "metric_filters")
DEFAULT_PARTS = {True: PARTS, False: ("metric_filters",)}  # by "device is CUDA" (see the module docstring)


class _WithFallback:
    """Calls the compiled function; on its first failure warns once and runs eager from then on."""

    def __init__(self, eager: Callable[..., Any], compiled: Callable[..., Any] | None, why: str = "") -> None:
        self.eager = eager
        self.compiled = compiled
        self.fallback_reason = why

    def __call__(self, *args: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as e:  # noqa: BLE001 - any compiler failure means: run eager
                self._fall_back(f"torch.compile failed on first use ({type(e).__name__}: {str(e)[:200]})")
        return self.eager(*args)

    def _fall_back(self, why: str) -> None:
        self.compiled = None
        self.fallback_reason = why
        warnings.warn(f"{why}; running eager", RuntimeWarning, stacklevel=3)


_COMPILED: dict[tuple[Callable[..., Any], str | None, str], Callable[..., Any]] = {}


def maybe_compile(
    fn: Callable[..., Any], cfg: StepCompile | None, device: torch.device, part: str = "observation"
) -> Callable[..., Any]:
    """``fn`` itself (eager) or a compiled version of it that falls back to ``fn`` on failure.

    Args:
        fn: the function. cfg: the settings (None: eager). device: where it runs.
        part: which of :data:`PARTS` ``fn`` is; the observation compiles with static shapes (one graph per
            batch shape, as CUDA graphs need), the metric filters with shapes that may vary between batches.

    Compiled functions are cached per (function, mode, backend), so rollouts after the first reuse them.
    """
    if cfg is None or not cfg.compiles(part, device):
        return fn
    mode = cfg.mode if cfg.mode is not None else ("reduce-overhead" if device.type == "cuda" else None)
    key = (fn, mode, cfg.backend)
    if key in _COMPILED:
        return _COMPILED[key]
    wrapped = _WithFallback(fn, None)
    compile_fn = getattr(torch, "compile", None)
    if compile_fn is None:
        wrapped._fall_back("torch.compile is not available in this torch")
    else:
        try:
            dynamic = False if part == "observation" else None
            wrapped.compiled = compile_fn(fn, mode=mode, backend=cfg.backend, dynamic=dynamic)
        except Exception as e:  # noqa: BLE001 - bad backend/mode, missing compiler: run eager
            wrapped._fall_back(f"torch.compile rejected the settings ({type(e).__name__}: {str(e)[:200]})")
    if wrapped.compiled is not None:
        _COMPILED[key] = wrapped
    return wrapped
