"""privbox.nn.fast_conv: the oneDNN PyLayer convolution equals Paddle's conv2d and its autograd.

References are independent of the code under test: Paddle's own ``F.conv2d`` /
``F.conv2d_transpose`` and their autograd (``conv2d_grad``, ``conv2d_grad_grad``), evaluated in
float64 with the input in the first-order ``paddle.grad`` call (PADDLE.md §1), float64 central
finite differences of the double gradient, and, for the models, the reference path in float64.
"""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import privbox.nn as pnn
from privbox.core.errors import ConfigError
from privbox.nn import fast_conv as FC
from privbox.nn import functional as PF
from privbox.nn.functional_model import parameter_gradients

from test_functional import assert_double_grad_matches_fd  # tests/nn is on sys.path (rootdir conftest, prepend mode)

paddle.set_device("cpu")

# (N, C_in, C_out, H, W, kernel, stride, padding, dilation)
GEOMETRIES = [
    (2, 3, 4, 9, 11, 5, 2, 2, 1),  # the DLG LeNet's strided 5x5
    (2, 3, 4, 8, 8, 3, 1, 1, 1),  # ResNet / ConvNet 3x3
    (1, 2, 3, 10, 9, 3, 2, 1, 2),  # strided and dilated
    (2, 4, 4, 7, 7, 1, 2, 0, 1),  # ResNet downsample 1x1 stride 2
    (1, 3, 2, 7, 8, 7, 2, 3, 1),  # ImageNet stem 7x7 stride 2
]
IDS = ["lenet5x5s2", "3x3", "dilated", "1x1s2", "7x7s2"]


@pytest.fixture(autouse=True)
def _restore_backend():
    previous = FC.set_conv_backend("onednn")
    yield
    FC.set_conv_backend(previous)


def _rand(shape, seed, dtype):
    return paddle.to_tensor(np.random.default_rng(seed).standard_normal(shape), dtype=dtype)


def _operands(geometry, dtype, seed=0):
    n, ci, co, h, w, k, s, p, d = geometry
    x = _rand([n, ci, h, w], seed, dtype)
    weight = _rand([co, ci, k, k], seed + 1, dtype)
    x.stop_gradient = weight.stop_gradient = False
    return x, weight, (s, s), (p, p), (d, d)


def _derivatives(conv, x, weight, seed=7):
    """Value, first-order gradients and the second-order gradients of a nonlinear functional."""
    y = conv(x, weight)
    r = _rand(y.shape, seed, x.dtype)
    loss = (paddle.tanh(y) * r).sum()
    gx, gw = paddle.grad(loss, [x, weight], create_graph=True)
    outer = (gw * gw).sum() + (gx * gx * gx).sum()
    hx, hw = paddle.grad(outer, [x, weight])
    return [loss, gx, gw, hx, hw]


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=IDS)
def test_pylayer_derivatives_equal_paddle_autograd_float64(geometry):
    x, weight, s, p, d = _operands(geometry, "float64")
    fast = _derivatives(lambda a, b: FC.conv2d(a, b, None, s, p, d), x, weight)
    ref = _derivatives(lambda a, b: F.conv2d(a, b, stride=list(s), padding=list(p), dilation=list(d)), x, weight)
    for name, a, b in zip(["loss", "dx", "dw", "d2x", "d2w"], fast, ref):
        assert _rel(a.numpy(), b.numpy()) < 1e-12, name


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=IDS)
def test_onednn_kernels_float32_equal_paddle_float64(geometry):
    # float32 through the oneDNN programs against Paddle's autograd in float64.
    x32, w32, s, p, d = _operands(geometry, "float32")
    x64, w64, _, _, _ = _operands(geometry, "float64")
    fast = _derivatives(lambda a, b: FC.conv2d(a, b, None, s, p, d), x32, w32)
    ref = _derivatives(lambda a, b: F.conv2d(a, b, stride=list(s), padding=list(p), dilation=list(d)), x64, w64)
    for name, a, b in zip(["loss", "dx", "dw", "d2x", "d2w"], fast, ref):
        assert _rel(a.numpy(), b.numpy()) < 1e-5, name


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=IDS)
def test_three_kernels_equal_their_definitions(geometry):
    """conv = F.conv2d, data = F.conv2d_transpose, filter = Paddle's weight gradient (float32,
    oneDNN programs where they apply)."""
    x, weight, s, p, d = _operands(geometry, "float32")
    g = FC._geometry(x, weight, s, p, d)
    y = F.conv2d(x, weight, stride=list(s), padding=list(p), dilation=list(d))
    gy = _rand(y.shape, 3, "float32")
    ref_dx, ref_dw = paddle.grad(y, [x, weight], gy)
    with paddle.no_grad():
        assert _rel(FC._run("conv", g, x, weight).numpy(), y.numpy()) < 1e-6
        assert _rel(FC._run("data", g, gy, weight).numpy(), ref_dx.numpy()) < 1e-6
        assert _rel(FC._run("filter", g, x, gy).numpy(), ref_dw.numpy()) < 1e-6


