"""Typed YAML configuration of the ``privbox`` command line.

A config file has up to four sections, each a dataclass with defaults, next to the command that
owns it: ``capture`` (:mod:`.capture`, ``privbox capture``), ``attack`` (:mod:`.attack`, ``privbox
attack`` and ``privbox tune``), ``run`` (:mod:`.run`: snapshots, checkpoints, progress, device) and
``tune`` (:mod:`.tune`, the search of ALGORITHMS.md §4.8). :func:`load_config` reads a YAML file
in privbox's dialect (:mod:`.dialect`: safe loading only, YAML 1.2 floats) and applies ``-o
section.key=value`` overrides (:mod:`.overrides`). Every invalid value raises the one
:class:`~privbox.core.errors.ConfigError`, naming the key and the file or override it came from.
:func:`config_reference_markdown` (:mod:`.reference`) generates the reference from the field
metadata and the registries; the docs embed it and a test keeps them current.
"""

from ..core.errors import ConfigError
from .attack import AttackSection
from .capture import CaptureSection
from .dialect import parse_yaml_value
from .loader import (
    PACKAGED_CONFIG_DIR,
    SECTIONS,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    packaged_configs,
    resolve_config_path,
)
from .overrides import parse_override
from .reference import REFERENCE_BEGIN, REFERENCE_END, config_reference_markdown, replace_reference_block
from .run import RunSection
from .tune import TuneSection

#: The former name of :class:`ConfigError` (one error type for every invalid config value).
ConfigFileError = ConfigError

__all__ = [
    "ConfigError",
    "ConfigFileError",
    "CaptureSection",
    "AttackSection",
    "RunSection",
    "TuneSection",
    "ExperimentConfig",
    "SECTIONS",
    "PACKAGED_CONFIG_DIR",
    "packaged_configs",
    "resolve_config_path",
    "load_config",
    "config_from_dict",
    "apply_overrides",
    "parse_override",
    "parse_yaml_value",
    "config_reference_markdown",
    "replace_reference_block",
    "REFERENCE_BEGIN",
    "REFERENCE_END",
]
