"""Typed YAML configuration of the ``privbox`` command line.

A config file has up to four sections, each a dataclass with defaults:

``capture``  the victim side: model, batch, normalisation, BN mode, what is shared
             (:class:`CaptureSection`, used by ``privbox capture``);
``attack``   an attack preset plus any :class:`~privbox.attacks.AttackConfig` field to change
             (:class:`AttackSection`, used by ``privbox attack`` and ``privbox tune``);
``run``      how a long run is shown and saved: snapshots, checkpoints, progress, device
             (:class:`RunSection`);
``tune``     the hyper-parameter search on a simulation update (:class:`TuneSection`,
             ``privbox tune``, ALGORITHMS.md §4.8).

:func:`load_config` reads a YAML file (``yaml.SafeLoader`` only, never arbitrary objects) and
applies ``section.key=value`` overrides whose values are parsed as YAML scalars (``-o
attack.lr=0.05``, ``-o attack.regularizers.tv=1e-3``, ``-o capture.mean=[0.5,0.5,0.5]``).
Unknown sections and keys are errors that list the valid ones. :func:`config_reference_markdown`
renders the reference of every section from these dataclasses (the docs embed it, and a test
keeps the docs up to date).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import yaml

__all__ = [
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

PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent / "configs"
REFERENCE_BEGIN = "<!-- BEGIN GENERATED CONFIG REFERENCE (privbox config --reference) -->"
REFERENCE_END = "<!-- END GENERATED CONFIG REFERENCE -->"


class ConfigFileError(ValueError):
    """A config file or override that cannot be used (unknown key, wrong type, bad value)."""


# ------------------------------------------------------------------------------------ YAML
class _Loader(yaml.SafeLoader):
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
        raise ConfigFileError(f"cannot parse the value {text!r} as YAML: {exc}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigFileError(f"{path} is not a UTF-8 text file; a privbox config is YAML") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"{path}: a privbox config is a mapping of sections ({', '.join(SECTIONS)}), got {type(data).__name__}"
        )
    return data


# ------------------------------------------------------------------------- typed sections
def _f(default: Any, help: str, choices: Optional[Sequence[Any]] = None) -> Any:
    """A dataclass field with a help text (and allowed values) for the generated reference."""
    meta = {"help": help, "choices": tuple(choices) if choices else None}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def _positive(section: str, **values: Any) -> None:
    for key, value in values.items():
        if value is not None and value < 1:
            raise ConfigFileError(f"{section}.{key} must be >= 1, got {value}")


def _choose(section: str, key: str, value: Any, options: Sequence[Any]) -> None:
    if value not in options:
        raise ConfigFileError(f"{section}.{key} must be one of {list(options)}, got {value!r}")


@dataclass
class CaptureSection:
    """The victim: model, private batch and what the client sends (``privbox capture``)."""

    model: str = _f("dlg_lenet", "architecture from privbox.nn.MODEL_REGISTRY")
    model_kwargs: dict[str, Any] = _f({}, "extra keyword arguments of the model builder; in_channels and "
                                          "image_size are filled from channels/image_size when the builder takes them")
    num_classes: int = _f(10, "classifier outputs C")
    batch_size: int = _f(1, "client batch size B")
    distinct_labels: Optional[int] = _f(None, "number of distinct labels in the batch (label repetition); "
                                              "null: min(B, C)")
    image_size: int = _f(32, "square image side in pixels (8 to 224)")
    channels: int = _f(3, "image channels", choices=(1, 3))
    images: str = _f("samples", "'samples' (embedded photographs), 'folder:<dir>', 'cifar10:<path>', "
                                "'cifar10-test:<path>' or a path (see privbox.data.make_target_batch)")
    shuffle_images: bool = _f(False, "embedded samples only: a seeded random choice instead of the first B")
    mean: Optional[list[float]] = _f(None, "per-channel normalisation mean; null: 0.5 per channel")
    std: Optional[list[float]] = _f(None, "per-channel normalisation std; null: 0.5 per channel")
    bn_mode: str = _f("train", "BatchNorm mode of the client's forward pass", choices=("train", "eval"))
    share_labels: bool = _f(False, "send the labels (the 'labels known' threat model)")
    share_bn_stats: bool = _f(False, "send each BN layer's batch statistics (the 'exact BN' threat model)")
    seed: int = _f(0, "seed of the model weights (paddle.seed before building) and of the batch draw")
    kind: str = _f("gradient", "'gradient': one FedSGD gradient; 'weight_delta': the FedAvg update θ_K − θ_0 "
                               "after local SGD (batch_size is then the number of local samples n)",
                   choices=("gradient", "weight_delta"))
    local_lr: float = _f(0.01, "weight_delta only: the local SGD learning rate")
    local_epochs: int = _f(1, "weight_delta only: local epochs E")
    local_batch_size: Optional[int] = _f(None, "weight_delta only: local minibatch size b; null: n (one step per epoch)")

    def __post_init__(self) -> None:
        from .nn.models import MODEL_REGISTRY

        if self.model not in MODEL_REGISTRY:
            raise ConfigFileError(f"capture.model {self.model!r} is unknown; choose one of {sorted(MODEL_REGISTRY)}")
        _positive("capture", num_classes=self.num_classes, batch_size=self.batch_size, distinct_labels=self.distinct_labels)
        _choose("capture", "channels", self.channels, (1, 3))
        _choose("capture", "bn_mode", self.bn_mode, ("train", "eval"))
        if not 8 <= self.image_size <= 224:
            raise ConfigFileError(f"capture.image_size must be in [8, 224], got {self.image_size}")
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None and len(value) != self.channels:
                raise ConfigFileError(
                    f"capture.{key} needs one value per channel ({self.channels}), got {value}"
                )
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ConfigFileError(f"capture.std values must be positive, got {self.std}")
        _choose("capture", "kind", self.kind, ("gradient", "weight_delta"))
        _positive("capture", local_epochs=self.local_epochs, local_batch_size=self.local_batch_size)
        if not self.local_lr > 0:
            raise ConfigFileError(f"capture.local_lr must be positive, got {self.local_lr}")
        if self.kind == "weight_delta" and self.share_bn_stats:
            raise ConfigFileError(
                "capture.share_bn_stats applies to FedSGD gradients; a FedAvg weight_delta shares the BN "
                "running-statistic delta instead (set share_bn_stats: false)"
            )

    def normalisation(self) -> tuple[list[float], list[float]]:
        """The (mean, std) actually used: the configured values or 0.5 per channel."""
        mean = list(self.mean) if self.mean is not None else [0.5] * self.channels
        std = list(self.std) if self.std is not None else [0.5] * self.channels
        return mean, std

    def resolved_model_kwargs(self) -> dict[str, Any]:
        """``model_kwargs`` with ``in_channels``/``image_size`` filled in when the builder takes them."""
        from .nn.models import MODEL_REGISTRY

        kwargs = dict(self.model_kwargs)
        try:
            params = inspect.signature(MODEL_REGISTRY[self.model]).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            params = {}
        if "in_channels" in params:
            kwargs.setdefault("in_channels", self.channels)
        if "image_size" in params:
            kwargs.setdefault("image_size", self.image_size)
        return kwargs


@dataclass
class AttackSection:
    """An attack preset and the :class:`~privbox.attacks.AttackConfig` fields to change.

    In YAML the section is flat: ``preset`` plus any AttackConfig field
    (``attack: {preset: e2egi, iterations: 2000, lr: 0.05}``); ``settings`` holds the fields.
    """

    preset: str = _f("dlg", "attack preset from privbox.attacks.PRESETS")
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .attacks.presets import PRESETS

        if self.preset not in PRESETS:
            raise ConfigFileError(f"attack.preset {self.preset!r} is unknown; choose one of {sorted(PRESETS)}")
        self.build()  # validates every field now, not at run time

    def build(self, **extra: Any) -> "AttackConfig":  # noqa: F821 - imported lazily
        """The :class:`~privbox.attacks.AttackConfig`: the preset with ``settings`` and ``extra`` applied."""
        from .attacks.config import ConfigError
        from .attacks.presets import get_preset

        try:
            return get_preset(self.preset, **{**self.settings, **extra})
        except ConfigError as exc:
            raise ConfigFileError(f"attack: {exc}") from None
        except TypeError as exc:  # a value of the wrong kind reached a validator
            raise ConfigFileError(f"attack: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, **self.settings}


@dataclass
class RunSection:
    """How a long run is shown and saved (``privbox attack``, ``privbox tune``); the CLI sets
    ``attack.snapshot_every`` and ``attack.progress`` from here."""

    snapshot_every: int = _f(0, "write a PNG snapshot of the current iterate every N iterations; "
                                "0: about 20 per run (iterations // 20)")
    checkpoint_every: Optional[int] = _f(None, "write a resumable checkpoint every N iterations; "
                                               "null: with every snapshot")
    progress: bool = _f(True, "show a progress bar")
    device: str = _f("auto", "paddle device: 'auto' (GPU when Paddle has CUDA), 'cpu', 'gpu' or 'gpu:N'")

    def __post_init__(self) -> None:
        if self.snapshot_every < 0:
            raise ConfigFileError(f"run.snapshot_every must be >= 0, got {self.snapshot_every}")
        _positive("run", checkpoint_every=self.checkpoint_every)
        if not re.fullmatch(r"auto|cpu|gpu(:\d+)?", self.device):
            raise ConfigFileError(f"run.device must be 'auto', 'cpu', 'gpu' or 'gpu:N', got {self.device!r}")

    def intervals(self, iterations: int) -> tuple[int, int]:
        """(snapshot_every, checkpoint_every) for a run of ``iterations``."""
        snapshot = self.snapshot_every or max(1, iterations // 20)
        return snapshot, self.checkpoint_every or snapshot


TUNABLE = ("lr", "tv", "bn", "image_norm", "gradient_weight", "iterations")


@dataclass
class TuneSection:
    """Hyper-parameter search on a simulation update built from the attacker's own data (§4.8)."""

    trials: int = _f(16, "number of sampled configurations")
    budget: int = _f(5000, "attack iterations per trial (the paper: 5000)")
    record_from: int = _f(2000, "first iteration at which trials are compared (the paper: 2000)")
    sampler: str = _f("random", "'random' (built in, seeded, successive halving) or 'optuna' "
                                "(TPE + median pruning; pip install \"privbox[tune]\")", choices=("random", "optuna"))
    reduction_factor: int = _f(4, "successive halving keeps 1/reduction_factor of the trials at each rung")
    seed: int = _f(0, "seed of the sampler")
    surrogate_seed: int = _f(1, "seed of the attacker's surrogate batch (labels and image choice)")
    surrogate_images: str = _f("samples", "the attacker's own data, as capture.images; with 'samples' the "
                                          "embedded images after the first B are preferred")
    distinct_labels: Optional[int] = _f(None, "label repetition of the surrogate batch; null: the target's "
                                              "(from shared labels, else counted by LLG label recovery)")
    params: Optional[list[str]] = _f(None, "what to tune, from " + ", ".join(TUNABLE) + "; null: lr and the "
                                           "weights of the tv, bn and image_norm regularizers the attack uses")
    ranges: dict[str, list[Any]] = _f({}, "search range per parameter, [low, high] or [low, high, log]; "
                                          "defaults: lr [0.1, 1], tv and bn [1e-6, 0.1, log], image_norm "
                                          "[-1e-6, 0], gradient_weight [0.01, 1], iterations [5000, 20000]")
    run_best: bool = _f(True, "after the search, run the attack on the target with the best values")

    def __post_init__(self) -> None:
        _positive("tune", trials=self.trials, budget=self.budget, distinct_labels=self.distinct_labels)
        if self.record_from < 0:
            raise ConfigFileError(f"tune.record_from must be >= 0, got {self.record_from}")
        if self.reduction_factor < 2:
            raise ConfigFileError(f"tune.reduction_factor must be >= 2, got {self.reduction_factor}")
        _choose("tune", "sampler", self.sampler, ("random", "optuna"))
        for name in list(self.params or []) + list(self.ranges):
            if name not in TUNABLE:
                raise ConfigFileError(f"tune: unknown parameter {name!r}; tunable parameters are {list(TUNABLE)}")


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
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


