"""One-call captures on a live model and batch: FedSGD (:func:`compute_update`) and FedAvg
(:func:`compute_fedavg_update`). Both build a :class:`~privbox.fl.spec.ClientSpec` and run one
round of :class:`~privbox.fl.client.Client`, the one local-training loop of privbox."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import paddle.nn as nn

from ..core.update import ClientUpdate, Secret
from .client import Client
from .spec import ClientSpec

__all__ = ["compute_update", "compute_fedavg_update"]


def _run(spec_values: dict, model: nn.Layer, images, labels, names) -> tuple[ClientUpdate, Secret]:
    return Client(ClientSpec.for_batch(images, **spec_values), model=model).run_round(batch=(images, labels, names))


def compute_update(
    model: nn.Layer,
    images: np.ndarray,
    labels: np.ndarray,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    num_classes: Optional[int] = None,
    bn_mode: str = "train",
    model_id: str = "custom",
    model_kwargs: Optional[dict] = None,
    share_labels: bool = False,
    share_bn_stats: bool = False,
    include_global_state: bool = True,
    names: Optional[Sequence[str]] = None,
    seed: Optional[int] = None,
) -> tuple[ClientUpdate, Secret]:
    """A client's FedSGD update: one gradient of the batch-mean cross-entropy at θ0.

    Args:
        model: the global model θ0 (restored afterwards: parameters, BN running statistics and
            train/eval flags; the running-statistic change is reported as ``buffer_delta``).
        images: ``[B, C, H, W]`` float pixels in [0, 1].
        labels: ``[B]`` integer classes.
        mean, std: per-channel normalisation (defaults 0 and 1).
        num_classes: classifier outputs (default: the model's output width).
        bn_mode: ``"train"`` (batch statistics, as in training) or ``"eval"``.
        model_id, model_kwargs: how an attacker rebuilds the architecture
            (``privbox.nn.build_model``).
        share_labels: grant the attacker the labels (the "labels known" threat model).
        share_bn_stats: send each BN layer's batch statistics (the "exact BN" threat model).
        include_global_state: attach θ0 (the attacker always has it in FL).
        names: optional names of the images (kept in the secret).
        seed: recorded in the metadata.

    Returns:
        ``(update, secret)``.
    """
    update, secret = _run(dict(
        model=model_id, model_kwargs=dict(model_kwargs or {}), num_classes=num_classes, mean=mean, std=std,
        bn_mode=bn_mode, share="gradient", include_labels=share_labels, include_bn_stats=share_bn_stats,
        include_global_state=include_global_state, seed=seed if seed is not None else 0,
    ), model, images, labels, names)
    update.meta.seed = seed
    return update, secret


def compute_fedavg_update(
    model: nn.Layer,
    images: np.ndarray,
    labels: np.ndarray,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    lr: float = 0.01,
    local_epochs: int = 1,
    batch_size: Optional[int] = None,
    shuffle: bool = False,
    seed: int = 0,
    bn_mode: str = "train",
    update_bn_stats: bool = True,
    num_classes: Optional[int] = None,
    model_id: str = "custom",
    model_kwargs: Optional[dict] = None,
    share_labels: bool = False,
    include_global_state: bool = True,
    names: Optional[Sequence[str]] = None,
) -> tuple[ClientUpdate, Secret]:
    """A FedAvg client's update: ΔW = θ_K − θ_0 after K = E·⌈n/b⌉ local SGD steps.

    Plain SGD (momentum 0, no weight decay) on the batch-mean cross-entropy of contiguous
    minibatches (or, with ``shuffle``, of a seeded permutation per epoch), as in the FedAvg
    setting attacked by Geiping et al. (NeurIPS 2020) and Hatamizadeh et al. (IEEE TMI 2023). In
    train mode BN normalises with batch statistics and, with ``update_bn_stats``, the change of
    its running statistics (Paddle convention r ← m·r + (1−m)·b) is sent as ``buffer_delta``.
    K = 1 gives ΔW = −lr·g exactly, g the FedSGD gradient of :func:`compute_update`.

    Args:
        model: θ0; trained in a scratch pass and restored afterwards.
        images, labels: ``[n, C, H, W]`` pixels in [0, 1] and ``[n]`` classes.
        mean, std: per-channel normalisation (defaults 0 and 1).
        lr: the local SGD learning rate (recorded in the metadata; an attacker needs it).
        local_epochs: E. batch_size: b (default n). shuffle: shuffle each epoch with ``seed``.
        bn_mode: ``"train"`` or ``"eval"``. update_bn_stats: share the running-statistic change.
        num_classes, model_id, model_kwargs, share_labels, include_global_state, names: as in
            :func:`compute_update`.

    Returns:
        ``(update, secret)`` with ``update.kind == "weight_delta"`` and ``meta.lr``,
        ``meta.local_steps`` (K), ``meta.local_epochs``, ``meta.batch_size`` (b) and
        ``meta.num_samples`` (n) set; ``update.global_state`` is θ0.
    """
    update, secret = _run(dict(
        model=model_id, model_kwargs=dict(model_kwargs or {}), num_classes=num_classes, mean=mean, std=std,
        lr=lr, local_epochs=local_epochs, batch_size=batch_size, shuffle=shuffle, seed=seed, bn_mode=bn_mode,
        update_bn_stats=update_bn_stats, share="delta", include_labels=share_labels,
        include_global_state=include_global_state,
    ), model, images, labels, names)
    return update, secret
