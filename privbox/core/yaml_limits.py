"""A ``yaml.SafeLoader`` with limits, so a hostile config cannot hang or exhaust the loader.

``yaml.SafeLoader`` never builds arbitrary objects, but YAML anchors and aliases let a few lines
expand to billions of nodes (the "billion laughs" document: each anchor a list of aliases of the
previous one), and deep nesting exhausts the stack. :class:`LimitedSafeLoader` counts, while
composing, the aliases, anchors and nodes of the document, its nesting depth and its size once
every alias is expanded, and raises
:class:`~privbox.core.errors.ConfigError` at the first limit crossed. Real privbox configs use no
aliases at all; the limits leave room for a few.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import ConfigError

__all__ = ["LimitedSafeLoader", "MAX_ALIASES", "MAX_ANCHORS", "MAX_NODES", "MAX_DEPTH", "MAX_BYTES"]

MAX_ALIASES = 100
MAX_ANCHORS = 100
MAX_NODES = 100_000
MAX_DEPTH = 64
#: Largest config text (a config is a few kilobytes).
MAX_BYTES = 1 << 20


class LimitedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses documents beyond :data:`MAX_ALIASES` aliases,
    :data:`MAX_ANCHORS` anchors, :data:`MAX_NODES` nodes, :data:`MAX_DEPTH` levels or :data:`MAX_BYTES` bytes.

    The name of the source (a file path or ``-o`` override) for messages is ``loader.where``.
    """

    where = "YAML"

    def __init__(self, stream: Any) -> None:
        if isinstance(stream, (str, bytes)) and len(stream) > MAX_BYTES:
            raise ConfigError(f"the YAML text has {len(stream)} characters, more than {MAX_BYTES}", where=self.where,
                              fix="a privbox config is a few kilobytes; check the file")
        super().__init__(stream)
        self._aliases = self._anchors = self._nodes = self._depth = 0

    def _limit(self, what: str, count: int, limit: int) -> None:
        if count > limit:
            raise ConfigError(
                f"the YAML document has more than {limit} {what}", where=self.where,
                fix="privbox configs need no anchors or aliases (&x / *x); write the values out",
            )

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            self._limit("aliases", self._aliases, MAX_ALIASES)
        else:
            event = self.peek_event()
            if getattr(event, "anchor", None) is not None:
                self._anchors += 1
                self._limit("anchors", self._anchors, MAX_ANCHORS)
        self._nodes += 1
        self._limit("nodes", self._nodes, MAX_NODES)
        self._depth += 1
        try:
            self._limit("levels of nesting", self._depth, MAX_DEPTH)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        self._limit("nodes once its aliases are expanded", _expanded_size(node, {}), MAX_NODES)
        return node


def _expanded_size(node: Any, memo: dict[int, int]) -> int:
    """Nodes of ``node`` with every alias expanded (shared nodes counted once per use)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive alias counts once (SafeLoader cannot build it anyway)
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[key] = min(size, 1 << 62)
    return memo[key]
