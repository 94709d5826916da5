"""Target batches: the secret (images, labels) that a federated client trains on.

>>> from privbox.data import make_target_batch
>>> batch = make_target_batch(8, num_classes=10, distinct_labels=2)
>>> batch.images.shape, batch.num_distinct_labels
((8, 3, 32, 32), 2)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .label_transforms import _balanced_class_sample, _labels_to_numpy, group_by_label
from .samples import SAMPLE_NAMES, check_channels, check_size, load_samples

__all__ = ["TargetBatch", "make_target_batch", "make_target_batch_from_dataset"]

# Tolerance on the [0, 1] range check of images coming from user datasets.
_RANGE_TOL = 1e-4


@dataclass
class TargetBatch:
    """A batch of private training data (the ground truth an attack tries to recover).

    Attributes:
        images: float32 ``[B, C, H, W]`` with values in [0, 1].
        labels: int64 ``[B]`` class indices.
        names: B human-readable names (sample names, file paths, ``dataset[index]``).
    """

    images: np.ndarray
    labels: np.ndarray
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        images = self.images
        if hasattr(images, "numpy") and not isinstance(images, np.ndarray):
            images = images.numpy()
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(
                f"TargetBatch.images must be [B, C, H, W], got shape {tuple(images.shape)}"
            )
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(
                f"TargetBatch.images must be floats in [0, 1], got dtype {images.dtype}; "
                "divide uint8 images by 255"
            )
        images = images.astype(np.float32, copy=False)
        if images.size and (not np.isfinite(images).all() or images.min() < -_RANGE_TOL
                            or images.max() > 1 + _RANGE_TOL):
            raise ValueError(
                "TargetBatch.images must lie in [0, 1] (un-normalised); got values in "
                f"[{float(np.nanmin(images)):.4g}, {float(np.nanmax(images)):.4g}]. Normalisation "
                "(mean/std) belongs to the model or the client, not to the data"
            )
        self.images = np.clip(images, 0.0, 1.0)
        labels = _labels_to_numpy(self.labels)
        if labels.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"TargetBatch has {self.images.shape[0]} images but {labels.shape[0]} labels"
            )
        self.labels = labels
        names = list(self.names) if self.names else [f"sample[{i}]" for i in range(len(labels))]
        if len(names) != labels.shape[0]:
            raise ValueError(f"TargetBatch has {labels.shape[0]} labels but {len(names)} names")
        self.names = [str(n) for n in names]

    @property
    def batch_size(self) -> int:
        """Number of samples B."""
        return int(self.images.shape[0])

    @property
    def num_distinct_labels(self) -> int:
        """Number of distinct labels in the batch."""
        return int(np.unique(self.labels).shape[0])

    def select(self, indices: Sequence[int] | np.ndarray) -> "TargetBatch":
        """A new batch with the samples at ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        return TargetBatch(self.images[idx].copy(), self.labels[idx].copy(),
                           [self.names[i] for i in idx])

    def grouped_by_label(self) -> tuple["TargetBatch", np.ndarray]:
        """The batch reordered so equal labels are contiguous (see :func:`group_by_label`);
        returns ``(new_batch, order)`` with ``new[i] = old[order[i]]``."""
        _, _, order = group_by_label(self.images, self.labels)
        return self.select(order), order

    def to_tensors(self) -> tuple[Any, Any]:
        """``(images, labels)`` as paddle tensors (float32 ``[B,C,H,W]``, int64 ``[B]``)."""
        import paddle

        return paddle.to_tensor(self.images), paddle.to_tensor(self.labels)


# --------------------------------------------------------------------------------------------


def _check_positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


def _draw_labels(batch_size: int, num_classes: int, distinct: int,
                 rng: np.random.Generator) -> np.ndarray:
    """B labels < num_classes with exactly ``distinct`` classes, counts differing by <= 1,
    in a random order."""
    classes = rng.choice(num_classes, size=distinct, replace=False)
    base, extra = divmod(batch_size, distinct)
    counts = np.full(distinct, base, dtype=np.int64)
    counts[rng.choice(distinct, size=extra, replace=False)] += 1
    labels = np.repeat(classes, counts)
    return rng.permutation(labels).astype(np.int64)


def _resolve_distinct(distinct_labels: int | None, batch_size: int, num_classes: int) -> int:
    if distinct_labels is None:
        return min(batch_size, num_classes)
    if isinstance(distinct_labels, bool) or not isinstance(distinct_labels, (int, np.integer)):
        raise ValueError(f"distinct_labels must be an int or None, got {distinct_labels!r}")
    upper = min(batch_size, num_classes)
    if not 1 <= distinct_labels <= upper:
        raise ValueError(
            f"distinct_labels={distinct_labels} is impossible with batch_size={batch_size} and "
            f"num_classes={num_classes}: choose 1 to {upper} (min(batch_size, num_classes))"
        )
    return int(distinct_labels)


