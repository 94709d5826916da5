"""Small helpers for the typed sections of the federated-simulation config."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from ..core.errors import ConfigError
from ..core.fields import check_keys

__all__ = ["h", "check_keys", "positive_int"]


def h(default: Any, help: str, factory: bool = False) -> Any:
    """A dataclass field with a one-line ``help`` (read by the generated config reference)."""
    if factory:
        return field(default_factory=default, metadata={"help": help})
    return field(default=default, metadata={"help": help})



def positive_int(value: Any, where: str, allow_none: bool = False, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a positive (or non-negative) integer."""
    if value is None and allow_none:
        return
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"must be an integer >= {low}, got {value!r}", where=where)
