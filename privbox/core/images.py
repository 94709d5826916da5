"""Pixel space <-> model input space: the per-channel normalisation every client and attack uses.

Images live in [0, 1] (``[B, C, H, W]``); a model sees ``(x - mean) / std`` per channel, the
usual torchvision/Paddle convention (Geiping et al., NeurIPS 2020, optimise in that space and
clamp back to [0, 1] for the metrics).
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import paddle

__all__ = ["normalize", "denormalize"]


def normalize(images: Union[np.ndarray, paddle.Tensor], mean: Sequence[float], std: Sequence[float]) -> paddle.Tensor:
    """Map images in [0, 1] (``[B, C, H, W]``) to model input space ``(x - mean) / std``."""
    x = paddle.to_tensor(images, dtype="float32") if isinstance(images, np.ndarray) else images.astype("float32")
    shape = [1, -1, 1, 1]
    return (x - paddle.to_tensor(list(mean), dtype="float32").reshape(shape)) / paddle.to_tensor(list(std), dtype="float32").reshape(shape)


def denormalize(x: Union[np.ndarray, paddle.Tensor], mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Map model-space images back to [0, 1] pixel space and clamp (metrics use this)."""
    arr = x.numpy() if isinstance(x, paddle.Tensor) else np.asarray(x)
    out = arr * np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1) + np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
