"""Matplotlib figures: original-vs-reconstruction grids and loss curves (written atomically)."""

from __future__ import annotations

from ..core.atomic import atomic_output

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    try:
        with atomic_output(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return path


def _to_hwc(image: np.ndarray) -> np.ndarray:
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if image.shape[0] == 1:
        return image[0]
    return np.transpose(image, (1, 2, 0))


def save_comparison_grid(
    path,
    original: np.ndarray,
    reconstructions: Mapping[str, np.ndarray],
    captions: Optional[Mapping[str, Sequence[str]]] = None,
    title: Optional[str] = None,
) -> Path:
    """Save a grid: first row the original batch, then one row per reconstruction.

    Args:
        path: output PNG.
        original: ``[B, C, H, W]`` pixels in [0, 1].
        reconstructions: row label -> ``[B, C, H, W]`` pixels (already matched to the originals).
        captions: optional row label -> one caption per image (e.g. PSNR).
        title: figure title.
    """
    plt = _pyplot()
    rows = [("original", original)] + list(reconstructions.items())
    batch = original.shape[0]
    fig, axes = plt.subplots(len(rows), batch, figsize=(1.6 * batch + 1.2, 1.7 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(batch):
            ax = axes[r][c]
            grey = images.shape[1] == 1
            ax.imshow(_to_hwc(images[c]), cmap="gray" if grey else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if captions and label in captions:
                ax.set_xlabel(captions[label][c], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def save_loss_curves(path, curves: Mapping[str, Sequence[float]], title: str = "gradient loss", log: bool = True) -> Path:
    """Save gradient-loss traces (one line per run)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("gradient loss")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _save(fig, path)
