"""Checks of the observation at its boundaries: update metadata, update tensors and labels, and
secrets. Each check raises one of :mod:`privbox.core.errors`' kinds in the one message style
(what is wrong, where: file and key, how to fix it), before anything downstream allocates or
calls Paddle (a ``batch_size`` of 0 used to kill the process with SIGFPE inside Paddle; integer
or enormous gradients, float labels and a wrong label count used to run silently).

The bounds are deliberately generous for real federated-learning updates and tight enough that
nothing derived from them (the dummy batch of an attack, one-hot labels) allocates gigabytes.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import numpy as np

from .errors import InputError, UpdateFileError

__all__ = [
    "MAX_BATCH",
    "MAX_CLASSES",
    "MAX_SIDE",
    "MAX_CHANNELS",
    "MAX_DUMMY_ELEMENTS",
    "MAX_ABS_UPDATE",
    "check_meta_dict",
    "check_update_arrays",
    "check_secret_arrays",
    "check_reconstruction_parts",
    "check_output_path",
]

#: Largest batch (and number of local samples) an update may declare.
MAX_BATCH = 65_536
#: Most classes.
MAX_CLASSES = 100_000
#: Largest image side and channel count.
MAX_SIDE = 8_192
MAX_CHANNELS = 64
#: Most elements of the dummy batch ``num_samples x C x H x W`` an attack optimises (1 GiB float32).
MAX_DUMMY_ELEMENTS = 1 << 28
#: Largest |value| of an update tensor: the gradient-matching loss squares the values, and sums of
#: squares of 1e15 already overflow float32 for a million parameters (a diverged client).
MAX_ABS_UPDATE = 1e15
#: Most local steps / epochs.
MAX_STEPS = 1_000_000

_META_FIX = "the update was edited or written by another tool; re-create it with privbox capture or ClientUpdate.save"


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


class _Meta:
    """Collects the checks of one metadata dict; raises on the first problem."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data, self.where = data, where

    def fail(self, key: str, what: str, fix: str = _META_FIX) -> None:
        raise UpdateFileError(what, where=f"{self.where}: meta.{key}", fix=fix)

    def integer(self, key: str, low: int, high: int, why: str = "") -> Optional[int]:
        if key not in self.data:
            return None
        value = self.data[key]
        if not _is_int(value):
            self.fail(key, f"must be an integer, got {value!r} ({type(value).__name__})")
        if not low <= value <= high:
            self.fail(key, f"must lie in [{low}, {high}]{why}, got {value}")
        return int(value)

    def choice(self, key: str, options: tuple[str, ...]) -> None:
        if key in self.data and self.data[key] not in options:
            self.fail(key, f"must be one of {list(options)}, got {self.data[key]!r}")

    def string(self, key: str, empty: bool = False) -> None:
        if key in self.data and (not isinstance(self.data[key], str) or (not empty and not self.data[key])):
            self.fail(key, f"must be a{'' if empty else ' non-empty'} string, got {self.data[key]!r}")

    def numbers(self, key: str, length: Optional[int], positive: bool = False) -> None:
        if key not in self.data:
            return
        value = self.data[key]
        if not isinstance(value, (list, tuple)) or not all(_is_number(v) and math.isfinite(v) for v in value):
            self.fail(key, f"must be a list of finite numbers, got {value!r}")
        if length is not None and len(value) != length:
            self.fail(key, f"needs one value per input channel ({length}), got {len(value)}")
        if positive and any(v <= 0 for v in value):
            self.fail(key, f"values must be positive, got {list(value)}")


