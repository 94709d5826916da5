"""Typed options of the FedAvg inversion (:class:`FedAvgOptions`), carried by an attack config as
its ``fedavg`` section. Imports nothing from the attack engine, so a config can hold it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import paddle.nn as nn

from ...core.bn import bn_layers
from ...core.errors import ConfigError

__all__ = ["FedAvgOptions", "MODES", "BN_MODELS", "BN_CONVENTIONS", "LABEL_INITS"]

MODES = ("differentiable", "reference")
BN_MODELS = ("auto", "global", "updated")
BN_CONVENTIONS = ("auto", "paddle", "torch")
LABEL_INITS = ("uniform", "zeros")


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class FedAvgOptions:
    """FedAvg-specific settings: the typed section ``AttackConfig.fedavg`` (or, legacy, the keys of
    ``AttackConfig.extra``).

    Attributes:
        mode: ``"differentiable"`` (unrolled local SGD, default) or ``"reference"`` (the
            NVIDIA code's effective behaviour).
        bn_model: the weights at which the BN regulariser sees the dummy batch: ``"global"``
            (W_t, where the client computed its first batch statistics: exact for K = 1) or
            ``"updated"`` (W_t + ΔW, NVIDIA's ``model_bn``); ``"auto"`` = ``"updated"`` in
            reference mode (parity), ``"global"`` in differentiable mode.
        bn_convention: EMA convention for recovering batch statistics from Δr (ALGORITHMS.md
            §3.4): ``"paddle"`` (r ← m·r + (1−m)·b), ``"torch"`` (r ← (1−m)·r + m·b) or
            ``"auto"``: the update's, i.e. ``"paddle"`` (privbox clients are Paddle models).
        bn_momentum: the EMA momentum in that convention; ``None`` reads the victim model's BN
            momentum (Paddle ``_momentum``, 0.9 by default) for ``"paddle"`` and uses 0.1 (the
            NVIDIA setting) for ``"torch"``.
        bn_delta_weight: differentiable mode: weight of Σ_l‖Δr̂_l − Δr_l‖ (not squared) between
            the running-statistic change of the simulated local training (EMA simulated
            explicitly from the dummy batch statistics) and the observed Δr; 0 disables.
        grey: reference mode: optimise one grey channel replicated to the model's input
            channels (NVIDIA's chest X-rays); ``None`` = on in reference mode, off otherwise.
        normalize_prior: normalise the prior image with the data mean/std (model input
            space, ALGORITHMS.md §3.6); ``None`` = off in reference mode (parity), on otherwise.
        label_init: reference mode: label logits t ~ U(0, 1) (``"uniform"``, NVIDIA's
            ``init_target_rand``) or zeros.
    """

    mode: str = "differentiable"
    bn_model: str = "auto"
    bn_convention: str = "auto"
    bn_momentum: Optional[float] = None
    bn_delta_weight: float = 0.0
    grey: Optional[bool] = None
    normalize_prior: Optional[bool] = None
    label_init: str = "uniform"

    def __post_init__(self) -> None:
        for key, choices in (("mode", MODES), ("bn_model", BN_MODELS), ("bn_convention", BN_CONVENTIONS), ("label_init", LABEL_INITS)):
            if getattr(self, key) not in choices:
                raise ConfigError(f"FedAvg option {key} must be one of {list(choices)}, got {getattr(self, key)!r}")
        if self.bn_momentum is not None and not 0.0 < float(self.bn_momentum) < 1.0:
            raise ConfigError(f"bn_momentum must lie in (0, 1), got {self.bn_momentum}")
        if self.bn_delta_weight < 0:
            raise ConfigError(f"bn_delta_weight must be >= 0, got {self.bn_delta_weight}")
        if self.mode == "differentiable" and self.grey:
            raise ConfigError("grey=True is a reference-mode option; the differentiable mode optimises every input channel")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "attack.fedavg") -> "FedAvgOptions":
        """Build from a mapping; unknown keys raise :class:`ConfigError` listing the valid ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"unknown FedAvg options {unknown}", where=where, fix=f"valid ones are {', '.join(names)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: Any) -> "FedAvgOptions":
        """The options of an :class:`~privbox.attacks.AttackConfig`.

        The typed section ``config.fedavg`` when set; otherwise the FedAvg keys of the legacy
        ``config.extra`` (unknown keys raise :class:`ConfigError` listing the valid ones).
        """
        typed = getattr(config, "fedavg", None)
        if typed is not None:
            return typed if isinstance(typed, cls) else cls.from_dict(typed)
        return cls.from_dict(getattr(config, "extra", {}) or {}, where="attack.extra")

    @property
    def reference(self) -> bool:
        return self.mode == "reference"

    def resolved_bn_model(self) -> str:
        if self.bn_model != "auto":
            return self.bn_model
        return "updated" if self.reference else "global"

    def resolved_grey(self) -> bool:
        return self.reference if self.grey is None else bool(self.grey)

    def resolved_normalize_prior(self) -> bool:
        return (not self.reference) if self.normalize_prior is None else bool(self.normalize_prior)

    def resolved_bn(self, model: nn.Layer) -> tuple[float, str]:
        """(momentum, convention) for EMA inversion and simulation, resolved against ``model``."""
        convention = "paddle" if self.bn_convention == "auto" else self.bn_convention
        if self.bn_momentum is not None:
            return float(self.bn_momentum), convention
        if convention == "torch":
            return 0.1, convention
        momenta = sorted({float(layer._momentum) for _, layer in bn_layers(model)})
        if len(momenta) > 1:
            raise ConfigError(f"the model's BN layers use different momenta {momenta}; set bn_momentum explicitly")
        return (momenta[0] if momenta else 0.9), convention
