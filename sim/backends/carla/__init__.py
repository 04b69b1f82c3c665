"""CARLA backend (optional extra ``carla==0.9.16``).

Importing this package is light: it never imports ``carla``. Modules that need the client
call :func:`require_carla`, which raises :class:`CarlaError` with a one-line install hint.
Frames: the project is right-handed (x east, y north, yaw CCW, radians); CARLA is left-handed
(y flipped, yaw clockwise in degrees). Conversion happens only in :mod:`sim.backends.carla.convert`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

CARLA_VERSION = "0.9.16"


class CarlaError(RuntimeError):
    """Anything that stops a CARLA evaluation: missing package, no server, stalled server, bad map.

    The message is one line meant for the user (CLIs print it without a traceback).
    """


def require_carla() -> ModuleType:
    """Import and return the ``carla`` client module.

    Raises:
        CarlaError: when the package is not installed.
    """
    try:
        return importlib.import_module("carla")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise CarlaError(
            f"the CARLA backend needs the Python client: pip install carla=={CARLA_VERSION} ({exc})"
        ) from None


__all__ = ["CARLA_VERSION", "CarlaError", "require_carla"]
