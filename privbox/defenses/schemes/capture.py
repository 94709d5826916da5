"""What a client under a scheme sends, computed by the one :class:`~privbox.fl.client.Client`,
and the attacker-side helpers that rebuild and check the victim's architecture."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import paddle.nn as nn

from ...core.model_checks import check_maxpool_kernel
from ...core.update import ClientUpdate, Secret
from .scheme import DefenseScheme, SchemeUpdate

__all__ = ["SchemeGradient", "scheme_gradient", "capture_with_scheme", "build_attack_model", "check_attack_model"]


@dataclass
class SchemeGradient:
    """What :func:`scheme_gradient` computed for one batch.

    Attributes:
        gradients: the shared (pseudo-)gradient, float32 NumPy arrays keyed by parameter name.
        buffer_delta: change of the BN running statistics (device 0's, as a data-parallel
            trainer that broadcasts buffers keeps them), keyed by state name; may be empty.
        images, labels: the batch in the order the client processed it (after ``label_order``).
        order: ``images[i] = original_images[order[i]]``.
        num_classes: width of the model's output.
        global_state: θ0 (parameters and BN statistics) before the computation.
    """

    gradients: Dict[str, np.ndarray]
    buffer_delta: Dict[str, np.ndarray]
    images: np.ndarray
    labels: np.ndarray
    order: np.ndarray
    num_classes: int
    global_state: Dict[str, np.ndarray]


def _scheme_client(scheme: DefenseScheme, model: nn.Layer, images: np.ndarray, mean, std, bn_mode: str,
                   model_id: str, model_kwargs, share_labels: bool, include_global_state: bool, seed: Optional[int]):
    from ...fl.client import Client
    from ...fl.spec import ClientSpec

    spec = ClientSpec.for_batch(
        images, model=model_id, model_kwargs=dict(model_kwargs or {}), num_classes=None, mean=mean, std=std,
        bn_mode=bn_mode, share="gradient", include_labels=share_labels, include_global_state=include_global_state,
        seed=0 if seed is None else int(seed),
    )
    return Client(spec, model=model, scheme=scheme)


def capture_with_scheme(
    scheme: DefenseScheme,
    model: nn.Layer,
    images: np.ndarray,
    labels: np.ndarray,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    bn_mode: str = "train",
    model_id: str = "custom",
    model_kwargs: Optional[Dict[str, Any]] = None,
    share_labels: bool = False,
    include_global_state: bool = True,
    names: Optional[Sequence[str]] = None,
    seed: Optional[int] = 0,
) -> Tuple[SchemeUpdate, Secret]:
    """What a client under ``scheme`` sends for one batch, and the ground truth.

    One round of :class:`~privbox.fl.client.Client` with ``scheme`` applied to its spec
    (:meth:`DefenseScheme.apply`). The update is ``kind="gradient"`` (the shared
    (pseudo-)gradient, which the Label-based-Defense attacker matches as one full-batch gradient
    at θ0); ``meta.defenses`` holds :meth:`DefenseScheme.describe`; ``meta.model_kwargs`` holds
    ``model_kwargs`` plus the scheme's architecture change, so
    ``privbox.nn.build_model(meta.model_id, num_classes=meta.num_classes, **meta.model_kwargs)``
    (or :func:`build_attack_model`) rebuilds the victim's model. The secret and the shared labels
    are in the order the client processed the batch.

    Args:
        scheme: a :class:`DefenseScheme` (e.g. ``SCHEMES["GH"]``, ``get_scheme("RA+GH")``).
        model: θ0, already carrying the scheme's architecture change (``scheme.build_model`` or
            ``scheme.apply_to_model``); checked, never modified.
        images, labels, mean, std, bn_mode, model_id, share_labels, include_global_state, names:
            as in :func:`privbox.fl.capture.compute_update`.
        model_kwargs: how to rebuild the architecture (the scheme's ``maxpool_kernel`` is added).
        seed: dropout masks and noise; recorded in the metadata.

    Raises:
        ValueError: if the model lacks the scheme's architecture change, the batch does not split
            into the scheme's shards and local iterations, or the settings conflict (dropout on in
            eval mode, real DP-SGD with train-mode BatchNorm).
    """
    client = _scheme_client(scheme, model, images, mean, std, bn_mode, model_id, model_kwargs, share_labels,
                            include_global_state, seed)
    update, secret = client.run_round(batch=(images, labels, names))
    update.meta.seed = seed
    return update, secret


def scheme_gradient(
    scheme: DefenseScheme,
    model: nn.Layer,
    images: np.ndarray,
    labels: np.ndarray,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    bn_mode: str = "train",
    seed: Optional[int] = 0,
) -> SchemeGradient:
    """The (pseudo-)gradient a client under ``scheme`` shares for one batch, at θ0 = ``model``.

    The tensors of :func:`capture_with_scheme` with the client's processing order and θ0; the
    model is restored to θ0 afterwards.
    """
    client = _scheme_client(scheme, model, images, mean, std, bn_mode, "custom", None, False, False, seed)
    update, secret = client.run_round(batch=(images, labels))
    result = client.last_result
    return SchemeGradient(
        gradients=dict(update.tensors), buffer_delta=dict(update.buffer_delta or {}), images=secret.images,
        labels=secret.labels, order=result.order, num_classes=int(update.meta.num_classes), global_state=result.global_state,
    )


def build_attack_model(update: ClientUpdate, **overrides: Any) -> nn.Layer:
    """The victim's architecture rebuilt from ``update.meta`` (model id and kwargs, scheme included).

    Equivalent to ``privbox.nn.build_model(meta.model_id, num_classes=meta.num_classes,
    **meta.model_kwargs, **overrides)``; the attack loads θ0 from the update itself.
    """
    from ...nn.models import build_model

    meta = update.meta
    if meta.model_id == "custom":
        raise ValueError(
            "the update was captured with model_id='custom'; build the victim's architecture yourself (with the "
            f"scheme's changes: model kwargs {meta.model_kwargs}) and check it with check_attack_model(model, update)"
        )
    return build_model(meta.model_id, num_classes=meta.num_classes, **{**meta.model_kwargs, **overrides})


def check_attack_model(model: nn.Layer, update: ClientUpdate) -> None:
    """Raise :class:`ModelMismatchError` if ``model`` lacks the architecture change recorded in the update.

    Parameter names and shapes do not reveal a max-pool kernel, so a stock ResNet would pass a
    name/shape check for an ``RA`` update and the attack would silently match the wrong function
    (see :func:`privbox.core.model_checks.check_maxpool_kernel`).
    """
    check_maxpool_kernel(model, update.meta)
