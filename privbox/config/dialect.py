"""privbox's YAML dialect: ``yaml.SafeLoader`` only (never arbitrary objects), with YAML 1.2 floats
(``1e-4`` without a dot is a float, as in YAML 1.2 and unlike PyYAML's YAML 1.1)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import ConfigError, PrivboxError
from ..core.yaml_limits import LimitedSafeLoader

__all__ = ["parse_yaml_value", "read_yaml", "dump_yaml"]


class _Loader(LimitedSafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-4`` (no dot) as a float, as YAML 1.2 does."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
for _first in list("-+0123456789."):
    _Loader.yaml_implicit_resolvers[_first] = [
        (tag, regexp) for tag, regexp in _Loader.yaml_implicit_resolvers.get(_first, []) if tag != "tag:yaml.org,2002:float"
    ]
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def parse_yaml_value(text: str) -> Any:
    """Parse one override value as a YAML scalar or flow collection (``0.05``, ``true``, ``[1, 2]``)."""
    try:
        return yaml.load(text, Loader=_Loader) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse the value {text!r} as YAML: {exc}") from None


def read_yaml(path: Path) -> dict[str, Any]:
    from ..core.safetensors_io import check_regular_file

    try:
        check_regular_file(path, "config file")  # a FIFO would block the read forever
    except PrivboxError as exc:
        raise ConfigError(exc.what, where=exc.where, fix="give the path of a YAML config file") from None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a UTF-8 text file; a privbox config is YAML") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"a privbox config is a mapping of sections, got {type(data).__name__}", where=str(path))
    return data




def dump_yaml(value: Any, flow: bool = False) -> str:
    """``value`` as YAML text (``flow``: one line, for table cells)."""
    if flow:
        return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=None)
