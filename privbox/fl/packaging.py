"""Validation of a client's batch and assembly of what it sends (:class:`ClientUpdate`) and keeps
(:class:`Secret`). Used by :class:`privbox.fl.client.Client` only."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import paddle

from ..core.errors import InputError
from ..core.update import ClientUpdate, Secret, UpdateMeta

__all__ = ["check_batch", "prepare_batch", "check_logits", "running_delta", "package_update"]


def check_batch(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[B, C, H, W]`` float32 in [0, 1] and ``B`` integer labels, or :class:`InputError`."""
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if images.ndim != 4:
        raise InputError(f"images must be [B, C, H, W], got shape {images.shape}")
    if images.shape[0] != labels.shape[0]:
        raise InputError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise InputError("a client needs at least one sample, got an empty batch")
    if images.min() < 0.0 or images.max() > 1.0:
        raise InputError("images must be pixels in [0, 1]; normalisation is given separately by mean/std")
    return images, labels


def prepare_batch(images, labels, mean: Optional[Sequence[float]], std: Optional[Sequence[float]], bn_mode: str):
    """Validated ``(images, labels, mean, std)``; the normalisation defaults to 0 and 1 per channel."""
    images, labels = check_batch(images, labels)
    if bn_mode not in ("train", "eval"):
        raise InputError(f"bn_mode must be 'train' or 'eval', got {bn_mode!r}")
    channels = images.shape[1]
    mean = list(mean) if mean is not None else [0.0] * channels
    std = list(std) if std is not None else [1.0] * channels
    return images, labels, mean, std


def check_logits(logits: paddle.Tensor, labels: np.ndarray, num_classes: Optional[int]) -> int:
    """Check the model's output shape and the label range; return the number of classes."""
    if logits.ndim != 2:
        raise InputError(f"the model must return [B, num_classes] logits, got shape {list(logits.shape)}")
    classes = int(num_classes or logits.shape[1])
    if labels.max() >= classes or labels.min() < 0:
        raise InputError(f"labels must lie in [0, {classes}), got {labels.min()}..{labels.max()}")
    return classes


def running_delta(before: dict, after: dict, trainable: Sequence[str]) -> Optional[dict]:
    """Change of the non-trainable state entries (BN running statistics), None if none moved."""
    skip = set(trainable)
    delta = {k: after[k] - before[k] for k in before if k not in skip and not np.array_equal(after[k], before[k])}
    return delta or None


def package_update(
    images: np.ndarray,
    labels: np.ndarray,
    tensors: dict,
    before: dict,
    buffer_delta: Optional[dict],
    bn_batch_stats: Optional[dict],
    include_global_state: bool,
    share_labels: bool,
    names: Optional[Sequence[str]],
    model_kwargs: Optional[dict],
    mean: Sequence[float],
    std: Sequence[float],
    update_class: type = ClientUpdate,
    **meta_fields,
) -> tuple[ClientUpdate, Secret]:
    """Assemble the update (what leaves the client) and the secret (the ground truth).

    ``meta_fields`` are the :class:`UpdateMeta` fields that depend on how the update was made
    (kind, model id, classes, batch size, local steps, lr, BN mode, defenses, seed);
    ``update_class`` lets a caller return a :class:`ClientUpdate` subclass.
    """
    meta = UpdateMeta(
        model_kwargs=dict(model_kwargs or {}),
        input_shape=list(images.shape[1:]),
        mean=[float(m) for m in mean],
        std=[float(s) for s in std],
        labels_shared=share_labels,
        loss="ce-mean",
        **meta_fields,
    )
    update = update_class(
        tensors=tensors,
        meta=meta,
        global_state=before if include_global_state else None,
        buffer_delta=buffer_delta,
        bn_batch_stats=bn_batch_stats or None,
        labels=labels.copy() if share_labels else None,
    )
    return update, Secret(images=images, labels=labels, names=list(names or []))
