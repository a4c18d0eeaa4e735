"""The one validator: typed, declared parameters -> checked values, or a one-line error for people.

Everything a user writes is checked here against a declaration: sweep configs (frozen dataclasses,
``from_mapping``), task and family parameters (their dataclasses' annotations), extractor
parameters and analysis settings. A wrong type, an unknown key or a value out of range is a
:class:`~training.core.errors.UserError` naming the dotted key and, for a closed set, the choices.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Union

from training.core.errors import UserError, choices

INT64_MAX = 2**63 - 1  # TOML reads integers of any size; tensors and HDF5 hold int64


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (arg,) = typing.get_args(tp)
        return f"list of {type_name(arg)}"
    if origin is dict:
        return "table"
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def check(value: Any, tp: Any, where: str) -> Any:
    """Validate (and lightly coerce int->float) ``value`` against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return check(value, arg, where)
            except UserError:
                continue
        raise UserError(f"config key '{where}' must be {type_name(tp)}, got {value!r}")
    if tp is list:
        tp, origin = list[Any], list
    if origin is list:
        (arg,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key '{where}' must be {type_name(tp)}, got {value!r}")
        return [check(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise UserError(f"config key '{where}' must be a table, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    if tp is type(None):
        if value is None:
            return None
        raise UserError(f"config key '{where}' must be empty, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not -INT64_MAX - 1 <= value <= INT64_MAX:  # TOML reads any size; tensors and HDF5 hold int64
                raise UserError(f"config key '{where}' = {value} does not fit in a 64-bit integer")
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # TOML's nan / inf: every model would diverge, silently
                raise UserError(f"config key '{where}' must be a finite number, got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise UserError(f"config key '{where}' must be {type_name(tp)}, got {value!r}")


def from_mapping(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise UserError(f"config section '{where or cls.__name__}' must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise UserError(f"unknown config key '{path}' (valid: {choices(fields)})")
        kwargs[key] = check(value, hints[key], path)
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        path = f"{where}.{missing[0]}" if where else missing[0]
        raise UserError(f"missing config key '{path}'")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate(where)
        except ValueError as e:  # a layer that raises ValueErrors (analysis/, scikit-learn's way): the message is for people
            raise UserError(str(e)) from e
    return obj


def to_dict(obj: Any) -> Any:
    """A JSON-ready plain structure from (nested) dataclasses."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def positive(where: str, key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"config key '{where}.{key}' must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def key_path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def within(where: str, key: str, value: float, lo: float, hi: float, why: str = "") -> None:
    """``lo <= value <= hi``, else a one-line error naming the key, the range and ``why`` the bound exists."""
    if not lo <= value <= hi:
        raise UserError(f"config key '{key_path(where, key)}' must be in [{lo}, {hi}]{f' ({why})' if why else ''}, got {value!r}")
