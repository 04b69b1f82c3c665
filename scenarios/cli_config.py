"""Command lines generated from frozen config dataclasses: each default is written once, every field has a flag.

A field becomes ``--field-name`` (underscores to dashes). Its help text comes from the field's
``metadata["help"]`` (``field(default=..., metadata={"help": "..."})``), its choices from
``metadata["choices"]``, and ``metadata["flag"]`` renames the flag. Types follow the annotation:

- ``bool`` with default False: ``--name`` sets True; with default True: ``--no-name`` sets False
  (both spellings are accepted for either default);
- ``int``, ``float``, ``str``: one value; ``X | None``: one value or absent (the default None);
- ``tuple[X, ...]``: one or more values (``nargs="+"``).

Torch-free and numpy-free, so ``scenarios``, ``sim`` and ``training`` can all use it.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")

_SCALARS = (int, float, str)


def _resolve(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(tp: Any) -> tuple[Any, bool, bool]:
    """(scalar type, optional, is_tuple) for a field annotation."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) != len(typing.get_args(tp))
        if len(args) != 1:
            raise TypeError(f"unsupported union annotation {tp!r}")
        tp = args[0]
        origin = typing.get_origin(tp)
    if origin is tuple:
        inner = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return (inner[0] if inner else str), optional, True
    return tp, optional, False


def flag_name(f: dataclasses.Field) -> str:
    """``--flag`` of a dataclass field."""
    return "--" + f.metadata.get("flag", f.name.replace("_", "-"))


def add_dataclass_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                            *, exclude: tuple[str, ...] = ()) -> None:
    """Add one flag per field of the dataclass ``cls`` (defaults left to :func:`dataclass_from_args`).

    Every flag stores into ``dest=field name`` with default ``argparse.SUPPRESS``, so a namespace
    holds only what the user typed; :func:`dataclass_from_args` fills in the dataclass defaults.

    Raises:
        TypeError: a field annotation this module cannot map to a flag.
    """
    hints = _resolve(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.init:
            continue
        tp, _optional, is_tuple = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = f.metadata.get("help", "")
        shown = help_text + (f" (default: {default})" if default not in (None, "", ()) else "")
        name = flag_name(f)
        if tp is bool:
            parser.add_argument(name, dest=f.name, action="store_true", default=argparse.SUPPRESS, help=shown)
            parser.add_argument("--no-" + name[2:], dest=f.name, action="store_false", default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS if default is False else f"turn off {name}")
            continue
        if tp not in _SCALARS:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported type {tp!r}")
        kwargs: dict[str, Any] = {"dest": f.name, "type": tp, "default": argparse.SUPPRESS, "help": shown}
        if "choices" in f.metadata:
            kwargs["choices"] = tuple(f.metadata["choices"])
        if "metavar" in f.metadata:
            kwargs["metavar"] = f.metadata["metavar"]
        if is_tuple:
            kwargs["nargs"] = "+"
        parser.add_argument(name, **kwargs)


def dataclass_from_args(cls: type[T], ns: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from a namespace filled by :func:`add_dataclass_arguments` (absent flags keep defaults).

    ``overrides`` win over both the namespace and the defaults.
    """
    values: dict[str, Any] = {}
    hints = _resolve(cls)
    for f in dataclasses.fields(cls):
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif hasattr(ns, f.name):
            v = getattr(ns, f.name)
            if _base_type(hints[f.name])[2] and isinstance(v, list):
                v = tuple(v)
            values[f.name] = v
    return cls(**values)


def given_fields(ns: argparse.Namespace, cls: type) -> set[str]:
    """Names of ``cls`` fields the user typed on the command line."""
    return {f.name for f in dataclasses.fields(cls) if hasattr(ns, f.name)}
