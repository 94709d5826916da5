"""privbox.nn.convert: make_twice_differentiable / check_double_grad on stock paddle.vision models
and on a model holding every layer type the converter knows."""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import pytest
from paddle.vision.models import LeNet, resnet18, vgg11

from privbox.nn import DoubleGradError, DoubleGradReport, check_double_grad, make_twice_differentiable, reshape_flatten
from privbox.nn import layers as PL

paddle.set_device("cpu")


def _snapshot(model):
    return {name: value.numpy().copy() for name, value in model.state_dict().items()}


def _param_names(model):
    return [name for name, _ in model.named_parameters()]


def _forward(model, x):
    with paddle.no_grad():
        return model(x).numpy()


def _assert_reports_failure(model, shape):
    """check_double_grad raises DoubleGradError naming the op and an existing layer."""
    with pytest.raises(DoubleGradError) as info:
        check_double_grad(model, shape)
    err = info.value
    assert err.op, "the failing op must be named"
    assert err.op in str(err)
    assert err.layer, "the failing layer must be named"
    assert err.layer in str(err)
    layer_name = err.layer.split(" (")[0]
    assert layer_name in dict(model.named_sublayers()), err.layer
    assert "make_twice_differentiable" in str(err)  # the message says how to fix it
    return err


def _assert_conversion(model, shape, compare_outputs=True):
    """Convert ``model`` and check names, values, outputs, the probe and idempotence."""
    names, state = _param_names(model), _snapshot(model)
    paddle.seed(1)
    x = paddle.randn(shape)
    before = _forward(model, x) if compare_outputs else None

    converted = make_twice_differentiable(model)
    assert converted is model
    assert _param_names(model) == names
    after_state = _snapshot(model)
    assert list(after_state) == list(state)
    for key, value in state.items():
        np.testing.assert_array_equal(after_state[key], value, err_msg=key)
    if compare_outputs:
        np.testing.assert_allclose(_forward(model, x), before, atol=1e-5, rtol=1e-5)

    report = check_double_grad(model, shape)
    assert isinstance(report, DoubleGradReport)
    assert np.isfinite(report.input_grad_norm) and report.input_grad_norm > 0
    assert report.num_parameters == len([p for p in model.parameters() if not p.stop_gradient])

    # Idempotent: a second conversion changes nothing (no double wrapping, same layers, outputs).
    cls, layer_types = type(model), [type(layer) for _, layer in model.named_sublayers()]
    assert make_twice_differentiable(model) is model
    assert type(model) is cls
    assert [type(layer) for _, layer in model.named_sublayers()] == layer_types
    assert _param_names(model) == names
    if compare_outputs:
        np.testing.assert_allclose(_forward(model, x), before, atol=1e-5, rtol=1e-5)
    return model


def _no_stock_offenders(model):
    offenders = (nn.MaxPool2D, nn.Flatten, nn.Dropout, nn.Upsample)
    for name, layer in model.named_sublayers():
        assert not isinstance(layer, offenders), name
        if isinstance(layer, nn.BatchNorm2D):
            assert isinstance(layer, PL.BatchNorm2D), name


# ------------------------------------------------------------------------- stock paddle.vision


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_resnet18_conversion(mode):
    paddle.seed(0)
    model = resnet18(num_classes=10)
    getattr(model, mode)()
    err = _assert_reports_failure(model, [2, 3, 32, 32])
    # eval: BN in eval mode fails first; train: the stem max-pool.
    assert ("bn" in err.layer) if mode == "eval" else ("maxpool" in err.layer)
    # In train mode every forward moves BN running statistics, so compare outputs in eval only.
    _assert_conversion(model, [2, 3, 32, 32], compare_outputs=(mode == "eval"))
    _no_stock_offenders(model)
    assert model.training == (mode == "train")


def test_resnet18_train_outputs_unchanged():
    # Train-mode BN normalises with batch statistics, identically before and after conversion.
    paddle.seed(0)
    model = resnet18(num_classes=10)
    x = paddle.randn([2, 3, 32, 32])
    before = _forward(model, x)
    make_twice_differentiable(model)
    np.testing.assert_allclose(_forward(model, x), before, atol=1e-5, rtol=1e-5)


