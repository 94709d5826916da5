"""Twice-differentiable replacements for Paddle ops that lack a double gradient.

Gradient-inversion attacks differentiate a gradient: ``g = grad(loss, params, create_graph=True)``
followed by ``grad(D(g), x)``. Every op on that path needs a differentiable backward. Paddle 3.x
fused ops such as ``F.cross_entropy``, ``F.log_softmax``, ``F.max_pool2d``, ``paddle.flatten``,
``F.interpolate`` and ``F.conv2d_transpose`` do not have one (see ``shared/reference/PADDLE.md``
§1). The functions here compose the same maths from ops that do, and each equals the original op
to 1e-5 (tests/nn/test_functional.py).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import paddle
import paddle.nn.functional as F

def log_softmax(logits: paddle.Tensor, axis: int = -1) -> paddle.Tensor:
    """Log-softmax as ``(z - m) - log(sum(exp(z - m)))`` with a detached max ``m``.

    Log-softmax is shift invariant, so detaching the max is exact and avoids ``max_grad``.
    """
    shift = logits.detach().max(axis=axis, keepdim=True)
    centred = logits - shift
    return centred - paddle.log(paddle.exp(centred).sum(axis=axis, keepdim=True))


def softmax(logits: paddle.Tensor, axis: int = -1) -> paddle.Tensor:
    """Softmax as ``exp(log_softmax(z))`` (double-differentiable)."""
    return paddle.exp(log_softmax(logits, axis=axis))


def one_hot(labels: paddle.Tensor, num_classes: int, dtype: str = "float32") -> paddle.Tensor:
    """One-hot encode integer labels of shape ``[B]`` (or ``[B, 1]``) into ``[B, num_classes]``."""
    labels = labels.reshape([-1]).astype("int64")
    return F.one_hot(labels, num_classes).astype(dtype)


def cross_entropy(
    logits: paddle.Tensor,
    labels: paddle.Tensor,
    soft_label: bool = False,
    label_logits: bool = False,
    reduction: str = "mean",
) -> paddle.Tensor:
    """Softmax cross-entropy built from :func:`log_softmax`.

    Args:
        logits: ``[B, C]`` model outputs.
        labels: integer class indices ``[B]`` for hard labels, or ``[B, C]`` targets when
            ``soft_label`` is true.
        soft_label: whether ``labels`` is a distribution (or logits of one, see ``label_logits``).
        label_logits: treat soft ``labels`` as unnormalised logits and apply softmax first
            (DLG's joint label variable, Zhu et al. NeurIPS 2019).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    logp = log_softmax(logits, axis=-1)
    if soft_label:
        target = softmax(labels, axis=-1) if label_logits else labels
    else:
        target = one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    per_sample = -(target * logp).sum(axis=-1)
    return _reduce(per_sample, reduction)


def binary_cross_entropy_with_logits(
    logits: paddle.Tensor, targets: paddle.Tensor, reduction: str = "mean"
) -> paddle.Tensor:
    """BCE with logits as ``softplus(z) - t*z`` (per element), then reduced."""
    per_element = F.softplus(logits) - targets * logits
    return _reduce(per_element, reduction)


def _reduce(values: paddle.Tensor, reduction: str) -> paddle.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def flatten(x: paddle.Tensor, start_axis: int = 1) -> paddle.Tensor:
    """Flatten all axes from ``start_axis`` on by reshape (``paddle.flatten`` has no double grad)."""
    shape = list(x.shape[:start_axis]) + [-1]
    return x.reshape(shape)


def safe_norm(x: paddle.Tensor, eps: float = 1e-12) -> paddle.Tensor:
    """L2 norm over all elements as ``sqrt(sum(x^2) + eps)`` (``linalg.norm`` lacks double grad)."""
    return paddle.sqrt((x * x).sum() + eps)


def _pair(value: Union[int, Sequence[int]]) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"expected an int or a pair, got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def max_pool2d(
    x: paddle.Tensor,
    kernel_size: Union[int, Sequence[int]],
    stride: Optional[Union[int, Sequence[int]]] = None,
    padding: Union[int, Sequence[int]] = 0,
    ceil_mode: bool = False,
) -> paddle.Tensor:
    """Max-pooling (NCHW) as one gather at the window argmax, double-differentiable.

    Paddle's fused ``F.max_pool2d`` has no double gradient ("Pool op grad grad only supports
    avgpool"), but its *index* output is just an integer: the position of each window's maximum
    in the flattened ``H*W`` plane of the unpadded input. It is computed without a graph, and the
    pooled value is then ``take_along_axis(x.reshape([N, C, H*W]), index)``, whose backward
    (a scatter-add) and double backward (a gather again) Paddle differentiates. This is exact
    against ``F.max_pool2d`` (the same element is picked), covers any kernel, stride, padding and
    ``ceil_mode``, and costs one native pool plus one gather, instead of the ``kh*kw`` slices,
    stack and gather of a tap-by-tap construction (a third of a ConvNet attack iteration,
    ``docs/en/performance.md``). The gradient goes to the first maximal element of a window on
    ties, as Paddle's own backward does.
    """
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride if stride is not None else (kh, kw))
    ph, pw = _pair(padding)
    n, c, h, w = x.shape
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(f"max_pool2d: kernel {kh}x{kw} does not fit a padded input of {h + 2 * ph}x{w + 2 * pw}")
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(f"max_pool2d: padding {ph}x{pw} must be at most half the kernel {kh}x{kw}")
    with paddle.no_grad():
        _, index = F.max_pool2d(
            x.detach(), [kh, kw], [sh, sw], [ph, pw], ceil_mode=ceil_mode, return_mask=True
        )
    out_h, out_w = index.shape[2], index.shape[3]
    flat_index = index.reshape([n, c, out_h * out_w]).astype("int64")
    pooled = paddle.take_along_axis(x.reshape([n, c, h * w]), flat_index, axis=2)
    return pooled.reshape([n, c, out_h, out_w])


