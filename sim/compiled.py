"""Optional ``torch.compile`` of the simulator's hot parts, with a clean eager fallback.

Selected by a config value (:class:`StepCompile`, passed to :func:`sim.rollout.rollout` and
:func:`sim.metrics.registry.compute_metrics`), never by an environment variable. Four parts can be compiled:

- ``"observation"``: the per-step :func:`~sim.observation.observation_features` (plain tensors in, one
  graph, no graph break). On CUDA the default mode is ``"reduce-overhead"`` (CUDA graphs: the step's few
  dozen kernels replay as one launch). On the CPU inductor fuses its elementwise work into a few loops:
  measured at B=512 on one thread, 0.46 ms against 0.90 ms eager per step, about 8 s to compile once per
  process (once more, with symbolic sizes, when a later batch's sizes differ). It changes the last bits of
  some features (max 5e-6), so trajectories then differ from eager's at float32 round-off.
- ``"controller"``: the waypoint controller's memoryless law (:func:`sim.controller.pursuit_law`: pure
  pursuit and the speed error, about 40 elementwise operations on ``[B]``-``[B, K]``): 0.11 -> 0.04 ms per
  step at B=512 on one thread; float32 round-off differences as above.
- ``"metric_filters"``: the conservative candidate filters of the collision and TTC metrics
  (:func:`sim.metrics.pairs.pair_candidates`), elementwise work
  over every (scene, agent, step). The exact tests run eager on the candidates, so compiling them
  changes no metric. Measured on 2 cores at B=1024: 50 ms -> 10 ms per rollout, 8 s to compile once.
- ``"route_projection"``: the route metrics' nearest route vertex (:func:`sim.geometry.nearest_vertex_fused`:
  one fused loop instead of ``cdist``'s ``[B, N, R]`` table and ``argmin``): 20 -> 8 ms per rollout at
  B=512 on one thread. In exact ties it may pick the neighbouring vertex; progress and route completion
  then differ from eager's at float32 round-off.

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
    """Whether and how to compile the simulator's hot parts (:data:`PARTS`).

    Attributes:
        enabled: compile (True) or run eager (False, the default).
        mode: ``torch.compile`` mode; None = ``"reduce-overhead"`` on CUDA, the default elsewhere.
        backend: ``torch.compile`` backend (``"inductor"``).
        parts: which of :data:`PARTS` to compile; None = every part (on the CPU and on CUDA).
    """

    enabled: bool = False
    mode: str | None = None
    backend: str = "inductor"
    parts: tuple[str, ...] | None = None

    def compiles(self, part: str) -> bool:
        """Whether ``part`` (one of :data:`PARTS`) is compiled."""
        if part not in PARTS:
            raise ValueError(f"unknown compile part {part!r}; known: {', '.join(PARTS)}")
        if not self.enabled:
            return False
        return part in (self.parts if self.parts is not None else PARTS)


PARTS = ("observation", "controller", "metric_filters", "route_projection")


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
    fn: Callable[..., Any], cfg: StepCompile | None, device: torch.device, part: str = "observation",
    eager: Callable[..., Any] | None = None,
) -> Callable[..., Any]:
    """``eager`` (default ``fn``) when ``part`` is not compiled, else a compiled ``fn`` that falls back to it.

    Args:
        fn: the function to compile. cfg: the settings (None: eager). device: where it runs.
        part: which of :data:`PARTS` ``fn`` is. On CUDA the observation and the controller compile with static
            shapes (one graph per batch shape, as CUDA graphs need); elsewhere shapes may vary: a batch whose
            size, agent count, route length or road grid differs from the first one's compiles once more, with
            those sizes symbolic, and later batches reuse that graph.
        eager: what runs when ``part`` is not compiled or compiling fails (default ``fn``; the same values).

    Compiled functions are cached per (function, mode, backend), so rollouts after the first reuse them.
    """
    eager = fn if eager is None else eager
    if cfg is None or not cfg.compiles(part):
        return eager
    mode = cfg.mode if cfg.mode is not None else ("reduce-overhead" if device.type == "cuda" else None)
    key = (fn, mode, cfg.backend)
    if key in _COMPILED:
        return _COMPILED[key]
    wrapped = _WithFallback(eager, None)
    compile_fn = getattr(torch, "compile", None)
    if compile_fn is None:
        wrapped._fall_back("torch.compile is not available in this torch")
    else:
        try:
            static = device.type == "cuda" and part in ("observation", "controller")
            dynamic = False if static else None
            wrapped.compiled = compile_fn(fn, mode=mode, backend=cfg.backend, dynamic=dynamic)
        except Exception as e:  # noqa: BLE001 - bad backend/mode, missing compiler: run eager
            wrapped._fall_back(f"torch.compile rejected the settings ({type(e).__name__}: {str(e)[:200]})")
    if wrapped.compiled is not None:
        _COMPILED[key] = wrapped
    return wrapped
