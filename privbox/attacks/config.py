"""Typed attack configuration shared by every preset of the optimisation engine."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

LABEL_STRATEGIES = ("joint", "given", "recover")
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("randn", "rand", "zeros")


from ..core.errors import ConfigError  # noqa: E402  (one error type for every config boundary)


@dataclass
class AttackConfig:
    """Settings of one gradient-inversion run (see ``privbox.attacks.presets`` for paper defaults).

    Attributes:
        name: preset name, recorded in results.
        objective: gradient-matching distance (``privbox.attacks.objectives.OBJECTIVES``).
        layer_weights: optional per-parameter weights for the objective (in model order).
        optimizer: ``"lbfgs"`` (one iteration = one outer L-BFGS step) or ``"adam"``.
        lr: learning rate.
        iterations: iteration budget.
        lbfgs_max_iter / lbfgs_history / lbfgs_line_search: L-BFGS inner iterations per step,
            history size, and ``None`` or ``"strong_wolfe"``.
        adam_betas: Adam's (β1, β2).
        label_strategy: ``"joint"`` (DLG: optimise soft-label logits), ``"given"`` (labels
            from the update; needs the labels-known threat model) or ``"recover"`` (analytic,
            ``label_method``).
        label_method: for ``"recover"``: a ``privbox.labels`` method, or ``"auto"`` (iDLG's sign
            rule at B = 1, LLG's set-and-fill at B > 1).
        init: initial dummy images: ``"randn"`` N(0, I), ``"rand"`` U(0, 1), ``"zeros"``.
        signed: use the sign of the image gradient (Inverting Gradients' signed Adam).
        boxed: clamp images to the valid pixel range after every step.
        gradient_weight: w_g, the weight of the gradient distance in the total loss.
        regularizers: ``{name: weight}`` or ``{name: {"weight": w, **options}}`` from
            ``privbox.attacks.regularizers.REGULARIZERS`` (``tv``, ``tv4``, ``image_norm``,
            ``bn``, ``group``).
        schedule / schedule_params: lr schedule from ``privbox.attacks.schedules.SCHEDULES``.
        noise: κ; after each step x̂ += κ·lr_{t+1}·N(0, I) (E2EGI's 0.2).
        return_best: return the iterate with the lowest gradient loss (E2EGI
            ``--min-grads-loss``); otherwise the last iterate.
        early_stop_loss: stop once the gradient loss falls below this value (0 disables).
        early_stop_tv: stop once the TV of the best iterate falls below this value
            (the Label-based-Defense attack's 0.28; 0 disables).
        nan_lr_decay: on a NaN loss, restore the best iterate and multiply the lr by this.
        max_nan_restores: give up after this many NaN recoveries.
        restarts: independent trials (seeds ``seed``, ``seed+1``, …); the lowest final gradient
            loss wins.
        seed: random seed of the initialisation.
        progress: show a tqdm progress bar.
        snapshot_every: call the snapshot callback every N iterations (0 disables).
    """

    name: str = "custom"
    objective: str = "l2"
    layer_weights: Optional[list[float]] = None
    optimizer: str = "lbfgs"
    lr: float = 1.0
    iterations: int = 300
    lbfgs_max_iter: int = 20
    lbfgs_history: int = 100
    lbfgs_line_search: Optional[str] = None
    adam_betas: tuple[float, float] = (0.9, 0.999)
    label_strategy: str = "joint"
    label_method: str = "auto"
    init: str = "randn"
    signed: bool = False
    boxed: bool = False
    gradient_weight: float = 1.0
    regularizers: dict[str, Any] = field(default_factory=dict)
    schedule: str = "constant"
    schedule_params: dict[str, Any] = field(default_factory=dict)
    noise: float = 0.0
    return_best: bool = True
    early_stop_loss: float = 0.0
    early_stop_tv: float = 0.0
    nan_lr_decay: float = 0.5
    max_nan_restores: int = 10
    restarts: int = 1
    seed: int = 0
    progress: bool = True
    snapshot_every: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .objectives import OBJECTIVES

        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}; choose one of {OBJECTIVES.names()}")
        self._choice("optimizer", OPTIMIZERS)
        self._choice("label_strategy", LABEL_STRATEGIES)
        self._choice("init", INITS)
        if self.lbfgs_line_search not in (None, "strong_wolfe"):
            raise ConfigError(f"lbfgs_line_search must be None or 'strong_wolfe', got {self.lbfgs_line_search!r}")
        for key in ("iterations", "restarts", "lbfgs_max_iter", "lbfgs_history"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not 0 < self.nan_lr_decay <= 1:
            raise ConfigError(f"nan_lr_decay must be in (0, 1], got {self.nan_lr_decay}")
        if self.snapshot_every < 0 or self.early_stop_loss < 0 or self.early_stop_tv < 0 or self.noise < 0:
            raise ConfigError("snapshot_every, early_stop_loss, early_stop_tv and noise must be >= 0")
        from .regularizers import REGULARIZERS
        from .schedules import SCHEDULES

        for name in self.regularizers:
            if name not in REGULARIZERS:
                raise ConfigError(f"unknown regularizer {name!r}; choose from {REGULARIZERS.names()}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown lr schedule {self.schedule!r}; choose from {SCHEDULES.names()}")
        from ..core.config_checks import check_finite, check_unit_interval

        check_finite(self, "attack")
        if not isinstance(self.adam_betas, (list, tuple)) or len(self.adam_betas) != 2:
            raise ConfigError(f"must be two numbers (β1, β2), got {self.adam_betas!r}", where="attack.adam_betas",
                              fix="e.g. adam_betas: [0.9, 0.999]")
        check_unit_interval(list(self.adam_betas), "attack.adam_betas")
        self.adam_betas = tuple(float(b) for b in self.adam_betas)  # type: ignore[assignment]

    def _choice(self, key: str, options: tuple[str, ...]) -> None:
        if getattr(self, key) not in options:
            raise ConfigError(f"{key} must be one of {list(options)}, got {getattr(self, key)!r}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AttackConfig":
        """Build from a mapping; unknown keys raise an error listing the valid ones."""
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"unknown attack config keys {unknown}; valid keys are {cls.field_names()}")
        return cls(**data)

    def replace(self, **changes: Any) -> "AttackConfig":
        """A copy with ``changes`` applied (validated; unknown keys are an error)."""
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ConfigError(f"unknown attack config keys {unknown}; valid keys are {self.field_names()}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["adam_betas"] = list(self.adam_betas)
        return data
