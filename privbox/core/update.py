"""The observation an attacker gets: :class:`ClientUpdate`, its :class:`ThreatModel`, and the
ground truth kept apart in :class:`Secret`.

A ``ClientUpdate`` holds tensors keyed by parameter *name* (never by position) plus metadata
(model id, input shape, normalisation, number of classes, batch size, local steps, lr, loss, BN
mode, defenses, labels only when the threat model grants them). It is saved as one
``.safetensors`` file with JSON metadata; privbox never unpickles anything. See
``shared/reference/ALGORITHMS.md`` §1 for the threat model.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np

from .safetensors_io import FORMAT_VERSION, read_privbox_file, write_privbox_file
from .model_shapes import check_input_shape
from .validate import check_meta_dict, check_secret_arrays, check_update_arrays
from .._version import __version__

FORMAT_UPDATE = "privbox.ClientUpdate"
FORMAT_SECRET = "privbox.Secret"

PathLike = Union[str, os.PathLike]
ArrayDict = dict[str, np.ndarray]


# The error types live in privbox.core.errors; re-exported here for existing imports.
from .errors import MissingCapabilityError, ModelMismatchError, UpdateFileError  # noqa: E402


@dataclass
class UpdateMeta:
    """Metadata of a client update (JSON-serialisable)."""

    kind: str = "gradient"
    model_id: str = "custom"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: list[int] = field(default_factory=lambda: [3, 32, 32])
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    num_classes: int = 10
    batch_size: int = 1
    num_samples: int = 1
    local_steps: int = 1
    local_epochs: int = 1
    lr: Optional[float] = None
    loss: str = "ce-mean"
    optimizer: str = "sgd"
    bn_mode: str = "train"
    labels_shared: bool = False
    defenses: list[str] = field(default_factory=list)
    round: int = 0
    seed: Optional[int] = None
    privbox_version: str = __version__

    def __post_init__(self) -> None:
        check_meta_dict(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "update metadata") -> "UpdateMeta":
        if not isinstance(data, dict):
            check_meta_dict(data, where)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UpdateFileError(f"unknown metadata keys {unknown}; valid keys are {sorted(known)}", where=where,
                                  fix="re-create the update with this privbox version")
        check_meta_dict(data, where)
        return cls(**data)


@dataclass
class ClientUpdate:
    """What one client sends in one round, as the attacker sees it.

    Attributes:
        tensors: the gradient (``kind='gradient'``) or weight delta (``'weight_delta'``) of each
            trainable parameter, keyed by name.
        meta: :class:`UpdateMeta`.
        global_state: θ0 as sent by the server (parameters and BN running statistics).
        buffer_delta: BN running-statistic deltas, when the whole state dict is shared.
        bn_batch_stats: per BN layer, ``{"<layer>.mean": …, "<layer>.var": …}`` of the layer
            input for the target batch (the strong "exact BN" threat model).
        labels: ground-truth labels, only when the threat model grants them.
    """

    tensors: ArrayDict
    meta: UpdateMeta
    global_state: Optional[ArrayDict] = None
    buffer_delta: Optional[ArrayDict] = None
    bn_batch_stats: Optional[ArrayDict] = None
    labels: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, where: str = "update") -> None:
        """Check tensors (floating, finite, not enormous) and labels (integers, one per sample, in range)."""
        check_update_arrays(self.tensors, self.labels, self.meta.num_classes, self.meta.num_samples, where,
                            {"global": self.global_state, "buffer_delta": self.buffer_delta, "bn_stats": self.bn_batch_stats})

    # ------------------------------------------------------------------ views
    @property
    def kind(self) -> str:
        return self.meta.kind

    @property
    def batch_size(self) -> int:
        return self.meta.batch_size

    @property
    def num_classes(self) -> int:
        return self.meta.num_classes

    def names(self) -> list[str]:
        """Parameter names in the update, in the order the client produced them."""
        return list(self.tensors)

    def gradients(self) -> ArrayDict:
        """The update as a gradient: itself for FedSGD, ``-ΔW/(lr·K)`` for a FedAvg delta (§1.2)."""
        if self.kind == "gradient":
            return dict(self.tensors)
        if not self.meta.lr:
            raise MissingCapabilityError("converting a weight delta to a gradient needs the local lr in the metadata")
        scale = -1.0 / (float(self.meta.lr) * max(int(self.meta.local_steps), 1))
        return {k: v * scale for k, v in self.tensors.items()}

    def threat_model(self) -> "ThreatModel":
        """The capabilities this update grants an attacker."""
        return ThreatModel.from_update(self)

    # ------------------------------------------------------------ validation
    def check_model(self, model) -> None:
        """Raise :class:`ModelMismatchError` if ``model``'s trainable parameters differ from the update."""
        expected = {k: tuple(v.shape) for k, v in self.tensors.items()}
        actual = {name: tuple(p.shape) for name, p in model.named_parameters() if not p.stop_gradient}
        missing = sorted(set(expected) - set(actual))
        unexpected = sorted(set(actual) - set(expected))
        wrong = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"in the update but not the model: {missing[:5]}{' …' if len(missing) > 5 else ''}")
            if unexpected:
                parts.append(f"in the model but not the update: {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}")
            for k in wrong[:5]:
                parts.append(f"{k}: update {expected[k]} vs model {actual[k]}")
            raise ModelMismatchError(
                f"the model does not match the update (model_id {self.meta.model_id!r}, "
                f"kwargs {self.meta.model_kwargs}): " + "; ".join(parts)
                + ". Build the model the client used, e.g. privbox.nn.build_model(update.meta.model_id, "
                "num_classes=update.meta.num_classes, **update.meta.model_kwargs)."
            )
        check_input_shape(model, self.meta.input_shape, where=f"model {self.meta.model_id!r} on input {self.meta.input_shape}")
        if "maxpool_kernel" in self.meta.model_kwargs:
            # A pooling kernel has no parameters, so names and shapes cannot reveal it (the RA
            # scheme of Label-based-Defense changes only this); check it explicitly.
            from .model_checks import check_maxpool_kernel

            check_maxpool_kernel(model, self.meta)

    def load_global_state(self, model) -> None:
        """Copy θ0 (parameters and BN running statistics) into ``model``."""
        if self.global_state is None:
            raise MissingCapabilityError("this update carries no global_state (θ0); capture it with include_global_state=True")
        self.check_model(model)
        import paddle

        state = model.state_dict()
        missing = [k for k in state if k not in self.global_state]
        if missing:
            raise ModelMismatchError(f"global_state lacks model entries {missing[:5]}")
        wrong = [f"{k}: update {list(np.shape(self.global_state[k]))} vs model {list(state[k].shape)}"
                 for k in state if tuple(np.shape(self.global_state[k])) != tuple(state[k].shape)]
        if wrong:
            raise ModelMismatchError(f"global_state entries have the wrong shape: {'; '.join(wrong[:5])}",
                                     fix="build the model the client used (update.meta.model_id and model_kwargs)")
        # θ0 in another float precision (e.g. float64) is cast to the model's own dtype.
        model.set_state_dict({k: paddle.to_tensor(np.asarray(self.global_state[k]), dtype=state[k].dtype) for k in state})

    # -------------------------------------------------------------------- io
    def save(self, path: PathLike) -> Path:
        """Write the update to one ``.safetensors`` file atomically and return its path."""
        tensors: ArrayDict = {f"update/{k}": v for k, v in self.tensors.items()}
        for prefix, group in (("global", self.global_state), ("buffer_delta", self.buffer_delta), ("bn_stats", self.bn_batch_stats)):
            if group:
                tensors.update({f"{prefix}/{k}": v for k, v in group.items()})
        if self.labels is not None:
            tensors["labels"] = np.asarray(self.labels, dtype=np.int64)
        return _write_safetensors(path, tensors, FORMAT_UPDATE, {"meta": asdict(self.meta), "order": list(self.tensors)})

    @classmethod
    def load(cls, path: PathLike) -> "ClientUpdate":
        """Load and validate an update written by :meth:`save` (never unpickles)."""
        tensors, header = _read_safetensors(path, FORMAT_UPDATE)
        if "meta" not in header:
            raise UpdateFileError("the file has no update metadata ('meta' key)", where=str(path),
                                  fix="re-create it with privbox capture or ClientUpdate.save")
        meta = UpdateMeta.from_dict(header["meta"], where=str(path))
        groups: dict[str, ArrayDict] = {"update": {}, "global": {}, "buffer_delta": {}, "bn_stats": {}}
        labels = None
        for key, value in tensors.items():
            if key == "labels":
                labels = value
                continue
            prefix, _, name = key.partition("/")
            if prefix not in groups or not name:
                raise UpdateFileError(f"{path}: unexpected tensor key {key!r} in a ClientUpdate file")
            groups[prefix][name] = value
        order = header.get("order", [])
        if not isinstance(order, list):
            raise UpdateFileError(f"'order' must be a list of tensor names, got {type(order).__name__}", where=str(path),
                                  fix="re-create it with privbox capture or ClientUpdate.save")
        order = [k for k in order if isinstance(k, str) and k in groups["update"]]
        ordered = {k: groups["update"][k] for k in order}
        ordered.update({k: v for k, v in groups["update"].items() if k not in ordered})
        if not ordered:
            raise UpdateFileError(f"{path}: the file holds no update tensors")
        update = cls.__new__(cls)
        update.tensors, update.meta, update.labels = ordered, meta, labels
        update.global_state = groups["global"] or None
        update.buffer_delta = groups["buffer_delta"] or None
        update.bn_batch_stats = groups["bn_stats"] or None
        update.validate(str(path))
        return update


