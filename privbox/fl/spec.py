"""Typed, serialisable description of one federated client (what it trains on and what it sends).

A :class:`ClientSpec` is plain data: ``to_dict()`` gives JSON/YAML-ready values and
``from_dict()`` rebuilds it, refusing unknown keys with a :class:`~privbox.core.errors.ConfigError`
that lists the valid ones. :class:`privbox.fl.client.Client` turns it into updates.

The settings follow the FL threat models of ALGORITHMS.md §1: FedSGD (one gradient of the batch,
McMahan et al., AISTATS 2017) or FedAvg (the weight delta of K = E·⌈n/b⌉ local SGD steps), BN in
train or eval mode, what leaves the client besides the tensors (labels, BN batch statistics, θ0),
and the defenses in the order the client applies them (:data:`privbox.defenses.DEFENSES`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..core.errors import ConfigError
from ..core.fields import check_keys, described

__all__ = ["DataSpec", "DefenseSpec", "ClientSpec", "SHARE_KINDS", "BN_MODES", "LABEL_ORDERS", "DATA_SOURCES"]

SHARE_KINDS = ("gradient", "delta")
BN_MODES = ("train", "eval")
LABEL_ORDERS = ("as_is", "grouped")
DATA_SOURCES = ("embedded", "folder", "cifar")



def _split(where: str) -> tuple[str, str]:
    """``"client.lr"`` -> (``"client"``, ``"lr"``): errors read ``client: lr must be ...``."""
    section, _, key = where.rpartition(".")
    return section or where, key or where


def _positive_int(value: Any, where: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        section, key = _split(where)
        raise ConfigError(f"{key} must be a positive integer, got {value!r}", where=section)


def _choice(value: Any, choices: tuple, where: str) -> None:
    if value not in choices:
        section, key = _split(where)
        raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}", where=section)


@dataclass
class DataSpec:
    """Where a client's private images come from (always pixels in [0, 1], no download)."""

    source: str = described("embedded", "'embedded' (photographs bundled with scikit-image), 'folder' (an image folder, "
                                 "one sub-folder per class) or 'cifar' (CIFAR-10 binary files)")
    path: Optional[str] = described(None, "folder or CIFAR-10 file/folder for source 'folder'/'cifar'")
    split: str = described("train", "CIFAR-10 split: 'train' or 'test'")
    images: Optional[list[str]] = described(None, "embedded source: names of the photographs (privbox.data.SAMPLE_NAMES); "
                                           "null: the first num_images")
    shuffle_images: bool = described(False, "embedded source: a seeded random choice of photographs instead of the first ones")
    distinct_labels: Optional[int] = described(None, "number of distinct labels in the batch (label repetition); null: "
                                              "min(num_images, num_classes)")
    seed: Optional[int] = described(None, "seed of the label/image draw; null: the client's seed")

    def __post_init__(self) -> None:
        _choice(self.source, DATA_SOURCES, "data.source")
        _choice(self.split, ("train", "test"), "data.split")
        if self.source != "embedded" and not self.path:
            raise ConfigError(f"source {self.source!r} needs a path", where="data.path",
                              fix="give the image folder or the CIFAR-10 binary file")
        if self.images is not None and self.source != "embedded":
            raise ConfigError("names photographs, which only the embedded source has", where="data.images")
        _positive_int(self.distinct_labels, "data.distinct_labels", allow_none=True)

    def images_argument(self) -> str:
        """The ``images`` argument of :func:`privbox.data.make_target_batch` for this source."""
        if self.source == "embedded":
            return "samples"
        if self.source == "folder":
            return f"folder:{self.path}"
        return f"cifar10{'-test' if self.split == 'test' else ''}:{self.path}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "data") -> "DataSpec":
        return cls(**check_keys(cls, data, where, allow_none=False))


