"""The data of a federated simulation: one labelled pool split into client shards, a held-out
evaluation set and an auxiliary set for the prior image (ALGORITHMS.md §9.1).

Two sources, no download:

* ``embedded``: a small image-classification task made from the photographs bundled with
  scikit-image (:mod:`privbox.data.samples`). Class c is photograph ``classes[c]``; every sample
  is a square crop of it (side 1.5·``image_size`` of a 2·``image_size`` rendering) shifted by up
  to ``jitter`` pixels and scaled down to ``image_size``. Like the chest X-rays of the NVIDIA
  experiment (Hatamizadeh et al., IEEE TMI 2023), all samples share one layout, so the mean of
  an auxiliary set is a meaningful prior (its SSIM to a training image is about 0.3-0.45 at
  16 pixels, close to the 0.36 of NVIDIA's prior).
* ``folder``: an image folder laid out as ``root/<class>/<files>`` (e.g. the COVID-19
  Radiography Database's ``COVID`` and ``Normal`` folders), read with
  :class:`privbox.data.ImageFolder`; ``grey: true`` converts to luminance and replicates it to
  ``channels`` (grey-to-3-channel, as the NVIDIA pre-processing does).

The prior is the pixel mean of the auxiliary set (``prior: mean``) or an image file
(``prior: path/to/prior.png``), resized to the images.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..core.errors import ConfigError, InputError
from ._fields import check_keys, h as _h

__all__ = ["FLDataSpec", "FLData", "build_fl_data", "load_prior_image"]


@dataclass
class FLDataSpec:
    """Where the federation's images come from and how they are split."""

    source: str = _h("embedded", "'embedded' (crops of the bundled photographs) or 'folder' (root/<class>/<images>)")
    path: Optional[str] = _h(None, "image folder for source 'folder'")
    classes: list[str] = _h(lambda: ["camera", "astronaut"], "embedded source: one photograph per class (privbox.data.SAMPLE_NAMES)", factory=True)
    image_size: int = _h(16, "square image side in pixels")
    channels: int = _h(3, "image channels (1 or 3)")
    grey: bool = _h(True, "convert to luminance and replicate it to every channel (grey-to-3-channel)")
    jitter: int = _h(2, "embedded source: largest shift of a crop in pixels")
    eval_images: int = _h(64, "held-out images the server evaluates the global model on")
    aux_images: int = _h(64, "auxiliary images whose mean is the prior image (prior: mean)")
    prior: str = _h("mean", "'mean' (mean of the auxiliary set) or the path of a prior image file")
    seed: int = _h(0, "seed of the crops and of the split")

    def __post_init__(self) -> None:
        if self.source not in ("embedded", "folder"):
            raise ConfigError(f"must be 'embedded' or 'folder', got {self.source!r}", where="data.source")
        if self.source == "folder" and not self.path:
            raise ConfigError("source 'folder' needs a path", where="data.path", fix="give root/<class>/<images>")
        if self.channels not in (1, 3):
            raise ConfigError(f"must be 1 or 3, got {self.channels!r}", where="data.channels")
        for key in ("image_size", "eval_images", "aux_images"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"must be a positive integer, got {value!r}", where=f"data.{key}")
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, int) or not 0 <= self.jitter <= self.image_size // 4:
            raise ConfigError(f"must be an integer in [0, image_size/4], got {self.jitter!r}", where="data.jitter")
        if self.source == "embedded":
            from ..data import SAMPLE_NAMES

            bad = [c for c in self.classes if c not in SAMPLE_NAMES]
            if bad or len(self.classes) < 2:
                raise ConfigError(f"needs at least two photographs from privbox.data.SAMPLE_NAMES, got {self.classes}",
                                  where="data.classes", fix=f"choose from {', '.join(SAMPLE_NAMES)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "data") -> "FLDataSpec":
        return cls(**check_keys(cls, data, where))


@dataclass
class FLData:
    """Arrays of a federation (pixels in [0, 1], ``[N, C, H, W]`` float32; labels int64)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    eval_images: np.ndarray
    eval_labels: np.ndarray
    prior: np.ndarray
    class_names: list[str]

    def shard(self, sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Disjoint consecutive shards of the training pool, one per client."""
        total = int(sum(sizes))
        if total > self.train_images.shape[0]:
            raise ConfigError(
                f"the clients need {total} training images but the pool has {self.train_images.shape[0]}",
                where="clients", fix="use fewer num_images, or a larger folder",
            )
        out, start = [], 0
        for n in sizes:
            out.append((self.train_images[start:start + n], self.train_labels[start:start + n]))
            start += n
        return out


def _grey(images: np.ndarray, channels: int) -> np.ndarray:
    weights = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)  # ITU-R BT.709, as skimage.color.rgb2gray
    lum = images[:, 0] if images.shape[1] == 1 else np.tensordot(weights, images, axes=([0], [1]))
    return np.repeat(lum[:, None], channels, axis=1).astype(np.float32)


