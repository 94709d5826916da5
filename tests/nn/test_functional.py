"""privbox.nn.functional: every replacement equals the Paddle op it replaces, is twice
differentiable (checked against finite differences), and the Paddle original is not.

Double-grad protocol (shared/reference/PADDLE.md §1): a parameter ``w`` (one entry per input
element, drawn around 1) sits *before* the op, ``y = op(x * w)``, ``L = sum(r * y^2)`` with a
fixed random ``r``, ``g = grad(L, w, create_graph=True)`` and ``h = grad(sum(g^2), x)``. ``h`` is
compared with central finite differences of ``x -> sum(g(x)^2)``, all in float64 (every op used
here supports float64 on CPU in Paddle 3.3).
"""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

import privbox.nn.functional as PF
from privbox.nn import layers as PL

paddle.set_device("cpu")

ATOL = RTOL = 1e-5


def _t(array, dtype="float32", grad=False):
    tensor = paddle.to_tensor(np.asarray(array), dtype=dtype)
    tensor.stop_gradient = not grad
    return tensor


def _randn(shape, seed=0, dtype="float32", scale=1.0):
    return _t(np.random.default_rng(seed).standard_normal(shape) * scale, dtype)


def _close(actual, expected, atol=ATOL, rtol=RTOL):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), atol=atol, rtol=rtol)


# --------------------------------------------------------------------------- double-grad helpers


def _outer_objective(op, x_np, w_np, need_h):
    """``sum(g^2)`` for g = d/dw sum(r * op(x*w)^2); with ``need_h`` also its gradient in x."""
    x = _t(x_np, "float64", grad=need_h)
    w = _t(w_np, "float64", grad=True)
    y = op(x * w)
    r = _t(np.random.default_rng(1234).standard_normal(y.shape), "float64")
    g = paddle.grad((r * y * y).sum(), w, create_graph=need_h)[0]
    value = (g * g).sum()
    if not need_h:
        return float(value)
    return float(value), paddle.grad(value, x)[0].numpy()