def make_target_batch(
    batch_size: int,
    num_classes: int = 10,
    distinct_labels: int | None = None,
    size: int = 32,
    channels: int = 3,
    seed: int = 0,
    images: str = "samples",
    shuffle_images: bool = False,
) -> TargetBatch:
    """Build a target batch.

    With ``images="samples"`` (default) the images are embedded photographs
    (:func:`privbox.data.load_samples`): the first ``batch_size`` entries of
    :data:`SAMPLE_NAMES` (stable across seeds, so a batch of B is a prefix of a batch of B + 1),
    or a seeded random choice with ``shuffle_images=True``. Labels are drawn with ``seed`` so that
    exactly ``distinct_labels`` classes appear, each as evenly as possible (counts differ by at
    most one), all below ``num_classes``, in random order.

    ``images`` may also name a dataset, whose real labels are kept:
    ``"folder:<dir>"`` (:class:`ImageFolder`), ``"cifar10:<path>"`` /
    ``"cifar10-test:<path>"`` (:class:`CIFAR10` binary, train / test split), or a bare path
    (a CIFAR-10 binary tar or folder is detected, any other directory is an image folder).
    Samples are then drawn with ``seed`` (see :func:`make_target_batch_from_dataset`).

    Args:
        batch_size: B >= 1.
        num_classes: number of classes of the model; labels are < num_classes.
        distinct_labels: number of distinct labels; default ``min(B, num_classes)`` (unique
            labels when possible; for a dataset also at most its number of classes).
        size: image side, 8 to 224.
        channels: 3 (RGB) or 1 (luminance).
        seed: seed of the label (and, for datasets or ``shuffle_images``, image) draw.
        images: ``"samples"`` or a dataset as described above.
        shuffle_images: embedded samples only: pick a seeded random set of images.

    Returns:
        A :class:`TargetBatch`.
    """
    batch_size = _check_positive_int(batch_size, "batch_size")
    num_classes = _check_positive_int(num_classes, "num_classes")
    size = check_size(size)
    channels = check_channels(channels)
    if not isinstance(images, (str, os.PathLike)):
        raise ValueError(
            f"images must be 'samples' or a dataset path string, got {type(images).__name__}; "
            "for a paddle.io.Dataset object call make_target_batch_from_dataset"
        )
    if str(images) != "samples":
        dataset = _open_dataset(os.fspath(images), size, channels)
        labels_all = _dataset_labels(dataset)
        if labels_all.size and labels_all.max() >= num_classes:
            raise ValueError(
                f"the dataset {images!r} has labels up to {int(labels_all.max())} but "
                f"num_classes={num_classes}; pass num_classes >= {int(labels_all.max()) + 1}"
            )
        n_present = int(np.unique(labels_all).shape[0])
        if distinct_labels is None:
            distinct = min(batch_size, num_classes, n_present)
        else:
            distinct = _resolve_distinct(distinct_labels, batch_size, num_classes)
        return make_target_batch_from_dataset(dataset, batch_size, seed=seed,
                                              distinct_labels=distinct)

    n_samples = len(SAMPLE_NAMES)
    if batch_size > n_samples:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {n_samples} embedded sample images (the "
            f"maximum batch size with images='samples' is {n_samples}); for larger batches use "
            "an image folder (images='folder:<dir>') or CIFAR-10 "
            "(images='cifar10:<cifar-10-binary.tar.gz>'), or make_target_batch_from_dataset"
        )
    distinct = _resolve_distinct(distinct_labels, batch_size, num_classes)
    rng = np.random.default_rng(seed)
    labels = _draw_labels(batch_size, num_classes, distinct, rng)
    if shuffle_images:
        img_rng = np.random.default_rng([seed, 1])
        chosen = [SAMPLE_NAMES[i] for i in img_rng.choice(n_samples, batch_size, replace=False)]
    else:
        chosen = list(SAMPLE_NAMES[:batch_size])
    pictures = load_samples(size=size, channels=channels, names=chosen)
    return TargetBatch(pictures, labels, chosen)


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


