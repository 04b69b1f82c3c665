"""A restricted unpickler for ScenarioNet files: builtins containers and numpy arrays only.

Python's ``pickle`` can run arbitrary code through ``find_class`` + ``REDUCE``. This
unpickler resolves only an explicit allow-list of harmless globals (numpy array
reconstruction, dtypes, scalars, plain containers) and refuses everything else with a
:class:`~scenarios.scenario.ScenarioError` naming the file and the refused global.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from pathlib import Path

import numpy as np

from scenarios.scenario import ScenarioError

_NUMPY_RECONSTRUCT = ("_reconstruct", "scalar")
ALLOWED: dict[tuple[str, str], object] = {
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "complex"): complex,
    ("builtins", "str"): str,
    ("builtins", "bytes"): bytes,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "bool"): bool,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_MULTIARRAY = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x and 2.x pickles
    for _name in _NUMPY_RECONSTRUCT:
        ALLOWED[(_mod, _name)] = getattr(_MULTIARRAY, _name)
for _name in dir(np.dtypes):
    if _name.endswith("DType"):
        ALLOWED[("numpy.dtypes", _name)] = getattr(np.dtypes, _name)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise ScenarioError(
                f"refused to unpickle global {module}.{name} (only builtins containers and numpy arrays are allowed)"
            ) from None

    def persistent_load(self, pid):
        raise ScenarioError("refused persistent id in pickle")


def safe_loads(data: bytes) -> object:
    """Unpickle ``data`` admitting only builtins containers and numpy arrays.

    Raises:
        ScenarioError: a refused global, or a truncated/corrupt pickle (message without file name).
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except ScenarioError:
        raise
    except (pickle.UnpicklingError, EOFError) as e:
        why = str(e) or "unexpected end of data"
        raise ScenarioError(f"truncated or corrupt pickle ({type(e).__name__}: {why})") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, MemoryError, OverflowError) as e:
        raise ScenarioError(f"corrupt pickle ({type(e).__name__}: {e})") from None


def safe_load(path: str | os.PathLike) -> object:
    """Read and restricted-unpickle one file.

    Raises:
        ScenarioError: one line naming the file and what is wrong.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return safe_loads(data)
    except ScenarioError as e:
        raise ScenarioError(f"{path}: {e}") from None