def assert_double_grad_matches_fd(op, shape, seed=0, coords=6, eps=1e-5, rtol=1e-5):
    """Check ``h = d sum(g^2) / dx`` at ``coords`` random coordinates against central FD (float64)."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(shape)
    w0 = rng.uniform(0.5, 1.5, size=shape)
    _, h = _outer_objective(op, x0, w0, need_h=True)
    assert np.isfinite(h).all()
    scale = max(np.abs(h).max(), 1e-8)
    assert np.abs(h).max() > 0, "the double gradient is identically zero; the test would be vacuous"
    flat = x0.reshape(-1)
    for index in rng.choice(flat.size, size=min(coords, flat.size), replace=False):
        plus, minus = flat.copy(), flat.copy()
        plus[index] += eps
        minus[index] -= eps
        fd = (_outer_objective(op, plus.reshape(shape), w0, False) - _outer_objective(op, minus.reshape(shape), w0, False)) / (2 * eps)
        assert abs(h.reshape(-1)[index] - fd) <= rtol * scale, (index, h.reshape(-1)[index], fd, scale)


def assert_paddle_op_lacks_double_grad(op, shape, what):
    """The Paddle original fails the same double backward (documents why the replacement exists)."""
    rng = np.random.default_rng(0)
    x = _t(rng.standard_normal(shape), grad=True)
    w = _t(rng.uniform(0.5, 1.5, size=shape), grad=True)
    try:
        y = op(x * w)
        g = paddle.grad((y * y).sum(), w, create_graph=True)[0]
        paddle.grad((g * g).sum(), x)
    except Exception:  # noqa: BLE001 - Paddle raises RuntimeError, ValueError or SystemError here
        return
    pytest.skip(f"Paddle {paddle.__version__} now differentiates {what} twice; privbox's replacement is optional")


# ------------------------------------------------------------------------- softmax / cross-entropy


def test_log_softmax_and_softmax_match_paddle():
    z = _randn([4, 7], scale=3.0)
    _close(PF.log_softmax(z), F.log_softmax(z, axis=-1))
    _close(PF.softmax(z), F.softmax(z, axis=-1))
    z3 = _randn([2, 5, 3], seed=1, scale=3.0)
    _close(PF.log_softmax(z3, axis=1), F.log_softmax(z3, axis=1))
    _close(PF.softmax(z3, axis=1), F.softmax(z3, axis=1))


def test_log_softmax_is_stable_for_large_logits():
    z = _t([[1000.0, 0.0, -1000.0], [-5e4, -5e4, -5e4]])
    out = PF.log_softmax(z).numpy()
    assert np.isfinite(out).all()
    # Exact values (Paddle 3.3's own CPU kernel saturates here: it returns -64 for -1000 and -2000).
    _close(out, [[0.0, -1000.0, -2000.0], [-np.log(3.0)] * 3])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_hard_labels_match_paddle(reduction):
    logits = _randn([5, 6], scale=2.0)
    labels = _t([0, 3, 5, 3, 1], "int64")
    for given in (labels, labels.reshape([-1, 1])):  # [B] and [B, 1] labels
        actual = PF.cross_entropy(logits, given, reduction=reduction)
        expected = F.cross_entropy(logits, given, reduction=reduction)
        _close(actual, expected.reshape(actual.shape))  # Paddle's "none" is [B, 1], privbox's [B]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_soft_labels_match_paddle(reduction):
    logits = _randn([4, 6], scale=2.0)
    probs = F.softmax(_randn([4, 6], seed=3))
    expected = F.cross_entropy(logits, probs, soft_label=True, reduction=reduction)
    actual = PF.cross_entropy(logits, probs, soft_label=True, reduction=reduction)
    _close(actual, expected.reshape(actual.shape))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_label_logits_match_softmax_of_labels(reduction):
    logits = _randn([3, 5], scale=2.0)
    label_logits = _randn([3, 5], seed=4, scale=2.0)
    expected = F.cross_entropy(logits, F.softmax(label_logits), soft_label=True, reduction=reduction)
    actual = PF.cross_entropy(logits, label_logits, soft_label=True, label_logits=True, reduction=reduction)
    _close(actual, expected.reshape(actual.shape))


def test_cross_entropy_rejects_unknown_reduction():
    with pytest.raises(ValueError, match="reduction"):
        PF.cross_entropy(_randn([2, 3]), _t([0, 1], "int64"), reduction="avg")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_matches_paddle(reduction):
    logits = _randn([4, 5], scale=4.0)
    targets = _t(np.random.default_rng(5).uniform(0, 1, size=(4, 5)))
    _close(
        PF.binary_cross_entropy_with_logits(logits, targets, reduction=reduction),
        F.binary_cross_entropy_with_logits(logits, targets, reduction=reduction),
    )


def test_one_hot_and_safe_norm():
    _close(PF.one_hot(_t([2, 0], "int64"), 3), [[0, 0, 1], [1, 0, 0]])
    x = _randn([3, 4])
    _close(PF.safe_norm(x), paddle.linalg.norm(x))


# ------------------------------------------------------------------------------- shape ops


@pytest.mark.parametrize("start_axis", [0, 1, 2])
def test_flatten_matches_paddle(start_axis):
    x = _randn([2, 3, 4, 5])
    _close(PF.flatten(x, start_axis), paddle.flatten(x, start_axis))
    assert PF.flatten(x, start_axis).shape == paddle.flatten(x, start_axis).shape


POOL_CASES = [
    # (kernel, stride, padding, H, W)
    (2, 2, 0, 32, 32),
    (3, 2, 1, 32, 32),
    (3, 1, 1, 32, 32),
    (19, 2, 1, 32, 32),
    (2, 2, 0, 7, 9),
    (3, 2, 1, 7, 9),
    (3, 1, 1, 7, 9),
    (19, 2, 1, 21, 25),
    ((2, 3), (1, 2), (0, 1), 7, 9),
]


def _numpy_max_pool(x, kernel, stride, padding, ceil_mode=False):
    """Independent reference: loop over windows of the -inf padded input (PyTorch/Paddle semantics)."""
    kh, kw = (kernel, kernel) if np.isscalar(kernel) else kernel
    sh, sw = (stride, stride) if np.isscalar(stride) else stride
    ph, pw = (padding, padding) if np.isscalar(padding) else padding
    n, c, h, w = x.shape
    padded = np.full((n, c, h + 2 * ph, w + 2 * pw), -np.inf)
    padded[:, :, ph : ph + h, pw : pw + w] = x

    def size(length, k, s, p):
        span = length + 2 * p - k
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= length + p:  # the last window must start inside input + left pad
            out -= 1
        return out

    oh, ow = size(h, kh, sh, ph), size(w, kw, sw, pw)
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = padded[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out


@pytest.mark.parametrize("kernel,stride,padding,h,w", POOL_CASES)
def test_max_pool2d_matches_paddle(kernel, stride, padding, h, w):
    x = _randn([2, 3, h, w], seed=h * w)
    expected = F.max_pool2d(x, kernel, stride, padding)
    actual = PF.max_pool2d(x, kernel, stride, padding)
    assert actual.shape == expected.shape
    _close(actual, expected, atol=0, rtol=0)  # a gather: exact
    _close(actual, _numpy_max_pool(x.numpy().astype(np.float64), kernel, stride, padding), atol=0, rtol=0)


@pytest.mark.parametrize("kernel,stride,padding,h,w", [(2, 2, 0, 7, 9), (3, 2, 1, 8, 8), (3, 2, 0, 8, 10)])
def test_max_pool2d_ceil_mode_matches_numpy_and_paddle(kernel, stride, padding, h, w):
    x = _randn([2, 2, h, w], seed=7)
    actual = PF.max_pool2d(x, kernel, stride, padding, ceil_mode=True)
    expected = _numpy_max_pool(x.numpy().astype(np.float64), kernel, stride, padding, ceil_mode=True)
    assert list(actual.shape) == list(expected.shape)
    _close(actual, expected, atol=0, rtol=0)
    _close(actual, F.max_pool2d(x, kernel, stride, padding, ceil_mode=True), atol=0, rtol=0)


@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_max_pool2d_first_gradient_matches_paddle(kernel, stride, padding):
    # Paddle's max-pool has a first-order gradient: the new one must route it identically.
    x = _randn([2, 3, 9, 11], seed=3, dtype="float64")
    x.stop_gradient = False
    ref_out = F.max_pool2d(x, kernel, stride, padding)
    r = _randn(ref_out.shape, seed=4, dtype="float64")
    (mine,) = paddle.grad((PF.max_pool2d(x, kernel, stride, padding) * r).sum(), x)
    (ref,) = paddle.grad((ref_out * r).sum(), x)
    _close(mine, ref, atol=1e-12, rtol=0)


def test_max_pool2d_all_negative_input_with_padding():
    # Padding must never win the max (Paddle pads with -inf).
    x = _randn([1, 2, 5, 5]) - 100.0
    _close(PF.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1), atol=0, rtol=0)


def test_max_pool2d_default_stride_and_errors():
    x = _randn([1, 1, 6, 6])
    _close(PF.max_pool2d(x, 2), F.max_pool2d(x, 2))
    with pytest.raises(ValueError, match="does not fit"):
        PF.max_pool2d(x, 19, 2, 1)
    with pytest.raises(ValueError, match="half the kernel"):
        PF.max_pool2d(x, 3, 1, 2)


@pytest.mark.parametrize("scale", [2, 3])
def test_upsample_nearest_matches_interpolate(scale):
    x = _randn([2, 3, 4, 5])
    expected = F.interpolate(x, scale_factor=scale, mode="nearest")
    _close(PF.upsample_nearest(x, scale), expected, atol=0, rtol=0)
    with pytest.raises(ValueError):
        PF.upsample_nearest(x, 1.5)


@pytest.mark.parametrize("in_size,out_size", [((4, 5), (8, 10)), ((5, 7), (11, 13)), ((16, 16), (7, 5)), ((9, 6), (3, 4))])
def test_upsample_bilinear_matches_interpolate(in_size, out_size):
    x = _randn([2, 3, *in_size], seed=7)
    expected = F.interpolate(x, size=list(out_size), mode="bilinear", align_corners=False)
    _close(PF.upsample_bilinear(x, out_size), expected)


CONV_T_CASES = [
    (k, s, p, op, bias)
    for k in (3, 4)
    for s in (1, 2)
    for p in (0, 1)
    for op in (0, 1)
    for bias in (False, True)
    if op < s
]


@pytest.mark.parametrize("kernel,stride,padding,output_padding,bias", CONV_T_CASES)
def test_conv_transpose2d_matches_paddle(kernel, stride, padding, output_padding, bias):
    x = _randn([2, 3, 5, 6])
    weight = _randn([3, 4, kernel, kernel], seed=1)  # Paddle layout [in, out, kh, kw]
    b = _randn([4], seed=2) if bias else None
    expected = F.conv2d_transpose(x, weight, b, stride=stride, padding=padding, output_padding=output_padding)
    actual = PF.conv_transpose2d(x, weight, b, stride=stride, padding=padding, output_padding=output_padding)
    assert actual.shape == expected.shape
    _close(actual, expected)


def test_conv_transpose2d_mixed_strides_match_paddle():
    x = _randn([1, 2, 4, 5])
    weight = _randn([2, 3, 3, 2], seed=1)
    kwargs = dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0))
    _close(PF.conv_transpose2d(x, weight, None, **kwargs), F.conv2d_transpose(x, weight, None, **kwargs))


def test_conv_transpose2d_rejects_padding_beyond_kernel():
    with pytest.raises(ValueError, match="padding"):
        PF.conv_transpose2d(_randn([1, 1, 3, 3]), _randn([1, 1, 2, 2]), padding=2)


# --------------------------------------------------------------------------------- norms, gelu


def _eval_batch_norm(channels=4, seed=0):
    rng = np.random.default_rng(seed)
    bn = nn.BatchNorm2D(channels, epsilon=1e-3)
    bn.weight.set_value(rng.uniform(0.5, 2.0, channels).astype("float32"))
    bn.bias.set_value(rng.standard_normal(channels).astype("float32"))
    bn._mean.set_value(rng.standard_normal(channels).astype("float32"))
    bn._variance.set_value(rng.uniform(0.5, 3.0, channels).astype("float32"))
    bn.eval()
    return bn


def test_batch_norm_affine_matches_eval_batchnorm():
    bn = _eval_batch_norm()
    x = _randn([3, 4, 5, 5], scale=2.0)
    expected = bn(x)
    _close(PF.batch_norm_affine(x, bn._mean, bn._variance, bn.weight, bn.bias, bn._epsilon), expected)
    bn.__class__ = PL.BatchNorm2D  # what the converter does
    _close(bn(x), expected)


def test_batch_norm_affine_first_gradients_match_eval_batchnorm():
    # Paddle's eval-mode BN has a first-order gradient: x, weight and bias gradients must agree.
    bn = _eval_batch_norm()
    x = _randn([3, 4, 5, 5], scale=2.0)
    x.stop_gradient = False
    r = _randn([3, 4, 5, 5], seed=9)
    expected = paddle.grad((bn(x) * r).sum(), [x, bn.weight, bn.bias])
    mine = PF.batch_norm_affine(x, bn._mean, bn._variance, bn.weight, bn.bias, bn._epsilon)
    for a, b in zip(paddle.grad((mine * r).sum(), [x, bn.weight, bn.bias]), expected):
        _close(a, b)


def test_batch_norm_affine_without_affine_parameters():
    x = _randn([2, 3, 4, 4])
    mean, var = _t([0.1, -0.2, 0.3]), _t([1.0, 2.0, 0.5])
    expected = F.batch_norm(x, mean, var, training=False, epsilon=1e-5)
    _close(PF.batch_norm_affine(x, mean, var, None, None, 1e-5), expected)


@pytest.mark.parametrize("groups", [1, 2, 6])
def test_group_norm_matches_paddle(groups):
    x = _randn([2, 6, 4, 5], scale=3.0)
    weight, bias = _randn([6], seed=1), _randn([6], seed=2)
    _close(PF.group_norm(x, groups, weight, bias, 1e-5), F.group_norm(x, groups, 1e-5, weight, bias))
    _close(PF.group_norm(x, groups), F.group_norm(x, groups))


@pytest.mark.parametrize("normalized_shape", [[5], [4, 5], [3, 4, 5]])
def test_layer_norm_matches_paddle(normalized_shape):
    x = _randn([2, 3, 4, 5], scale=3.0)
    size = int(np.prod(normalized_shape))
    # Paddle keeps LayerNorm's affine parameters flat ([prod(normalized_shape)]).
    weight, bias = _randn([size], seed=1), _randn([size], seed=2)
    expected = F.layer_norm(x, normalized_shape, weight, bias)
    _close(PF.layer_norm(x, len(normalized_shape), weight, bias), expected)
    _close(PF.layer_norm(x, len(normalized_shape), weight.reshape(normalized_shape), bias.reshape(normalized_shape)), expected)
    _close(PF.layer_norm(x, len(normalized_shape)), F.layer_norm(x, normalized_shape))
    layer = nn.LayerNorm(normalized_shape)
    layer.weight.set_value(weight)
    layer.bias.set_value(bias)
    layer.__class__ = PL.LayerNorm  # what the converter does
    _close(layer(x), expected)


def test_gelu_and_gelu_tanh_match_paddle():
    x = _randn([4, 50], scale=3.0)
    _close(PF.gelu(x), F.gelu(x))
    _close(PF.gelu_tanh(x), F.gelu(x, approximate=True))
    # the two differ, but by less than 1e-3 (the documented bound)
    assert 0 < float((PF.gelu(x) - PF.gelu_tanh(x)).abs().max()) < 1e-3


def test_gelu_first_derivative_matches_paddle():
    x = _randn([3, 40], scale=3.0)
    x.stop_gradient = False
    (ours,) = paddle.grad(PF.gelu(x).sum(), x)
    (theirs,) = paddle.grad(F.gelu(x).sum(), x)
    _close(ours, theirs)


def test_gelu_layer_respects_approximate_flag():
    # nn.GELU keeps ``approximate`` as given, including the strings "none" and "tanh".
    x = _randn([2, 30], scale=3.0)
    for flag, reference in [(False, F.gelu(x)), ("none", F.gelu(x)), (True, F.gelu(x, True)), ("tanh", F.gelu(x, True))]:
        layer = nn.GELU(approximate=flag)
        layer.__class__ = PL.GELU
        _close(layer(x), reference, atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------------------------- dropout


def test_dropout_mask_eval_is_identity():
    x = _randn([3, 4])
    assert PF.dropout_mask(x, 0.5, training=False) is x
    assert PF.dropout_mask(x, 0.0, training=True) is x
    layer = PL.Dropout(0.5)
    layer.eval()
    _close(layer(x), x, atol=0, rtol=0)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_mask_train_keep_rate_and_scale(p):
    paddle.seed(11)
    x = paddle.ones([200, 500])
    out = PF.dropout_mask(x, p, training=True).numpy()
    kept = out != 0
    assert abs(kept.mean() - (1 - p)) < 0.01
    np.testing.assert_allclose(out[kept], 1.0 / (1.0 - p), rtol=1e-6)
    assert abs(out.mean() - 1.0) < 0.03  # unbiased in expectation (upscale_in_train)


def test_dropout_mask_rejects_bad_probability():
    with pytest.raises(ValueError):
        PF.dropout_mask(_randn([2, 2]), 1.0, training=True)


# ------------------------------------------------------------- double grad: replacements pass

_LABELS = [1, 0, 4]


def _seeded_dropout(z):
    paddle.seed(5)  # the same mask for every finite-difference evaluation
    return PF.dropout_mask(z, 0.3, training=True)


def _bn_affine(z):
    c = z.shape[1]
    rng = np.random.default_rng(3)
    return PF.batch_norm_affine(
        z,
        _t(rng.standard_normal(c), "float64"),
        _t(rng.uniform(0.5, 2.0, c), "float64"),
        _t(rng.uniform(0.5, 2.0, c), "float64"),
        _t(rng.standard_normal(c), "float64"),
    )


def _conv_t(stride, padding, output_padding, bias):
    rng = np.random.default_rng(8)
    weight = _t(rng.standard_normal((2, 3, 3, 3)), "float64")
    b = _t(rng.standard_normal(3), "float64") if bias else None
    return lambda z: PF.conv_transpose2d(z, weight, b, stride=stride, padding=padding, output_padding=output_padding)


def _affine(c, seed):
    rng = np.random.default_rng(seed)
    return _t(rng.uniform(0.5, 2.0, c), "float64"), _t(rng.standard_normal(c), "float64")


DOUBLE_GRAD_CASES = {
    "log_softmax": (lambda z: PF.log_softmax(z), [3, 5]),
    "softmax": (lambda z: PF.softmax(z), [3, 5]),
    "ce_hard_mean": (lambda z: PF.cross_entropy(z, _t(_LABELS, "int64")), [3, 5]),
    "ce_hard_sum": (lambda z: PF.cross_entropy(z, _t(_LABELS, "int64"), reduction="sum"), [3, 5]),
    "ce_hard_none": (lambda z: PF.cross_entropy(z, _t(_LABELS, "int64"), reduction="none"), [3, 5]),
    "ce_soft": (
        lambda z: PF.cross_entropy(z, _t(np.full((3, 5), 0.2), "float64"), soft_label=True),
        [3, 5],
    ),
    "ce_label_logits": (
        lambda z: PF.cross_entropy(
            z, _t(np.random.default_rng(2).standard_normal((3, 5)), "float64"), soft_label=True, label_logits=True
        ),
        [3, 5],
    ),
    "bce_with_logits": (
        lambda z: PF.binary_cross_entropy_with_logits(z, _t(np.random.default_rng(2).uniform(0, 1, (3, 5)), "float64")),
        [3, 5],
    ),
    "flatten": (lambda z: PF.flatten(z) ** 3, [2, 2, 3, 3]),
    "max_pool_k2s2": (lambda z: PF.max_pool2d(z, 2, 2, 0), [1, 2, 4, 6]),
    "max_pool_k3s2p1": (lambda z: PF.max_pool2d(z, 3, 2, 1), [1, 2, 5, 5]),
    "max_pool_k3s1p1": (lambda z: PF.max_pool2d(z, 3, 1, 1), [1, 2, 5, 5]),
    "max_pool_k2s2_ceil": (lambda z: PF.max_pool2d(z, 2, 2, 0, ceil_mode=True), [1, 2, 5, 5]),
    "max_pool_k2s2_wide": (lambda z: PF.max_pool2d(z, 2, 2, 0), [2, 3, 8, 8]),
    "upsample_nearest": (lambda z: PF.upsample_nearest(z, 2) ** 2, [1, 2, 3, 3]),
    "upsample_bilinear_up": (lambda z: PF.upsample_bilinear(z, (5, 7)) ** 2, [1, 2, 3, 4]),
    "upsample_bilinear_down": (lambda z: PF.upsample_bilinear(z, (2, 3)) ** 2, [1, 2, 5, 5]),
    "conv_transpose_s1p0": (_conv_t(1, 0, 0, False), [1, 2, 3, 3]),
    "conv_transpose_s2p1_op1_bias": (_conv_t(2, 1, 1, True), [1, 2, 3, 3]),
    "conv_transpose_s2p0": (_conv_t(2, 0, 0, False), [1, 2, 3, 3]),
    "batch_norm_affine": (_bn_affine, [2, 3, 3, 3]),
    "group_norm": (lambda z: PF.group_norm(z, 2, *_affine(4, 1)), [1, 4, 3, 3]),
    "layer_norm": (lambda z: PF.layer_norm(z, 2, *_affine(9, 1)), [1, 2, 3, 3]),  # flat, as nn.LayerNorm
    "gelu": (lambda z: PF.gelu(z), [2, 5, 5]),
    "gelu_tanh": (lambda z: PF.gelu_tanh(z), [2, 5, 5]),
    "dropout_mask_train": (_seeded_dropout, [2, 5, 5]),
    "safe_norm": (lambda z: PF.safe_norm(z), [2, 5]),
}


@pytest.mark.parametrize("name", sorted(DOUBLE_GRAD_CASES))
def test_replacement_double_grad_matches_finite_differences(name):
    op, shape = DOUBLE_GRAD_CASES[name]
    assert_double_grad_matches_fd(op, shape)


def test_finite_difference_check_detects_a_wrong_double_gradient():
    # Sanity check of the checker: z * detach(z) has the value z^2 but the derivative z, not 2z.
    with pytest.raises(AssertionError):
        assert_double_grad_matches_fd(lambda z: z * z.detach(), [2, 3])


def test_max_pool_k19_double_grad_runs():
    # Too large for finite differences at this size in reasonable time: check it runs and is finite.
    x = _randn([1, 1, 21, 21])
    x.stop_gradient = False
    w = paddle.ones([1])
    w.stop_gradient = False
    y = PF.max_pool2d(x * w, 19, 2, 1)
    (g,) = paddle.grad((y * y).sum(), w, create_graph=True)
    (h,) = paddle.grad((g * g).sum(), x)
    assert np.isfinite(h.numpy()).all() and float(h.abs().sum()) > 0


# -------------------------------------------------------- double grad: Paddle originals fail

PADDLE_ORIGINALS = {
    "F.log_softmax": (lambda z: F.log_softmax(z), [3, 5]),
    "F.softmax": (lambda z: F.softmax(z), [3, 5]),
    "F.cross_entropy (hard)": (lambda z: F.cross_entropy(z, _t(_LABELS, "int64")), [3, 5]),
    "F.cross_entropy (hard, sum)": (lambda z: F.cross_entropy(z, _t(_LABELS, "int64"), reduction="sum"), [3, 5]),
    "F.cross_entropy (soft)": (lambda z: F.cross_entropy(z, paddle.full([3, 5], 0.2), soft_label=True), [3, 5]),
    "F.binary_cross_entropy_with_logits": (lambda z: F.binary_cross_entropy_with_logits(z, paddle.full([3, 5], 0.5)), [3, 5]),
    "paddle.flatten": (lambda z: paddle.flatten(z, 1), [2, 2, 3, 3]),
    "F.max_pool2d": (lambda z: F.max_pool2d(z, 2, 2), [1, 2, 4, 4]),
    "F.interpolate nearest": (lambda z: F.interpolate(z, scale_factor=2, mode="nearest"), [1, 2, 3, 3]),
    "F.interpolate bilinear": (lambda z: F.interpolate(z, size=[5, 7], mode="bilinear", align_corners=False), [1, 2, 3, 3]),
    "F.conv2d_transpose": (lambda z: F.conv2d_transpose(z, paddle.ones([2, 3, 3, 3]), stride=2, padding=1), [1, 2, 3, 3]),
    "BatchNorm2D eval": (lambda z: _eval_batch_norm(2)(z), [2, 2, 3, 3]),
    "F.group_norm": (lambda z: F.group_norm(z, 2), [1, 4, 3, 3]),
    "F.layer_norm": (lambda z: F.layer_norm(z, [3, 3]), [1, 2, 3, 3]),
    "F.gelu": (lambda z: F.gelu(z), [3, 5]),
    "F.dropout (eval)": (lambda z: F.dropout(z, 0.5, training=False), [3, 5]),
}


@pytest.mark.parametrize("name", sorted(PADDLE_ORIGINALS))
def test_paddle_original_lacks_double_grad(name):
    op, shape = PADDLE_ORIGINALS[name]
    assert_paddle_op_lacks_double_grad(op, shape, name)