# ------------------------------------------------------------------------------- coercion
def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return "any"
    if origin is Union:
        inner = [a for a in args if a is not type(None)]
        name = " or ".join(_type_name(a) for a in inner)
        return f"{name} or null" if len(inner) < len(args) else name
    if origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"[{', '.join(_type_name(a) for a in args)}]"
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    return {bool: "bool", int: "int", float: "float", str: "string"}.get(hint, getattr(hint, "__name__", str(hint)))


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` (ints become floats where a float is wanted)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    bad = ConfigFileError(f"{where}: expected {_type_name(hint)}, got {value!r} ({type(value).__name__})")
    if hint is Any:
        return value
    if origin is Union:
        if value is None:
            if type(None) in args:
                return None
            raise bad
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigFileError:
                continue
        raise bad
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if hint is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigFileError(f"{where}: expected {len(args)} values {_type_name(hint)}, got {list(value)!r}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        item = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, item, f"{where}.{k}") for k, v in value.items()}
    return value  # pragma: no cover - no other types are used in the sections


def _section_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build_section(name: str, data: Any) -> Any:
    cls = SECTIONS[name]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"section {name!r} must be a mapping of keys to values, got {data!r}")
    if cls is AttackSection:
        return _build_attack(data)
    hints = _section_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(map(str, data)) - set(valid))
    if unknown:
        raise ConfigFileError(f"unknown key(s) {unknown} in section {name!r}; valid keys are {valid}")
    values = {key: _coerce(value, hints[key], f"{name}.{key}") for key, value in data.items()}
    try:
        return cls(**values)
    except ConfigFileError:
        raise
    except ValueError as exc:
        raise ConfigFileError(f"{name}: {exc}") from None


def _attack_hints() -> dict[str, Any]:
    from .attacks.config import AttackConfig

    return typing.get_type_hints(AttackConfig)


def _build_attack(data: dict[str, Any]) -> AttackSection:
    hints = _attack_hints()
    valid = ["preset", *hints]
    unknown = sorted(set(map(str, data)) - set(valid))
    if unknown:
        raise ConfigFileError(f"unknown key(s) {unknown} in section 'attack'; valid keys are {valid}")
    preset = _coerce(data.get("preset", "dlg"), str, "attack.preset")
    settings = {k: _coerce(v, hints[k], f"attack.{k}") for k, v in data.items() if k != "preset"}
    return AttackSection(preset=preset, settings=settings)


def config_from_dict(data: dict[str, Any], source: Optional[str] = None) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from plain data; unknown sections or keys are errors."""
    if not isinstance(data, dict):
        raise ConfigFileError(f"a privbox config is a mapping of sections ({', '.join(SECTIONS)}), got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(SECTIONS))
    if unknown:
        raise ConfigFileError(f"unknown section(s) {unknown}; valid sections are {list(SECTIONS)}")
    sections = {name: _build_section(name, data.get(name)) for name in SECTIONS}
    return ExperimentConfig(**sections, source=source)


# ------------------------------------------------------------------------------ overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``section.key[.sub]=value`` into the key path and the YAML-typed value."""
    key, sep, raw = text.partition("=")
    path = [p.strip() for p in key.strip().split(".")]
    if not sep or len(path) < 2 or not all(path):
        raise ConfigFileError(
            f"overrides look like section.key=value (e.g. attack.lr=0.05 or capture.batch_size=4); got {text!r}"
        )
    return path, parse_yaml_value(raw)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to raw config data (a new dict is returned).

    A deeper path edits a mapping in place: ``attack.regularizers.tv=1e-3`` changes the TV weight
    and keeps the other regularizers of the file or, when the file does not set them, of the preset.
    """
    import copy

    out = copy.deepcopy(data) if data else {}
    for text in overrides:
        path, value = parse_override(text)
        section = path[0]
        if section not in SECTIONS:
            raise ConfigFileError(f"override {text!r}: unknown section {section!r}; valid sections are {list(SECTIONS)}")
        node = out.setdefault(section, {})
        if node is None:
            node = out[section] = {}
        if not isinstance(node, dict):
            raise ConfigFileError(f"override {text!r}: section {section!r} in the file is not a mapping")
        if len(path) > 2 and section == "attack" and path[1] not in node:
            node[path[1]] = _preset_value(node.get("preset", "dlg"), path[1], text)
        for depth, key in enumerate(path[1:-1], start=1):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigFileError(
                    f"override {text!r}: {'.'.join(path[: depth + 1])} is {child!r}, not a mapping; "
                    f"set it whole, e.g. {'.'.join(path[: depth + 1])}=..."
                )
            node = child
        node[path[-1]] = value
    return out


def _preset_value(preset: Any, key: str, text: str) -> Any:
    from .attacks.presets import PRESETS, get_preset

    if preset not in PRESETS:
        raise ConfigFileError(f"attack.preset {preset!r} is unknown; choose one of {sorted(PRESETS)}")
    values = get_preset(preset).to_dict()
    if key not in values:
        raise ConfigFileError(f"override {text!r}: unknown attack key {key!r}; valid keys are {['preset', *values]}")
    value = values[key]
    return dict(value) if isinstance(value, dict) else value


# ---------------------------------------------------------------------------------- files
def packaged_configs() -> list[str]:
    """Names of the configs shipped with privbox (``privbox/configs/<name>.yaml``)."""
    return sorted(p.stem for p in PACKAGED_CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: Union[str, Path]) -> Path:
    """A path to an existing file, or the name of a packaged config (``dlg``, ``capture_lenet``, ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.exists():
        raise ConfigFileError(f"{path} is a directory, not a YAML config file")
    packaged = PACKAGED_CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.suffix and packaged.is_file():
        return packaged
    raise FileNotFoundError(
        f"config {str(name_or_path)!r} not found: give a YAML file or a packaged config name "
        f"({', '.join(packaged_configs())})"
    )


def load_config(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load a YAML config (a file or a packaged config name) and apply ``-o`` overrides.

    Args:
        path: the YAML file, a packaged config name, or ``None`` for the defaults.
        overrides: ``section.key=value`` strings; values are YAML-typed.

    Returns:
        The typed :class:`ExperimentConfig`.

    Raises:
        ConfigFileError: unknown sections or keys (the message lists the valid ones), values of the
            wrong type, invalid values.
        FileNotFoundError: ``path`` is neither a file nor a packaged config.
    """
    data: dict[str, Any] = {}
    source = None
    if path is not None:
        resolved = resolve_config_path(path)
        data = _read_yaml(resolved)
        source = str(resolved)
    data = apply_overrides(data, overrides)
    try:
        return config_from_dict(data, source=source)
    except ConfigFileError as exc:
        raise ConfigFileError(f"{source}: {exc}" if source else str(exc)) from None


# ------------------------------------------------------------------------------ reference
def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:  # pragma: no cover
        return "required"
    return "`" + yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip() + "`"


def _cell(text: str) -> str:
    """One table cell: reStructuredText markup from docstrings turned into Markdown, one line."""
    text = re.sub(r":\w+:`~([^`]+)`", lambda m: "`" + m.group(1).split(".")[-1] + "`", text)
    text = re.sub(r":\w+:`([^`]+)`", r"`\1`", text).replace("``", "`")
    return " ".join(text.split()).replace("|", "\\|")


def _attack_field_docs() -> dict[str, str]:
    """Field descriptions of :class:`~privbox.attacks.AttackConfig`, from its field metadata."""
    from .attacks.config import AttackConfig
    from .core.fields import field_choices, field_help

    docs = {}
    for f in dataclasses.fields(AttackConfig):
        text = field_help(f)
        if field_choices(f):
            text += " (one of " + ", ".join(f"`{c}`" for c in field_choices(f)) + ")"
        docs[f.name] = text
    return docs


def config_reference_markdown() -> str:
    """The reference of every config section, generated from the dataclasses (Markdown)."""
    from .attacks.presets import PRESETS, get_preset

    lines = [
        "A config file has up to four sections; every key is optional. Unknown sections and keys are "
        "errors. Override any key on the command line with `-o section.key=value` (YAML-typed).",
        "",
    ]
    for name, cls in SECTIONS.items():
        lines += [f"### `{name}`", "", _cell(inspect.getdoc(cls).split("\n\n")[0]), ""]
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        hints = _section_hints(cls)
        if cls is AttackSection:
            preset_field = next(f for f in dataclasses.fields(cls) if f.name == "preset")
            lines.append(
                f"| `preset` | string | {_default_text(preset_field)} | one of "
                f"{', '.join(f'`{p}`' for p in sorted(PRESETS))} |"
            )
            docs = _attack_field_docs()
            for key, hint in _attack_hints().items():
                text = docs.get(key, "")
                lines.append(f"| `{key}` | {_type_name(hint)} | from the preset | {_cell(text)} |")
            lines.append("")
            continue
        for f in dataclasses.fields(cls):
            help_text = f.metadata.get("help", "")
            choices = f.metadata.get("choices")
            if choices:
                help_text += " (one of " + ", ".join(f"`{c}`" for c in choices) + ")"
            lines.append(f"| `{f.name}` | {_type_name(hints[f.name])} | {_default_text(f)} | {_cell(help_text)} |")
        lines.append("")
    keys = ["optimizer", "lr", "iterations", "objective", "regularizers", "signed", "boxed", "noise", "label_strategy"]
    lines += ["### Preset defaults", "", "| preset | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for preset in sorted(PRESETS):
        values = get_preset(preset).to_dict()
        cells = [_cell(yaml.safe_dump(values[k], default_flow_style=True).strip().removesuffix("...").strip()) for k in keys]
        lines.append(f"| `{preset}` | " + " | ".join(cells) + " |")
    return "\n".join(lines).rstrip() + "\n"


def replace_reference_block(text: str, reference: Optional[str] = None) -> str:
    """Return ``text`` with the part between the reference markers replaced by the reference."""
    reference = config_reference_markdown() if reference is None else reference
    if REFERENCE_BEGIN not in text or REFERENCE_END not in text:
        raise ConfigFileError(f"the document has no {REFERENCE_BEGIN!r} ... {REFERENCE_END!r} markers")
    head, rest = text.split(REFERENCE_BEGIN, 1)
    _, tail = rest.split(REFERENCE_END, 1)
    return f"{head}{REFERENCE_BEGIN}\n\n{reference}\n{REFERENCE_END}{tail}"
