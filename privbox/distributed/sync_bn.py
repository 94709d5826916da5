"""Synchronised (or per-shard) train-mode BatchNorm for batches split over ranks.

A victim that trained with synchronised BN normalised its whole batch with one set of
statistics; an attacker that splits its dummy batch over K ranks must do the same to compute the
victim's gradient (ALGORITHMS.md §4.9). :class:`SyncBatchNorm2D` / :class:`SyncBatchNorm1D`
compute, in train mode, the per-channel sums s1 = Σa and s2 = Σa² of the local shard, add them
over the ranks with :meth:`~privbox.distributed.collective.Collective.sync_sum` (whose gradient is
again an all-reduce, so the parameter gradients of the shards add up to the full-batch gradient,
to any order of differentiation), and normalise with μ = S1/n, σ² = S2/n − μ² (biased, as Paddle's
BatchNorm). The running statistics move as Paddle's do, r ← m·r + (1 − m)·batch statistic, with
the global statistics, so a distributed capture reports the one-process ``buffer_delta``.

With the active collective's ``sync_bn`` off (a victim with "asynchronous" per-device BN, the
Label-based-Defense GH scheme) or in one process, the same composed forward uses the local
batch (Paddle's BatchNorm up to float32 rounding). Eval mode is privbox's affine eval BN
(:class:`privbox.nn.layers.BatchNorm2D`).

Measured on the 2-core CPU machine (Paddle 3.3.1, ConvNet width 16, 3×32×32, B = 4, Inverting
Gradients with BN matching): one attack iteration costs 1.1–1.3 s of CPU time with Paddle's
``batch_norm`` and 0.11–0.12 s with this composed forward, with the same loss trace to 1e-5;
Paddle's double backward of its fused train-mode ``batch_norm`` is the expensive part.
"""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn

from ..nn import layers as PL
from .collective import active


class _SyncBatchNorm:
    """Mixin placed before a privbox BatchNorm class: the synchronised train-mode forward."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        collective = active()
        if (not self.training) or bool(self._use_global_stats):
            return super().forward(x)
        channels = x.shape[1]
        axes = [0] + list(range(2, x.ndim))
        count = float(int(np.prod(x.shape)) // channels)
        sums = paddle.concat([x.sum(axis=axes), (x * x).sum(axis=axes)])
        if collective.distributed and collective.sync_bn:
            sums = collective.sync_sum(sums)
            count *= collective.world_size
        mean = sums[:channels] / count
        var = sums[channels:] / count - mean * mean
        shape = [1, channels] + [1] * (x.ndim - 2)
        out = (x - mean.reshape(shape)) / paddle.sqrt(var.reshape(shape) + self._epsilon)
        if self.weight is not None:
            out = out * self.weight.reshape(shape)
        if self.bias is not None:
            out = out + self.bias.reshape(shape)
        with paddle.no_grad():
            m = self._momentum
            self._mean.set_value(m * self._mean + (1.0 - m) * mean.detach())
            self._variance.set_value(m * self._variance + (1.0 - m) * var.detach())
        return out


class SyncBatchNorm2D(_SyncBatchNorm, PL.BatchNorm2D):
    """:class:`privbox.nn.layers.BatchNorm2D` whose train mode uses the active collective's statistics."""


class SyncBatchNorm1D(_SyncBatchNorm, PL.BatchNorm1D):
    """:class:`privbox.nn.layers.BatchNorm1D` whose train mode uses the active collective's statistics."""


_SWAPS = {
    nn.BatchNorm2D: SyncBatchNorm2D,
    PL.BatchNorm2D: SyncBatchNorm2D,
    nn.BatchNorm1D: SyncBatchNorm1D,
    PL.BatchNorm1D: SyncBatchNorm1D,
}


def convert_sync_batchnorm(model: nn.Layer) -> int:
    """Swap every BatchNorm1D/2D of ``model`` (Paddle's or privbox's) for its synchronised
    version, in place; parameter names and values are unchanged. Returns how many were swapped.

    The layers read the collective at every forward (:func:`privbox.distributed.collective.active`),
    so a converted model behaves exactly as before outside a distributed run.
    """
    swapped = 0
    for layer in model.sublayers(include_self=True):
        swap = _SWAPS.get(type(layer))
        if swap is not None:
            layer.__class__ = swap
            swapped += 1
    return swapped
