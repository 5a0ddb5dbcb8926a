"""Typed job parameters: one frozen dataclass per kind, parsed from JSON by one generic parser.

``parse(Params, data, kind)`` refuses an unknown field, a missing required field or a value of
the wrong type with a one-line ``InputError`` naming the kind and the field; nested dataclasses
(``RunRequest``, ``GenerationSettings``) are parsed the same way. Range checks that need the
cache (a step within the run, a proxy layer the run stored) are the params' ``checked(store)``
method, run at submit by the registry. ``to_json`` is the inverse of ``parse``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

from backend.errors import InputError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return f"a list of {_type_name(inner)}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "an object"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "an object"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp``, or ``InputError`` naming ``where`` (``kind: field``)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except InputError:
                continue
        raise InputError(f"{where} must be {_type_name(tp)}, got {_show(value)}")
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list | tuple):
            raise InputError(f"{where} must be {_type_name(tp)}, got {_show(value)}")
        return [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value) and isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise InputError(f"{where} must be an object, got {_show(value)}")
        return _parse_into(tp, value, where)  # type: ignore[arg-type]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(float(value)):
                raise InputError(f"{where} must be a finite number, got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is dict:
        if isinstance(value, dict):
            return value
    else:  # pragma: no cover - a params class with a type this parser does not know
        raise TypeError(f"{where}: unsupported parameter type {tp!r}")
    raise InputError(f"{where} must be {_type_name(tp)}, got {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_into(cls: type[T], data: dict, where: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise InputError(f"{where}: unknown field '{unknown[0]}' (fields: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _convert(
                data[name], hints[name], f"{where} {name}" if where.endswith(":") else f"{where}.{name}"
            )
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise InputError(f"{where}: missing field '{name}'")
    return cls(**values)


def parse(cls: type[T], data: Any, kind: str) -> T:
    """``data`` (JSON) as an instance of the params dataclass ``cls`` of job kind ``kind``."""
    if not isinstance(data, dict):
        raise InputError(f"job kind '{kind}': params must be a JSON object, got {_show(data)}")
    return _parse_into(cls, data, f"job kind '{kind}':")


def to_json(params: Any) -> dict:
    """The JSON form of a params dataclass (what the queue stores)."""
    return dataclasses.asdict(params)


def resolve_key(store, key: str, kind: str) -> str:
    """A run key or a unique prefix of one, as the full key; one-line ``InputError`` otherwise."""
    if not isinstance(key, str) or not re.fullmatch(r"[0-9a-f]{1,64}", key.strip()):
        raise InputError(f"job kind '{kind}': key {_show(key)} is not a run key (lowercase hex characters)")
    key = key.strip()
    runs = Path(store.root) / "runs"
    if (runs / key).is_dir():
        return key
    matches = sorted(p.name for p in runs.glob(f"{key}*") if p.is_dir())
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InputError(f"job kind '{kind}': key '{key}' matches {len(matches)} runs; give more characters")
    raise InputError(f"job kind '{kind}': key: no run {key} in cache {store.root}")
