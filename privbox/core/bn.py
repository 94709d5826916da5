"""BatchNorm helpers shared by the client, the FedAvg twin and the BN regulariser.

One definition of the batch statistics of a BN layer's input (mean and biased variance over every
axis but the channel axis, as BN normalises in train mode: Ioffe & Szegedy, ICML 2015), one
definition of the running-statistic EMA in both conventions (ALGORITHMS.md §3.4), a recorder
that captures the statistics of a forward pass, and model state snapshots.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import numpy as np
import paddle
import paddle.nn as nn

__all__ = [
    "BN_TYPES",
    "EMA_CONVENTIONS",
    "bn_layers",
    "batch_moments",
    "unbiased_variance",
    "ema",
    "BNStatsRecorder",
    "state_snapshot",
    "load_state",
]

BN_TYPES = (nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D, nn.BatchNorm)
EMA_CONVENTIONS = ("paddle", "torch")


def bn_layers(model: nn.Layer) -> list[tuple[str, nn.Layer]]:
    """BatchNorm layers of ``model`` by type (never by name), in forward-definition order."""
    return [(name, layer) for name, layer in model.named_sublayers() if isinstance(layer, BN_TYPES)]


def batch_moments(a: paddle.Tensor, mean_fn: Optional[Callable] = None) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Per-channel mean and *biased* variance of a BN input ``[N, C, ...]`` over (N, spatial).

    Differentiable (the BN regulariser and the FedAvg twin back-propagate through it); the
    variance is E[a²] − E[a]², the form that keeps a double gradient in Paddle. ``mean_fn(t,
    axes)`` replaces the local mean, e.g. by a mean over the shards of several processes.
    """
    axes = [0] + list(range(2, a.ndim))
    if mean_fn is None:
        mean_fn = lambda t, ax: t.mean(axis=ax)  # noqa: E731
    mean = mean_fn(a, axes)
    var = mean_fn(a * a, axes) - mean * mean
    return mean, var


def unbiased_variance(var: paddle.Tensor, a: paddle.Tensor) -> paddle.Tensor:
    """Bessel-correct a biased variance of ``a`` (count = N·spatial per channel), torch's EMA input."""
    count = int(a.size) // int(a.shape[1])
    return var * (count / max(count - 1, 1))


def ema(old: Union[paddle.Tensor, np.ndarray], batch: Union[paddle.Tensor, np.ndarray], momentum: float, convention: str):
    """One running-statistic update: Paddle r ← m·r + (1−m)·b, torch r ← (1−m)·r + m·b."""
    if convention == "paddle":
        return momentum * old + (1.0 - momentum) * batch
    if convention == "torch":
        return (1.0 - momentum) * old + momentum * batch
    raise ValueError(f"BN EMA convention must be one of {EMA_CONVENTIONS}, got {convention!r}")


class BNStatsRecorder:
    """Context manager recording each BN layer's input mean and biased variance (NumPy, float32).

    ``moments`` computes them from the layer input (default :func:`batch_moments`; a distributed
    capture passes the active collective's, which reduces over the global batch).
    """

    def __init__(self, model: nn.Layer, moments=None) -> None:
        self.model = model
        self.moments = moments or batch_moments
        self.stats: dict[str, np.ndarray] = {}
        self._handles: list = []

    def __enter__(self) -> "BNStatsRecorder":
        for name, layer in bn_layers(self.model):
            def hook(lay, inputs, output, _name=name):
                mean, var = self.moments(inputs[0].detach())
                self.stats[f"{_name}.mean"] = mean.numpy().astype(np.float32)
                self.stats[f"{_name}.var"] = var.numpy().astype(np.float32)

            self._handles.append(layer.register_forward_post_hook(hook))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def state_snapshot(model: nn.Layer) -> dict[str, np.ndarray]:
    """A copy of the model's full state (parameters and BN running statistics) as NumPy arrays.

    ``state_dict()`` aliases live tensors, so it is copied here (PADDLE.md §8).
    """
    return {k: np.array(v.numpy(), copy=True) for k, v in model.state_dict().items()}


def load_state(model: nn.Layer, values: dict[str, np.ndarray]) -> None:
    """Write ``values`` (a subset of the state dict) into the live tensors of ``model``."""
    live = model.state_dict()
    for key, value in values.items():
        live[key].set_value(paddle.to_tensor(value, dtype=live[key].dtype))