@dataclass
class DefenseSpec:
    """One defense by registry name (:data:`privbox.defenses.DEFENSES`) and its parameters."""

    name: str = described("", "entry of privbox.defenses.DEFENSES, e.g. 'gaussian_privacy', 'dp_sgd', 'dgc'")
    params: dict[str, Any] = described({}, "keyword parameters of that defense")

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("a defense needs a non-empty name", where="defenses[].name")
        if not isinstance(self.params, dict):
            raise ConfigError(f"params must be a mapping, got {type(self.params).__name__}", where=f"defenses.{self.name}.params")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "defenses[]") -> "DefenseSpec":
        if isinstance(data, str):
            return cls(name=data)
        return cls(**check_keys(cls, data, where, allow_none=False))


@dataclass
class ClientSpec:
    """One FL client: model, data, local training, what is shared and the defenses, in order.

    ``share="gradient"`` with one local step is FedSGD (the gradient of the batch-mean
    cross-entropy at θ0); with K > 1 local steps the client sends the pseudo-gradient
    (θ0 − θ_K)/(lr·K), the mean of its step gradients (the Label-based-Defense "local
    iterations"). ``share="delta"`` sends ΔW = θ_K − θ0 (FedAvg).
    """

    model: str = described("dlg_lenet", "architecture from privbox.nn.MODEL_REGISTRY")
    model_kwargs: dict[str, Any] = described({}, "keyword arguments of the model builder")
    num_classes: Optional[int] = described(10, "classifier outputs C; null (a given model only): its output width")
    image_size: int = described(32, "square image side in pixels")
    channels: int = described(3, "image channels (1 or 3 for the built-in data sources)")
    data: DataSpec = field(default_factory=DataSpec, metadata={"help": "where the private images come from", "choices": None})
    num_images: int = described(1, "local samples n the client trains on in a round")
    batch_size: Optional[int] = described(None, "local minibatch size b; null: n (full batch)")
    local_steps: Optional[int] = described(None, "K local steps; null: local_epochs·ceil(n/b)")
    local_epochs: int = described(1, "local epochs E (used when local_steps is null)")
    shuffle: bool = described(False, "shuffle the samples every local epoch (seeded); an attacker cannot know the order")
    lr: float = described(0.01, "local learning rate")
    optimizer: str = described("sgd", "local optimizer: 'sgd'")
    optimizer_kwargs: dict[str, Any] = described({}, "optimizer arguments: momentum, weight_decay")
    bn_mode: str = described("train", "BatchNorm mode of local training: 'train' (batch statistics) or 'eval'")
    update_bn_stats: bool = described(True, "train mode: update the BN running statistics (and share their change)")
    shards: int = described(1, "devices with asynchronous BN: each step's batch is split into this many shards, each "
                        "normalised with its own statistics, gradients averaged")
    label_order: str = described("as_is", "'as_is' or 'grouped' (stable sort by label before local training)")
    dropout: Optional[bool] = described(None, "null: leave dropout as built; false: switch it off; true: require it on")
    mean: Optional[list[float]] = described(None, "per-channel normalisation mean; null: 0 per channel")
    std: Optional[list[float]] = described(None, "per-channel normalisation std; null: 1 per channel")
    share: str = described("gradient", "'gradient' (FedSGD, or the pseudo-gradient of K steps) or 'delta' (FedAvg θ_K − θ0)")
    include_labels: bool = described(False, "send the labels (the 'labels known' threat model)")
    include_bn_stats: bool = described(False, "send each BN layer's batch statistics (the 'exact BN' threat model; one "
                                       "full-batch gradient step only)")
    include_global_state: bool = described(True, "attach θ0 to the update (the attacker always has it in FL)")
    defenses: list[DefenseSpec] = described([], "defenses in the order the client applies them")
    scheme: Optional[str] = described(None, "a named client scheme (privbox.defenses.SCHEMES, compose with '+', e.g. 'RA+GH')")
    seed: int = described(0, "seed of the model weights, the data draw, dropout masks and defense noise")

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = DataSpec.from_dict(self.data)
        self.defenses = [d if isinstance(d, DefenseSpec) else DefenseSpec.from_dict(d) for d in self.defenses]
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError("must name a model", where="client.model")
        for key in ("image_size", "channels", "num_images", "local_epochs", "shards"):
            _positive_int(getattr(self, key), f"client.{key}")
        _positive_int(self.num_classes, "client.num_classes", allow_none=True)
        _positive_int(self.batch_size, "client.batch_size", allow_none=True)
        _positive_int(self.local_steps, "client.local_steps", allow_none=True)
        _choice(self.bn_mode, BN_MODES, "client.bn_mode")
        _choice(self.share, SHARE_KINDS, "client.share")
        _choice(self.label_order, LABEL_ORDERS, "client.label_order")
        _choice(self.optimizer, ("sgd",), "client.optimizer")
        unknown = sorted(set(self.optimizer_kwargs) - {"momentum", "weight_decay"})
        if unknown:
            raise ConfigError(f"unknown optimizer arguments {unknown}", where="client.optimizer_kwargs",
                              fix="valid ones are momentum, weight_decay")
        try:
            lr = float(self.lr)
        except (TypeError, ValueError):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}", where="client") from None
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}", where="client")
        self.lr = lr
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None and len(value) != self.channels:
                raise ConfigError(f"{key} needs one value per input channel ({self.channels}), got {value}", where="client")
        if self.std is not None and any(float(s) <= 0 for s in self.std):
            raise ConfigError(f"std values must be positive, got {self.std}", where="client")
        if self.include_bn_stats and self.share == "delta":
            raise ConfigError("BN batch statistics are shared with a FedSGD gradient; a FedAvg delta shares the "
                              "running-statistic change instead", where="client.include_bn_stats", fix="set it to false")

    @classmethod
    def for_batch(cls, images: Any, **values: Any) -> "ClientSpec":
        """A spec for a given batch of images (``[n, C, H, W]``): ``channels`` and ``num_images``
        from its shape, ``model="custom"`` unless named (the caller passes the live model)."""
        shape = np.shape(images)
        values.setdefault("model", "custom")
        for key in ("mean", "std"):
            if values.get(key) is not None:
                values[key] = [float(v) for v in values[key]]
        return cls(channels=int(shape[1]) if len(shape) == 4 else 3, num_images=max(int(shape[0]), 1) if shape else 1, **values)

    # ----------------------------------------------------------------------- derived values
    def normalisation(self, channels: Optional[int] = None) -> tuple[list[float], list[float]]:
        """(mean, std) actually used: the configured values, or 0 and 1 per channel (``channels``
        of the actual batch, default ``self.channels``)."""
        c = self.channels if channels is None else int(channels)
        mean = [float(m) for m in self.mean] if self.mean is not None else [0.0] * c
        std = [float(s) for s in self.std] if self.std is not None else [1.0] * c
        return mean, std

    def replace(self, **changes: Any) -> "ClientSpec":
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready values (nested specs as mappings)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["data"] = self.data.to_dict()
        out["defenses"] = [d.to_dict() for d in self.defenses]
        out["model_kwargs"] = dict(self.model_kwargs)
        out["optimizer_kwargs"] = dict(self.optimizer_kwargs)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "client") -> "ClientSpec":
        """Rebuild from :meth:`to_dict` output; unknown keys raise :class:`ConfigError` naming the valid ones."""
        values = check_keys(cls, data, where, allow_none=False)
        if "data" in values and values["data"] is not None:
            values["data"] = DataSpec.from_dict(values["data"], where=f"{where}.data")
        if "defenses" in values:
            values["defenses"] = [DefenseSpec.from_dict(d, where=f"{where}.defenses[{i}]") for i, d in enumerate(values["defenses"] or [])]
        return cls(**values)
