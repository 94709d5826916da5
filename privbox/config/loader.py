"""Whole config files: the sections, :class:`ExperimentConfig`, packaged configs and
:func:`load_config` (a YAML file or packaged name plus ``-o`` overrides).

Errors name where the bad value came from: the file (``run/x.yaml: unknown section(s) ...``) or,
when the file is fine and an override breaks it, that override (``-o attack.lr=-1: ...``).
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..core.config_checks import check_finite
from ..core.errors import ConfigError
from ..core.fields import coerce
from .attack import AttackSection
from .capture import CaptureSection
from .dialect import dump_yaml, read_yaml
from .overrides import apply_override
from .run import RunSection
from .tune import TuneSection

__all__ = ["SECTIONS", "ExperimentConfig", "PACKAGED_CONFIG_DIR", "packaged_configs", "resolve_config_path",
           "config_from_dict", "apply_overrides", "load_config"]

PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

#: section name -> its dataclass; each lives next to the command that owns it.
SECTIONS: dict[str, type] = {
    "capture": CaptureSection,
    "attack": AttackSection,
    "run": RunSection,
    "tune": TuneSection,
}


@dataclass
class ExperimentConfig:
    """A whole config file: one instance of every section (defaults where the file has none)."""

    capture: CaptureSection = field(default_factory=CaptureSection)
    attack: AttackSection = field(default_factory=AttackSection)
    run: RunSection = field(default_factory=RunSection)
    tune: TuneSection = field(default_factory=TuneSection)
    source: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML/JSON-ready) of every section."""
        return {
            "capture": dataclasses.asdict(self.capture),
            "attack": self.attack.to_dict(),
            "run": dataclasses.asdict(self.run),
            "tune": dataclasses.asdict(self.tune),
        }

    def to_yaml(self) -> str:
        """The config as YAML (loads back to an equal config)."""
        return dump_yaml(self.to_dict())


def _build_section(name: str, data: Any) -> Any:
    cls = SECTIONS[name]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"section {name!r} must be a mapping of keys to values, got {data!r}")
    if cls is AttackSection:
        return AttackSection.from_mapping(data)
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(map(str, data)) - set(valid))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in section {name!r}; valid keys are {valid}")
    values = {key: coerce(value, hints[key], f"{name}.{key}") for key, value in data.items()}
    try:
        return cls(**values)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def config_from_dict(data: dict[str, Any], source: Optional[str] = None) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from plain data; unknown sections or keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"a privbox config is a mapping of sections ({', '.join(SECTIONS)}), got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}; valid sections are {list(SECTIONS)}")
    sections = {name: _build_section(name, data.get(name)) for name in SECTIONS}
    check_finite(sections)  # NaN passes every range check; .inf is never a setting
    return ExperimentConfig(**sections, source=source)


def packaged_configs() -> list[str]:
    """Names of the configs shipped with privbox (``privbox/configs/<name>.yaml``)."""
    return sorted(p.stem for p in PACKAGED_CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: Union[str, Path]) -> Path:
    """A path to an existing file, or the name of a packaged config (``dlg``, ``capture_lenet``, ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.exists():
        kind = "a directory" if path.is_dir() else "a FIFO, socket or device"
        raise ConfigError(f"{path} is {kind}, not a YAML config file", fix="give the path of a YAML file")
    packaged = PACKAGED_CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.suffix and packaged.is_file():
        return packaged
    raise FileNotFoundError(
        f"config {str(name_or_path)!r} not found: give a YAML file or a packaged config name "
        f"({', '.join(packaged_configs())})"
    )


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to raw config data (a new dict is returned)."""
    out = copy.deepcopy(data) if data else {}
    for text in overrides:
        apply_override(out, text, SECTIONS)
    return out


def _blame(where: Optional[str], exc: ConfigError) -> ConfigError:
    return ConfigError(str(exc), where=where) if where else exc


def load_config(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load a YAML config (a file or a packaged config name) and apply ``-o`` overrides.

    Args:
        path: the YAML file, a packaged config name, or ``None`` for the defaults.
        overrides: ``section.key=value`` strings; values are YAML-typed.

    Returns:
        The typed :class:`ExperimentConfig`.

    Raises:
        ConfigError: unknown sections or keys (the message lists the valid ones), values of the
            wrong type, invalid values; the message names the file, or the override that broke a
            valid file.
        FileNotFoundError: ``path`` is neither a file nor a packaged config.
    """
    data: dict[str, Any] = {}
    source = None
    if path is not None:
        resolved = resolve_config_path(path)
        data = read_yaml(resolved)
        source = str(resolved)
    current = apply_overrides(data, overrides)
    try:
        return config_from_dict(current, source=source)
    except ConfigError as final:
        error = final
    # Say where the problem comes from: the file itself, or the first override that breaks it.
    try:
        config_from_dict(data, source=source)
    except ConfigError as exc:
        raise _blame(source, exc) from None
    current = copy.deepcopy(data)
    for text in overrides:
        apply_override(current, text, SECTIONS)
        try:
            config_from_dict(current, source=source)
        except ConfigError as exc:
            raise _blame(f"-o {text}", exc) from None
    raise _blame(source, error) from None  # pragma: no cover - the last override must have failed