def _open_dataset(spec: str, size: int, channels: int) -> Any:
    from .cifar import CIFAR10, looks_like_cifar
    from .folders import ImageFolder

    kind, sep, rest = spec.partition(":")
    if sep and kind in ("folder", "cifar10", "cifar10-train", "cifar10-test") and rest:
        if kind == "folder":
            return ImageFolder(rest, size=size, channels=channels)
        split = "test" if kind == "cifar10-test" else "train"
        return CIFAR10(rest, split=split, size=size, channels=channels)
    if not os.path.exists(spec):
        raise ValueError(
            f"images={spec!r} is neither 'samples' nor an existing path; use 'samples', "
            "'folder:<dir>', 'cifar10:<path>', 'cifar10-test:<path>' or a path to an image "
            "folder or CIFAR-10 binary files"
        )
    if looks_like_cifar(spec):
        return CIFAR10(spec, split="train", size=size, channels=channels)
    return ImageFolder(spec, size=size, channels=channels)


def _as_chw(image: Any, where: str) -> np.ndarray:
    if hasattr(image, "numpy") and not isinstance(image, np.ndarray):
        image = image.numpy()
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{where}: expected a CHW image, got shape {tuple(arr.shape)}")
    if arr.shape[0] not in (1, 3):
        hint = (" (it looks like HWC: transpose to CHW, e.g. with "
                "paddle.vision.transforms.ToTensor())" if arr.shape[-1] in (1, 3) else "")
        raise ValueError(
            f"{where}: expected a CHW image with 1 or 3 channels, got shape "
            f"{tuple(arr.shape)}{hint}"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"{where}: images must be floats in [0, 1], got dtype {arr.dtype}; scale them "
            "(e.g. divide uint8 by 255 or use paddle.vision.transforms.ToTensor())"
        )
    if arr.size and (arr.min() < -_RANGE_TOL or arr.max() > 1 + _RANGE_TOL):
        raise ValueError(
            f"{where}: image values must lie in [0, 1], got [{float(arr.min()):.4g}, "
            f"{float(arr.max()):.4g}]; remove Normalize from the dataset transform (privbox "
            "normalises inside the model/client)"
        )
    return arr.astype(np.float32, copy=False)


def _as_label(label: Any, where: str) -> int:
    if hasattr(label, "numpy") and not isinstance(label, np.ndarray):
        label = label.numpy()
    arr = np.asarray(label)
    if arr.size != 1 or not (np.issubdtype(arr.dtype, np.integer)
                             or (np.issubdtype(arr.dtype, np.floating)
                                 and float(arr.reshape(())) == round(float(arr.reshape(()))))):
        raise ValueError(f"{where}: expected one integer class label, got {label!r}")
    value = int(arr.reshape(()))
    if value < 0:
        raise ValueError(f"{where}: labels must be non-negative, got {value}")
    return value


def _split_item(item: Any, where: str) -> tuple[Any, Any]:
    if isinstance(item, dict):
        keys = [k for k in ("image", "img", "x") if k in item]
        lkeys = [k for k in ("label", "y", "target") if k in item]
        if keys and lkeys:
            return item[keys[0]], item[lkeys[0]]
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    raise ValueError(f"{where}: expected an (image, label) pair, got {type(item).__name__}")


def _is_map_style(dataset: Any) -> bool:
    import paddle

    if isinstance(dataset, (paddle.io.IterableDataset, paddle.io.DataLoader)):
        return False
    return hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")


def _dataset_labels(dataset: Any) -> np.ndarray:
    """All labels of a map-style dataset: its ``labels`` (or ``targets``) attribute when it has
    one of the right length, otherwise by reading every item."""
    for attr in ("labels", "targets"):
        labels = getattr(dataset, attr, None)
        if labels is None or callable(labels):
            continue
        try:
            arr = _labels_to_numpy(labels, f"dataset.{attr}")
        except (TypeError, ValueError):
            continue
        if arr.shape[0] == len(dataset):
            return arr
    return np.array([_as_label(_split_item(dataset[i], f"dataset[{i}]")[1], f"dataset[{i}]")
                     for i in range(len(dataset))], dtype=np.int64)


def _sample_name(dataset: Any, index: int) -> str:
    namer = getattr(dataset, "sample_name", None)
    if callable(namer):
        return str(namer(index))
    return f"{type(dataset).__name__}[{index}]"


def _iter_samples(loader: Iterable) -> Iterable[tuple[np.ndarray, int]]:
    """Yield single (CHW image, label) pairs from an iterable dataset or a DataLoader."""
    for n, item in enumerate(loader):
        image, label = _split_item(item, f"item {n} of the loader")
        if hasattr(image, "numpy") and not isinstance(image, np.ndarray):
            image = image.numpy()
        image = np.asarray(image)
        if image.ndim == 4:  # a batch
            labs = _labels_to_numpy(label, f"labels of batch {n}")
            for img, lab in zip(image, labs):
                yield _as_chw(img, f"batch {n} of the loader"), int(lab)
        else:
            yield _as_chw(image, f"item {n} of the loader"), _as_label(label, f"item {n}")


