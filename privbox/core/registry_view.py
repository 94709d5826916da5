"""A read-only ``{name: item}`` mapping over a :class:`~privbox.core.registry.Registry`, for code
that predates the registries (``PRESETS``, ``MODEL_REGISTRY``): it follows later registrations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Iterator, TypeVar

from .registry import Registry

T = TypeVar("T")

__all__ = ["RegistryView"]


class RegistryView(Mapping):
    """``view[name]`` is ``registry.get(name)`` (``KeyError`` when unknown, as a dict)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def __getitem__(self, name: str):
        if name not in self.registry:
            raise KeyError(name)
        return self.registry.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.registry.names())

    def __len__(self) -> int:
        return len(self.registry)

    def __repr__(self) -> str:
        return f"RegistryView({self.registry.kind}: {', '.join(self.registry.names())})"
