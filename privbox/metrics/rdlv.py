"""RDLV, the relative data leakage value (ALGORITHMS.md §8.5).

Hatamizadeh et al. ("Do Gradient Inversion Attacks Make Federated Learning Unsafe?", IEEE TMI
2023; NVIDIA FLARE's quantifying-data-leakage example) score a client update by how much closer
an attack's reconstructions get to the client's private training images than a *prior* image
(a population average the attacker starts from) already is::

    S_prior[i, m] = sim_m(prior, x_i)          S[i, j, m] = sim_m(r_j, x_i)
    RDLV[i, j, m] = (S[i, j, m] - S_prior[i, m]) / S_prior[i, m]    # raw S without a prior
    closest[i]    = argbest_j RDLV[i, j, 0]    # chosen by the FIRST metric
    per_image[i]  = RDLV[i, closest[i], :]     rdlv = reduce_i per_image[i, 0]

RDLV > 0 means a reconstruction is closer to the private image than the prior; RDLV = 1 means
the similarity doubled. ``reduce="max"`` (default) fits similarities (SSIM, PSNR);
``reduce="min"`` fits distances (MSE), where the sign of "leaks more" flips.

Similarity metrics are entries of :data:`SIMILARITIES` (a :class:`~privbox.core.registry.Registry`);
each takes two ``[H, W, C]``/``[C, H, W]`` images already on the convention's pixel scale.
Conventions (:data:`CONVENTIONS`) fix the pixel scale: ``"default"`` compares [0, 1] pixels with
``data_range`` 1; ``"nvflare"`` compares 0-255 values with ``data_range`` 256, as the NVIDIA code
does. Reconstructions are min-max rescaled to the full range first (NVIDIA's behaviour,
``rescale="minmax"``) or only clipped (``rescale="clip"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
from skimage.metrics import structural_similarity

from ..core.errors import ConfigError, InputError
from ..core.registry import Registry

__all__ = [
    "SIMILARITIES",
    "CONVENTIONS",
    "RDLVResult",
    "relative_data_leakage",
    "prepare_images",
]

Similarity = Callable[[np.ndarray, np.ndarray, float], float]

#: Similarity metrics by name: ``fn(reference_chw, other_chw, data_range) -> float``.
SIMILARITIES: Registry[Similarity] = Registry("similarity metric")

#: pixel scale -> (maximum pixel value, data_range passed to the metrics)
CONVENTIONS = {"default": (1.0, 1.0), "nvflare": (255.0, 256.0)}
RESCALES = ("minmax", "clip")
REDUCES = ("max", "min")


def _win(image: np.ndarray) -> int:
    side = min(image.shape[1], image.shape[2])
    win = 7 if side >= 7 else (side if side % 2 else side - 1)
    if win < 3:
        raise InputError(f"images of {side} pixels are too small for SSIM", where="rdlv", fix="use images of at least 3 pixels")
    return win


@SIMILARITIES.register("ssim", description="structural similarity (scikit-image, 7x7 uniform window, mean over channels)", higher_is_better=True)
def _ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    return float(
        structural_similarity(
            np.transpose(a, (1, 2, 0)), np.transpose(b, (1, 2, 0)), data_range=data_range, channel_axis=-1, win_size=_win(a)
        )
    )


@SIMILARITIES.register("psnr", description="peak signal-to-noise ratio in dB (capped at 100)", higher_is_better=True)
def _psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    err = float(np.mean((a - b) ** 2))
    return 100.0 if err == 0 else float(min(100.0, 10.0 * np.log10(data_range**2 / err)))


@SIMILARITIES.register("mse", description="mean squared error (a distance: use reduce='min')", higher_is_better=False)
def _mse(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    return float(np.mean((a - b) ** 2))


@SIMILARITIES.register("ncc", description="normalised cross-correlation (Pearson correlation of the pixels)", higher_is_better=True)
def _ncc(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    x, y = a.ravel() - a.mean(), b.ravel() - b.mean()
    denom = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denom) if denom > 0 else 0.0


@dataclass
class RDLVResult:
    """The outcome of :func:`relative_data_leakage` (all arrays float64).

    Attributes:
        value: the reduced RDLV (max or min over images of ``per_image[:, 0]``).
        per_image: ``[I, M]``: each training image's RDLV against its closest reconstruction.
        all: ``[I, R, M]``: every image against every reconstruction.
        closest: ``[I]``: index of the closest reconstruction per image (by the first metric).
        similarity: ``[I, R, M]``: the raw similarities S.
        prior_similarity: ``[I, M]`` (``None`` without a prior).
        metrics, reduce, convention, rescale: how it was computed.
    """

    value: float
    per_image: np.ndarray
    all: np.ndarray
    closest: np.ndarray
    similarity: np.ndarray
    prior_similarity: Optional[np.ndarray]
    metrics: list[str] = field(default_factory=list)
    reduce: str = "max"
    convention: str = "default"
    rescale: str = "minmax"

    def to_dict(self) -> dict:
        """JSON-serialisable summary (the arrays as nested lists)."""
        return {
            "rdlv": float(self.value),
            "per_image": self.per_image.tolist(),
            "closest": self.closest.tolist(),
            "all": self.all.tolist(),
            "similarity": self.similarity.tolist(),
            "prior_similarity": None if self.prior_similarity is None else self.prior_similarity.tolist(),
            "metrics": list(self.metrics),
            "reduce": self.reduce,
            "convention": self.convention,
            "rescale": self.rescale,
        }


def _as_chw_batch(images: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise InputError(f"{what} must be a non-empty [N, C, H, W] array, got shape {np.shape(images)}", where="rdlv")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contain NaN or Inf", where="rdlv")
    return arr


def _to_channels(arr: np.ndarray, channels: int, what: str) -> np.ndarray:
    if arr.shape[1] == channels:
        return arr
    if arr.shape[1] == 1:
        return np.repeat(arr, channels, axis=1)
    raise InputError(f"{what} have {arr.shape[1]} channels, the training images {channels}", where="rdlv", fix="give grey (1-channel) or matching images")


def prepare_images(images: np.ndarray, convention: str = "default", rescale: Optional[str] = None) -> np.ndarray:
    """Put ``[N, C, H, W]`` pixels in [0, 1] on the convention's scale (0-1 or 0-255).

    With ``rescale="minmax"`` each image is first stretched to span [0, 1] (NVIDIA rescales every
    reconstruction this way); ``"clip"`` clamps to [0, 1]; ``None`` expects values in [0, 1].
    """
    if convention not in CONVENTIONS:
        raise ConfigError(f"unknown RDLV convention {convention!r}", where="rdlv", fix=f"choose one of {sorted(CONVENTIONS)}")
    arr = np.asarray(images, dtype=np.float64)
    if rescale == "minmax":
        lo = arr.reshape(arr.shape[0], -1).min(axis=1).reshape(-1, 1, 1, 1)
        hi = arr.reshape(arr.shape[0], -1).max(axis=1).reshape(-1, 1, 1, 1)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        arr = (arr - lo) / span
    elif rescale == "clip":
        arr = np.clip(arr, 0.0, 1.0)
    elif rescale is None:
        if arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
            raise InputError("training and prior images must be pixels in [0, 1]", where="rdlv")
        arr = np.clip(arr, 0.0, 1.0)
    else:
        raise ConfigError(f"unknown rescale {rescale!r}", where="rdlv", fix=f"choose one of {list(RESCALES)}")
    return arr * CONVENTIONS[convention][0]


def relative_data_leakage(
    targets: np.ndarray,
    reconstructions: np.ndarray,
    prior: Optional[np.ndarray] = None,
    metrics: Sequence[str] = ("ssim",),
    reduce: str = "max",
    convention: str = "default",
    rescale: str = "minmax",
) -> RDLVResult:
    """RDLV of ``reconstructions`` against a client's training images (ALGORITHMS.md §8.5).

    Args:
        targets: ``[I, C, H, W]`` private training images, pixels in [0, 1].
        reconstructions: ``[R, C', H, W]`` an attack's output in [0, 1] pixel space (C' = 1 is
            replicated to C channels, as NVIDIA replicates its grey reconstructions).
        prior: ``[C'', H, W]`` (or ``[1, C'', H, W]``) prior image in [0, 1]; ``None`` gives raw
            similarities instead of relative ones.
        metrics: names in :data:`SIMILARITIES`; the first one picks the closest reconstruction
            and gives the reduced value.
        reduce: ``"max"`` (similarities) or ``"min"`` (distances).
        convention: ``"default"`` ([0, 1], data_range 1) or ``"nvflare"`` (0-255, data_range 256).
        rescale: how reconstructions are mapped to [0, 1] first: ``"minmax"`` (NVIDIA) or ``"clip"``.

    Returns:
        :class:`RDLVResult`.

    Raises:
        ConfigError: unknown metric, reduce, convention or rescale.
        InputError: shapes that do not match, non-finite pixels, or a prior whose similarity to a
            training image is 0 (the relative value is undefined).
    """
    names = list(metrics)
    if not names:
        raise ConfigError("RDLV needs at least one similarity metric", where="rdlv.metrics", fix=f"e.g. {SIMILARITIES.names()}")
    fns = [SIMILARITIES.get(m) for m in names]
    if reduce not in REDUCES:
        raise ConfigError(f"reduce must be one of {list(REDUCES)}, got {reduce!r}", where="rdlv.reduce")
    if rescale not in RESCALES:
        raise ConfigError(f"rescale must be one of {list(RESCALES)}, got {rescale!r}", where="rdlv.rescale")
    data_range = CONVENTIONS[convention][1] if convention in CONVENTIONS else None
    x = prepare_images(_as_chw_batch(targets, "training images"), convention, None)
    channels = x.shape[1]
    r = prepare_images(_to_channels(_as_chw_batch(reconstructions, "reconstructions"), channels, "reconstructions"), convention, rescale)
    if r.shape[2:] != x.shape[2:]:
        raise InputError(f"reconstructions are {r.shape[2:]} pixels, training images {x.shape[2:]}", where="rdlv")
    n_img, n_rec, n_met = x.shape[0], r.shape[0], len(names)
    sim = np.empty((n_img, n_rec, n_met))
    for i in range(n_img):
        for j in range(n_rec):
            for m, fn in enumerate(fns):
                sim[i, j, m] = fn(x[i], r[j], data_range)
    s_prior = None
    rel = sim.copy()
    if prior is not None:
        p = _as_chw_batch(prior, "the prior image")
        if p.shape[0] != 1:
            raise InputError(f"give one prior image, got {p.shape[0]}", where="rdlv")
        p = prepare_images(_to_channels(p, channels, "the prior image"), convention, None)[0]
        if p.shape[1:] != x.shape[2:]:
            raise InputError(f"the prior is {p.shape[1:]} pixels, training images {x.shape[2:]}", where="rdlv", fix="resize the prior to the training images")
        s_prior = np.array([[fn(x[i], p, data_range) for fn in fns] for i in range(n_img)])
        if np.any(np.abs(s_prior) < 1e-12):
            raise InputError(
                "the prior's similarity to a training image is 0, so the relative leakage is undefined",
                where="rdlv", fix="use another prior image (e.g. the mean of an auxiliary set) or no prior",
            )
        rel = (sim - s_prior[:, None, :]) / s_prior[:, None, :]
    pick = np.argmax if reduce == "max" else np.argmin
    closest = pick(rel[:, :, 0], axis=1)
    per_image = rel[np.arange(n_img), closest, :]
    value = float(per_image[:, 0].max() if reduce == "max" else per_image[:, 0].min())
    return RDLVResult(
        value=value, per_image=per_image, all=rel, closest=closest.astype(np.int64), similarity=sim,
        prior_similarity=s_prior, metrics=names, reduce=reduce, convention=convention, rescale=rescale,
    )
