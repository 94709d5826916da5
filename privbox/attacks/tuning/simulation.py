"""The simulation update the search tunes on (ALGORITHMS.md §4.8): the attacker's own batch sent
through the target's θ0 and settings, so the ground truth is known; and the objective, the
model-space MSE of a reconstruction (Hungarian-matched unless the labels follow the sample order).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ...core.update import ClientUpdate, Secret

__all__ = ["build_model_for_update", "estimate_distinct_labels", "surrogate_batch", "simulation_update",
           "reconstruction_mse"]


def build_model_for_update(update: ClientUpdate):
    """Rebuild the client's architecture from the update's metadata and load θ0 into it."""
    import paddle

    from ...nn.models import MODEL_REGISTRY, build_model

    meta = update.meta
    if meta.model_id not in MODEL_REGISTRY:
        from ...core.errors import ModelMismatchError

        raise ModelMismatchError(
            f"the update was made with model_id {meta.model_id!r}, which privbox cannot rebuild by name "
            f"(known: {sorted(MODEL_REGISTRY)}); attack it from Python with your model: "
            "GradientInversion(config).run(model, update)"
        )
    paddle.seed(0)
    model = build_model(meta.model_id, num_classes=meta.num_classes, **meta.model_kwargs)
    if update.global_state is not None:
        update.load_global_state(model)
    return model


def estimate_distinct_labels(target: ClientUpdate) -> int:
    """The number of distinct labels of the target batch: from shared labels, else counted by LLG."""
    if target.labels is not None:
        return int(np.unique(np.asarray(target.labels)).size)
    from ...labels import recover_labels

    try:
        result = recover_labels("llg", target.gradients(), target.batch_size, target.num_classes)
        return max(1, int(np.unique(result.labels).size))
    except ValueError:
        return min(target.batch_size, target.num_classes)


def surrogate_batch(
    target: ClientUpdate,
    images: str = "samples",
    seed: int = 1,
    distinct_labels: Optional[int] = None,
) -> tuple[Any, list[str]]:
    """The attacker's own batch, shaped like the target's (B, C, size, channels, label repetition).

    With ``images="samples"`` the embedded images after the first B are preferred (a default
    ``privbox capture`` uses the first B), drawn with ``seed``; otherwise ``images`` is a dataset
    as :func:`privbox.data.make_target_batch` accepts.

    Returns:
        ``(TargetBatch, notes)``; notes say how the batch was chosen.
    """
    from ...data import SAMPLE_NAMES, TargetBatch, load_samples, make_target_batch

    meta = target.meta
    channels, size = int(meta.input_shape[0]), int(meta.input_shape[1])
    batch_size, classes = target.batch_size, target.num_classes
    distinct = distinct_labels or estimate_distinct_labels(target)
    distinct = min(distinct, batch_size, classes)
    notes = [f"surrogate batch: B={batch_size}, {distinct} distinct labels, seed {seed}, images {images!r}"]
    if images != "samples":
        batch = make_target_batch(batch_size, num_classes=classes, distinct_labels=distinct, size=size,
                                  channels=channels, seed=seed, images=images)
        return batch, notes
    labelled = make_target_batch(batch_size, num_classes=classes, distinct_labels=distinct, size=size,
                                 channels=channels, seed=seed)
    rng = np.random.default_rng([seed, 2])
    pool = list(SAMPLE_NAMES[batch_size:])
    if len(pool) < batch_size:
        pool = list(SAMPLE_NAMES)
        notes.append(
            f"B={batch_size} is more than half of the {len(SAMPLE_NAMES)} embedded samples, so the surrogate "
            "batch may share images with a client that also used them; set tune.surrogate_images to your own data"
        )
    names = [pool[i] for i in rng.choice(len(pool), batch_size, replace=False)]
    return TargetBatch(load_samples(size=size, channels=channels, names=names), labelled.labels, names), notes


def simulation_update(
    target: ClientUpdate,
    images: str = "samples",
    seed: int = 1,
    distinct_labels: Optional[int] = None,
) -> tuple[ClientUpdate, Secret, list[str]]:
    """Build the simulation update: the attacker's own batch through the target's θ0 and settings.

    Same model and θ0 (the target's ``global_state``), B, label repetition, BN mode, normalisation,
    number of classes, and the same things shared (labels, exact BN statistics).

    Returns:
        ``(simulation update, its ground truth, notes)``.
    """
    from ...fl.capture import compute_update

    if target.kind != "gradient":
        raise ValueError(
            "tuning builds a FedSGD simulation (one gradient); this update is a FedAvg weight delta, "
            "which privbox tune does not simulate yet"
        )
    if target.global_state is None:
        raise ValueError("the target update carries no global_state (θ0); the simulation needs the same model weights")
    batch, notes = surrogate_batch(target, images, seed, distinct_labels)
    model = build_model_for_update(target)
    meta = target.meta
    update, secret = compute_update(
        model, batch.images, batch.labels, meta.mean, meta.std, num_classes=meta.num_classes,
        bn_mode=meta.bn_mode, model_id=meta.model_id, model_kwargs=meta.model_kwargs,
        share_labels=target.labels is not None, share_bn_stats=target.bn_batch_stats is not None,
        names=batch.names, seed=seed,
    )
    return update, secret, notes


def reconstruction_mse(images: np.ndarray, truth: np.ndarray, ordered: bool) -> float:
    """Mean squared error in model space; one-to-one Hungarian matching unless ``ordered``."""
    images = np.asarray(images, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if images.shape != truth.shape:
        raise ValueError(f"reconstruction {images.shape} and ground truth {truth.shape} differ in shape")
    if ordered or images.shape[0] == 1:
        return float(np.mean((images - truth) ** 2))
    from scipy.optimize import linear_sum_assignment

    b = images.shape[0]
    cost = ((truth.reshape(b, 1, -1) - images.reshape(1, b, -1)) ** 2).mean(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


