"""Named registries for every pluggable kind (objectives, regularizers, schedules, attacks,
defenses, label methods, models, schemes, ...).

An entry carries, beside the object itself, what runners need to reason about it without a
hand-made table:

* ``description``: one line, shown by ``privbox config --reference`` and in the docs;
* ``requires``: the capabilities it needs from a :class:`~privbox.core.update.ClientUpdate`
  (e.g. ``{"labels"}``, ``{"bn_stats"}``, ``{"global_state"}``, ``{"kind:delta"}``), so a runner
  can skip an impossible pair and say why;
* ``tunable``: the hyper-parameters a search may vary, as :class:`Range` objects, read by the
  tuner's search space and the generated config reference.

Adding a part is one ``@REGISTRY.register(...)`` in one file; nothing else needs editing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, Iterator, Mapping, Optional, Sequence, TypeVar

from .errors import ConfigError

T = TypeVar("T")

__all__ = ["Range", "Entry", "Registry"]


@dataclass(frozen=True)
class Range:
    """A tunable hyper-parameter: numeric ``[low, high]`` (``log`` for log-uniform sampling,
    ``integer`` for whole numbers) or a finite set of ``choices``."""

    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    integer: bool = False
    choices: Optional[Sequence[Any]] = None

    def __post_init__(self) -> None:
        if self.choices is not None:
            if len(self.choices) == 0:
                raise ValueError("Range(choices=...) needs at least one choice")
            return
        if self.low is None or self.high is None:
            raise ValueError("Range needs low and high, or choices")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ValueError(f"Range needs finite low <= high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError(f"a log Range needs low > 0, got {self.low}")

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in the range (or is one of the choices)."""
        if self.choices is not None:
            return value in self.choices
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        return self.low <= v <= self.high and (not self.integer or float(v).is_integer())

    def describe(self) -> str:
        """Short text for tables: ``[1e-4, 1] log`` or ``one of a, b``."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        kind = " log" if self.log else ""
        kind += " int" if self.integer else ""
        return f"[{self.low:g}, {self.high:g}]{kind}"


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered part and what it declares about itself."""

    name: str
    item: T
    description: str = ""
    requires: frozenset = field(default_factory=frozenset)
    tunable: Mapping[str, Range] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Maps names to parts; unknown names raise a :class:`ConfigError` listing the valid ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self,
        name: str,
        *,
        description: str = "",
        requires: Iterable[str] = (),
        tunable: Optional[Mapping[str, Range]] = None,
        **extra: Any,
    ) -> Callable[[T], T]:
        """Decorator (or call ``register(name, ...)(obj)``) adding ``obj`` under ``name``."""

        def decorator(item: T) -> T:
            self.add(name, item, description=description, requires=requires, tunable=tunable, **extra)
            return item

        return decorator

    def add(
        self,
        name: str,
        item: T,
        *,
        description: str = "",
        requires: Iterable[str] = (),
        tunable: Optional[Mapping[str, Range]] = None,
        **extra: Any,
    ) -> Entry[T]:
        """Register ``item`` under ``name``; a second registration of a name is an error."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if not description:
            doc = (getattr(item, "__doc__", None) or "").strip()
            description = doc.splitlines()[0] if doc else ""
        entry = Entry(name, item, description, frozenset(requires), dict(tunable or {}), dict(extra))
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry (for tests that register toy parts)."""
        self._entries.pop(name, None)

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}", fix=f"choose one of {', '.join(sorted(self._entries))}") from None

    def get(self, name: str) -> T:
        return self.entry(name).item

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
