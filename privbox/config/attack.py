"""The ``attack`` section: a preset of ``privbox.attacks.ATTACKS`` plus any ``AttackConfig`` key
(``privbox attack``, ``privbox tune``)."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError
from ..core.fields import coerce, described

if TYPE_CHECKING:  # pragma: no cover
    from ..attacks.config import AttackConfig

__all__ = ["AttackSection", "attack_hints", "preset_value"]


def attack_hints() -> dict[str, Any]:
    """The type of every :class:`~privbox.attacks.AttackConfig` key."""
    from ..attacks.config import AttackConfig

    return typing.get_type_hints(AttackConfig)


def _check_preset(preset: Any) -> None:
    from ..attacks.registries import ATTACKS

    if not isinstance(preset, str) or preset not in ATTACKS:
        raise ConfigError(f"attack.preset {preset!r} is unknown; choose one of {ATTACKS.names()}")


@dataclass
class AttackSection:
    """An attack preset and the :class:`~privbox.attacks.AttackConfig` fields to change.

    In YAML the section is flat: ``preset`` plus any AttackConfig field
    (``attack: {preset: e2egi, iterations: 2000, lr: 0.05}``); ``settings`` holds the fields.
    """

    preset: str = described("dlg", "attack preset from privbox.attacks.ATTACKS")
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_preset(self.preset)
        self.build()  # validates every field now, not at run time

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> "AttackSection":
        """The section from YAML data: ``preset`` plus AttackConfig keys, each coerced to its type."""
        hints = attack_hints()
        valid = ["preset", *hints]
        unknown = sorted(set(map(str, data)) - set(valid))
        if unknown:
            raise ConfigError(f"unknown key(s) {unknown} in section 'attack'; valid keys are {valid}")
        preset = coerce(data.get("preset", "dlg"), str, "attack.preset")
        settings = {k: coerce(v, hints[k], f"attack.{k}") for k, v in data.items() if k != "preset"}
        return cls(preset=preset, settings=settings)

    def build(self, **extra: Any) -> "AttackConfig":
        """The :class:`~privbox.attacks.AttackConfig`: the preset with ``settings`` and ``extra`` applied."""
        from ..attacks.presets import get_preset

        try:
            return get_preset(self.preset, **{**self.settings, **extra})
        except ConfigError as exc:
            raise ConfigError(f"attack: {exc}") from None
        except TypeError as exc:  # a value of the wrong kind reached a validator
            raise ConfigError(f"attack: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, **self.settings}


def preset_value(preset: Any, key: str, override: str) -> Any:
    """The preset's value of ``key`` (a deeper override edits it instead of replacing it)."""
    from ..attacks.presets import get_preset

    _check_preset(preset)
    values = get_preset(preset).to_dict()
    if key not in values:
        raise ConfigError(f"unknown attack key {key!r}; valid keys are {['preset', *values]}", where=f"-o {override}")
    value = values[key]
    return dict(value) if isinstance(value, dict) else value