def upsample_nearest(x: paddle.Tensor, scale_factor: int) -> paddle.Tensor:
    """Nearest-neighbour upsampling by an integer factor via reshape + expand."""
    r = int(scale_factor)
    if r != scale_factor or r < 1:
        raise ValueError(f"upsample_nearest needs a positive integer scale factor, got {scale_factor}")
    n, c, h, w = x.shape
    out = x.reshape([n, c, h, 1, w, 1]).expand([n, c, h, r, w, r])
    return out.reshape([n, c, h * r, w * r])


def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Interpolation matrix with half-pixel centres (``align_corners=False``)."""
    scale = in_size / out_size
    mat = np.zeros((out_size, in_size), dtype=np.float32)
    for o in range(out_size):
        src = max((o + 0.5) * scale - 0.5, 0.0)
        lo = min(int(np.floor(src)), in_size - 1)
        hi = min(lo + 1, in_size - 1)
        frac = src - lo
        mat[o, lo] += 1.0 - frac
        mat[o, hi] += frac
    return mat


def upsample_bilinear(x: paddle.Tensor, size: Sequence[int]) -> paddle.Tensor:
    """Bilinear resize to ``size=(H', W')`` as ``A_h @ x @ A_w^T`` (``align_corners=False``)."""
    out_h, out_w = _pair(size)
    _, _, h, w = x.shape
    a_h = paddle.to_tensor(_bilinear_matrix(h, out_h), dtype=x.dtype)
    a_w = paddle.to_tensor(_bilinear_matrix(w, out_w), dtype=x.dtype)
    return paddle.matmul(paddle.matmul(a_h, x), a_w.t())


def conv_transpose2d(
    x: paddle.Tensor,
    weight: paddle.Tensor,
    bias: Optional[paddle.Tensor] = None,
    stride: Union[int, Sequence[int]] = 1,
    padding: Union[int, Sequence[int]] = 0,
    output_padding: Union[int, Sequence[int]] = 0,
) -> paddle.Tensor:
    """Transposed convolution (groups 1, dilation 1) as zero insertion + pad + ``conv2d``.

    ``weight`` has Paddle's ``Conv2DTranspose`` layout ``[in, out, kh, kw]``.
    """
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    oph, opw = _pair(output_padding)
    n, c, h, w = x.shape
    kh, kw = weight.shape[2], weight.shape[3]
    if sh > 1 or sw > 1:
        # Insert s-1 zeros after every pixel (repeat each pixel s times with ``expand``, keep
        # only the first copy with a constant 0/1 mask), then crop the trailing zeros.
        # Not ``concat`` with a constant zeros tensor: its double backward fails in Paddle 3.3
        # ("Unable to fill empty grad inputs due to empty GradSlotMeta" in ConcatDoubleGradNode)
        # when a parameter sits before this op.
        mask = np.zeros((1, 1, 1, sh, 1, sw), dtype=np.float32)
        mask[:, :, :, 0, :, 0] = 1.0
        x = x.reshape([n, c, h, 1, w, 1]).expand([n, c, h, sh, w, sw]) * paddle.to_tensor(mask, dtype=x.dtype)
        x = x.reshape([n, c, h * sh, w * sw])[:, :, : (h - 1) * sh + 1, : (w - 1) * sw + 1]
    pad_h, pad_w = kh - 1 - ph, kw - 1 - pw
    if pad_h < 0 or pad_w < 0:
        raise ValueError("conv_transpose2d: padding larger than kernel_size - 1 is not supported")
    x = F.pad(x, [pad_w, pad_w + opw, pad_h, pad_h + oph])
    kernel = weight.flip([2, 3]).transpose([1, 0, 2, 3])
    return F.conv2d(x, kernel, bias=bias)


def batch_norm_affine(
    x: paddle.Tensor,
    running_mean: paddle.Tensor,
    running_var: paddle.Tensor,
    weight: Optional[paddle.Tensor],
    bias: Optional[paddle.Tensor],
    epsilon: float = 1e-5,
) -> paddle.Tensor:
    """Eval-mode batch norm as an affine map with the running statistics held constant."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    scale = 1.0 / paddle.sqrt(running_var.detach() + epsilon)
    if weight is not None:
        scale = scale * weight
    # x*scale + (bias - mean*scale): two full-size ops (and their first and second backward
    # nodes) instead of three; the per-channel algebra runs on [C] vectors.
    shift = -running_mean.detach() * scale
    if bias is not None:
        shift = shift + bias
    return x * scale.reshape(shape) + shift.reshape(shape)


