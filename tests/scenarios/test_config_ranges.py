"""Every numeric setting has a range declared next to its default, checked by the generated parser (issue 21 item 2).

The oracle for "inside the range" is written here independently of ``Range.contains``: plain comparisons on
the bounds read from the field's metadata.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.cli_config import Range, RangeError, check_ranges, check_types, field_range, flag_name
from sim.across import AcrossConfig
from sim.across import parse_args as across_args
from sim.evaluate import EvalConfig
from sim.evaluate import parse_args as eval_args
from training.config import TrainConfig, TrainError, parse_config

CONFIGS = {TrainConfig: lambda argv: parse_config(argv).config, EvalConfig: eval_args,
           AcrossConfig: lambda argv: across_args(["run0", *argv])}


def numeric_fields(cls):
    """(field, scalar type) of every int/float field (optional and tuple ones included)."""
    out = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        args = [a for a in typing.get_args(tp) if a not in (type(None), Ellipsis)] or [tp]
        base = args[0]
        if base in (int, float):
            out.append((f, base))
    return out


ALL = [(cls, f, tp) for cls in CONFIGS for f, tp in numeric_fields(cls)]
IDS = [f"{cls.__name__}.{f.name}" for cls, f, _ in ALL]


def inside(rng: Range, v: float) -> bool:
    """Independent oracle: finite and between the bounds (open bounds excluded)."""
    if not math.isfinite(v):
        return False
    lo_ok = rng.lo is None or (v > rng.lo if rng.lo_open else v >= rng.lo)
    hi_ok = rng.hi is None or (v < rng.hi if rng.hi_open else v <= rng.hi)
    return lo_ok and hi_ok


def parse(cls, f, text: str):
    return CONFIGS[cls]([f"{flag_name(f)}={text}"])


def test_every_numeric_setting_has_a_range_holding_its_default():
    assert len(ALL) >= 45  # TrainConfig alone has ~40 numeric settings
    for cls, f, _tp in ALL:
        rng = field_range(f)
        assert isinstance(rng, Range), f"{cls.__name__}.{f.name} has no range"
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for v in default if isinstance(default, tuple) else (default,):
            assert v is None or inside(rng, v), (cls.__name__, f.name, v, rng.text())


@pytest.mark.parametrize(("cls", "f", "tp"), ALL, ids=IDS)
def test_just_outside_the_range_is_one_line_exit_2(cls, f, tp, capsys):
    rng = field_range(f)
    step = 1 if tp is int else 1e-6
    bad = ["nan", "inf", "-inf"] if tp is float else ["x", "1.5"]
    if rng.lo is not None:
        bad.append(repr(rng.lo if rng.lo_open else rng.lo - step) if tp is float else str(int(rng.lo) - 1))
    if rng.hi is not None:
        bad.append(repr(rng.hi if rng.hi_open else rng.hi + step) if tp is float else str(int(rng.hi) + 1))
    for text in bad:
        with pytest.raises(SystemExit) as e:
            parse(cls, f, text)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and flag_name(f) in err and rng.text() in err, err
    # and the bounds that are inside are accepted
    for b, is_open in ((rng.lo, rng.lo_open), (rng.hi, rng.hi_open)):
        if b is not None and not is_open:
            value = parse(cls, f, str(int(b)) if tp is int else repr(float(b)))
            got = getattr(value, f.name)
            assert (got[0] if isinstance(got, tuple) else got) == b


EXTRA_RULES = {"budget": lambda x: x <= 1 or float(x).is_integer()}
"""Fields whose rule is more than their declared range, checked when the config is built (one-line error):
``--budget`` is 0, a fraction in (0, 1] or a whole number of rollouts (``sim.selection.budget.check_budget``)."""


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(ALL), x=st.one_of(st.integers(-10**7, 10**12), st.floats(allow_nan=True)))
def test_accepted_exactly_when_inside(case, x):
    from sim.results.errors import EvaluationError

    cls, f, tp = case
    if tp is int and isinstance(x, float):
        x = math.floor(x) if math.isfinite(x) else 0
    rng = field_range(f)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            cfg = parse(cls, f, repr(x) if tp is float else str(x))
        accepted = True
    except SystemExit as e:
        assert e.code == 2
        assert err.getvalue().count("\n") == 1
        accepted = False
    except (EvaluationError, TrainError) as e:  # the config's own check: one line naming the flag
        assert f.name in EXTRA_RULES and flag_name(f) in str(e) and "\n" not in str(e), (f.name, x, e)
        accepted = False
    rule = EXTRA_RULES.get(f.name, lambda _: True)
    assert accepted == (inside(rng, x) and rule(x)), (f.name, x, rng.text())
    if accepted:
        got = getattr(cfg, f.name)
        assert (got[0] if isinstance(got, tuple) else got) == x


def test_help_shows_each_range(capsys):
    with pytest.raises(SystemExit):
        parse_config(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "range: [0, 1]" in out and "range: (0, 1]" in out and "range: >= 1" in out


def test_checked_in_code_too():
    with pytest.raises(TrainError, match=r"--gamma must be in \[0, 1\], got 5.0"):
        TrainConfig(gamma=5.0).validate()
    with pytest.raises(TrainError, match="--hidden '128': expected int"):
        TrainConfig.from_dict({"hidden": "128"}).validate()
    with pytest.raises(TrainError, match="--lr"):
        TrainConfig.from_dict({"lr": float("nan")}).validate()
    with pytest.raises(RangeError, match="--carla-port"):
        check_ranges(_raw_eval(carla_port=(2000, 70000)))
    with pytest.raises(Exception, match=r"--seed must be in \[0, 4294967295\], got -1"):
        EvalConfig(seed=-1)
    check_types(TrainConfig(gamma=1))  # an int where a float is declared is fine


def _raw_eval(**kw) -> EvalConfig:
    """An EvalConfig built without __post_init__ (to check check_ranges on its own)."""
    obj = object.__new__(EvalConfig)
    for f in dataclasses.fields(EvalConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        object.__setattr__(obj, f.name, kw.get(f.name, default))
    return obj


def test_bad_setting_writes_nothing(tmp_path, monkeypatch, capsys):
    """``training.train --gamma 5`` and friends: exit 2, one line, no run folder, out/latest unmoved."""
    from training.train import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old").mkdir()
    (tmp_path / "out" / "latest").symlink_to("old")
    for argv in (["--gamma", "5"], ["--lr", "-1"], ["--hidden", "0"], ["--train-pool", "-5"], ["--eval-states", "0"],
                 ["--bc-batch", "0"], ["--episodes", "0"], ["--threads", "0"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and argv[0] in err and "Traceback" not in err
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["latest", "old"]
        assert (tmp_path / "out" / "latest").readlink().name == "old"