@dataclass
class Secret:
    """The ground truth of a captured batch, kept apart from the update (metrics only).

    ``images`` are in [0, 1] (not normalised), ``[B, C, H, W]``; ``labels`` ``[B]``.
    """

    images: np.ndarray
    labels: np.ndarray
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images, dtype=np.float32)
        check_secret_arrays(self.images, self.labels)
        self.labels = np.asarray(self.labels).astype(np.int64).reshape(-1)

    def save(self, path: PathLike) -> Path:
        """Write the secret to its own ``.safetensors`` file atomically."""
        return _write_safetensors(path, {"images": self.images, "labels": self.labels}, FORMAT_SECRET, {"names": self.names})

    @classmethod
    def load(cls, path: PathLike) -> "Secret":
        tensors, header = _read_safetensors(path, FORMAT_SECRET)
        if set(tensors) != {"images", "labels"}:
            raise UpdateFileError(f"a Secret file holds 'images' and 'labels', found {sorted(tensors)}", where=str(path),
                                  fix="pass the secret.safetensors written by privbox capture")
        names = header.get("names", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise UpdateFileError("'names' must be a list of strings", where=str(path),
                                  fix="pass the secret.safetensors written by privbox capture")
        check_secret_arrays(tensors["images"], tensors["labels"], where=str(path))
        return cls(images=tensors["images"], labels=tensors["labels"], names=names)


# ---------------------------------------------------------------------- threat model
CAPABILITIES = (
    "has_gradients",
    "has_weight_delta",
    "has_global_state",
    "has_bn_batch_stats",
    "has_bn_running_delta",
    "has_local_hparams",
    "has_labels",
    "has_surrogate_data",
    "has_prior_image",
)

_HOW_TO_GET = {
    "has_gradients": "capture a single-step gradient (kind='gradient')",
    "has_weight_delta": "capture a FedAvg weight delta (kind='weight_delta')",
    "has_global_state": "capture with include_global_state=True",
    "has_bn_batch_stats": "capture with share_bn_stats=True (the strong 'exact BN' threat model)",
    "has_bn_running_delta": "capture a train-mode BN model so the running-statistic deltas are sent",
    "has_local_hparams": "record the local lr, steps and epochs in the update metadata",
    "has_labels": "capture with share_labels=True, or use a label-recovery strategy",
    "has_surrogate_data": "give the attack the attacker's own data",
    "has_prior_image": "give the attack a prior image",
}


@dataclass(frozen=True)
class ThreatModel:
    """What an attacker may use (ALGORITHMS.md §1.5). Each flag is one capability."""

    has_gradients: bool = False
    has_weight_delta: bool = False
    has_global_state: bool = False
    has_bn_batch_stats: bool = False
    has_bn_running_delta: bool = False
    has_local_hparams: bool = False
    has_labels: bool = False
    has_surrogate_data: bool = False
    has_prior_image: bool = False

    @classmethod
    def from_update(cls, update: ClientUpdate, surrogate_data: bool = False, prior_image: bool = False) -> "ThreatModel":
        meta = update.meta
        return cls(
            has_gradients=meta.kind == "gradient",
            has_weight_delta=meta.kind == "weight_delta",
            has_global_state=update.global_state is not None,
            has_bn_batch_stats=bool(update.bn_batch_stats),
            has_bn_running_delta=bool(update.buffer_delta),
            has_local_hparams=meta.lr is not None,
            has_labels=update.labels is not None,
            has_surrogate_data=surrogate_data,
            has_prior_image=prior_image,
        )

    def missing(self, required: Iterable[str]) -> list[str]:
        """The capabilities in ``required`` this threat model lacks."""
        required = list(required)
        unknown = [r for r in required if r not in CAPABILITIES]
        if unknown:
            raise ValueError(f"unknown capabilities {unknown}; valid ones are {list(CAPABILITIES)}")
        return [r for r in required if not getattr(self, r)]

    def require(self, required: Iterable[str], who: str) -> None:
        """Raise :class:`MissingCapabilityError` naming each missing capability and how to get it."""
        missing = self.missing(required)
        if missing:
            hints = "; ".join(f"{m} ({_HOW_TO_GET[m]})" for m in missing)
            raise MissingCapabilityError(f"{who} cannot run on this update: it needs {hints}")


# ---------------------------------------------------------------------- safetensors io
# One strict reader/writer for every privbox file: privbox.core.safetensors_io.
def _write_safetensors(path: PathLike, tensors: ArrayDict, fmt: str, header: dict[str, Any]) -> Path:
    return write_privbox_file(path, tensors, fmt, header)


def _read_safetensors(path: PathLike, fmt: str) -> tuple[ArrayDict, dict[str, Any]]:
    return read_privbox_file(path, fmt)
