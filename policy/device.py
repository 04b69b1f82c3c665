"""One check of a ``--device`` value, shared by every command line (training, evaluation, benchmarks)."""

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