def check_meta_dict(data: Any, where: str = "update metadata") -> None:
    """Check the fields of :class:`~privbox.core.update.UpdateMeta` given as a dict.

    Types, ranges and consistency: ``batch_size`` and ``num_samples`` in [1, 65536] with
    ``batch_size <= num_samples``; ``input_shape`` three positive integers ``[C, H, W]``;
    ``num_classes`` in [2, 1e6]; one mean/std per channel, std > 0; ``lr`` None or a finite
    positive number; the dummy batch ``num_samples x C x H x W`` within :data:`MAX_DUMMY_ELEMENTS`.
    Keys that are absent are not checked (the dataclass defaults apply).
    """
    if not isinstance(data, Mapping):
        raise UpdateFileError(f"the metadata is a JSON {type(data).__name__}, not an object", where=where, fix=_META_FIX)
    meta = _Meta(data, where)
    meta.choice("kind", ("gradient", "weight_delta"))
    meta.choice("bn_mode", ("train", "eval"))
    meta.string("model_id")
    meta.string("loss")
    meta.string("privbox_version", empty=True)
    kwargs = data.get("model_kwargs", {})
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) and k.isidentifier() for k in kwargs):
        meta.fail("model_kwargs", f"must be an object of keyword arguments, got {kwargs!r}")
    shape = data.get("input_shape", [3, 32, 32])
    if not isinstance(shape, (list, tuple)) or len(shape) != 3 or not all(_is_int(d) for d in shape):
        meta.fail("input_shape", f"must be three integers [C, H, W], got {shape!r}")
    channels, height, width = (int(d) for d in shape)
    if not 1 <= channels <= MAX_CHANNELS or not 1 <= height <= MAX_SIDE or not 1 <= width <= MAX_SIDE:
        meta.fail("input_shape", f"[C, H, W] must have 1 <= C <= {MAX_CHANNELS} and 1 <= H, W <= {MAX_SIDE}, got {list(shape)}")
    batch = meta.integer("batch_size", 1, MAX_BATCH)
    samples = meta.integer("num_samples", 1, MAX_BATCH)
    if batch is not None and samples is not None and batch > samples:
        meta.fail("batch_size", f"is {batch} but num_samples is {samples}; a batch cannot exceed the client's samples")
    count = samples if samples is not None else (batch or 1)
    if count * channels * height * width > MAX_DUMMY_ELEMENTS:
        meta.fail("input_shape", f"{count} samples of {list(shape)} make {count * channels * height * width} values, "
                                 f"more than the limit of {MAX_DUMMY_ELEMENTS}")
    meta.numbers("mean", channels)
    meta.numbers("std", channels, positive=True)
    meta.integer("num_classes", 2, MAX_CLASSES, " (a classifier needs at least two classes)")
    meta.integer("local_steps", 1, MAX_STEPS)
    meta.integer("local_epochs", 1, MAX_STEPS)
    meta.integer("round", 0, 1 << 62)
    if data.get("seed") is not None:
        meta.integer("seed", -(1 << 63), (1 << 64) - 1)
    lr = data.get("lr")
    if lr is not None and (not _is_number(lr) or not math.isfinite(lr) or lr <= 0):
        meta.fail("lr", f"must be null or a finite positive number, got {lr!r}")
    if "labels_shared" in data and not isinstance(data["labels_shared"], bool):
        meta.fail("labels_shared", f"must be true or false, got {data['labels_shared']!r}")
    defenses = data.get("defenses", [])
    if not isinstance(defenses, (list, tuple)) or not all(isinstance(d, str) for d in defenses):
        meta.fail("defenses", f"must be a list of defense names, got {defenses!r}")


def check_update_arrays(
    tensors: Mapping[str, np.ndarray],
    labels: Optional[np.ndarray],
    num_classes: int,
    num_samples: int,
    where: str = "update",
    groups: Optional[Mapping[str, Optional[Mapping[str, np.ndarray]]]] = None,
) -> None:
    """Check the update tensors (floating, finite, not enormous) and the labels (integers,
    ``num_samples`` of them, each in ``[0, num_classes)``); ``groups`` (θ0, BN statistics) must be
    finite floating arrays too."""
    if not tensors:
        raise UpdateFileError("the update holds no tensors", where=where, fix="capture it again")
    for group, arrays in {"update": tensors, **(groups or {})}.items():
        for name, value in (arrays or {}).items():
            array = np.asarray(value)
            key = f"{where}: {group}/{name}"
            if array.dtype.kind != "f":
                raise UpdateFileError(f"has dtype {array.dtype}; gradients, weight deltas and model states are floating point",
                                      where=key, fix="store float32 values (an integer gradient is a corrupted or foreign file)")
            if array.size and not np.all(np.isfinite(array)):
                raise UpdateFileError("contains NaN or Inf", where=key, fix="the client diverged; capture again with a lower lr")
            if group == "update" and array.size and float(np.max(np.abs(array))) > MAX_ABS_UPDATE:
                raise UpdateFileError(f"has values up to {float(np.max(np.abs(array))):.3g}, beyond {MAX_ABS_UPDATE:g}",
                                      where=key, fix="the client diverged; capture again with a lower lr")
    if labels is None:
        return
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise UpdateFileError(f"labels have dtype {labels.dtype}; labels are integer class indices",
                              where=f"{where}: labels", fix="store them as int64")
    if labels.ndim != 1 or labels.shape[0] != num_samples:
        raise UpdateFileError(f"{labels.size} labels of shape {list(labels.shape)} for {num_samples} samples",
                              where=f"{where}: labels", fix="store one label per sample of the batch (meta.num_samples)")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UpdateFileError(f"labels range over {labels.min()}..{labels.max()}, outside [0, {num_classes})",
                              where=f"{where}: labels", fix="check meta.num_classes and the labels")


#: How far outside [0, 1] a secret pixel may be (float rounding); beyond it the images are refused.
PIXEL_TOLERANCE = 1e-4


