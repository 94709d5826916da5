"""Label-recovery metrics (``ALGORITHMS.md`` §5.5).

Labels are passed as integer arrays (lists, NumPy arrays or Paddle tensors) and read as
multisets: ``n_c`` is the number of times class c occurs in the truth, ``n̂_c`` in the recovered
labels. To score per-class counts (for example iLRG's raw counts), expand them first with
:func:`labels_from_counts`.

- :func:`multiset_accuracy` ``Σ_c min(n̂_c, n_c) / B`` (E2EGI; equals iLRG's IRec), order-free.
- :func:`le_acc` ``(1/C) Σ_c 1[(n̂_c > 0) = (n_c > 0)]`` over **all** C classes (iLRG's LeAcc;
  inflated when C is much larger than the number of present classes).
- :func:`ln_acc` ``(1/C) Σ_c 1[n̂_c = n_c]`` over all C classes (iLRG's LnAcc).
- :func:`present_set_jaccard` ``|S ∩ Ŝ| / |S ∪ Ŝ|`` of the present-class sets (privbox extension).
- :func:`index_accuracy` position-wise agreement, only meaningful when sample order is known.
- :func:`label_repetition_rate` with the two named definitions of §5.5.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

__all__ = [
    "REPETITION_DEFINITIONS",
    "label_counts",
    "labels_from_counts",
    "multiset_accuracy",
    "le_acc",
    "ln_acc",
    "present_set_jaccard",
    "index_accuracy",
    "label_repetition_rate",
    "label_metrics",
]

REPETITION_DEFINITIONS: Dict[str, str] = {
    "distinct": "(a) 1 - (number of distinct labels) / B",
    "repeated": "(b) fraction of samples whose label occurs more than once in the batch",
}
"""The two definitions of the label repetition rate; the E2EGI authors do not define it (§5.5)."""

_DEFINITION_ALIASES = {"a": "distinct", "b": "repeated", "distinct": "distinct", "repeated": "repeated"}


def _as_labels(labels: Any, name: str) -> np.ndarray:
    if hasattr(labels, "numpy") and callable(labels.numpy):
        labels = labels.numpy()
    array = np.asarray(labels)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {list(array.shape)}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise ValueError(f"{name} must contain integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"{name} contains a negative class index ({array.min()})")
    return array


def _check_num_classes(num_classes: int, *arrays: np.ndarray) -> int:
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    for array in arrays:
        if array.size and array.max() >= num_classes:
            raise ValueError(f"class index {array.max()} is out of range for num_classes={num_classes}")
    return num_classes


def label_counts(labels: Any, num_classes: int) -> np.ndarray:
    """Per-class occurrence counts ``[C]`` (int64) of a label array."""
    array = _as_labels(labels, "labels")
    num_classes = _check_num_classes(num_classes, array)
    return np.bincount(array, minlength=num_classes).astype(np.int64)


def labels_from_counts(counts: Any) -> np.ndarray:
    """Expand per-class counts into a sorted label multiset, e.g. ``[2, 0, 1] -> [0, 0, 2]``."""
    counts = np.asarray(counts).reshape(-1)
    if np.any(counts < 0) or not np.all(np.equal(np.mod(counts, 1), 0)):
        raise ValueError("counts must be non-negative integers")
    return np.repeat(np.arange(counts.size, dtype=np.int64), counts.astype(np.int64))


def _pair_counts(true_labels: Any, pred_labels: Any, num_classes: Optional[int]):
    true = _as_labels(true_labels, "true_labels")
    pred = _as_labels(pred_labels, "pred_labels")
    if num_classes is None:
        num_classes = int(max(true.max(initial=-1), pred.max(initial=-1)) + 1) or 1
    num_classes = _check_num_classes(num_classes, true, pred)
    return (
        true,
        pred,
        np.bincount(true, minlength=num_classes),
        np.bincount(pred, minlength=num_classes),
        num_classes,
    )


def multiset_accuracy(true_labels: Any, pred_labels: Any) -> float:
    """Multiset accuracy ``Σ_c min(n̂_c, n_c) / B`` (E2EGI; iLRG's IRec), B = ``len(true_labels)``.

    Order-free; the recovered multiset may have a different size (e.g. raw iLRG counts).
    """
    true, _, n_true, n_pred, _ = _pair_counts(true_labels, pred_labels, None)
    if true.size == 0:
        raise ValueError("true_labels is empty; multiset accuracy needs at least one sample")
    return float(np.minimum(n_true, n_pred).sum() / true.size)


def le_acc(true_labels: Any, pred_labels: Any, num_classes: int) -> float:
    """LeAcc (iLRG): fraction of **all C** classes whose presence is predicted correctly."""
    _, _, n_true, n_pred, num_classes = _pair_counts(true_labels, pred_labels, num_classes)
    return float(np.mean((n_true > 0) == (n_pred > 0)))


def ln_acc(true_labels: Any, pred_labels: Any, num_classes: int) -> float:
    """LnAcc (iLRG): fraction of **all C** classes whose count is predicted exactly."""
    _, _, n_true, n_pred, num_classes = _pair_counts(true_labels, pred_labels, num_classes)
    return float(np.mean(n_true == n_pred))


def present_set_jaccard(true_labels: Any, pred_labels: Any) -> float:
    """Jaccard index ``|S ∩ Ŝ| / |S ∪ Ŝ|`` of the present-class sets (1.0 when both are empty).

    A privbox extension that, unlike LeAcc, is not inflated by the many absent classes.
    """
    true = set(_as_labels(true_labels, "true_labels").tolist())
    pred = set(_as_labels(pred_labels, "pred_labels").tolist())
    union = true | pred
    return 1.0 if not union else len(true & pred) / len(union)


def index_accuracy(true_labels: Any, pred_labels: Any) -> float:
    """Position-wise accuracy ``mean(ŷ_i = y_i)``.

    Only meaningful when the recovered labels are in sample order (for example when labels were
    given to the attack); the analytic methods return sorted multisets, for which it is not.
    """
    true = _as_labels(true_labels, "true_labels")
    pred = _as_labels(pred_labels, "pred_labels")
    if true.size != pred.size:
        raise ValueError(
            f"index accuracy compares labels position by position, but got {true.size} true and {pred.size} "
            "recovered labels; use multiset_accuracy for unordered label multisets"
        )
    if true.size == 0:
        raise ValueError("true_labels is empty")
    return float(np.mean(true == pred))


def label_repetition_rate(labels: Any, definition: str = "distinct") -> float:
    """Label repetition rate of a batch; always report which definition was used (§5.5).

    Args:
        labels: the batch labels.
        definition: ``"distinct"`` (alias ``"a"``, the default): ``1 − distinct/B``, so 4 labels ×
            8 copies gives 0.875; ``"repeated"`` (alias ``"b"``): the fraction of samples whose label
            occurs more than once (1.0 for 4 × 8).
    """
    key = _DEFINITION_ALIASES.get(definition)
    if key is None:
        raise ValueError(
            f"unknown repetition-rate definition {definition!r}; use 'distinct' ('a': 1 - distinct/B) or "
            "'repeated' ('b': fraction of samples whose label occurs more than once)"
        )
    array = _as_labels(labels, "labels")
    if array.size == 0:
        raise ValueError("labels is empty")
    _, inverse, counts = np.unique(array, return_inverse=True, return_counts=True)
    if key == "distinct":
        return float(1.0 - counts.size / array.size)
    return float(np.mean(counts[inverse.reshape(-1)] > 1))


def label_metrics(
    true_labels: Any, pred_labels: Any, num_classes: int, *, ordered: bool = False
) -> Dict[str, float]:
    """All label metrics at once: multiset accuracy, LeAcc, LnAcc, present-set Jaccard, and the
    index accuracy when ``ordered`` (the recovered labels are in sample order)."""
    result = {
        "multiset_acc": multiset_accuracy(true_labels, pred_labels),
        "le_acc": le_acc(true_labels, pred_labels, num_classes),
        "ln_acc": ln_acc(true_labels, pred_labels, num_classes),
        "jaccard": present_set_jaccard(true_labels, pred_labels),
    }
    if ordered:
        result["index_acc"] = index_accuracy(true_labels, pred_labels)
    return result