def make_target_batch_from_dataset(
    dataset: Any,
    batch_size: int,
    seed: int = 0,
    indices: Sequence[int] | None = None,
    distinct_labels: int | None = None,
    max_scan: int = 10000,
) -> TargetBatch:
    """Build a target batch from a ``paddle.io.Dataset``, an iterable dataset or a DataLoader.

    Items must be ``(image, label)`` with the image a CHW array or tensor in [0, 1] (no
    normalisation) and the label an integer; DataLoader batches (``[N, C, H, W]`` images) are
    split into samples. Labels are the dataset's own, never changed.

    Selection (map-style datasets, i.e. with ``__len__`` and ``__getitem__``):

    * ``indices`` given: exactly those samples, in that order (``batch_size`` must match).
    * ``distinct_labels`` given: ``batch_size`` samples from exactly that many classes, counts
      as even as possible (:func:`few_class_batch_indices`), in a seeded random order.
    * otherwise: ``batch_size`` distinct indices drawn uniformly with ``seed``.

    Iterable datasets and loaders are read in their own order: without ``distinct_labels`` the
    first ``batch_size`` samples are taken; with it, up to ``max_scan`` samples are read and the
    batch is drawn from them as above.

    Returns:
        A :class:`TargetBatch`; names are ``dataset.sample_name(i)`` when the dataset has that
        method (privbox's :class:`ImageFolder` and :class:`CIFAR10` do), else
        ``"<ClassName>[i]"``.
    """
    batch_size = _check_positive_int(batch_size, "batch_size")
    rng = np.random.default_rng(seed)

    if not _is_map_style(dataset):
        if indices is not None:
            raise ValueError(
                "indices need a map-style dataset (with __len__ and __getitem__); pass the "
                "dataset itself instead of a loader or iterable"
            )
        if not hasattr(dataset, "__iter__"):
            raise ValueError(
                f"expected a paddle.io.Dataset, an iterable dataset or a DataLoader, got "
                f"{type(dataset).__name__}"
            )
        pool_images: list[np.ndarray] = []
        pool_labels: list[int] = []
        limit = batch_size if distinct_labels is None else max(int(max_scan), batch_size)
        for image, label in _iter_samples(dataset):
            pool_images.append(image)
            pool_labels.append(label)
            if len(pool_images) >= limit:
                break
        if len(pool_images) < batch_size:
            raise ValueError(
                f"the loader yielded only {len(pool_images)} samples, fewer than "
                f"batch_size={batch_size}"
            )
        labels_pool = np.asarray(pool_labels, dtype=np.int64)
        if distinct_labels is None:
            chosen = np.arange(batch_size)
        else:
            chosen = _balanced_class_sample(labels_pool, batch_size, distinct_labels, rng)
            chosen = chosen[rng.permutation(batch_size)]
        images = np.stack(_same_shape([pool_images[i] for i in chosen]))
        names = [f"{type(dataset).__name__}#{int(i)}" for i in chosen]
        return TargetBatch(images, labels_pool[chosen], names)

    n = len(dataset)
    if indices is not None:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.shape[0] != batch_size:
            raise ValueError(
                f"got {idx.shape[0]} indices but batch_size={batch_size}; pass as many indices "
                "as the batch size"
            )
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise ValueError(f"indices must lie in [0, {n}) for a dataset of {n} samples")
        idx = np.where(idx < 0, idx + n, idx)
        if np.unique(idx).shape[0] != idx.shape[0]:
            raise ValueError("indices contain duplicates; a target batch holds distinct samples")
        if distinct_labels is not None:
            raise ValueError("pass either indices or distinct_labels, not both")
    elif distinct_labels is not None:
        labels_all = _dataset_labels(dataset)
        idx = _balanced_class_sample(labels_all, batch_size, distinct_labels, rng)
        idx = idx[rng.permutation(batch_size)]
    else:
        if batch_size > n:
            raise ValueError(
                f"batch_size={batch_size} exceeds the dataset size {n}; lower the batch size"
            )
        idx = rng.choice(n, size=batch_size, replace=False).astype(np.int64)

    images, labels = [], []
    for i in idx:
        image, label = _split_item(dataset[int(i)], f"dataset[{int(i)}]")
        images.append(_as_chw(image, f"dataset[{int(i)}]"))
        labels.append(_as_label(label, f"dataset[{int(i)}]"))
    names = [_sample_name(dataset, int(i)) for i in idx]
    return TargetBatch(np.stack(_same_shape(images)), np.asarray(labels, dtype=np.int64), names)


def _same_shape(images: list[np.ndarray]) -> list[np.ndarray]:
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(
            f"the selected images have different shapes {sorted(shapes)}; resize them to one "
            "size in the dataset (privbox's ImageFolder does this with size=...)"
        )
    return images