def test_onednn_program_does_not_reuse_a_previous_filter():
    # Inference-mode oneDNN programs cache the reordered filter by shape; ours must not.
    g = FC.ConvGeometry((1, 1), (1, 1), (1, 1), (8, 8), (3, 3))
    x = _rand([2, 3, 8, 8], 0, "float32")
    for seed in (1, 2, 3):
        weight = _rand([4, 3, 3, 3], seed, "float32")
        expected = F.conv2d(x, weight, padding=1)
        assert _rel(FC._run("conv", g, x, weight).numpy(), expected.numpy()) < 1e-6


@pytest.mark.parametrize("geometry", [GEOMETRIES[0], GEOMETRIES[2], GEOMETRIES[3]], ids=["lenet5x5s2", "dilated", "1x1s2"])
def test_double_grad_matches_finite_differences(geometry):
    n, ci, co, h, w, k, s, p, d = geometry
    weight = _rand([co, ci, k, k], 11, "float64")
    # The protocol of test_functional: w sits before the op; here the op is the fast convolution
    # with a fixed kernel, so the double gradient runs through data(...) and filter(...) nodes.
    op = lambda z: FC.conv2d(z, weight, None, (s, s), (p, p), (d, d)) ** 2  # noqa: E731
    assert_double_grad_matches_fd(op, [1, ci, h, w], coords=5)


def test_double_grad_in_the_weight_matches_finite_differences():
    # The weight as the differentiated variable: d/dw of sum(grad_x(...)^2), against float64 FD.
    x = _rand([2, 2, 6, 7], 5, "float64")

    def objective(w_np, need):
        weight = paddle.to_tensor(w_np, dtype="float64")
        weight.stop_gradient = not need
        xx = x.clone()
        xx.stop_gradient = False
        y = FC.conv2d(xx, weight, None, (2, 2), (1, 1), (1, 1))
        (gx,) = paddle.grad((paddle.sin(y)).sum(), [xx], create_graph=need)
        value = (gx * gx).sum()
        return (float(value), paddle.grad(value, weight)[0].numpy()) if need else float(value)

    w0 = np.random.default_rng(2).standard_normal((3, 2, 3, 3))
    _, h = objective(w0, True)
    eps = 1e-6
    for index in [(0, 0, 0, 0), (1, 1, 2, 1), (2, 0, 1, 2)]:
        plus, minus = w0.copy(), w0.copy()
        plus[index] += eps
        minus[index] -= eps
        fd = (objective(plus, False) - objective(minus, False)) / (2 * eps)
        assert abs(h[index] - fd) <= 1e-6 * max(abs(fd), 1.0), (index, h[index], fd)


# ------------------------------------------------------------------ every benchmark model

MODELS = {
    "dlg_lenet": lambda: pnn.DLGLeNet(),
    "convnet": lambda: pnn.ConvNet(),
    "resnet18_cifar_w16": lambda: pnn.resnet18(width=16),
    "resnet18_imagenet_stem_w16": lambda: pnn.resnet18(stem="imagenet", width=16),
    # The benchmark's full-width ResNet-18s: same layers, 16x the arithmetic (slow in float64).
    "resnet18_cifar": lambda: pnn.resnet18(),
    "resnet18_imagenet_stem": lambda: pnn.resnet18(stem="imagenet"),
}
_SLOW_MODELS = {"resnet18_cifar", "resnet18_imagenet_stem"}


def _attack_objective(model, x_np, labels, target):
    """D = ||grad(CE) - target||^2 and dD/dx, as the engine computes them."""
    dtype = "float64" if target[0].dtype == paddle.float64 else "float32"
    x = paddle.to_tensor(x_np, dtype=dtype)
    x.stop_gradient = False
    params = [p for p in model.parameters() if not p.stop_gradient]
    loss = PF.cross_entropy(model(x), labels)
    grads = parameter_gradients(loss, params, [x])
    objective = paddle.add_n([((g - t) * (g - t)).sum() for g, t in zip(grads, target)])
    return float(objective), paddle.grad(objective, x)[0].numpy()