def test_lenet_conversion():
    paddle.seed(0)
    model = LeNet()
    err = _assert_reports_failure(model, [1, 1, 28, 28])
    assert "MaxPool2D" in err.layer and "pool" in err.op
    _assert_conversion(model, [1, 1, 28, 28])
    _no_stock_offenders(model)


def test_vgg11_conversion():
    # About 130M parameters; the double-grad probe after conversion takes ~5 s on one thread.
    paddle.seed(0)
    model = vgg11(num_classes=10)
    model.eval()
    err = _assert_reports_failure(model, [1, 3, 32, 32])
    assert "MaxPool2D" in err.layer
    _assert_conversion(model, [1, 3, 32, 32])
    _no_stock_offenders(model)


def test_converted_model_gradients_are_keyed_like_the_original():
    paddle.seed(0)
    original = LeNet()
    paddle.seed(0)
    converted = make_twice_differentiable(LeNet())
    x = paddle.randn([2, 1, 28, 28])
    grads = []
    for model in (original, converted):
        loss = model(x).square().mean()
        names = [n for n, p in model.named_parameters() if not p.stop_gradient]
        values = paddle.grad(loss, [p for p in model.parameters() if not p.stop_gradient])
        grads.append(dict(zip(names, [v.numpy() for v in values])))
    assert list(grads[0]) == list(grads[1])
    for name in grads[0]:
        np.testing.assert_allclose(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, err_msg=name)


# ------------------------------------------------------------------ every supported layer type


