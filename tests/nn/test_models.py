"""privbox.nn.models: the reference victims build, have the documented shapes, and are twice
differentiable out of the box."""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from privbox.nn import (
    MODEL_REGISTRY,
    ConvNet,
    DLGLeNet,
    ResNet,
    build_model,
    check_double_grad,
    resnet18,
    resnet50,
    vgg11,
)
from privbox.nn import layers as PL

paddle.set_device("cpu")

_OFFENDERS = (nn.MaxPool2D, nn.Flatten, nn.Dropout, nn.Upsample)


def _assert_no_offending_layers(model):
    for name, layer in model.named_sublayers():
        assert not isinstance(layer, _OFFENDERS), name
        if isinstance(layer, nn.BatchNorm2D):
            assert isinstance(layer, PL.BatchNorm2D), name


def _out(model, shape):
    with paddle.no_grad():
        return model(paddle.randn(shape))


# ----------------------------------------------------------------------------------- DLG LeNet


@pytest.mark.parametrize("image_size,channels,fc_in", [(32, 3, 768), (28, 1, 588), (28, 3, 588)])
def test_dlg_lenet_shapes(image_size, channels, fc_in):
    model = DLGLeNet(num_classes=10, in_channels=channels, image_size=image_size)
    assert model.fc.weight.shape == [fc_in, 10]  # Paddle Linear weight is [in, out]
    assert _out(model, [2, channels, image_size, image_size]).shape == [2, 10]


def test_dlg_lenet_uniform_init_is_seeded():
    model = DLGLeNet(init_seed=0)
    values = np.concatenate([p.numpy().ravel() for p in model.parameters()])
    assert values.min() >= -0.5 and values.max() <= 0.5
    assert values.min() < -0.45 and values.max() > 0.45  # spans the interval
    assert abs(values.mean()) < 0.02 and abs(values.std() - 1 / np.sqrt(12)) < 0.01  # U(-.5, .5)
    again = np.concatenate([p.numpy().ravel() for p in DLGLeNet(init_seed=0).parameters()])
    other = np.concatenate([p.numpy().ravel() for p in DLGLeNet(init_seed=1).parameters()])
    np.testing.assert_array_equal(values, again)
    assert not np.allclose(values, other)


def test_dlg_lenet_architecture():
    model = DLGLeNet()
    convs = [layer for layer in model.body if isinstance(layer, nn.Conv2D)]
    assert [c._stride for c in convs] == [[2, 2], [2, 2], [1, 1]]
    assert all(c.weight.shape[0] == 12 and c.weight.shape[2:] == [5, 5] for c in convs)
    assert sum(isinstance(layer, nn.Sigmoid) for layer in model.body) == 3


# ---------------------------------------------------------------------------- ConvNet, ResNet


def test_convnet_forward_and_layers():
    model = ConvNet(num_classes=7, width=8)
    assert _out(model, [2, 3, 32, 32]).shape == [2, 7]
    _assert_no_offending_layers(model)


def test_resnet18_cifar_stem():
    paddle.seed(0)
    model = resnet18(num_classes=10)
    assert isinstance(model, ResNet)
    assert isinstance(model.maxpool, nn.Identity)
    assert model.conv1.weight.shape == [64, 3, 3, 3] and model.conv1._stride == [1, 1]
    model.eval()
    assert _out(model, [2, 3, 32, 32]).shape == [2, 10]
    _assert_no_offending_layers(model)


@pytest.mark.parametrize("kernel,pooled", [(3, 16), (19, 8)])
def test_resnet18_imagenet_stem_maxpool_kernel(kernel, pooled):
    # conv1 (7x7, stride 2, pad 3): 64 -> 32; max-pool (k, stride 2, pad 1): (32 + 2 - k) // 2 + 1.
    paddle.seed(0)
    model = resnet18(num_classes=5, stem="imagenet", maxpool_kernel=kernel)
    assert isinstance(model.maxpool, PL.MaxPool2D) and model.maxpool.kernel_size == kernel
    assert model.conv1.weight.shape == [64, 3, 7, 7]
    shapes = []
    handle = model.maxpool.register_forward_post_hook(lambda layer, inputs, output: shapes.append(output.shape))
    model.eval()
    assert _out(model, [1, 3, 64, 64]).shape == [1, 5]
    handle.remove()
    assert shapes == [[1, 64, pooled, pooled]]


