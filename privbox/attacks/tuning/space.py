"""The search space of the hyper-parameter search (ALGORITHMS.md §4.8), read from the registries.

A tunable parameter is a range declared by a registry entry: the engine's (``lr``,
``gradient_weight``, ``iterations`` on :data:`~privbox.attacks.ENGINES` ``"gradient"``) and each
regularizer's (:data:`~privbox.attacks.REGULARIZERS`): its weight under the regularizer's name
(``tv``, ``bn``, ...) and any other option as ``<regularizer>.<option>`` (``tv4.l1_weight``). A
regularizer registered with a tunable weight is searchable without editing this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ...core.registry import Range
from ..config import AttackConfig
from ..registries import ENGINES
from ..regularizers import REGULARIZERS

__all__ = ["SearchDimension", "tunable_parameters", "default_ranges", "default_parameters", "search_space",
           "apply_params"]

#: the engine whose declared ranges the search uses for lr, gradient_weight and iterations.
ENGINE = "gradient"


def _split(name: str) -> tuple[str, str]:
    """``"tv"`` -> (``"tv"``, ``"weight"``); ``"tv4.l1_weight"`` -> (``"tv4"``, ``"l1_weight"``)."""
    reg, _, option = name.partition(".")
    return reg, option or "weight"


def default_ranges() -> dict[str, Range]:
    """Every tunable parameter and its declared range, engine first, then the regularizers."""
    ranges = dict(ENGINES.entry(ENGINE).tunable)
    for entry in REGULARIZERS.entries():
        for option, rng in entry.tunable.items():
            ranges[entry.name if option == "weight" else f"{entry.name}.{option}"] = rng
    return ranges


def tunable_parameters() -> list[str]:
    """The names :func:`search_space` accepts."""
    return list(default_ranges())


def _is_regularizer(name: str) -> bool:
    return name not in ENGINES.entry(ENGINE).tunable


@dataclass(frozen=True)
class SearchDimension:
    """One tuned hyper-parameter: uniform (or log-uniform) on [low, high]; integers where the
    registry's range says so."""

    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        if self.name not in default_ranges():
            raise ValueError(f"unknown tunable parameter {self.name!r}; choose from {tunable_parameters()}")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ValueError(f"range of {self.name!r} must be finite with low <= high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0; {self.name!r} has [{self.low}, {self.high}]")
        if self.name == "lr" and self.low <= 0:
            raise ValueError(f"the lr range must be positive, got [{self.low}, {self.high}]")
        if self.name == "iterations" and self.low < 1:
            raise ValueError(f"the iterations range must start at >= 1, got [{self.low}, {self.high}]")

    def sample(self, rng: np.random.Generator) -> float:
        """Draw one value with ``rng``."""
        if self.integer:
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))


def default_parameters(config: AttackConfig) -> list[str]:
    """lr plus the weight of every regularizer ``config`` uses whose weight is tunable."""
    ranges = default_ranges()
    return ["lr", *[name for name in config.regularizers if name in ranges and _regularizer_weight(config, name)]]


def search_space(
    config: AttackConfig,
    params: Optional[Sequence[str]] = None,
    ranges: Optional[Mapping[str, Sequence[Any]]] = None,
) -> list[SearchDimension]:
    """The dimensions to search.

    Args:
        config: the attack to tune.
        params: names from :func:`tunable_parameters`; ``None``: :func:`default_parameters`.
        ranges: per name ``[low, high]`` or ``[low, high, "log"]`` (or a bool third item),
            replacing the registry's range.
    """
    declared = default_ranges()
    names = list(default_parameters(config) if params is None else params)
    if not names:
        raise ValueError(f"nothing to tune: give params from {list(declared)}")
    unknown = [n for n in list(names) + list(ranges or {}) if n not in declared]
    if unknown:
        raise ValueError(f"unknown tunable parameter(s) {unknown}; choose from {list(declared)}")
    if len(set(names)) != len(names):
        raise ValueError(f"tune params list a parameter twice: {names}")
    dims = []
    for name in names:
        rng = declared[name]
        low, high, log = rng.low, rng.high, rng.log
        if ranges and name in ranges:
            spec = list(ranges[name])
            if len(spec) not in (2, 3):
                raise ValueError(f"the range of {name!r} is [low, high] or [low, high, log], got {spec}")
            low, high = float(spec[0]), float(spec[1])
            log = bool(spec[2] in (True, "log")) if len(spec) == 3 else False
        reg, _ = _split(name)
        # A regularizer the config lacks is added with its default options, unless those need
        # something from the update (bn: the source of its target statistics): then say so.
        if _is_regularizer(name) and reg not in config.regularizers and REGULARIZERS.entry(reg).requires:
            raise ValueError(
                f"tuning {name!r} needs a {reg} regularizer in the attack config (e.g. attack.regularizers.{reg}="
                f"{{weight: 0.01, ...}}); the preset has none"
            )
        dims.append(SearchDimension(name, float(low), float(high), log=log, integer=rng.integer))
    return dims


def _regularizer_weight(config: AttackConfig, name: str) -> float:
    spec = config.regularizers.get(name)
    if spec is None:
        return 0.0
    return float(spec["weight"] if isinstance(spec, dict) else spec)


def apply_params(config: AttackConfig, values: Mapping[str, float]) -> AttackConfig:
    """``config`` with tuned values: engine parameters (lr, gradient_weight, iterations) or
    regularizer weights and options (a regularizer's other options are kept)."""
    declared = default_ranges()
    changes: dict[str, Any] = {}
    regs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.regularizers.items()}
    for name, value in values.items():
        if name not in declared:
            raise ValueError(f"unknown tunable parameter {name!r}; choose from {list(declared)}")
        value = int(value) if declared[name].integer else float(value)
        if not _is_regularizer(name):
            changes[name] = value
            continue
        reg, option = _split(name)
        current = regs.get(reg)
        if isinstance(current, dict):
            current[option] = value
        elif option == "weight":
            regs[reg] = value
        else:
            regs[reg] = {"weight": 0.0 if current is None else float(current), option: value}
    if regs != config.regularizers:
        changes["regularizers"] = regs
    return config.replace(**changes)
