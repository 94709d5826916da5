"""Typed, serialisable attack configuration shared by every preset of the optimisation engine.

:class:`AttackConfig` describes one attack completely: the engine's parts (objective,
regularizers, step rule, schedule, labels), the engine and orchestrator that run it, and the
orchestrator's options. ``to_dict()`` gives plain JSON/YAML data and ``from_dict()`` reads it
back (unknown keys are a :class:`~privbox.core.errors.ConfigError` listing the valid ones), so a
config travels through YAML files, result records and worker processes unchanged. Each field's
help text lives in its metadata; the config reference is generated from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from ..core.errors import ConfigError
from ..core.fields import described

__all__ = ["AttackConfig", "ConfigError", "LABEL_STRATEGIES", "OPTIMIZERS", "INITS"]

LABEL_STRATEGIES = ("joint", "given", "recover")
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("randn", "rand", "zeros")


@dataclass
class AttackConfig:
    """Settings of one gradient-inversion attack (see :mod:`privbox.attacks.presets` for the
    published defaults; :func:`privbox.attacks.build_attack` turns it into a runnable attack)."""

    name: str = described("custom", "preset name, recorded in results")
    engine: str = described("auto", "engine (observation model) from privbox.attacks.ENGINES: 'gradient' (FedSGD "
                                    "gradient matching), 'fedavg' (unrolled local SGD); 'auto': by the update's kind")
    orchestrator: str = described("restarts", "how engine runs combine, from privbox.attacks.ORCHESTRATORS: "
                                              "'restarts', 'group' (GradInversion), 'mlco' (E2EGI)")
    orchestrator_params: dict[str, Any] = described({}, "options of the orchestrator (e.g. mlco: num_seeds, "
                                                        "inner_iterations, group_weight, final_start)")
    objective: str = described("l2", "gradient-matching distance from privbox.attacks.OBJECTIVES")
    layer_weights: Optional[list[float]] = described(None, "per-parameter weights of the objective, in model order")
    optimizer: str = described("lbfgs", "'lbfgs' (one iteration = one outer L-BFGS step) or 'adam'", OPTIMIZERS)
    lr: float = described(1.0, "learning rate (the schedule's lr0)")
    iterations: int = described(300, "iteration budget")
    lbfgs_max_iter: int = described(20, "L-BFGS inner iterations per step")
    lbfgs_history: int = described(100, "L-BFGS history size")
    lbfgs_line_search: Optional[str] = described(None, "L-BFGS line search: null (fixed steps) or 'strong_wolfe'")
    adam_betas: tuple[float, float] = described((0.9, 0.999), "Adam's (beta1, beta2)")
    label_strategy: str = described("joint", "'joint' (DLG: optimise soft-label logits), 'given' (labels from the "
                                             "update; needs the labels-known threat model) or 'recover' "
                                             "(analytic, label_method)", LABEL_STRATEGIES)
    label_method: str = described("auto", "for 'recover': a privbox.labels method, or 'auto' (iDLG's sign rule at "
                                          "B = 1, LLG's set-and-fill at B > 1)")
    init: str = described("randn", "initial dummy images: 'randn' N(0, I), 'rand' U(0, 1), 'zeros'", INITS)
    signed: bool = described(False, "use the sign of the image gradient (Inverting Gradients' signed Adam)")
    boxed: bool = described(False, "clamp images to the valid pixel range after every step")
    gradient_weight: float = described(1.0, "w_g, the weight of the gradient distance in the total loss")
    regularizers: dict[str, Any] = described({}, "{name: weight} or {name: {weight: w, **options}} from "
                                                 "privbox.attacks.REGULARIZERS (tv, tv4, image_norm, bn, group)")
    schedule: str = described("constant", "lr schedule from privbox.attacks.SCHEDULES")
    schedule_params: dict[str, Any] = described({}, "options of the lr schedule")
    noise: float = described(0.0, "kappa; after each step x += kappa * lr_{t+1} * N(0, I) (E2EGI's 0.2)")
    return_best: bool = described(True, "return the iterate with the lowest gradient loss (E2EGI --min-grads-loss); "
                                        "otherwise the last iterate")
    early_stop_loss: float = described(0.0, "stop once the gradient loss falls below this value (0 disables)")
    early_stop_tv: float = described(0.0, "stop once the TV of the best iterate falls below this value "
                                          "(the Label-based-Defense attack's 0.28; 0 disables)")
    nan_lr_decay: float = described(0.5, "on a non-finite loss, restore the best iterate and multiply the lr by this")
    max_nan_restores: int = described(10, "give up after this many non-finite-loss recoveries")
    restarts: int = described(1, "independent trials (seeds seed, seed+1, ...); the lowest final gradient loss wins")
    seed: int = described(0, "random seed of the initialisation")
    progress: bool = described(True, "show a progress bar")
    snapshot_every: int = described(0, "call the snapshot callback every N iterations (0 disables)")
    extra: dict[str, Any] = described({}, "engine-specific options without a typed section (legacy FedAvg keys)")
    fedavg: Optional[Any] = described(None, "typed options of the FedAvg inversion (privbox.attacks.FedAvgOptions or a "
                                            "mapping of its fields: mode, bn_model, bn_convention, ...); null: other "
                                            "attacks, or the legacy keys of extra")

    def __post_init__(self) -> None:
        from .objectives import OBJECTIVES
        from .registries import ENGINES, ORCHESTRATORS
        from .regularizers import REGULARIZERS
        from .schedules import SCHEDULES

        for key in ("name", "engine", "orchestrator", "objective", "optimizer", "label_strategy", "label_method",
                    "init", "schedule"):
            if not isinstance(getattr(self, key), str):
                raise ConfigError(f"{key} must be a string, got {getattr(self, key)!r}")
        self._known("objective", self.objective, OBJECTIVES.names(), "unknown objective")
        self._choice("optimizer", OPTIMIZERS)
        self._choice("label_strategy", LABEL_STRATEGIES)
        self._choice("init", INITS)
        if self.engine != "auto":
            self._known("engine", self.engine, ENGINES.names(), "unknown engine")
        self._known("orchestrator", self.orchestrator, ORCHESTRATORS.names(), "unknown orchestrator")
        if self.lbfgs_line_search not in (None, "strong_wolfe"):
            raise ConfigError(f"lbfgs_line_search must be None or 'strong_wolfe', got {self.lbfgs_line_search!r}")
        for key in ("iterations", "restarts", "lbfgs_max_iter", "lbfgs_history"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not 0 < self.nan_lr_decay <= 1:
            raise ConfigError(f"nan_lr_decay must be in (0, 1], got {self.nan_lr_decay}")
        for key in ("snapshot_every", "early_stop_loss", "early_stop_tv", "noise", "max_nan_restores"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        for key in ("regularizers", "schedule_params", "orchestrator_params", "extra"):
            if not isinstance(getattr(self, key), dict):
                raise ConfigError(f"{key} must be a mapping, got {getattr(self, key)!r}")
        for name in self.regularizers:
            self._known("regularizers", name, REGULARIZERS.names(), "unknown regularizer")
        self._known("schedule", self.schedule, SCHEDULES.names(), "unknown lr schedule")
        self.adam_betas = tuple(float(b) for b in self.adam_betas)  # type: ignore[assignment]
        if len(self.adam_betas) != 2:
            raise ConfigError(f"adam_betas needs two values (beta1, beta2), got {list(self.adam_betas)}")
        from ..core.config_checks import check_finite, check_unit_interval

        check_finite(self, "attack")  # NaN passes every range check above; .inf is never a setting
        check_unit_interval(list(self.adam_betas), "attack.adam_betas")
        ORCHESTRATORS.get(self.orchestrator).parse_options(self.orchestrator_params)  # validates the options now
        if self.fedavg is not None:
            from .fedavg.options import FedAvgOptions

            if not isinstance(self.fedavg, FedAvgOptions):
                if not isinstance(self.fedavg, dict):
                    raise ConfigError(f"fedavg must be a mapping of FedAvg options, got {self.fedavg!r}")
                self.fedavg = FedAvgOptions.from_dict(self.fedavg)

    @staticmethod
    def _known(key: str, value: Any, names: list[str], what: str) -> None:
        if value not in names:
            raise ConfigError(f"{what} {value!r} (attack key {key!r}); choose one of {names}")

    def _choice(self, key: str, options: tuple[str, ...]) -> None:
        if getattr(self, key) not in options:
            raise ConfigError(f"{key} must be one of {list(options)}, got {getattr(self, key)!r}")

    @classmethod
    def field_names(cls) -> list[str]:
        """The config's keys, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def _check_keys(cls, keys) -> None:
        unknown = sorted(set(map(str, keys)) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"unknown attack config keys {unknown}; valid keys are {cls.field_names()}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AttackConfig":
        """Build from plain data (:meth:`to_dict`'s output); unknown keys raise a
        :class:`~privbox.core.errors.ConfigError` listing the valid ones."""
        if not isinstance(data, dict):
            raise ConfigError(f"an attack config is a mapping of keys to values, got {type(data).__name__}")
        cls._check_keys(data)
        try:
            return cls(**data)
        except TypeError as exc:  # a value of the wrong kind reached a comparison
            raise ConfigError(f"invalid attack config value: {exc}") from None

    def replace(self, **changes: Any) -> "AttackConfig":
        """A copy with ``changes`` applied (validated; unknown keys are an error)."""
        self._check_keys(changes)
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise ConfigError(f"invalid attack config value: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML data; ``AttackConfig.from_dict(c.to_dict()) == c``."""
        data = dataclasses.asdict(self)
        data["adam_betas"] = list(self.adam_betas)
        return data
