"""The one home of device choice, shared by every command line (training, evaluation, benchmarks).

:func:`resolve_device` checks a ``--device`` value; :func:`pick_device` adds the ``auto`` rule: the GPU
only where it is faster for the batch at hand, with a one-line reason to print. An eager closed-loop
step launches a few hundred small kernels; on a GPU their launch latency, not the arithmetic, sets the
step time, so below some batch size two CPU cores win (on an H200 the eager loop reached 77.5k
scenario-steps/s at B=256, about what 2 CPU cores give; issue 14). Above it the GPU's time per step
stays nearly flat while the CPU's grows with B.
"""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """The requested device is unknown or not present on this machine; the message is one line."""


def _available(kind: str) -> tuple[bool, int]:
    """(available, device count) of a torch device type (count 1 for types without an index)."""
    if kind == "cpu":
        return True, 1
    if kind == "cuda":
        return torch.cuda.is_available(), torch.cuda.device_count()
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available()), 1
    backend = getattr(torch, kind, None)
    is_available = getattr(backend, "is_available", None)
    if not callable(is_available) or not is_available():
        return False, 0
    count = getattr(backend, "device_count", None)
    return True, int(count()) if callable(count) else 1


def resolve_device(name: str, flag: str = "--device") -> torch.device:
    """Turn a ``--device`` value into a present :class:`torch.device`.

    Args:
        name: ``auto`` (cuda when available, else cpu), or a torch device string (``cpu``, ``cuda``,
            ``cuda:1``, ``mps``, ...).
        flag: the option's spelling, used in the message.

    Returns:
        The device.

    Raises:
        DeviceError: ``name`` is not a device torch knows, or that device is not on this machine
            (e.g. ``cuda`` without a GPU); the message is one line naming the flag and what is present.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise DeviceError(f"{flag} {name}: not a device name (use auto, cpu, cuda, cuda:N or mps)") from None
    ok, count = _available(dev.type)
    if not ok:
        raise DeviceError(f"{flag} {name}: no {dev.type} device is available on this machine (use --device cpu)")
    if dev.index is not None and dev.index >= count:
        raise DeviceError(f"{flag} {name}: this machine has {count} {dev.type} device(s), indices 0..{count - 1}")
    return dev


CUDA_MIN_BATCH = 1024
"""Scenes per batch from which ``auto`` prefers CUDA (below it the CPU was as fast or faster)."""


def pick_device(requested: str, batch_size: int, min_cuda_batch: int = CUDA_MIN_BATCH,
                flag: str = "--device") -> tuple[torch.device, str]:
    """The device to simulate ``batch_size`` scenes per batch on, and a one-line reason to print.

    Args:
        requested: ``auto`` or a device string :func:`resolve_device` accepts.
        batch_size: scenes per batch (per rollout) the caller will run.
        min_cuda_batch: smallest batch for which ``auto`` chooses CUDA.
        flag: the option's spelling, used in messages.

    Returns:
        ``(device, reason)``, e.g. ``(device("cpu"), "auto: batch 128 < 1024, the CPU is faster there")``.

    Raises:
        DeviceError: as :func:`resolve_device`.
    """
    if requested.strip().lower() == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu"), "auto: no CUDA device, using the CPU"
        if batch_size < min_cuda_batch:
            return torch.device("cpu"), f"auto: batch {batch_size} < {min_cuda_batch}, the CPU is faster there"
        name = torch.cuda.get_device_name(0)
        return torch.device("cuda"), f"auto: batch {batch_size} >= {min_cuda_batch}, using CUDA ({name})"
    dev = resolve_device(requested.strip(), flag)
    return dev, f"{dev} as requested"
