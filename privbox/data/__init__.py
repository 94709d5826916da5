"""Data for privbox: embedded sample images, image folders, CIFAR-10 (binary), target batches
and label transforms.

Nothing here downloads anything: the embedded samples are files bundled inside scikit-image,
and user data (an image folder, CIFAR-10 binary files, any ``paddle.io.Dataset``) is read from
local paths. Nothing here unpickles anything.
"""

from __future__ import annotations

from .batch import TargetBatch, make_target_batch, make_target_batch_from_dataset
from .cifar import CIFAR10, CIFAR10_CLASSES
from .folders import IMAGE_EXTENSIONS, ImageFolder
from .label_transforms import (
    few_class_batch_indices,
    group_by_label,
    label_repetition_rate,
    shard_labels,
)
from .samples import MAX_SIZE, MIN_SIZE, SAMPLE_NAMES, load_samples, sample_info

__all__ = [
    "SAMPLE_NAMES",
    "MIN_SIZE",
    "MAX_SIZE",
    "load_samples",
    "sample_info",
    "TargetBatch",
    "make_target_batch",
    "make_target_batch_from_dataset",
    "ImageFolder",
    "IMAGE_EXTENSIONS",
    "CIFAR10",
    "CIFAR10_CLASSES",
    "few_class_batch_indices",
    "group_by_label",
    "label_repetition_rate",
    "shard_labels",
]