# float32 tolerance of the oneDNN path against float64 on dD/dx. The full-width ResNet-18 has
# pre-activations within float32 rounding of a ReLU kink (|y| ~ 5e-6 with a rounding error of
# 2-5e-6 at layer1.0.conv1 for this batch): any float32 kernel with a different summation order
# may flip one such unit, which moves dD/dx by about 4e-4 relative. Paddle's own float32 kernels
# happen to round the other way here (6e-6); the float64 check above shows the path is exact.
_FLOAT32_TOL = {"resnet18_cifar": 1e-3, "resnet18_imagenet_stem": 1e-3}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_MODELS else n for n in sorted(MODELS)]
)
def test_every_benchmark_model_fast_path_equals_reference(name):
    paddle.seed(0)
    model = pnn.make_twice_differentiable(MODELS[name]())
    model.eval()
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((2, 3, 32, 32))
    labels = paddle.to_tensor([1, 7])
    params = [p for p in model.parameters() if not p.stop_gradient]
    target32 = [paddle.to_tensor(rng.standard_normal(p.shape) * 0.01, dtype="float32") for p in params]
    model64 = pnn.make_twice_differentiable(MODELS[name]())
    model64.set_state_dict(model.state_dict())
    model64.to(dtype="float64")
    model64.eval()
    target64 = [t.astype("float64") for t in target32]
    with FC.conv_backend("reference"):
        ref_d, ref_dx = _attack_objective(model64, x_np, labels, target64)
    # 1. Exactness of the PyLayer graph: float64 (eager kernels inside the same PyLayers).
    before = FC.fast_path_calls()["onednn"]
    with FC.conv_backend("onednn"):
        fast64_d, fast64_dx = _attack_objective(model64, x_np, labels, target64)
    assert FC.fast_path_calls()["onednn"] > before  # the fast path really ran
    assert abs(fast64_d - ref_d) <= 1e-10 * abs(ref_d)
    assert _rel(fast64_dx, ref_dx) <= 1e-10
    # 2. float32 through the oneDNN programs against float64.
    with FC.conv_backend("onednn"):
        fast_d, fast_dx = _attack_objective(model, x_np, labels, target32)
    assert abs(fast_d - ref_d) <= 1e-4 * abs(ref_d)
    assert _rel(fast_dx, ref_dx) <= _FLOAT32_TOL.get(name, 1e-4)


# --------------------------------------------------------------------------- the switch


def test_backend_switch_api_and_errors():
    assert FC.get_conv_backend() == "onednn"
    with FC.conv_backend("reference"):
        assert pnn.get_conv_backend() == "reference"
    assert FC.get_conv_backend() == "onednn"
    with pytest.raises(ConfigError, match="unknown convolution backend"):
        pnn.set_conv_backend("cudnn")
    assert FC.get_conv_backend() == "onednn"


def test_reference_backend_runs_paddles_conv():
    layer = pnn.make_twice_differentiable(paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3, padding=1)))
    x = paddle.randn([2, 3, 8, 8])
    calls = FC.fast_path_calls()
    with FC.conv_backend("reference"):
        expected = F.conv2d(x, layer[0].weight, layer[0].bias, padding=1)
        np.testing.assert_array_equal(layer(x).numpy(), expected.numpy())
    after = FC.fast_path_calls()
    assert after["onednn"] == calls["onednn"] and after["reference"] == calls["reference"] + 1


def test_auto_keeps_small_convolutions_on_the_reference_path_without_measuring():
    layer = pnn.make_twice_differentiable(paddle.nn.Sequential(paddle.nn.Conv2D(3, 12, 5, stride=2, padding=2)))
    with FC.conv_backend("auto"):
        layer(paddle.randn([1, 3, 32, 32]))
    decisions = [v for k, v in FC.auto_decisions().items() if k[1] == (1, 3, 32, 32) and k[2] == (12, 3, 5, 5)]
    assert decisions == [False]


def test_unsupported_convolutions_fall_back_to_paddle():
    grouped = pnn.make_twice_differentiable(paddle.nn.Sequential(paddle.nn.Conv2D(4, 4, 3, groups=2, padding="SAME")))
    x = paddle.randn([1, 4, 6, 6])
    calls = FC.fast_path_calls()["onednn"]
    np.testing.assert_allclose(grouped(x).numpy(), F.conv2d(x, grouped[0].weight, grouped[0].bias, padding="SAME", groups=2).numpy())
    assert FC.fast_path_calls()["onednn"] == calls


def test_environment_variable_selects_the_backend(monkeypatch):
    monkeypatch.setattr(FC, "_backend", None)  # as at import: read the variable on first use
    monkeypatch.setenv("PRIVBOX_CONV_BACKEND", "Reference")
    assert pnn.get_conv_backend() == "reference"
    monkeypatch.setattr(FC, "_backend", None)
    monkeypatch.setenv("PRIVBOX_CONV_BACKEND", "bogus")
    with pytest.raises(ConfigError, match="PRIVBOX_CONV_BACKEND"):
        pnn.get_conv_backend()
    monkeypatch.setattr(FC, "_backend", "onednn")


def test_performance_page_python_blocks_run_as_written():
    from tutorials import blocks, page, run_blocks

    for language in ("en", "zh"):
        printed = "".join(out for _, out in run_blocks(blocks(page("performance.md", language)), {}, "performance.md", kinds=("python",)))
        assert "reference" in printed and "1 thread(s) (requested)" in printed
