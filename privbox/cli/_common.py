"""Helpers shared by the ``privbox`` subcommands: config options, device, signals, files."""

from __future__ import annotations

from ..core.atomic import atomic_output

import argparse
import contextlib
import hashlib
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np


class Interrupted(Exception):
    """The run was stopped by SIGINT/SIGTERM; progress is in its checkpoints."""


def add_config_args(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``-c/--config`` and ``-o/--override`` to ``parser``."""
    parser.add_argument(
        "-c", "--config", metavar="CONFIG",
        help=f"YAML config file or packaged config name ({what}); default: the built-in defaults",
    )
    parser.add_argument(
        "-o", "--override", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override a config value (YAML-typed), e.g. -o attack.lr=0.05; repeatable",
    )


def load_cli_config(args: argparse.Namespace, extra: Sequence[str] = ()):
    """The :class:`~privbox.config.ExperimentConfig` of ``-c``/``-o`` (plus ``extra`` overrides)."""
    from ..config import load_config

    return load_config(args.config, [*args.override, *extra])


def set_device(device: str) -> str:
    """Select the Paddle device (``auto``: GPU when Paddle was built with CUDA); returns it."""
    import paddle

    if device == "auto":
        device = "gpu" if paddle.is_compiled_with_cuda() else "cpu"
    if device.startswith("gpu") and not paddle.is_compiled_with_cuda():
        raise ValueError(f"run.device={device!r} but this Paddle build has no CUDA; use run.device=cpu")
    paddle.set_device(device)
    return device


@contextlib.contextmanager
def sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`KeyboardInterrupt` as SIGINT does
    (:func:`privbox.core.interrupts.interruptible`; nested in the command-wide guard of ``main``)."""
    from ..core.interrupts import interruptible

    with interruptible():
        yield


def file_sha256(path: Path) -> str:
    """SHA-256 of a file (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_image_grid(path: Path, pixels: np.ndarray, title: str = "", captions: Optional[Sequence[str]] = None) -> Path:
    """Save a one-row grid of ``[B, C, H, W]`` pixels in [0, 1] as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    pixels = np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0)
    batch = pixels.shape[0]
    fig, axes = plt.subplots(1, batch, figsize=(1.6 * batch + 0.4, 2.0), squeeze=False)
    for i in range(batch):
        ax = axes[0][i]
        image = pixels[i, 0] if pixels.shape[1] == 1 else np.transpose(pixels[i], (1, 2, 0))
        ax.imshow(image, cmap="gray" if pixels.shape[1] == 1 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if captions:
            ax.set_xlabel(captions[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    try:
        with atomic_output(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
