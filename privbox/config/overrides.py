"""``-o section.key=value`` overrides, as Paddle's own suites take them; values are YAML-typed.

A deeper path edits a mapping in place: ``attack.regularizers.tv=1e-3`` changes the TV weight and
keeps the other regularizers of the file or, when the file does not set them, of the preset.
Every error names the override (``-o attack.lr.x=1: ...``), not the file.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..core.errors import ConfigError
from .attack import preset_value
from .dialect import parse_yaml_value

__all__ = ["parse_override", "apply_override"]


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``section.key[.sub]=value`` into the key path and the YAML-typed value."""
    key, sep, raw = text.partition("=")
    path = [p.strip() for p in key.strip().split(".")]
    if not sep or len(path) < 2 or not all(path):
        raise ConfigError(
            f"overrides look like section.key=value (e.g. attack.lr=0.05 or capture.batch_size=4); got {text!r}"
        )
    try:
        return path, parse_yaml_value(raw)
    except ConfigError as exc:
        raise ConfigError(str(exc), where=f"-o {text}") from None


def apply_override(data: dict[str, Any], text: str, sections: Iterable[str]) -> None:
    """Apply one override to raw config ``data`` in place."""
    sections = list(sections)
    path, value = parse_override(text)
    section = path[0]
    where = f"-o {text}"
    if section not in sections:
        raise ConfigError(f"override {text!r}: unknown section {section!r}; valid sections are {sections}")
    node = data.setdefault(section, {})
    if node is None:
        node = data[section] = {}
    if not isinstance(node, dict):
        raise ConfigError(f"section {section!r} in the file is not a mapping", where=where)
    if len(path) > 2 and section == "attack" and path[1] not in node:
        node[path[1]] = preset_value(node.get("preset", "dlg"), path[1], text)
    for depth, key in enumerate(path[1:-1], start=1):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            dotted = ".".join(path[: depth + 1])
            raise ConfigError(f"{dotted} is {child!r}, not a mapping", where=where,
                              fix=f"set it whole, e.g. -o {dotted}=<value>")
        node = child
    node[path[-1]] = value
