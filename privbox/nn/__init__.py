"""Twice-differentiable building blocks for gradient inversion in Paddle.

See :mod:`privbox.nn.functional` for the composed ops, :mod:`privbox.nn.layers` for the layers,
:func:`make_twice_differentiable` / :func:`check_double_grad` for converting and probing any model,
and :mod:`privbox.nn.models` for the reference victims.
"""

from . import fast_conv, functional
from .convert import (
    DoubleGradError,
    DoubleGradReport,
    check_double_grad,
    make_twice_differentiable,
    reshape_flatten,
    trainable_parameters,
)
from .fast_conv import conv_backend, get_conv_backend, set_conv_backend
from .models import MODEL_REGISTRY, MODELS, ConvNet, DLGLeNet, ResNet, build_model, resnet18, resnet50, vgg11

__all__ = [
    "functional",
    "fast_conv",
    "conv_backend",
    "get_conv_backend",
    "set_conv_backend",
    "DoubleGradError",
    "DoubleGradReport",
    "check_double_grad",
    "make_twice_differentiable",
    "reshape_flatten",
    "trainable_parameters",
    "MODEL_REGISTRY",
    "MODELS",
    "ConvNet",
    "DLGLeNet",
    "ResNet",
    "build_model",
    "resnet18",
    "resnet50",
    "vgg11",
]
