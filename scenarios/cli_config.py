"""Command lines generated from frozen config dataclasses: each default is written once, every field has a flag.

A field becomes ``--field-name`` (underscores to dashes). Its help text comes from the field's
``metadata["help"]`` (``field(default=..., metadata={"help": "..."})``), its choices from
``metadata["choices"]``, its allowed range from ``metadata["range"]`` (a :class:`Range`; every ``int`` and
``float`` field has one), and ``metadata["flag"]`` renames the flag. Types follow the annotation:

- ``bool`` with default False: ``--name`` sets True; with default True: ``--no-name`` sets False
  (both spellings are accepted for either default);
- ``int``, ``float``, ``str``: one value; ``X | None``: one value or absent (the default None);
- ``tuple[X, ...]``: one or more values (``nargs="+"``).

A value outside its range is refused by the parser before anything runs: one line on stderr naming the flag
and the range, exit status 2 (:class:`OneLineParser`); ``--help`` shows each range next to its default.
:func:`check_ranges` applies the same ranges to a dataclass built in code (or read back from a file).

Torch-free and numpy-free, so ``scenarios``, ``sim`` and ``training`` can all use it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")

_SCALARS = (int, float, str)


class RangeError(ValueError):
    """A setting outside its declared :class:`Range` (or not of its declared type); the message names the flag.

    Attributes:
        name: the setting's field name (``bc_epochs``), for a message about a file rather than a flag; or None.
        problem: what is wrong with its value (the message after the flag, ``must be >= 1, got 0``); or None.
    """

    def __init__(self, message: str, name: str | None = None, problem: str | None = None) -> None:
        super().__init__(message)
        self.name, self.problem = name, problem


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed values of a numeric setting: a finite number between ``lo`` and ``hi`` (None: unbounded).

    Attributes:
        lo: lower bound, or None. hi: upper bound, or None.
        lo_open: ``lo`` itself is excluded. hi_open: ``hi`` itself is excluded.
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, v: float) -> bool:
        """Whether ``v`` is finite and within the bounds (NaN and infinities never are)."""
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return not (self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)))

    def text(self) -> str:
        """The range as ``--help`` and the error lines show it (``>= 1``, ``> 0``, ``[0, 1]``, ``finite``)."""
        if self.lo is not None and self.hi is not None:
            return f"{'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
        return "finite"


    def phrase(self) -> str:
        """The range after "must be": ``in [0, 1]``, ``>= 1``, ``finite``."""
        text = self.text()
        return f"in {text}" if text[0] in "[(" else text


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


def at_least(lo: float, hi: float | None = None) -> Range:
    """``lo <= v`` (``<= hi`` when given)."""
    return Range(lo, hi)


def above(lo: float, hi: float | None = None) -> Range:
    """``lo < v`` (``<= hi`` when given)."""
    return Range(lo, hi, lo_open=True)


FINITE = Range()
"""Any finite number."""
UNIT = Range(0.0, 1.0)
"""``[0, 1]``: discounts, lambdas, fractions."""
SEED = Range(0, 2**32 - 1)
"""Random seeds: what both ``torch.manual_seed`` and ``numpy.random.default_rng`` accept."""
PORT = Range(1, 65535)
"""TCP ports."""


def field_range(f: dataclasses.Field) -> Range | None:
    """The declared :class:`Range` of a field (``metadata["range"]``), or None."""
    return f.metadata.get("range")


def range_type(tp: type, rng: Range) -> Any:
    """argparse ``type=``: parse ``tp``, then refuse a value outside ``rng`` (the message states the range)."""
    def parse(text: str) -> Any:
        try:
            v = tp(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'an integer' if tp is int else 'a number'} "
                                             f"({rng.text()}), got {text!r}") from None
        if not rng.contains(v):
            raise argparse.ArgumentTypeError(f"must be {rng.phrase()}, got {text}")
        return v

    parse.__name__ = tp.__name__  # argparse names the type in some messages
    return parse


def check_ranges(obj: Any) -> None:
    """Check every field of the dataclass instance ``obj`` that declares a :class:`Range`.

    Tuples are checked element by element; None (an optional setting left out) is always allowed.

    Raises:
        RangeError: the first field outside its range, naming its flag and the range.
    """
    for f in dataclasses.fields(obj):
        rng = field_range(f)
        if rng is None:
            continue
        value = getattr(obj, f.name)
        for v in value if isinstance(value, tuple) else (value,):
            if v is not None and not rng.contains(v):
                problem = f"must be {rng.phrase()}, got {v}"
                raise RangeError(f"{flag_name(f)} {problem}", f.name, problem)


def _is_a(v: Any, tp: Any) -> bool:
    if tp is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, tp)


def check_types(obj: Any) -> None:
    """Check that every field of the dataclass instance ``obj`` holds its annotated type (for settings read back
    from a file such as a run's ``config.json``; an ``int`` is accepted where a ``float`` is declared).

    Raises:
        RangeError: the first field of another type, naming its flag.
    """
    hints = _resolve(type(obj))
    for f in dataclasses.fields(obj):
        tp, optional, is_tuple = _base_type(hints[f.name])
        value = getattr(obj, f.name)
        if value is None and optional:
            continue
        items = value if is_tuple and isinstance(value, (tuple, list)) else None if is_tuple else (value,)
        if items is None or not all(_is_a(v, tp) for v in items):
            problem = f"{value!r}: expected {'a tuple of ' if is_tuple else ''}{getattr(tp, '__name__', tp)}"
            raise RangeError(f"{flag_name(f)} {problem}", f.name, problem)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (``PROG: error: ...``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line (with a pointer to ``--help``) and exit 2.

        argparse's ``argument --flag: must be ...`` reads ``--flag must be ...``.
        """
        line = " ".join(message.split())
        if line.startswith("argument ") and ": " in line:
            flag, rest = line[len("argument "):].split(": ", 1)
            line = f"{flag} {rest}"
        self.exit(2, f"{self.prog}: error: {line} (see --help)\n")


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
        rng = field_range(f)
        notes = ([f"default: {default}"] if default not in (None, "", ()) else []) + (
            [f"range: {rng.text()}"] if rng is not None else [])
        shown = help_text + (f" ({'; '.join(notes)})" if notes else "")
        name = flag_name(f)
        if tp is bool:
            parser.add_argument(name, dest=f.name, action="store_true", default=argparse.SUPPRESS, help=shown)
            parser.add_argument("--no-" + name[2:], dest=f.name, action="store_false", default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS if default is False else f"turn off {name}")
            continue
        if tp not in _SCALARS:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported type {tp!r}")
        if tp in (int, float) and rng is None:
            raise TypeError(f"{cls.__name__}.{f.name}: a numeric setting needs metadata['range']")
        kwargs: dict[str, Any] = {"dest": f.name, "type": tp if rng is None else range_type(tp, rng),
                                  "default": argparse.SUPPRESS, "help": shown}
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
