"""Checks of config values that the typed sections cannot express by type alone.

:func:`check_finite` walks a config (dataclass, mapping, list) and refuses NaN and infinite
numbers with the dotted key of the offending value, so ``lr: .inf``, a NaN regularizer weight or
a NaN early-stop threshold is a :class:`~privbox.core.errors.ConfigError` instead of a run that
silently goes nowhere (every comparison with NaN is false, so range checks alone let NaN pass).
:func:`check_unit_interval` is the range check of fractions such as Adam's betas.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

from .errors import ConfigError

__all__ = ["check_finite", "check_unit_interval"]

_FIX = "give a finite number (YAML .inf and .nan are not valid settings)"


def _walk(value: Any, key: str) -> Iterable[tuple[str, Any]]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _walk(getattr(value, item.name), f"{key}.{item.name}" if key else item.name)
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _walk(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _walk(item, f"{key}[{index}]")
    else:
        yield key, value


def check_finite(config: Any, section: str = "", allow_inf: Iterable[str] = ()) -> None:
    """Raise :class:`ConfigError` naming the first NaN or infinite number in ``config``.

    ``section`` prefixes the keys (``attack`` gives ``attack.lr``); keys in ``allow_inf`` may be
    ``+inf`` (a documented "no limit"), never NaN.
    """
    allowed = set(allow_inf)
    for key, value in _walk(config, section):
        if isinstance(value, float) and not math.isfinite(value):
            if math.isinf(value) and value > 0 and key.split(".")[-1] in allowed:
                continue
            raise ConfigError(f"is {value}", where=key, fix=_FIX)


def check_unit_interval(values: Any, key: str, closed_high: bool = False) -> None:
    """Each value must be a number in [0, 1) (or [0, 1] with ``closed_high``)."""
    for index, value in enumerate(values if isinstance(values, (list, tuple)) else [values]):
        high_ok = value <= 1 if closed_high else value < 1
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value and high_ok):
            interval = "[0, 1]" if closed_high else "[0, 1)"
            raise ConfigError(f"value {value!r} is outside {interval}", where=f"{key}[{index}]" if isinstance(values, (list, tuple)) else key,
                              fix="e.g. adam_betas: [0.9, 0.999]")