def test_resnet18_imagenet_stem_at_32():
    model = resnet18(num_classes=10, stem="imagenet")
    model.eval()
    assert _out(model, [1, 3, 32, 32]).shape == [1, 10]
    # The 19x19 "RA" pool does not fit the 16x16 feature map of a 32x32 input.
    big = resnet18(num_classes=10, stem="imagenet", maxpool_kernel=19)
    with pytest.raises(ValueError, match="does not fit"):
        _out(big, [1, 3, 32, 32])


def test_resnet_rejects_unknown_stem():
    with pytest.raises(ValueError, match="stem"):
        resnet18(stem="tiny")


def test_resnet50_builds_and_runs():
    paddle.seed(0)
    model = resnet50(num_classes=10)
    assert model.fc.weight.shape == [2048, 10]
    model.eval()
    assert _out(model, [1, 3, 32, 32]).shape == [1, 10]
    _assert_no_offending_layers(model)


@pytest.mark.slow
def test_resnet50_double_grad():
    paddle.seed(0)
    model = resnet50(num_classes=10)
    model.eval()
    check_double_grad(model, [1, 3, 32, 32])


def test_vgg11_builds_converted():
    paddle.seed(0)
    model = vgg11(num_classes=10)
    _assert_no_offending_layers(model)
    assert model.classifier[-1].weight.shape == [4096, 10]
    assert any(isinstance(layer, PL.Dropout) for _, layer in model.named_sublayers())


@pytest.mark.slow
def test_vgg11_bn_double_grad():
    paddle.seed(0)
    model = vgg11(num_classes=10, batch_norm=True)
    model.eval()
    check_double_grad(model, [1, 3, 32, 32])


# ------------------------------------------------------------------------------- build_model


def test_build_model_by_name():
    assert set(MODEL_REGISTRY) == {"dlg_lenet", "convnet", "resnet18", "resnet50", "vgg11"}
    assert isinstance(build_model("dlg_lenet", num_classes=4), DLGLeNet)
    assert build_model("dlg_lenet", num_classes=4).fc.weight.shape == [768, 4]
    assert build_model("dlg_lenet", num_classes=4, image_size=28, in_channels=1).fc.weight.shape == [588, 4]
    assert isinstance(build_model("convnet", width=4), ConvNet)
    model = build_model("resnet18", num_classes=3, stem="imagenet", maxpool_kernel=19)
    assert isinstance(model, ResNet) and model.maxpool.kernel_size == 19 and model.fc.weight.shape == [512, 3]


def test_build_model_unknown_name():
    with pytest.raises(ValueError, match="unknown model 'lenet5'") as info:
        build_model("lenet5")
    for name in MODEL_REGISTRY:
        assert name in str(info.value)


def test_build_model_bad_kwargs():
    from privbox.core.errors import ModelMismatchError

    with pytest.raises(ModelMismatchError, match=r"does not take \['depth'\]"):
        build_model("dlg_lenet", depth=3)


# ------------------------------------------------------------------------------ double grad


FAST_MODELS = {
    "dlg_lenet-32": (lambda: DLGLeNet(), [1, 3, 32, 32], "train"),
    "dlg_lenet-28": (lambda: DLGLeNet(in_channels=1, image_size=28), [2, 1, 28, 28], "train"),
    "convnet-eval": (lambda: ConvNet(width=8), [2, 3, 32, 32], "eval"),
    "convnet-train": (lambda: ConvNet(width=8), [4, 3, 16, 16], "train"),
    "resnet18-cifar-eval": (lambda: resnet18(), [2, 3, 32, 32], "eval"),
    "resnet18-imagenet-eval": (lambda: resnet18(stem="imagenet"), [1, 3, 32, 32], "eval"),
}


@pytest.mark.parametrize("name", sorted(FAST_MODELS))
def test_reference_models_are_twice_differentiable(name):
    ctor, shape, mode = FAST_MODELS[name]
    paddle.seed(0)
    model = ctor()
    getattr(model, mode)()
    report = check_double_grad(model, shape)
    assert np.isfinite(report.input_grad_norm) and report.input_grad_norm > 0
