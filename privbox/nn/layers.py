"""Double-differentiable layers.

Layers that own parameters are *subclasses* of the Paddle layer they replace, so the converter
can swap an instance's class in place: parameter names, ``state_dict`` keys and values stay
exactly the same, which matters because client updates are keyed by parameter name.
Parameter-free layers (pooling, flatten, dropout, upsampling) are plain new layers.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import paddle
import paddle.nn as nn

from . import fast_conv
from . import functional as PF


class Flatten(nn.Layer):
    """Flatten from ``start_axis`` on by reshape (replaces ``nn.Flatten``)."""

    def __init__(self, start_axis: int = 1) -> None:
        super().__init__()
        self.start_axis = start_axis

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return PF.flatten(x, self.start_axis)


class MaxPool2D(nn.Layer):
    """Gather-based, double-differentiable max-pool (replaces ``nn.MaxPool2D``)."""

    def __init__(
        self,
        kernel_size: Union[int, Sequence[int]],
        stride: Optional[Union[int, Sequence[int]]] = None,
        padding: Union[int, Sequence[int]] = 0,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return PF.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"ceil_mode={self.ceil_mode}"
        )


class Dropout(nn.Layer):
    """Dropout as a Bernoulli mask / (1-p) in train mode, identity in eval mode."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return PF.dropout_mask(x, self.p, self.training)


class Upsample(nn.Layer):
    """Nearest (integer factor) or bilinear (``align_corners=False``) upsampling."""

    def __init__(self, scale_factor: Optional[float] = None, size=None, mode: str = "nearest") -> None:
        super().__init__()
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"Upsample mode must be 'nearest' or 'bilinear', got {mode!r}")
        self.scale_factor, self.size, self.mode = scale_factor, size, mode

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.mode == "nearest":
            if self.scale_factor is None or int(self.scale_factor) != self.scale_factor:
                raise ValueError("nearest Upsample needs an integer scale_factor")
            return PF.upsample_nearest(x, int(self.scale_factor))
        size = self.size or (int(x.shape[2] * self.scale_factor), int(x.shape[3] * self.scale_factor))
        return PF.upsample_bilinear(x, size)


class _EvalAffineBatchNorm:
    """Mixin: eval mode (or ``use_global_stats``) as an affine map with constant running statistics.

    Placed before the Paddle class in the bases, so ``super().forward`` is that class's own
    forward (batch statistics) for both :class:`BatchNorm2D` and :class:`BatchNorm1D`.
    """

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        use_running = (not self.training) or bool(self._use_global_stats)
        if not use_running:
            return super().forward(x)
        return PF.batch_norm_affine(x, self._mean, self._variance, self.weight, self.bias, self._epsilon)


class BatchNorm2D(_EvalAffineBatchNorm, nn.BatchNorm2D):
    """BatchNorm2D whose eval mode is an affine map with constant running statistics.

    Train mode (batch statistics) is already double-differentiable in Paddle; eval mode is not
    ("``is_test = True`` CANNOT be used in train program").
    """


class BatchNorm1D(_EvalAffineBatchNorm, nn.BatchNorm1D):
    """BatchNorm1D with the same eval-mode treatment as :class:`BatchNorm2D`.

    (It used to borrow ``BatchNorm2D.forward``, whose zero-argument ``super()`` is bound to
    ``BatchNorm2D`` and raised ``TypeError`` in train mode.)
    """


class Conv2DTranspose(nn.Conv2DTranspose):
    """Transposed convolution computed with zero insertion + ``conv2d`` (groups 1, dilation 1)."""

    def forward(self, x: paddle.Tensor, output_size=None) -> paddle.Tensor:
        if output_size is not None:
            raise ValueError("privbox Conv2DTranspose does not take output_size; set output_padding instead")
        return PF.conv_transpose2d(x, self.weight, self.bias, self._stride, self._padding, self.output_padding)


def _symmetric_padding(layer: nn.Conv2D) -> Optional[tuple[int, int]]:
    """``(ph, pw)`` for explicit, symmetric zero padding; None for anything else."""
    if getattr(layer, "_padding_algorithm", "EXPLICIT") != "EXPLICIT" or getattr(layer, "_padding_mode", "zeros") != "zeros":
        return None
    pad = [int(p) for p in layer._updated_padding]
    if len(pad) == 2:
        return pad[0], pad[1]
    if len(pad) == 4 and pad[0] == pad[1] and pad[2] == pad[3]:
        return pad[0], pad[2]
    return None


class Conv2D(nn.Conv2D):
    """``nn.Conv2D`` that can run on the oneDNN PyLayer path of :mod:`privbox.nn.fast_conv`.

    Same parameters and names; the path follows :func:`privbox.nn.set_conv_backend` (default
    ``"auto"``: measured per shape). Grouped, channels-last or non-zero-padded convolutions always
    use Paddle's own ``conv2d``.
    """

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        padding = _symmetric_padding(self) if self._groups == 1 and self._data_format == "NCHW" else None
        if padding is not None and x.ndim == 4:
            if fast_conv.use_fast_path(x, self.weight, self._stride, padding, self._dilation):
                fast_conv.count("onednn")
                return fast_conv.conv2d(x, self.weight, self.bias, self._stride, padding, self._dilation)
        fast_conv.count("reference")
        return super().forward(x)


class GroupNorm(nn.GroupNorm):
    """GroupNorm composed from reshape/mean/var."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return PF.group_norm(x, self._num_groups, self.weight, self.bias, self._epsilon)


class LayerNorm(nn.LayerNorm):
    """LayerNorm composed from mean/var."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return PF.layer_norm(x, len(self._normalized_shape), self.weight, self.bias, self._epsilon)


class GELU(nn.GELU):
    """Exact (erf) GELU whose backward is written in double-differentiable ops (a PyLayer)."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        # nn.GELU stores ``approximate`` as given: False/True or the strings "none"/"tanh"
        # (a non-empty string is truthy, so test the value, not its truthiness).
        approximate = getattr(self, "_approximate", False)
        if approximate is True or approximate == "tanh":
            return PF.gelu_tanh(x)
        return PF.gelu(x)


class Softmax(nn.Softmax):
    """Composed softmax."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return PF.softmax(x, self._axis)