def group_norm(
    x: paddle.Tensor,
    num_groups: int,
    weight: Optional[paddle.Tensor] = None,
    bias: Optional[paddle.Tensor] = None,
    epsilon: float = 1e-5,
) -> paddle.Tensor:
    """Group normalisation composed from reshape, mean and variance (NCHW)."""
    n, c = x.shape[0], x.shape[1]
    grouped = x.reshape([n, num_groups, -1])
    mean = grouped.mean(axis=-1, keepdim=True)
    var = paddle.square(grouped - mean).mean(axis=-1, keepdim=True)
    out = ((grouped - mean) / paddle.sqrt(var + epsilon)).reshape(x.shape)
    shape = [1, c] + [1] * (x.ndim - 2)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def layer_norm(
    x: paddle.Tensor,
    normalized_ndim: int,
    weight: Optional[paddle.Tensor] = None,
    bias: Optional[paddle.Tensor] = None,
    epsilon: float = 1e-5,
) -> paddle.Tensor:
    """Layer normalisation over the last ``normalized_ndim`` axes, composed.

    ``weight`` and ``bias`` may have the normalised shape or be flat: ``nn.LayerNorm([4, 5])``
    stores them flattened (shape ``[20]``), as ``F.layer_norm`` expects.
    """
    axes = list(range(x.ndim - normalized_ndim, x.ndim))
    normalized_shape = list(x.shape[x.ndim - normalized_ndim :])
    mean = x.mean(axis=axes, keepdim=True)
    var = paddle.square(x - mean).mean(axis=axes, keepdim=True)
    out = (x - mean) / paddle.sqrt(var + epsilon)
    if weight is not None:
        out = out * _as_normalized_shape(weight, normalized_shape)
    if bias is not None:
        out = out + _as_normalized_shape(bias, normalized_shape)
    return out


def _as_normalized_shape(param: paddle.Tensor, normalized_shape: list[int]) -> paddle.Tensor:
    """Unflatten a flat LayerNorm parameter; any other shape is left to broadcasting."""
    if param.ndim == 1 and len(normalized_shape) > 1 and param.shape[0] == int(np.prod(normalized_shape)):
        return param.reshape(normalized_shape)
    return param


def dropout_mask(x: paddle.Tensor, p: float, training: bool = True) -> paddle.Tensor:
    """Dropout as multiplication by a Bernoulli mask / (1-p); identity when not training."""
    if not training or p == 0.0:
        return x
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    keep = (paddle.rand(x.shape) >= p).astype(x.dtype)
    return x * keep / (1.0 - p)


def gelu_tanh(x: paddle.Tensor) -> paddle.Tensor:
    """GELU with the tanh approximation, composed from double-differentiable ops.

    Exact GELU has no base-mode double grad; this approximation differs from it by < 1e-3.
    """
    return 0.5 * x * (1.0 + paddle.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


class _GeluErf(paddle.autograd.PyLayer):
    """Exact GELU x·Φ(x) with a backward written in double-differentiable ops."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.gelu(x)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensor()
        cdf = 0.5 * (1.0 + paddle.erf(x * 0.7071067811865476))
        pdf = paddle.exp(-0.5 * x * x) * 0.3989422804014327
        return grad_out * (cdf + x * pdf)


def gelu(x: paddle.Tensor) -> paddle.Tensor:
    """Exact (erf) GELU whose first derivative is differentiable again."""
    return _GeluErf.apply(x)
