"""Prior images for FedAvg inversion (ALGORITHMS.md §3.6): NVIDIA starts every dummy image from a
blurred population-average image (Hatamizadeh et al., IEEE TMI 2023)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import paddle
import paddle.nn.functional as F

__all__ = ["prior_batch"]


def prior_batch(
    prior: np.ndarray,
    count: int,
    input_shape: Sequence[int],
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    normalize: bool = True,
    channels: Optional[int] = None,
) -> np.ndarray:
    """A batch of ``count`` copies of a prior image (ALGORITHMS.md §3.6).

    ``prior`` is ``[H, W]``, ``[c, H, W]`` or ``[H, W, c]`` (c ∈ {1, 3}), uint8 0–255 (divided by
    255) or float in [0, 1]. It is resized to the input size (area averaging when shrinking,
    bilinear otherwise), converted to ``channels`` (default: the input's; grey is replicated,
    colour averaged to grey for one channel) and, with ``normalize``, mapped to model space with
    ``mean``/``std``. Returns ``[count, channels, H, W]`` float32.
    """
    arr = np.asarray(prior)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3 and arr.shape[-1] in (1, 3) and arr.shape[0] not in (1, 3):
        arr = arr.transpose(2, 0, 1)
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ValueError(f"a prior image must be [H, W], [c, H, W] or [H, W, c] with c 1 or 3, got shape {np.shape(prior)}")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError("a float prior image must be in [0, 1] (or give uint8 0-255)")
    in_c, height, width = (int(s) for s in input_shape)
    channels = in_c if channels is None else int(channels)
    x = paddle.to_tensor(arr[None])
    if tuple(arr.shape[1:]) != (height, width):
        shrink = arr.shape[1] >= height and arr.shape[2] >= width
        x = F.interpolate(x, size=[height, width], mode="area" if shrink else "bilinear", align_corners=False)
    out = x.numpy()[0]
    if out.shape[0] != channels:
        out = np.repeat(out.mean(axis=0, keepdims=True), channels, axis=0)
    if normalize:
        m = np.asarray(mean if mean is not None else [0.0] * in_c, dtype=np.float32)
        s = np.asarray(std if std is not None else [1.0] * in_c, dtype=np.float32)
        if channels != in_c:
            # One grey channel replicated to the input's channels: only a channel-independent
            # normalisation keeps the replicas identical.
            if np.ptp(m) > 0 or np.ptp(s) > 0:
                raise ValueError(
                    f"a grey prior replicated to {in_c} channels can only be normalised with equal per-channel "
                    f"mean/std, got mean {m.tolist()} and std {s.tolist()}; use normalize_prior=False or grey=False"
                )
            m, s = m[:1], s[:1]
        out = (out - m.reshape(-1, 1, 1)) / s.reshape(-1, 1, 1)
    return np.repeat(out[None], count, axis=0).astype(np.float32)
