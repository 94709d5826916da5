"""Reference victim models, all twice differentiable out of the box.

- ``DLGLeNet``: the victim of DLG (Zhu et al., NeurIPS 2019): three 5x5 convolutions with 12
  channels, padding 2, strides 2/2/1, sigmoid activations, one Linear layer, weights drawn from
  U(-0.5, 0.5).
- ``ConvNet``: a small conv-BN-ReLU network of the kind used by Inverting Gradients
  (Geiping et al., NeurIPS 2020) for CIFAR experiments.
- ``resnet18`` / ``resnet50`` with a CIFAR stem (3x3 conv, stride 1, no max-pool) or an ImageNet
  stem (7x7 conv stride 2 + max-pool, whose kernel is configurable for the Label-based-Defense
  "RA" scheme), built from ``paddle.vision`` residual blocks.
- ``vgg11``: ``paddle.vision``'s VGG-11, converted.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import paddle
import paddle.nn as nn
from paddle.vision.models import vgg11 as _paddle_vgg11
from paddle.vision.models.resnet import BasicBlock, BottleneckBlock

from . import functional as PF
from .convert import make_twice_differentiable
from .layers import BatchNorm2D, MaxPool2D
from ..core.registry import Registry
from ..core.registry_view import RegistryView


class DLGLeNet(nn.Layer):
    """The LeNet variant attacked in DLG (Zhu et al., NeurIPS 2019).

    Args:
        num_classes: outputs of the final Linear layer.
        in_channels: image channels.
        image_size: square input side (32 gives a 768-wide Linear, 28 gives 588).
        init_seed: when not None, re-draw every convolution and Linear weight and bias from
            U(-0.5, 0.5) with this seed, the initialisation the DLG paper uses (which makes the
            attack well conditioned); BatchNorm scales stay 1 and shifts 0.
        batch_norm: put a BatchNorm after each convolution (not in the DLG paper): a cheap victim
            with BN statistics for the attacks that match them (GradInversion, E2EGI, NVIDIA FL).
        maxpool_kernel: when given, a stem max-pool (stride 1, size-preserving padding) after the
            first activation; the Label-based-Defense ``RA`` scheme sets it to 19 (RA-i > 0).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, init_seed: Optional[int] = 0,
                 batch_norm: bool = False, maxpool_kernel: Optional[int] = None) -> None:
        super().__init__()
        layers: list[nn.Layer] = []
        for index, (cin, stride) in enumerate(((in_channels, 2), (12, 2), (12, 1))):
            layers.append(nn.Conv2D(cin, 12, 5, stride=stride, padding=2))
            if batch_norm:
                layers.append(BatchNorm2D(12))
            layers.append(nn.Sigmoid())
            if maxpool_kernel is not None and index == 0:
                layers.append(MaxPool2D(int(maxpool_kernel), stride=1, padding=int(maxpool_kernel) // 2))
        self.body = nn.Sequential(*layers)
        side = math.ceil(math.ceil(image_size / 2) / 2)
        self.fc = nn.Linear(12 * side * side, num_classes)
        if init_seed is not None:
            uniform_init_(self, -0.5, 0.5, seed=init_seed, skip=(BatchNorm2D,))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.fc(PF.flatten(self.body(x)))


def uniform_init_(model: nn.Layer, low: float, high: float, seed: int = 0, skip: tuple = ()) -> None:
    """Re-draw every trainable parameter of ``model`` from U(low, high), seeded (in place),
    except those of sublayers whose type is in ``skip``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    skipped = {id(p) for layer in model.sublayers(include_self=True) if isinstance(layer, skip) for p in layer.parameters()}
    for _, param in model.named_parameters():
        if param.stop_gradient or id(param) in skipped:
            continue
        param.set_value(rng.uniform(low, high, size=param.shape).astype("float32"))


class ConvNet(nn.Layer):
    """A small conv-BN-ReLU network (width ``w``): 3 stages with max-pool, global pooling, Linear."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Layer]:
            return [nn.Conv2D(cin, cout, 3, padding=1), BatchNorm2D(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(in_channels, width),
            *block(width, 2 * width),
            MaxPool2D(2),
            *block(2 * width, 4 * width),
            MaxPool2D(2),
            *block(4 * width, 4 * width),
            nn.AdaptiveAvgPool2D(1),
        )
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.fc(PF.flatten(self.features(x)))


class ResNet(nn.Layer):
    """ResNet built from ``paddle.vision`` blocks with a CIFAR or ImageNet stem.

    Args:
        block: ``BasicBlock`` (ResNet-18/34) or ``BottleneckBlock`` (ResNet-50+).
        layers: blocks per stage.
        num_classes: outputs.
        stem: ``"cifar"`` (3x3 conv, stride 1, no pool) or ``"imagenet"`` (7x7 stride 2 + max-pool).
        maxpool_kernel: kernel of the ImageNet stem's max-pool (3 standard; 19 is the
            Label-based-Defense "RA" scheme, stride 2 and padding 1 kept).
        in_channels: image channels.
        width: channels of the first stage (64 standard; smaller values give fast CPU test models).
    """

    def __init__(
        self,
        block: type,
        layers: list[int],
        num_classes: int = 10,
        stem: str = "cifar",
        maxpool_kernel: int = 3,
        in_channels: int = 3,
        width: int = 64,
    ) -> None:
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        self.inplanes = width
        if stem == "cifar":
            self.conv1 = nn.Conv2D(in_channels, width, 3, stride=1, padding=1, bias_attr=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2D(in_channels, width, 7, stride=2, padding=3, bias_attr=False)
            self.maxpool = MaxPool2D(maxpool_kernel, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2D(width)
        self.relu = nn.ReLU()
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(8 * width * block.expansion, num_classes)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2D(self.inplanes, planes * block.expansion, 1, stride=stride, bias_attr=False),
                nn.BatchNorm2D(planes * block.expansion),
            )
        stage = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        stage += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(PF.flatten(self.avgpool(x)))


def resnet18(num_classes: int = 10, stem: str = "cifar", maxpool_kernel: int = 3, in_channels: int = 3, width: int = 64) -> ResNet:
    """ResNet-18 (He et al., CVPR 2016), twice differentiable in train and eval mode."""
    return make_twice_differentiable(ResNet(BasicBlock, [2, 2, 2, 2], num_classes, stem, maxpool_kernel, in_channels, width))


def resnet50(num_classes: int = 10, stem: str = "cifar", maxpool_kernel: int = 3, in_channels: int = 3, width: int = 64) -> ResNet:
    """ResNet-50 (He et al., CVPR 2016), twice differentiable in train and eval mode."""
    return make_twice_differentiable(ResNet(BottleneckBlock, [3, 4, 6, 3], num_classes, stem, maxpool_kernel, in_channels, width))


def vgg11(num_classes: int = 10, batch_norm: bool = False) -> nn.Layer:
    """``paddle.vision`` VGG-11 (Simonyan & Zisserman, 2015), converted to be twice differentiable.

    Note: about 130M parameters (the 4096-wide classifier); one attack iteration takes seconds on CPU.
    """
    return make_twice_differentiable(_paddle_vgg11(num_classes=num_classes, batch_norm=batch_norm))


MODELS: Registry[Callable[..., nn.Layer]] = Registry("model")
MODELS.add("dlg_lenet", DLGLeNet, description="the DLG paper's LeNet with sigmoid activations (Zhu et al. 2019)")
MODELS.add("convnet", ConvNet, description="inversefed's ConvNet with BatchNorm, width-scalable (Geiping et al. 2020)")
MODELS.add("resnet18", resnet18, description="ResNet-18 (CIFAR or ImageNet stem, configurable max-pool kernel)")
MODELS.add("resnet50", resnet50, description="ResNet-50 (CIFAR or ImageNet stem)")
MODELS.add("vgg11", vgg11, description="Paddle's VGG-11, optionally with BatchNorm (about 130M parameters)")

#: ``{name: builder}``, a live read-only view of :data:`MODELS`.
MODEL_REGISTRY = RegistryView(MODELS)


def build_model(name: str, num_classes: int = 10, **kwargs) -> nn.Layer:
    """Build a reference model by name (see ``MODEL_REGISTRY``), seeded by ``paddle.seed`` beforehand."""
    from ..core.model_shapes import build_checked

    return build_checked(MODELS.get(name), dict(kwargs, num_classes=num_classes), where=f"model {name!r} arguments")
