"""Dataclass fields that describe themselves: the help text (and allowed values) a generated
reference shows, stored in the field's metadata instead of being parsed out of docstrings."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Optional, Sequence, Union

from .errors import ConfigError

__all__ = ["described", "field_help", "field_choices", "type_name", "coerce", "from_mapping"]


def described(default: Any, help: str, choices: Optional[Sequence[Any]] = None) -> Any:
    """A dataclass field with ``help`` (one sentence for the reference) and optional ``choices``.

    Mutable defaults (dicts, lists) get a factory that copies them, so instances never share one.
    """
    meta = {"help": help, "choices": tuple(choices) if choices else None}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_help(f: dataclasses.Field) -> str:
    """The help text of a field made by :func:`described` (empty for other fields)."""
    return str(f.metadata.get("help", ""))


def field_choices(f: dataclasses.Field) -> Optional[tuple]:
    """The allowed values of a field made by :func:`described`, or ``None``."""
    return f.metadata.get("choices")


# ------------------------------------------------------------------------------ coercion
def type_name(hint: Any) -> str:
    """A reader's name of a type hint: ``int``, ``float or null``, ``list of float``, ``mapping``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return "any"
    if origin is Union:
        inner = [a for a in args if a is not type(None)]
        name = " or ".join(type_name(a) for a in inner)
        return f"{name} or null" if len(inner) < len(args) else name
    if origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"[{', '.join(type_name(a) for a in args)}]"
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    return {bool: "bool", int: "int", float: "float", str: "string"}.get(hint, getattr(hint, "__name__", str(hint)))


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` (ints become floats where a float is wanted).

    Raises:
        ConfigError: naming ``where`` (the key, e.g. ``attack.lr``) and the expected type.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    bad = ConfigError(f"{where}: expected {type_name(hint)}, got {value!r} ({type(value).__name__})")
    if hint is Any:
        return value
    if origin is Union:
        if value is None:
            if type(None) in args:
                return None
            raise bad
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(value, option, where)
            except ConfigError:
                continue
        raise bad
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if hint is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values {type_name(hint)}, got {list(value)!r}")
            return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        item = args[1] if len(args) == 2 else Any
        return {str(k): coerce(v, item, f"{where}.{k}") for k, v in value.items()}
    return value


def from_mapping(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from ``data``, coercing each value to its field's type.

    Unknown keys raise a :class:`ConfigError` naming ``where`` and listing the valid keys.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {data!r}")
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(map(str, data)) - set(valid))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys are {valid}")
    hints = typing.get_type_hints(cls)
    return cls(**{key: coerce(value, hints[key], f"{where}.{key}") for key, value in data.items()})


def check_keys(cls: type, data: Any, where: str, allow_none: bool = True) -> dict:
    """``data`` as a dict for the dataclass ``cls``; ``None`` gives ``{}`` when ``allow_none``; a
    non-mapping or unknown keys raise :class:`ConfigError` naming ``where`` and the valid keys."""
    if data is None and allow_none:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {type(data).__name__}", where=where)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"unknown keys {unknown}", where=where, fix=f"valid keys are {', '.join(valid)}")
    return dict(data)
