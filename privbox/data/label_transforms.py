"""Label order and label repetition (Label-based-Defense, ALGORITHMS.md §6.5 and §5.5).

The Label-based-Defense repository's ``--duplicate-label`` *overwrote* the real labels with
4 classes x 8 (B = 32), sorted and contiguous, so that each of 4 shards or 4 local steps sees a
single label. privbox never overwrites labels. It offers instead:

* :func:`group_by_label` — a stable reordering that makes samples with the same label
  contiguous (so contiguous shards or local steps become label-homogeneous);
* :func:`shard_labels` — the index lists of contiguous equal shards of a batch;
* :func:`few_class_batch_indices` — sampling a batch with few classes from a labelled dataset
  (e.g. 4 classes x 8 for B = 32);
* :func:`label_repetition_rate` — the repetition rate under an explicit definition (§5.5).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "group_by_label",
    "shard_labels",
    "few_class_batch_indices",
    "label_repetition_rate",
]


def _labels_to_numpy(labels: Any, what: str = "labels") -> np.ndarray:
    """Return labels as a 1-D int64 numpy array (accepts lists, numpy arrays, paddle tensors)."""
    if hasattr(labels, "numpy") and not isinstance(labels, np.ndarray):
        labels = labels.numpy()
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:  # paddle-style [B, 1] label tensors
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional [B], got shape {tuple(arr.shape)}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(
                f"{what} must be integer class indices, got dtype {arr.dtype}; pass hard labels, "
                "not one-hot or soft labels"
            )
    if arr.size and arr.min() < 0:
        raise ValueError(f"{what} must be non-negative class indices, got {int(arr.min())}")
    return arr.astype(np.int64, copy=False)


def _take(x: Any, order: np.ndarray) -> Any:
    """Index the first axis of a numpy array, paddle tensor or sequence with ``order``."""
    if isinstance(x, np.ndarray):
        return x[order]
    if hasattr(x, "numpy") and hasattr(x, "shape"):  # paddle.Tensor
        import paddle

        return paddle.gather(x, paddle.to_tensor(order, dtype="int64"), axis=0)
    if isinstance(x, (list, tuple)):
        return type(x)(x[i] for i in order)
    return np.asarray(x)[order]


def group_by_label(images: Any, labels: Any) -> tuple[Any, Any, np.ndarray]:
    """Stably reorder a batch so that samples with the same label are contiguous.

    Groups appear in increasing label order; within a group the original order is kept. The
    labels are permuted with the images, never overwritten.

    Args:
        images: ``[B, ...]`` numpy array or paddle tensor (or a list of length B).
        labels: ``[B]`` integer labels (numpy, list or paddle tensor; ``[B, 1]`` also accepted).

    Returns:
        ``(images[order], labels[order], order)``: images and labels in the type they came in
        (numpy labels for list input), and ``order`` an int64 numpy array such that
        ``new[i] = old[order[i]]``.
    """
    lab = _labels_to_numpy(labels)
    n_images = len(images) if not hasattr(images, "shape") else int(images.shape[0])
    if n_images != lab.shape[0]:
        raise ValueError(
            f"images and labels disagree on the batch size: {n_images} images, "
            f"{lab.shape[0]} labels"
        )
    order = np.argsort(lab, kind="stable").astype(np.int64)
    if isinstance(labels, (np.ndarray, list, tuple)) or not hasattr(labels, "numpy"):
        new_labels: Any = lab[order]
    else:
        new_labels = _take(labels, order)
    return _take(images, order), new_labels, order


def shard_labels(labels: Any, num_shards: int) -> list[list[int]]:
    """Split a batch into ``num_shards`` contiguous shards of equal size.

    Use after :func:`group_by_label` to see which shards (devices, or local steps) are
    label-homogeneous: with 4 classes x 8 and 4 shards every shard holds one label.

    Args:
        labels: ``[B]`` labels of the batch (only its length and, for messages, its values
            matter).
        num_shards: number of shards; must divide B.

    Returns:
        ``num_shards`` lists of sample indices: ``[[0, ..., B/n - 1], [B/n, ...], ...]``.
    """
    lab = _labels_to_numpy(labels)
    batch = lab.shape[0]
    if isinstance(num_shards, bool) or not isinstance(num_shards, (int, np.integer)) \
            or num_shards < 1:
        raise ValueError(f"num_shards must be a positive int, got {num_shards!r}")
    if batch == 0:
        raise ValueError("cannot shard an empty batch")
    if num_shards > batch:
        raise ValueError(
            f"num_shards={num_shards} exceeds the batch size {batch}; use at most {batch} shards"
        )
    if batch % num_shards:
        divisors = [d for d in range(1, batch + 1) if batch % d == 0]
        raise ValueError(
            f"a batch of {batch} cannot be split into {num_shards} equal shards; choose "
            f"num_shards among {divisors} or change the batch size"
        )
    per = batch // int(num_shards)
    return [list(range(s * per, (s + 1) * per)) for s in range(int(num_shards))]


def few_class_batch_indices(
    labels_of_dataset: Any,
    batch_size: int,
    num_classes_in_batch: int,
    seed: int = 0,
    grouped: bool = True,
) -> np.ndarray:
    """Sample a batch that contains exactly ``num_classes_in_batch`` classes.

    The classes are chosen at random (seeded) among those with enough samples; each class
    gets ``batch_size // num_classes_in_batch`` samples, and the remainder is spread one per
    class, so counts differ by at most one (4 classes x 8 for B = 32). Samples are drawn
    without replacement inside each class.

    Args:
        labels_of_dataset: ``[N]`` labels of the whole dataset.
        batch_size: B, at most N.
        num_classes_in_batch: number of distinct classes in the batch, 1 to B.
        seed: seed of the numpy generator; same seed, same indices.
        grouped: True (default) returns the indices grouped by label in increasing label order
            (contiguous classes, as the Label-based-Defense batches); False returns them in a
            seeded random order.

    Returns:
        int64 numpy array of B distinct dataset indices.
    """
    labels = _labels_to_numpy(labels_of_dataset, "labels_of_dataset")
    rng = np.random.default_rng(seed)
    idx = _balanced_class_sample(labels, batch_size, num_classes_in_batch, rng)
    if grouped:
        return idx[np.argsort(labels[idx], kind="stable")]
    return idx[rng.permutation(idx.shape[0])]


def _balanced_class_sample(
    labels: np.ndarray, batch_size: int, k: int, rng: np.random.Generator
) -> np.ndarray:
    """Indices of ``batch_size`` samples from exactly ``k`` classes, counts as even as possible;
    returned grouped by class (classes in increasing order, indices sorted inside a class)."""
    n = labels.shape[0]
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if batch_size > n:
        raise ValueError(
            f"batch_size={batch_size} exceeds the dataset size {n}; use a larger dataset or a "
            "smaller batch"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= batch_size:
        raise ValueError(
            f"the number of classes in the batch must be an int from 1 to batch_size="
            f"{batch_size}, got {k!r}"
        )
    batch_size, k = int(batch_size), int(k)
    classes, counts = np.unique(labels, return_counts=True)
    base, extra = divmod(batch_size, k)
    eligible = classes[counts >= base]
    rich = classes[counts >= base + 1]
    if eligible.shape[0] < k or rich.shape[0] < extra:
        more = f" ({extra} of them with {base + 1})" if extra else ""
        raise ValueError(
            f"cannot draw {batch_size} samples from exactly {k} classes: that needs {k} classes "
            f"with at least {base} samples each{more}, but the dataset has {classes.shape[0]} "
            "classes "
            f"(per-class counts {dict(zip(classes.tolist(), counts.tolist()))}); lower "
            "batch_size or raise the number of classes in the batch"
        )
    # The `extra` classes that get one more sample must come from `rich`; choose them first,
    # then the remaining classes among all other eligible ones.
    plus_one = rng.permutation(rich)[:extra]
    rest_pool = np.setdiff1d(eligible, plus_one)
    rest = rng.permutation(rest_pool)[: k - extra]
    chosen = np.concatenate([plus_one, rest]).astype(np.int64)
    per_class = {int(c): base + 1 for c in plus_one}
    per_class.update({int(c): base for c in rest})
    parts = []
    for c in np.sort(chosen):
        members = np.flatnonzero(labels == c)
        parts.append(np.sort(rng.choice(members, size=per_class[int(c)], replace=False)))
    return np.concatenate(parts).astype(np.int64)


def label_repetition_rate(labels: Any, definition: str = "distinct") -> float:
    """Label repetition rate of a batch, under an explicit definition (ALGORITHMS.md §5.5).

    The E2EGI authors do not define the rate, so always state which one you report:

    * ``"distinct"`` (default, (a)): ``1 - (number of distinct labels) / B``; 4 labels x 8
      (B = 32) gives 0.875, B unique labels give 0.
    * ``"repeated"`` ((b)): fraction of samples whose label occurs more than once in the batch;
      4 x 8 gives 1.0, unique labels give 0.

    Args:
        labels: ``[B]`` integer labels (list, numpy array or paddle tensor), B >= 1.
        definition: ``"distinct"`` or ``"repeated"``.

    Returns:
        A float in [0, 1] (``"distinct"`` is always below 1).
    """
    lab = _labels_to_numpy(labels)
    if lab.shape[0] == 0:
        raise ValueError("label_repetition_rate needs at least one label, got an empty batch")
    _, counts = np.unique(lab, return_counts=True)
    if definition == "distinct":
        return float(1.0 - counts.shape[0] / lab.shape[0])
    if definition == "repeated":
        return float(counts[counts > 1].sum() / lab.shape[0])
    raise ValueError(
        f"unknown definition {definition!r}: use 'distinct' (1 - distinct/B) or 'repeated' "
        "(fraction of samples whose label occurs more than once)"
    )
