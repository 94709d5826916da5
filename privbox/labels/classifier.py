"""Locate the classifier (last Linear layer) in an observed update and turn it into arrays.

Every label-recovery method in :mod:`privbox.labels` reads the gradient of the last Linear
layer: the weight gradient ``dW`` with Paddle's ``[in, out] = [d, C]`` layout and the bias
gradient ``db`` of shape ``[C]`` (``ALGORITHMS.md`` §5). This module finds those two entries
in a gradient dict keyed by parameter name (``model.named_parameters()``) by *name or shape*,
never by their position in the dict, and converts a FedAvg weight delta into a pseudo-gradient
(``ALGORITHMS.md`` §1.2).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import paddle

ArrayLike = Union[paddle.Tensor, np.ndarray]
"""A Paddle tensor or a NumPy array."""

GradientInput = Union[Mapping[str, ArrayLike], Tuple[ArrayLike, Optional[ArrayLike]], ArrayLike]
"""What the recovery methods accept: a gradient dict keyed by parameter name, a ``(dW, db)``
pair (``db`` may be ``None``), or the weight gradient ``dW`` alone."""

__all__ = [
    "ArrayLike",
    "GradientInput",
    "to_numpy",
    "find_classifier",
    "gradient_from_delta",
    "last_layer_gradients",
    "classifier_parameters",
]


def to_numpy(value: Any, dtype: Optional[str] = "float64") -> np.ndarray:
    """Return ``value`` (Paddle tensor, NumPy array or nested list) as a NumPy array.

    Paddle tensors are detached and copied to host memory; ``dtype=None`` keeps the dtype.
    """
    if isinstance(value, paddle.Tensor):
        array = value.detach().numpy()
    else:
        array = np.asarray(value)
    return array.astype(dtype, copy=False) if dtype is not None else array


def _shape(value: Any) -> Tuple[int, ...]:
    if isinstance(value, paddle.Tensor):
        return tuple(int(s) for s in value.shape)
    return tuple(np.shape(value))


def _bias_name_for(weight_key: str) -> Sequence[str]:
    """Names under which the bias that belongs to ``weight_key`` is usually stored."""
    names = []
    if weight_key.endswith("weight"):
        names.append(weight_key[: -len("weight")] + "bias")
    if weight_key.endswith(".w_0"):  # Paddle's auto-generated names, e.g. linear_3.w_0 / linear_3.b_0
        names.append(weight_key[: -len(".w_0")] + ".b_0")
    return names


def _describe(gradients: Mapping[str, Any], keys: Sequence[str]) -> str:
    return ", ".join(f"{k!r} {list(_shape(gradients[k]))}" for k in keys) or "none"


def find_classifier(
    gradients: Mapping[str, ArrayLike],
    num_classes: int,
    weight_name: Optional[str] = None,
    bias_name: Optional[str] = None,
) -> Tuple[str, Optional[str]]:
    """Find the keys of the last Linear layer's weight ``[d, C]`` and bias ``[C]``.

    The weight is chosen by ``weight_name`` when given; otherwise it is the *only* 2-D entry whose
    output dimension (axis 1, Paddle layout ``[in, out]``) equals ``num_classes``. The bias is
    ``bias_name`` when given, otherwise the entry named like the weight with ``weight`` replaced by
    ``bias`` (``fc.weight`` -> ``fc.bias``; ``linear_3.w_0`` -> ``linear_3.b_0``) if it has shape
    ``[C]``; ``None`` when there is no such entry. Position in the dict is never used.

    Args:
        gradients: gradients (or any per-parameter tensors) keyed by the names that
            ``model.named_parameters()`` produces.
        num_classes: number of classes ``C`` the classifier outputs.
        weight_name: key of the classifier weight, to resolve ambiguity.
        bias_name: key of the classifier bias, when it is not named like the weight.

    Returns:
        ``(weight_key, bias_key or None)``.

    Raises:
        ValueError: when ``weight_name``/``bias_name`` is missing or has the wrong shape, when no
            entry fits, or when several do (the message lists the candidates).
    """
    if not isinstance(gradients, Mapping):
        raise ValueError(
            f"find_classifier expects a dict of gradients keyed by parameter name, got {type(gradients).__name__}"
        )
    num_classes = int(num_classes)
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    keys = list(gradients.keys())

    if weight_name is not None:
        if weight_name not in gradients:
            raise ValueError(
                f"weight_name {weight_name!r} is not in the gradient dict; available keys: {keys}"
            )
        shape = _shape(gradients[weight_name])
        if len(shape) != 2 or shape[1] != num_classes:
            hint = ""
            if len(shape) == 2 and shape[0] == num_classes:
                hint = (
                    " It looks like a PyTorch-layout [C, d] weight; Paddle's Linear weight is [in, out] = "
                    "[d, C], so transpose it first."
                )
            raise ValueError(
                f"weight_name {weight_name!r} has shape {list(shape)}, but the classifier weight must be "
                f"[d, {num_classes}] (Paddle layout [in, out]).{hint}"
            )
        weight_key = weight_name
    else:
        candidates = [k for k in keys if len(_shape(gradients[k])) == 2 and _shape(gradients[k])[1] == num_classes]
        if len(candidates) == 1:
            weight_key = candidates[0]
        elif not candidates:
            transposed = [k for k in keys if len(_shape(gradients[k])) == 2 and _shape(gradients[k])[0] == num_classes]
            hint = ""
            if transposed:
                hint = (
                    f" Entries with {num_classes} rows exist ({_describe(gradients, transposed)}): if they come "
                    "from a PyTorch-layout [C, d] weight, transpose them to Paddle's [d, C]."
                )
            raise ValueError(
                f"no classifier weight found: no 2-D gradient has {num_classes} output columns "
                f"(expected shape [d, {num_classes}]). 2-D entries: "
                f"{_describe(gradients, [k for k in keys if len(_shape(gradients[k])) == 2])}. "
                f"Check num_classes, or pass weight_name=... to name the last Linear weight.{hint}"
            )
        else:
            raise ValueError(
                f"ambiguous classifier weight: {len(candidates)} gradients have shape [d, {num_classes}]: "
                f"{_describe(gradients, candidates)}. Pass weight_name=... to choose the last Linear weight."
            )

    if bias_name is not None:
        if bias_name not in gradients:
            raise ValueError(f"bias_name {bias_name!r} is not in the gradient dict; available keys: {keys}")
        if _shape(gradients[bias_name]) != (num_classes,):
            raise ValueError(
                f"bias_name {bias_name!r} has shape {list(_shape(gradients[bias_name]))}, expected [{num_classes}]"
            )
        return weight_key, bias_name
    for name in _bias_name_for(weight_key):
        if name in gradients and _shape(gradients[name]) == (num_classes,):
            return weight_key, name
    return weight_key, None


def gradient_from_delta(
    delta: Union[Mapping[str, ArrayLike], ArrayLike], lr: float, local_steps: int = 1
) -> Union[Dict[str, ArrayLike], ArrayLike]:
    """Pseudo-gradient ``-ΔW / (η·K)`` of a FedAvg weight delta (``ALGORITHMS.md`` §1.2).

    ``ΔW = θ_K − θ_0`` after ``K`` local SGD steps with learning rate ``η``. With ``K = 1`` and plain
    SGD the result equals the gradient exactly; for ``K > 1`` it is the average of the gradients at
    the drifting iterates. Label heuristics need this conversion: on a raw delta the sign is flipped.

    Args:
        delta: one delta, or a dict of deltas keyed by parameter name (the type is preserved).
        lr: the local learning rate η actually used (> 0).
        local_steps: number of local SGD steps K (≥ 1), K = E·ceil(n/b).
    """
    lr = float(lr)
    if not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive learning rate, got {lr}")
    if int(local_steps) != local_steps or local_steps < 1:
        raise ValueError(f"local_steps must be a positive integer (K = epochs * ceil(n / b)), got {local_steps}")
    scale = -1.0 / (lr * int(local_steps))

    def convert(value: ArrayLike) -> ArrayLike:
        if isinstance(value, paddle.Tensor):
            return value.detach() * scale
        return np.asarray(value) * scale

    if isinstance(delta, Mapping):
        return {name: convert(value) for name, value in delta.items()}
    return convert(delta)


def last_layer_gradients(
    grads: GradientInput,
    num_classes: Optional[int] = None,
    weight_name: Optional[str] = None,
    bias_name: Optional[str] = None,
) -> Tuple[np.ndarray, Optional[np.ndarray], Dict[str, Any]]:
    """Return the classifier gradients ``(dW [d, C], db [C] or None, info)`` as float64 arrays.

    Args:
        grads: a gradient dict (the classifier is located with :func:`find_classifier`), a
            ``(dW, db)`` pair, or ``dW`` alone.
        num_classes: ``C``; required for a dict, checked against ``dW`` otherwise.
        weight_name, bias_name: forwarded to :func:`find_classifier`.

    Returns:
        The weight gradient, the bias gradient (``None`` if absent) and ``info`` with the keys used.
    """
    info: Dict[str, Any] = {}
    if isinstance(grads, Mapping):
        if num_classes is None:
            raise ValueError("num_classes is required to locate the classifier in a gradient dict")
        weight_key, bias_key = find_classifier(grads, num_classes, weight_name=weight_name, bias_name=bias_name)
        dw = to_numpy(grads[weight_key])
        db = to_numpy(grads[bias_key]) if bias_key is not None else None
        info.update(weight_key=weight_key, bias_key=bias_key)
    else:
        if isinstance(grads, (tuple, list)):
            if len(grads) != 2:
                raise ValueError(
                    f"expected a (dW, db) pair, got a sequence of length {len(grads)}; pass (dW, None) without a bias"
                )
            dw = to_numpy(grads[0])
            db = to_numpy(grads[1]) if grads[1] is not None else None
        else:
            dw, db = to_numpy(grads), None
        if dw.ndim != 2:
            raise ValueError(f"the classifier weight gradient must be 2-D [d, C], got shape {list(dw.shape)}")
        if num_classes is not None and dw.shape[1] != int(num_classes):
            hint = " (it looks transposed: Paddle's Linear weight is [in, out] = [d, C])" if dw.shape[0] == num_classes else ""
            raise ValueError(
                f"the weight gradient has shape {list(dw.shape)} but num_classes={num_classes}; expected [d, {num_classes}]{hint}"
            )
        if db is not None and db.shape != (dw.shape[1],):
            raise ValueError(f"the bias gradient must have shape [{dw.shape[1]}], got {list(db.shape)}")
    if not np.all(np.isfinite(dw)) or (db is not None and not np.all(np.isfinite(db))):
        raise ValueError("the classifier gradient contains NaN or Inf; label recovery needs finite gradients")
    return dw, db, info


def classifier_parameters(
    model: paddle.nn.Layer, num_classes: int, weight_name: Optional[str] = None
) -> Tuple[paddle.Tensor, Optional[paddle.Tensor]]:
    """Return the model's last Linear weight ``[d, C]`` and bias ``[C]`` (or ``None``).

    Uses :func:`find_classifier` on ``model.named_parameters()`` (trainable entries only), so the
    same ``weight_name`` that disambiguates the gradient dict works here. iLRG needs these
    parameters (``ALGORITHMS.md`` §5.4).
    """
    params = {name: p for name, p in model.named_parameters() if not p.stop_gradient}
    weight_key, bias_key = find_classifier(params, num_classes, weight_name=weight_name)
    return params[weight_key], params[bias_key] if bias_key is not None else None
