"""Image similarity metrics on de-normalised pixels (ALGORITHMS.md §8.1-8.2).

All functions take ``[B, C, H, W]`` float arrays in pixel space (values in [0, 1] for the default
data range) and return one value per image. SSIM is scikit-image's
``structural_similarity`` (7x7 uniform window, K1 0.01, K2 0.03), so numbers equal skimage's on
the same arrays.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from skimage.metrics import structural_similarity

PSNR_CAP = 100.0


def _check_pair(target: np.ndarray, recon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    target = np.asarray(target, dtype=np.float64)
    recon = np.asarray(recon, dtype=np.float64)
    if target.ndim == 3:
        target, recon = target[None], recon[None] if recon.ndim == 3 else recon
    if target.shape != recon.shape or target.ndim != 4:
        raise ValueError(f"metrics need two [B, C, H, W] arrays of the same shape, got {target.shape} and {recon.shape}")
    return target, recon


def mse(target: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Per-image mean squared error."""
    target, recon = _check_pair(target, recon)
    return ((target - recon) ** 2).reshape(target.shape[0], -1).mean(axis=1)


def psnr(target: np.ndarray, recon: np.ndarray, data_range: float = 1.0, cap: float = PSNR_CAP) -> np.ndarray:
    """Per-image PSNR ``10 log10(range^2 / MSE)``; an exact match is capped at ``cap`` dB."""
    err = mse(target, recon)
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(data_range**2 / np.maximum(err, 0.0))
    return np.minimum(values, cap)


def ssim(
    target: np.ndarray,
    recon: np.ndarray,
    data_range: float = 1.0,
    win_size: Optional[int] = None,
) -> np.ndarray:
    """Per-image SSIM through ``skimage.metrics.structural_similarity`` (channel last).

    Images smaller than 7 pixels get the largest odd window that fits.
    """
    target, recon = _check_pair(target, recon)
    side = min(target.shape[2], target.shape[3])
    if win_size is None:
        win_size = 7 if side >= 7 else (side if side % 2 else side - 1)
    if win_size < 3:
        raise ValueError(f"images of {side} pixels are too small for SSIM (needs at least 3)")
    out = np.empty(target.shape[0])
    for i in range(target.shape[0]):
        a = np.transpose(target[i], (1, 2, 0))
        b = np.transpose(recon[i], (1, 2, 0))
        out[i] = structural_similarity(a, b, data_range=data_range, channel_axis=-1, win_size=win_size)
    return out


def ssim_uint8(target: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """SSIM in the E2EGI convention: images quantised to uint8 and compared with range 255."""
    t = np.round(np.clip(np.asarray(target), 0, 1) * 255).astype(np.uint8)
    r = np.round(np.clip(np.asarray(recon), 0, 1) * 255).astype(np.uint8)
    return ssim(t.astype(np.float64), r.astype(np.float64), data_range=255.0)


METRICS = {"mse": mse, "psnr": psnr, "ssim": ssim}
HIGHER_IS_BETTER = {"mse": False, "psnr": True, "ssim": True}
