"""Optional ``torch.compile`` of the per-step observation, with a clean eager fallback.

Selected by a config value (:class:`StepCompile`, passed to :func:`sim.rollout.rollout`), never
by an environment variable. On CUDA the default mode is ``"reduce-overhead"`` (CUDA graphs: the
step's few dozen kernels replay as one launch). On the CPU compiling is off by default: measured
on 2 cores at B=1024, inductor made :func:`~sim.observation.observe` about 20% faster but took
about 45 s to compile and changes the last bits of some features (max 5e-6), so eager stays
the reference. If ``torch.compile`` is missing, rejects the settings, or fails on the first
call, the eager function is used and one warning says why.
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
    """

    enabled: bool = False
    mode: str | None = None
    backend: str = "inductor"


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


def maybe_compile(fn: Callable[..., Any], cfg: StepCompile | None, device: torch.device) -> Callable[..., Any]:
    """``fn`` itself (eager) or a compiled version of it that falls back to ``fn`` on failure.

    Compiled functions are cached per (function, mode, backend), so rollouts after the first reuse them.
    """
    if cfg is None or not cfg.enabled:
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
            wrapped.compiled = compile_fn(fn, mode=mode, backend=cfg.backend, dynamic=False)
        except Exception as e:  # noqa: BLE001 - bad backend/mode, missing compiler: run eager
            wrapped._fall_back(f"torch.compile rejected the settings ({type(e).__name__}: {str(e)[:200]})")
    if wrapped.compiled is not None:
        _COMPILED[key] = wrapped
    return wrapped
