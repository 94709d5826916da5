"""The ``capture`` section: the victim client of ``privbox capture``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..core.errors import ConfigError
from ..core.fields import described
from .checks import choose, positive

__all__ = ["CaptureSection"]


@dataclass
class CaptureSection:
    """The victim: model, private batch and what the client sends (``privbox capture``)."""

    model: str = described("dlg_lenet", "architecture from privbox.nn.MODEL_REGISTRY")
    model_kwargs: dict[str, Any] = described({}, "extra keyword arguments of the model builder; in_channels and "
                                          "image_size are filled from channels/image_size when the builder takes them")
    num_classes: int = described(10, "classifier outputs C")
    batch_size: int = described(1, "client batch size B")
    distinct_labels: Optional[int] = described(None, "number of distinct labels in the batch (label repetition); "
                                              "null: min(B, C)")
    image_size: int = described(32, "square image side in pixels (8 to 224)")
    channels: int = described(3, "image channels", choices=(1, 3))
    images: str = described("samples", "'samples' (embedded photographs), 'folder:<dir>', 'cifar10:<path>', "
                                "'cifar10-test:<path>' or a path (see privbox.data.make_target_batch)")
    shuffle_images: bool = described(False, "embedded samples only: a seeded random choice instead of the first B")
    mean: Optional[list[float]] = described(None, "per-channel normalisation mean; null: 0.5 per channel")
    std: Optional[list[float]] = described(None, "per-channel normalisation std; null: 0.5 per channel")
    bn_mode: str = described("train", "BatchNorm mode of the client's forward pass", choices=("train", "eval"))
    share_labels: bool = described(False, "send the labels (the 'labels known' threat model)")
    share_bn_stats: bool = described(False, "send each BN layer's batch statistics (the 'exact BN' threat model)")
    seed: int = described(0, "seed of the model weights (paddle.seed before building) and of the batch draw")
    kind: str = described("gradient", "'gradient': one FedSGD gradient; 'weight_delta': the FedAvg update θ_K − θ_0 "
                               "after local SGD (batch_size is then the number of local samples n)",
                   choices=("gradient", "weight_delta"))
    local_lr: float = described(0.01, "weight_delta only: the local SGD learning rate")
    local_epochs: int = described(1, "weight_delta only: local epochs E")
    local_batch_size: Optional[int] = described(None, "weight_delta only: local minibatch size b; null: n (one step per epoch)")
    defenses: list[Any] = described([], "defenses the client applies, in order: [{name: <privbox.defenses.DEFENSES "
                                        "entry>, params: {...}}] or just names")

    def __post_init__(self) -> None:
        from ..nn.models import MODEL_REGISTRY

        if self.model not in MODEL_REGISTRY:
            raise ConfigError(f"capture.model {self.model!r} is unknown; choose one of {sorted(MODEL_REGISTRY)}")
        positive("capture", num_classes=self.num_classes, batch_size=self.batch_size, distinct_labels=self.distinct_labels)
        choose("capture", "channels", self.channels, (1, 3))
        choose("capture", "bn_mode", self.bn_mode, ("train", "eval"))
        if not 8 <= self.image_size <= 224:
            raise ConfigError(f"capture.image_size must be in [8, 224], got {self.image_size}")
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None and len(value) != self.channels:
                raise ConfigError(
                    f"capture.{key} needs one value per channel ({self.channels}), got {value}"
                )
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ConfigError(f"capture.std values must be positive, got {self.std}")
        choose("capture", "kind", self.kind, ("gradient", "weight_delta"))
        positive("capture", local_epochs=self.local_epochs, local_batch_size=self.local_batch_size)
        if not self.local_lr > 0:
            raise ConfigError(f"capture.local_lr must be positive, got {self.local_lr}")
        self.defense_specs()  # names and shapes checked now, not at run time
        if self.kind == "weight_delta" and self.share_bn_stats:
            raise ConfigError(
                "capture.share_bn_stats applies to FedSGD gradients; a FedAvg weight_delta shares the BN "
                "running-statistic delta instead (set share_bn_stats: false)"
            )

    def defense_specs(self) -> list:
        """``defenses`` as :class:`~privbox.fl.spec.DefenseSpec` objects, checked against the registry."""
        from ..defenses import DEFENSES
        from ..fl.spec import DefenseSpec

        specs = []
        for i, item in enumerate(self.defenses):
            spec = DefenseSpec.from_dict(item, where=f"capture.defenses[{i}]")
            if spec.name not in DEFENSES:
                raise ConfigError(f"capture.defenses[{i}]: unknown defense {spec.name!r}; choose one of {DEFENSES.names()}")
            specs.append(spec)
        return specs

    def normalisation(self) -> tuple[list[float], list[float]]:
        """The (mean, std) actually used: the configured values or 0.5 per channel."""
        mean = list(self.mean) if self.mean is not None else [0.5] * self.channels
        std = list(self.std) if self.std is not None else [0.5] * self.channels
        return mean, std