def check_secret_arrays(images: np.ndarray, labels: Any, where: str = "secret") -> None:
    """Secret images are ``[B, C, H, W]`` pixels in [0, 1] with one integer label each."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f" and np.all(np.isfinite(labels))
                                              and np.all(labels == np.round(labels))):
        raise InputError(f"labels of dtype {labels.dtype} are not integer class indices", where=where,
                         fix="pass integer labels")
    labels = labels.reshape(-1)
    if images.ndim != 4:
        raise InputError(f"images must be [B, C, H, W], got shape {list(images.shape)}", where=where,
                         fix="add the batch axis (images[None]) or transpose HWC images to CHW")
    if images.shape[0] != labels.shape[0]:
        raise InputError(f"{images.shape[0]} images but {labels.shape[0]} labels", where=where,
                         fix="give one label per image")
    if images.size and not np.all(np.isfinite(images)):
        raise InputError("images contain NaN or Inf", where=where, fix="check how the images were loaded")
    if images.size:
        low, high = float(images.min()), float(images.max())
        if low < -PIXEL_TOLERANCE or high > 1 + PIXEL_TOLERANCE:
            raise InputError(
                f"images range over [{low:.4g}, {high:.4g}], but secret images are pixels in [0, 1] "
                "(metrics such as PSNR assume it)", where=where,
                fix="pass un-normalised images (x * std + mean), divided by 255 if they are 8-bit")


_RECON_TENSORS = ("images", "pixels", "labels", "loss_trace")
_RECON_FIX = "the file was edited or damaged; run the attack again (privbox attack) to re-create it"
_JSON_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "dict[str, Any]": (dict,), "list[str]": (list,)}


def check_reconstruction_parts(tensors: Mapping[str, np.ndarray], header: Mapping[str, Any],
                               field_types: Mapping[str, Any], where: str) -> None:
    """Check a reconstruction file's tensors (exactly images, pixels, labels, loss_trace, with
    consistent shapes, pixels in [0, 1], integer labels) and header (exactly the remaining fields
    of :class:`~privbox.attacks.Reconstruction`, each of its JSON type)."""
    found = sorted(tensors)
    if found != sorted(_RECON_TENSORS):
        raise UpdateFileError(f"a reconstruction holds the tensors {list(_RECON_TENSORS)}, found {found}", where=where,
                              fix=_RECON_FIX)
    images, pixels, labels, trace = (np.asarray(tensors[k]) for k in _RECON_TENSORS)
    if images.ndim != 4 or pixels.shape != images.shape or labels.ndim != 1 or labels.shape[0] != images.shape[0] \
            or trace.ndim != 1:
        raise UpdateFileError(f"inconsistent shapes: images {list(images.shape)}, pixels {list(pixels.shape)}, labels "
                              f"{list(labels.shape)}, loss_trace {list(trace.shape)}", where=where, fix=_RECON_FIX)
    if labels.dtype.kind not in "iu" or images.dtype.kind != "f" or pixels.dtype.kind != "f":
        raise UpdateFileError(f"wrong dtypes: images {images.dtype}, pixels {pixels.dtype}, labels {labels.dtype}",
                              where=where, fix=_RECON_FIX)
    if pixels.size and (pixels.min() < -PIXEL_TOLERANCE or pixels.max() > 1 + PIXEL_TOLERANCE):
        raise UpdateFileError("pixels lie outside [0, 1]", where=where, fix=_RECON_FIX)
    expected = {name: kind for name, kind in field_types.items() if name not in _RECON_TENSORS}
    unknown = sorted(set(header) - set(expected))
    if unknown:
        raise UpdateFileError(f"unknown header keys {unknown}; a reconstruction has {sorted(expected)}", where=where,
                              fix=_RECON_FIX)
    required = {"label_order", "best_iteration", "best_loss", "seed", "iterations", "wall_time", "attack"}
    missing = sorted(required - set(header))
    if missing:
        raise UpdateFileError(f"the header lacks {missing}", where=where, fix=_RECON_FIX)
    for name, value in header.items():
        kinds = _JSON_TYPES.get(str(expected[name]).replace("typing.", ""))
        if kinds and (isinstance(value, bool) or not isinstance(value, kinds)):
            raise UpdateFileError(f"header key {name!r} is {value!r}, not of type {expected[name]}", where=where,
                                  fix=_RECON_FIX)


def check_output_path(path: Any, kind: str = "dir", where: str = "--out") -> None:
    """Check, before any work, that ``path`` can be an output folder (``kind='dir'``) or file
    (``'file'``): not a file where a folder is needed or vice versa, and its nearest existing
    ancestor a writable folder. Raises :class:`InputError`."""
    import os
    from pathlib import Path

    path = Path(path)
    if kind == "dir" and path.exists() and not path.is_dir():
        raise InputError(f"{path} is a file, not a folder", where=where, fix="choose a folder path (it is created if missing)")
    if kind == "file" and path.is_dir():
        raise InputError(f"{path} is a folder, not a file", where=where, fix="give a file path, e.g. DIR/metrics.json")
    existing = path if kind == "dir" and path.exists() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{existing} is a file, so {path} cannot be created", where=where, fix="choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"the folder {existing} is not writable", where=where,
                         fix="choose a writable location or fix its permissions")