def _embedded_crops(spec: FLDataSpec, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from skimage.transform import resize

    from ..data import load_samples

    size = spec.image_size
    source = load_samples(size=2 * size, channels=3, names=spec.classes)
    side = (3 * size) // 2
    base = size // 4
    images, labels = [], []
    for _ in range(count):
        c = int(rng.integers(len(spec.classes)))
        top, left = (int(v) for v in rng.integers(base - spec.jitter, base + spec.jitter + 1, size=2))
        crop = source[c][:, top:top + side, left:left + side]
        out = resize(np.transpose(crop, (1, 2, 0)), (size, size), anti_aliasing=True)
        images.append(np.transpose(out, (2, 0, 1)))
        labels.append(c)
    return np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0), np.asarray(labels, dtype=np.int64)


def _folder_images(spec: FLDataSpec) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from ..data import ImageFolder

    folder = ImageFolder(spec.path, size=spec.image_size, channels=3 if spec.channels == 3 else 1)
    items = [folder[i] for i in range(len(folder))]
    images = np.stack([np.asarray(x, dtype=np.float32) for x, _ in items])
    labels = np.asarray([int(y) for _, y in items], dtype=np.int64)
    return images, labels, list(folder.classes)


def load_prior_image(path: str, image_size: int, channels: int, grey: bool) -> np.ndarray:
    """Read a prior image file as ``[channels, size, size]`` float32 in [0, 1]."""
    from skimage.io import imread
    from skimage.transform import resize

    from ..data.samples import to_channels, to_float_image

    if not os.path.isfile(path):
        raise InputError(f"prior image {path!r} does not exist", where="data.prior", fix="give an image file or 'mean'")
    image = to_channels(to_float_image(imread(path)), 3)
    image = resize(image, (image_size, image_size), anti_aliasing=True)
    chw = np.clip(np.transpose(image, (2, 0, 1)), 0.0, 1.0).astype(np.float32)
    if grey or channels == 1:
        return _grey(chw[None], channels)[0]
    return chw


def build_fl_data(spec: FLDataSpec, train_images: int) -> FLData:
    """Make the pool (``train_images`` for the clients), the evaluation set, the auxiliary set and the prior."""
    rng = np.random.default_rng(spec.seed)
    needed = train_images + spec.eval_images + spec.aux_images
    if spec.source == "embedded":
        images, labels = _embedded_crops(spec, needed, rng)
        classes = list(spec.classes)
    else:
        images, labels, classes = _folder_images(spec)
        if images.shape[0] < needed:
            raise ConfigError(
                f"the folder has {images.shape[0]} images; the clients, evaluation and auxiliary sets need {needed}",
                where="data.path", fix="lower eval_images/aux_images or the clients' num_images",
            )
        order = rng.permutation(images.shape[0])[:needed]
        images, labels = images[order], labels[order]
    if spec.grey or spec.channels == 1:
        images = _grey(images, spec.channels)
    n_eval, n_aux = spec.eval_images, spec.aux_images
    eval_x, eval_y = images[:n_eval], labels[:n_eval]
    aux = images[n_eval:n_eval + n_aux]
    train_x, train_y = images[n_eval + n_aux:], labels[n_eval + n_aux:]
    if spec.prior == "mean":
        prior = aux.mean(axis=0).astype(np.float32)
    else:
        prior = load_prior_image(spec.prior, spec.image_size, spec.channels, spec.grey)
    return FLData(train_x, train_y, eval_x, eval_y, prior, classes)