class Zoo(nn.Layer):
    """One of every layer the converter swaps or replaces, plus a functional paddle.flatten."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2D(8)
        self.gelu = nn.GELU()
        self.gelu_tanh = nn.GELU(approximate="tanh")
        self.pool = nn.MaxPool2D(3, 2, 1)
        self.gn = nn.GroupNorm(2, 8)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.up_bilinear = nn.Upsample(size=[12, 12], mode="bilinear")
        self.deconv = nn.Conv2DTranspose(8, 4, 4, stride=2, padding=1)
        self.ln = nn.LayerNorm([24, 24])
        self.flat = nn.Flatten()
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(24 * 24, 6)
        self.bn1d = nn.BatchNorm1D(6)
        self.softmax = nn.Softmax(axis=-1)
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        x = self.pool(self.gelu(self.bn(self.conv(x))))  # 8 x 5 x 5
        x = self.up_bilinear(self.up(self.gn(self.gelu_tanh(x))))  # 8 x 12 x 12
        x = self.ln(self.deconv(x))  # 4 x 24 x 24
        x = paddle.flatten(x[:, :1], 1)  # 576 (a functional flatten inside forward)
        x = self.drop(self.flat(x.reshape([-1, 4, 12, 12])))
        return self.head(self.softmax(self.bn1d(self.fc(x))))


def _randomise_bn(model):
    rng = np.random.default_rng(0)
    for _, layer in model.named_sublayers():
        if isinstance(layer, (nn.BatchNorm1D, nn.BatchNorm2D)):
            n = layer._mean.shape[0]
            layer._mean.set_value(rng.standard_normal(n).astype("float32"))
            layer._variance.set_value(rng.uniform(0.5, 2.0, n).astype("float32"))


def test_every_supported_layer_is_converted():
    paddle.seed(0)
    model = Zoo()
    _randomise_bn(model)
    model.eval()
    _assert_reports_failure(model, [2, 3, 10, 10])
    _assert_conversion(model, [2, 3, 10, 10])
    expected = {
        "bn": PL.BatchNorm2D, "bn1d": PL.BatchNorm1D, "gelu": PL.GELU, "gelu_tanh": PL.GELU,
        "pool": PL.MaxPool2D, "gn": PL.GroupNorm, "up": PL.Upsample, "up_bilinear": PL.Upsample,
        "deconv": PL.Conv2DTranspose, "ln": PL.LayerNorm, "flat": PL.Flatten, "drop": PL.Dropout,
        "softmax": PL.Softmax,
    }
    for attr, cls in expected.items():
        assert type(getattr(model, attr)) is cls, attr
    assert not model.drop.training  # the replacement inherits the mode


def test_every_supported_layer_train_mode_double_grad():
    paddle.seed(0)
    model = make_twice_differentiable(Zoo())
    model.train()
    check_double_grad(model, [4, 3, 10, 10])


def test_reshape_flatten_is_restored():
    original = paddle.flatten, paddle.Tensor.flatten
    with pytest.raises(RuntimeError):
        with reshape_flatten():
            assert paddle.flatten is not original[0]
            x = paddle.randn([2, 3, 4])
            assert paddle.flatten(x).shape == [24]
            assert paddle.flatten(x, 1).shape == [2, 12]
            assert paddle.flatten(x, 0, 1).shape == [6, 4]
            assert x.flatten(1).shape == [2, 12]
            raise RuntimeError("boom")
    assert (paddle.flatten, paddle.Tensor.flatten) == original


# --------------------------------------------------------------------------- refusals, errors


def test_rejects_non_layers():
    with pytest.raises(TypeError):
        make_twice_differentiable(lambda x: x)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        lambda: nn.Flatten(1, 2),
        lambda: nn.Conv2DTranspose(4, 4, 3, groups=2),
        lambda: nn.Conv2DTranspose(4, 4, 3, dilation=2),
        lambda: nn.BatchNorm2D(4, data_format="NHWC"),
        lambda: nn.MaxPool2D(2, return_mask=True),
        lambda: nn.Dropout(0.5, mode="downscale_in_infer"),
        lambda: nn.Dropout(0.5, axis=1),
    ],
    ids=[
        "upsample-align-corners", "flatten-stop-axis", "deconv-groups", "deconv-dilation",
        "bn-nhwc", "maxpool-mask", "dropout-downscale", "dropout-axis",
    ],
)
def test_unsupported_configurations_are_refused_and_model_left_untouched(bad):
    model = nn.Sequential(nn.Conv2D(4, 4, 3), nn.BatchNorm2D(4), nn.MaxPool2D(2), bad())
    types = [type(layer) for _, layer in model.named_sublayers()]
    with pytest.raises(ValueError):
        make_twice_differentiable(model)
    assert [type(layer) for _, layer in model.named_sublayers()] == types
    assert type(model) is nn.Sequential


def test_bare_parameter_free_layer_is_returned_replaced():
    pool = make_twice_differentiable(nn.MaxPool2D(2))
    assert isinstance(pool, PL.MaxPool2D)
    bn = nn.BatchNorm2D(3)
    assert make_twice_differentiable(bn) is bn and type(bn) is PL.BatchNorm2D


def test_check_double_grad_needs_trainable_parameters():
    model = nn.Sequential(nn.ReLU())
    with pytest.raises(ValueError, match="trainable"):
        check_double_grad(model, [1, 3])


def test_check_double_grad_functional_failure_names_no_layer():
    class FunctionalPool(nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2D(2, 2, 1)  # a parameter before the pool: its backward is differentiated
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            return self.fc(paddle.nn.functional.max_pool2d(self.conv(x), 2).reshape([x.shape[0], -1]))

    with pytest.raises(DoubleGradError) as info:
        check_double_grad(FunctionalPool(), [1, 2, 4, 4])
    assert info.value.layer is None
    assert "functional call" in str(info.value)
    assert info.value.op


def test_max_pool_failure_is_reported_as_double_grad_error():
    # Paddle raises ValueError (not RuntimeError) for max-pool's missing double grad; the probe
    # must still report it as a DoubleGradError naming the layer.
    model = nn.Sequential(nn.Conv2D(1, 2, 3, padding=1), nn.MaxPool2D(2), PL.Flatten(), nn.Linear(8, 3))
    err = _assert_reports_failure(model, [1, 1, 4, 4])
    assert err.layer == "1 (MaxPool2D)" and "pool" in err.op
    check_double_grad(make_twice_differentiable(model), [1, 1, 4, 4])


def test_forward_errors_are_not_disguised_as_double_grad_errors():
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(Exception) as info:
        check_double_grad(model, [1, 5])  # wrong input width
    assert not isinstance(info.value, DoubleGradError)
