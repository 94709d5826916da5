"""The victim side: compute what a federated client sends for a batch.

``compute_update`` runs one forward/backward of the batch-mean cross-entropy at θ0 (FedSGD) in
the chosen BN mode and returns the :class:`~privbox.core.update.ClientUpdate` (what leaves the client)
and the :class:`~privbox.core.update.Secret` (the ground truth, for metrics only).
``compute_fedavg_update`` runs a FedAvg client's local training (K plain SGD steps over
minibatches) and returns the weight delta ΔW = θ_K − θ_0 the same way.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import math

import numpy as np
import paddle
import paddle.nn as nn

from .nn import functional as PF
from .nn.convert import trainable_parameters
from .core.update import ClientUpdate, Secret, UpdateMeta

BN_TYPES = (nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D, nn.BatchNorm)


def normalize(images: Union[np.ndarray, paddle.Tensor], mean: Sequence[float], std: Sequence[float]) -> paddle.Tensor:
    """Map images in [0, 1] (``[B, C, H, W]``) to model input space ``(x - mean) / std``."""
    x = paddle.to_tensor(images, dtype="float32") if isinstance(images, np.ndarray) else images.astype("float32")
    shape = [1, -1, 1, 1]
    return (x - paddle.to_tensor(list(mean), dtype="float32").reshape(shape)) / paddle.to_tensor(list(std), dtype="float32").reshape(shape)


def denormalize(x: Union[np.ndarray, paddle.Tensor], mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Map model-space images back to [0, 1] pixel space and clamp (metrics use this)."""
    arr = x.numpy() if isinstance(x, paddle.Tensor) else np.asarray(x)
    out = arr * np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1) + np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def state_snapshot(model: nn.Layer) -> dict[str, np.ndarray]:
    """A copy of the model's full state (parameters and BN running statistics) as NumPy arrays.

    ``state_dict()`` aliases live tensors, so it is copied here (PADDLE.md §8).
    """
    return {k: np.array(v.numpy(), copy=True) for k, v in model.state_dict().items()}


def bn_layers(model: nn.Layer) -> list[tuple[str, nn.Layer]]:
    """BatchNorm layers of ``model`` by type (never by name)."""
    return [(name, layer) for name, layer in model.named_sublayers() if isinstance(layer, BN_TYPES)]


class BNStatsRecorder:
    """Context manager recording each BN layer's input mean and biased variance over (N, H, W)."""

    def __init__(self, model: nn.Layer) -> None:
        self.model = model
        self.stats: dict[str, np.ndarray] = {}
        self._handles = []

    def __enter__(self) -> "BNStatsRecorder":
        for name, layer in bn_layers(self.model):
            def hook(lay, inputs, output, _name=name):
                a = inputs[0].detach()
                axes = [0] + list(range(2, a.ndim))
                mean = a.mean(axis=axes)
                var = (a * a).mean(axis=axes) - mean * mean
                self.stats[f"{_name}.mean"] = mean.numpy().astype(np.float32)
                self.stats[f"{_name}.var"] = var.numpy().astype(np.float32)

            self._handles.append(layer.register_forward_post_hook(hook))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


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
    """Compute a client's FedSGD update (one gradient of the batch-mean CE at θ0).

    Args:
        model: the global model θ0 (left with its parameters unchanged; in train mode its BN
            running statistics move, as a real client's do, and the move is reported as
            ``buffer_delta``).
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
    images, labels, mean, std = _prepare_batch(images, labels, mean, std, bn_mode)
    before = state_snapshot(model)
    model.train() if bn_mode == "train" else model.eval()
    x = normalize(images, mean, std)
    with BNStatsRecorder(model) as recorder:
        logits = model(x)
    classes = _check_logits(logits, labels, num_classes)
    loss = PF.cross_entropy(logits, paddle.to_tensor(labels))
    named = trainable_parameters(model)
    grads = paddle.grad(loss, [p for _, p in named])
    tensors = {name: g.numpy().astype(np.float32) for (name, _), g in zip(named, grads)}
    for name, value in tensors.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"the gradient of {name} is not finite; check the model and inputs")
    return package_update(
        images, labels, tensors, before, _running_delta(before, state_snapshot(model), tensors),
        bn_batch_stats=recorder.stats if share_bn_stats else None,
        include_global_state=include_global_state, share_labels=share_labels, names=names,
        kind="gradient", model_id=model_id, model_kwargs=model_kwargs, mean=mean, std=std,
        num_classes=classes, batch_size=int(images.shape[0]), num_samples=int(images.shape[0]),
        bn_mode=bn_mode, seed=seed,
    )


def _prepare_batch(images, labels, mean, std, bn_mode: str):
    """Validate a capture's inputs; return arrays and the normalisation (defaults 0 and 1)."""
    images, labels = _check_batch(images, labels)
    if bn_mode not in ("train", "eval"):
        raise ValueError(f"bn_mode must be 'train' or 'eval', got {bn_mode!r}")
    channels = images.shape[1]
    mean = list(mean) if mean is not None else [0.0] * channels
    std = list(std) if std is not None else [1.0] * channels
    return images, labels, mean, std


