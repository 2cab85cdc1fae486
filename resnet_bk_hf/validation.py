"""One field-validation helper for every place a user sets a value: ResNetBKConfig, the YAML files of
`resnet-bk train` / `demo` / `compare`, and the command line.

Each check raises `FieldError` (a ValueError) whose message names the field, what it must be and the
value it got, e.g. "ResNetBKConfig.num_heads must be an integer >= 1 and <= 256, got 0". `where` is the
full name of the field as the user wrote it ("ResNetBKConfig.num_heads", "run.yaml: training.max_steps").
"""
from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from numbers import Integral, Real
from typing import Any, Optional


class FieldError(ValueError):
    """A value a user set that cannot work; the message names the field, the allowed values and the value."""


def need(where: str, ok: bool, allowed: str, value: Any) -> None:
    if not ok:
        raise FieldError(f"{where} must be {allowed}, got {value!r}")


def is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def check_int(where: str, value, low: Optional[int] = None, high: Optional[int] = None,
              allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    allowed = "an integer" + (f" >= {low}" if low is not None else "") + (
        f"{' and' if low is not None else ''} <= {high}" if high is not None else "")
    need(where, ok, allowed + (" (or None)" if allow_none else ""), value)


def check_float(where: str, value, low: Optional[float] = None, high: Optional[float] = None,
                low_open: bool = False, high_open: bool = False, allow_none: bool = False) -> None:
    """A finite real number (not a bool) in the range; `low_open` / `high_open` exclude the bound itself."""
    if value is None and allow_none:
        return
    ok = is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    allowed = "a finite number"
    if low is not None:
        allowed += f" {'>' if low_open else '>='} {low}"
    if high is not None:
        allowed += f"{' and' if low is not None else ''} {'<' if high_open else '<='} {high}"
    need(where, ok, allowed + (" (or None to disable)" if allow_none else ""), value)


def check_choice(where: str, value, choices) -> None:
    need(where, value in tuple(choices), f"one of {tuple(choices)}", value)


def check_bool(where: str, value) -> None:
    need(where, isinstance(value, bool), "True or False", value)


def check_range_pair(where: str, value, low_above: Optional[float] = None) -> None:
    """A pair (low, high) of finite numbers with low <= high (and low > `low_above` when given)."""
    ok = (isinstance(value, (list, tuple)) and len(value) == 2 and all(is_number(x) for x in value)
          and value[0] <= value[1] and (low_above is None or value[0] > low_above))
    bound = "" if low_above is None else f" with low > {low_above}"
    need(where, ok, f"a pair (low, high) of finite numbers, low <= high{bound}", value)


# ------------------------------------------------------------------------------- typed values from YAML / CLI

def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _allowed_types(hint) -> Optional[tuple]:
    """Plain Python types a YAML value may have for a type hint, or None when the hint is not checkable."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_allowed_types(a) for a in typing.get_args(hint)]
        return None if any(p is None for p in parts) else tuple(t for p in parts for t in p)
    if origin in (list, dict, tuple):
        return (origin,)
    if hint is type(None):
        return (type(None),)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return (str,)
    if hint in (bool, int, float, str, list, dict):
        return (hint,)
    return None


def coerce(where: str, value, hint):
    """`value` checked against the type hint `hint`, with YAML's quirks fixed: "3e-4" (a str in YAML 1.1)
    becomes a float, 1.0 an int where an int is wanted. Raises FieldError otherwise."""
    allowed = _allowed_types(hint)
    if allowed is None or value is None and type(None) in allowed:
        return value
    if isinstance(value, bool):
        if bool in allowed:
            return value
    elif isinstance(value, int) and (int in allowed or float in allowed):
        return value
    elif isinstance(value, float) and float in allowed:
        return value
    elif isinstance(value, float) and int in allowed and value.is_integer():
        return int(value)
    elif isinstance(value, str):
        if str in allowed:
            return value
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and float in allowed:
            return number
        if number is not None and int in allowed and number.is_integer():
            return int(number)
    elif isinstance(value, tuple(t for t in allowed if t in (list, dict))):
        return value
    names = " or ".join(sorted({_type_name(t) for t in allowed}))
    raise FieldError(f"{where} must be {names}, got {value!r} ({type(value).__name__})")


def build_dataclass(where: str, values, cls):
    """`cls(**values)` for a dataclass, after checking the keys (unknown and missing ones are named) and
    coercing each value to its field's type hint."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise FieldError(f"{where} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise FieldError(f"{where}: unknown key(s) {unknown}; allowed: {names}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in values]
    if missing:
        raise FieldError(f"{where}: missing required key(s) {missing}")
    return cls(**{k: coerce(f"{where}.{k}", v, hints[k]) for k, v in values.items()})
