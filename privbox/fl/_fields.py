"""Small helpers for the typed sections of the federated-simulation config."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

from ..core.errors import ConfigError


def h(default: Any, help: str, factory: bool = False) -> Any:
    """A dataclass field with a one-line ``help`` (read by the generated config reference)."""
    if factory:
        return field(default_factory=default, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def check_keys(cls: type, data: Any, where: str) -> dict:
    """``data`` as a dict; unknown keys raise :class:`ConfigError` listing the valid ones."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {type(data).__name__}", where=where)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"unknown keys {unknown}", where=where, fix=f"valid keys are {', '.join(valid)}")
    return dict(data)


def positive_int(value: Any, where: str, allow_none: bool = False, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a positive (or non-negative) integer."""
    if value is None and allow_none:
        return
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"must be an integer >= {low}, got {value!r}", where=where)