def _check_logits(logits: paddle.Tensor, labels: np.ndarray, num_classes: Optional[int]) -> int:
    """Check the model's output shape and the label range; return the number of classes."""
    if logits.ndim != 2:
        raise ValueError(f"the model must return [B, num_classes] logits, got shape {list(logits.shape)}")
    classes = int(num_classes or logits.shape[1])
    if labels.max() >= classes or labels.min() < 0:
        raise ValueError(f"labels must lie in [0, {classes}), got {labels.min()}..{labels.max()}")
    return classes


def _running_delta(before: dict, after: dict, trainable: dict) -> Optional[dict]:
    """Change of the non-trainable state entries (BN running statistics), None if none moved."""
    delta = {k: after[k] - before[k] for k in before if k not in trainable and not np.array_equal(after[k], before[k])}
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
    ``update_class`` lets a capture return a :class:`ClientUpdate` subclass.
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


def _check_batch(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {images.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    if images.size and (images.min() < 0.0 or images.max() > 1.0):
        raise ValueError("images must be pixels in [0, 1]; normalisation is given separately by mean/std")
    return images, labels


def local_minibatches(num_samples: int, batch_size: int, epochs: int, shuffle: bool = False, seed: int = 0) -> list[np.ndarray]:
    """Sample indices of each local SGD step: ``epochs`` passes of ``ceil(n/b)`` minibatches.

    Without shuffling every epoch visits the samples in order in contiguous chunks of ``b`` (the
    last one smaller when ``b`` does not divide ``n``, no ``drop_last``); with shuffling each
    epoch uses a fresh permutation from ``numpy.random.default_rng(seed)``. The number of steps
    is K = E·⌈n/b⌉ (ALGORITHMS.md §1.2).
    """
    if num_samples < 1:
        raise ValueError(f"a client needs at least one sample, got {num_samples}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"local_epochs must be a positive integer, got {epochs}")
    rng = np.random.default_rng(seed)
    steps = []
    for _ in range(int(epochs)):
        order = rng.permutation(num_samples) if shuffle else np.arange(num_samples)
        steps += [order[start : start + int(batch_size)] for start in range(0, num_samples, int(batch_size))]
    return steps


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
    """Compute a FedAvg client's update: ΔW = θ_K − θ_0 after K local SGD steps.

    The client runs K = E·⌈n/b⌉ steps of plain SGD (momentum 0, no weight decay) on the
    batch-mean cross-entropy of contiguous minibatches (or, with ``shuffle``, of a seeded
    permutation per epoch), as in the FedAvg setting attacked by Geiping et al. (NeurIPS 2020,
    inversefed's FedAvg reconstructor) and Hatamizadeh et al. (IEEE TMI 2023, the NVIDIA FL
    update inversion). In train mode the BN layers normalise with batch statistics and, with
    ``update_bn_stats``, update their running statistics (Paddle convention
    r ← m·r + (1−m)·b with the layer's momentum and the biased batch variance); the change is
    sent as ``buffer_delta``. K = 1 gives ΔW = −lr·g exactly, g the FedSGD gradient of
    :func:`compute_update`.

    Args:
        model: the global model θ0. Trained in a scratch pass and **restored to θ0**
            afterwards (parameters, running statistics and train/eval flag), so the server's
            copy is untouched.
        images: ``[n, C, H, W]`` float pixels in [0, 1]; labels: ``[n]`` integer classes.
        mean, std: per-channel normalisation (defaults 0 and 1).
        lr: the local SGD learning rate actually used this round (recorded in the metadata; an
            attacker needs it).
        local_epochs: E.
        batch_size: b (default: n, i.e. one full-batch step per epoch).
        shuffle: shuffle each epoch with ``seed`` (an attacker cannot know the order).
        bn_mode: ``"train"`` or ``"eval"`` (running statistics used and never updated).
        update_bn_stats: in train mode, update the BN running statistics (and share their
            delta); ``False`` keeps them fixed.
        num_classes, model_id, model_kwargs, share_labels, include_global_state, names: as in
            :func:`compute_update`.

    Returns:
        ``(update, secret)`` with ``update.kind == "weight_delta"`` and ``meta.lr``,
        ``meta.local_steps`` (K), ``meta.local_epochs``, ``meta.batch_size`` (b) and
        ``meta.num_samples`` (n) set; ``update.global_state`` is θ0 captured before training.
    """
    images, labels, mean, std = _prepare_batch(images, labels, mean, std, bn_mode)
    try:
        lr = float(lr)
    except (TypeError, ValueError):
        raise ValueError(f"lr must be a positive number, got {lr!r}") from None
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    n = int(images.shape[0])
    b = n if batch_size is None else int(batch_size)
    steps = local_minibatches(n, b, local_epochs, shuffle, seed)

    before = state_snapshot(model)  # θ0, copied: state_dict() aliases the live tensors
    modes = [(layer, layer.training) for layer in model.sublayers(include_self=True)]
    named = trainable_parameters(model)
    x_all = normalize(images, mean, std)
    y_all = paddle.to_tensor(labels)
    classes: Optional[int] = None
    try:
        model.train() if bn_mode == "train" else model.eval()
        for step, index in enumerate(steps):
            idx = paddle.to_tensor(index)
            logits = model(paddle.gather(x_all, idx))
            if classes is None:
                classes = _check_logits(logits, labels, num_classes)
            loss = PF.cross_entropy(logits, paddle.gather(y_all, idx))
            grads = paddle.grad(loss, [p for _, p in named])
            with paddle.no_grad():
                for (name, param), grad in zip(named, grads):
                    if not bool(paddle.isfinite(grad).all()):
                        raise ValueError(f"local step {step}: the gradient of {name} is not finite; lower the lr")
                    param.set_value(param - lr * grad)
        after = state_snapshot(model)
    finally:
        model.set_state_dict({k: paddle.to_tensor(v) for k, v in before.items()})
        for layer, training in modes:
            layer.training = training

    tensors = {name: (after[name] - before[name]).astype(np.float32) for name, _ in named}
    keep_buffers = bn_mode == "train" and update_bn_stats
    return package_update(
        images, labels, tensors, before, _running_delta(before, after, tensors) if keep_buffers else None,
        bn_batch_stats=None, include_global_state=include_global_state, share_labels=share_labels, names=names,
        kind="weight_delta", model_id=model_id, model_kwargs=model_kwargs, mean=mean, std=std,
        num_classes=int(classes), batch_size=b, num_samples=n, local_steps=len(steps),
        local_epochs=int(local_epochs), lr=float(lr), bn_mode=bn_mode, seed=seed,
    )
