"""`--device auto`: pick the GPU only where it is faster for the batch at hand, and say why.

An eager closed-loop step launches a few hundred small kernels; on a GPU their launch latency,
not the arithmetic, sets the step time, so below some batch size two CPU cores win (on an H200
the eager loop reached 77.5k scenario-steps/s at B=256, about what 2 CPU cores give, issue 14).
Above it the GPU's time per step stays nearly flat while the CPU's grows with B.
"""

from __future__ import annotations

import torch

from sim.config import SimError

CUDA_MIN_BATCH = 1024
"""Scenes per batch from which ``auto`` prefers CUDA (below it the CPU was as fast or faster)."""


def pick_device(requested: str, batch_size: int, min_cuda_batch: int = CUDA_MIN_BATCH) -> tuple[torch.device, str]:
    """The device to simulate ``batch_size`` scenes per batch on, and a one-line reason to print.

    Args:
        requested: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        batch_size: scenes per batch (per rollout) the caller will run.
        min_cuda_batch: smallest batch for which ``auto`` chooses CUDA.

    Returns:
        ``(device, reason)``, e.g. ``(device("cpu"), "auto: batch 128 < 1024, the CPU is faster there")``.

    Raises:
        SimError: CUDA requested but absent, or an unknown device string.
    """
    req = requested.strip().lower()
    if req == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu"), "auto: no CUDA device, using the CPU"
        if batch_size < min_cuda_batch:
            return torch.device("cpu"), f"auto: batch {batch_size} < {min_cuda_batch}, the CPU is faster there"
        name = torch.cuda.get_device_name(0)
        return torch.device("cuda"), f"auto: batch {batch_size} >= {min_cuda_batch}, using CUDA ({name})"
    try:
        dev = torch.device(req)
    except RuntimeError as e:
        raise SimError(f"unknown device {requested!r}; use cpu, cuda, cuda:N or auto") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SimError(f"device {requested!r} requested but no CUDA device is available")
    if dev.type not in ("cpu", "cuda"):
        raise SimError(f"unsupported device {requested!r}; use cpu, cuda, cuda:N or auto")
    return dev, f"{dev} as requested"
