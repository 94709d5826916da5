"""Validation helpers shared by the config sections: one message style, naming the key."""

from __future__ import annotations

from typing import Any, Sequence

from ..core.errors import ConfigError

__all__ = ["positive", "choose"]


def positive(section: str, **values: Any) -> None:
    """Raise unless each given value is ``None`` or >= 1 (``<section>.<key> must be >= 1``)."""
    for key, value in values.items():
        if value is not None and value < 1:
            raise ConfigError(f"{section}.{key} must be >= 1, got {value}")


def choose(section: str, key: str, value: Any, options: Sequence[Any]) -> None:
    """Raise unless ``value`` is one of ``options``."""
    if value not in options:
        raise ConfigError(f"{section}.{key} must be one of {list(options)}, got {value!r}")
