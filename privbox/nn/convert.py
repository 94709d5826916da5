"""Make any ``paddle.nn.Layer`` twice differentiable, and probe that it is.

``make_twice_differentiable(model)`` swaps layers whose backward has no gradient in Paddle 3.x
(see ``shared/reference/PADDLE.md`` §1-3) for the versions in :mod:`privbox.nn.layers`, in place,
keeping parameter names, and rebinds ``paddle.flatten`` during the model's forward (stock
``paddle.vision`` models call it inside ``forward``). ``check_double_grad(model, input_shape)`` runs
one gradient-matching step and, when it fails, names the Paddle op and the layer responsible.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import paddle
import paddle.nn as nn

from . import functional as PF
from . import layers as PL

# Paddle classes swapped in place for a subclass (keeps parameters and their names).
_CLASS_SWAPS: dict[type, type] = {
    nn.BatchNorm2D: PL.BatchNorm2D,
    nn.BatchNorm1D: PL.BatchNorm1D,
    nn.Conv2DTranspose: PL.Conv2DTranspose,
    nn.Conv2D: PL.Conv2D,
    nn.GroupNorm: PL.GroupNorm,
    nn.LayerNorm: PL.LayerNorm,
    nn.GELU: PL.GELU,
    nn.Softmax: PL.Softmax,
}


_CHANNELS_FIRST = ("NCHW", "NCL", "NC")


def _check_swappable(layer: nn.Layer) -> None:
    """Refuse configurations the privbox replacement would compute wrongly (instead of silently)."""
    if isinstance(layer, nn.Conv2D):
        return  # privbox's Conv2D falls back to Paddle's own forward for anything it cannot run
    data_format = getattr(layer, "_data_format", None)
    if data_format is not None and data_format not in _CHANNELS_FIRST:
        raise ValueError(
            f"{type(layer).__name__} with data_format={data_format!r} is not supported by the converter; "
            "use channels-first (NCHW) layers"
        )
    if isinstance(layer, nn.Conv2DTranspose):
        dilation = [int(d) for d in layer._dilation]
        if layer._groups != 1 or dilation != [1, 1] or getattr(layer, "_padding_algorithm", "EXPLICIT") != "EXPLICIT":
            raise ValueError(
                "Conv2DTranspose can only be made twice differentiable with groups=1, dilation=1 and "
                f"explicit padding; got groups={layer._groups}, dilation={dilation}, "
                f"padding={layer._padding!r}"
            )


def _replace_max_pool(layer: nn.MaxPool2D) -> nn.Layer:
    if getattr(layer, "return_mask", False) or getattr(layer, "data_format", "NCHW") != "NCHW":
        raise ValueError("MaxPool2D with return_mask=True or a channels-last data_format is not supported by the converter")
    return PL.MaxPool2D(layer.ksize, layer.stride, layer.padding, bool(getattr(layer, "ceil_mode", False)))


def _replace_flatten(layer: nn.Flatten) -> nn.Layer:
    if layer.stop_axis not in (-1,):
        raise ValueError("nn.Flatten with stop_axis != -1 is not supported by the converter")
    return PL.Flatten(layer.start_axis)


def _replace_dropout(layer: nn.Layer) -> nn.Layer:
    # privbox's Dropout is "upscale_in_train" on whole tensors; anything else would silently
    # change the outputs (e.g. "downscale_in_infer" scales by 1-p in eval mode).
    if getattr(layer, "mode", "upscale_in_train") != "upscale_in_train" or getattr(layer, "axis", None) is not None:
        raise ValueError("only nn.Dropout(mode='upscale_in_train', axis=None) is supported by the converter")
    return PL.Dropout(layer.p)


def _replace_upsample(layer: nn.Layer) -> nn.Layer:
    mode = layer.mode.lower()
    if layer.align_corners:
        raise ValueError("Upsample with align_corners=True is not supported; use align_corners=False")
    return PL.Upsample(scale_factor=layer.scale_factor, size=layer.size, mode=mode)


# Parameter-free Paddle layers replaced by a new privbox layer.
_LAYER_REPLACEMENTS: dict[type, Callable[[nn.Layer], nn.Layer]] = {
    nn.MaxPool2D: _replace_max_pool,
    nn.Flatten: _replace_flatten,
    nn.Dropout: _replace_dropout,
    nn.Upsample: _replace_upsample,
}


def _flatten_by_reshape(x: paddle.Tensor, start_axis: int = 0, stop_axis: int = -1, name=None) -> paddle.Tensor:
    ndim = x.ndim
    start = start_axis % ndim if ndim else 0
    stop = stop_axis % ndim if ndim else 0
    if stop != ndim - 1:
        shape = list(x.shape[:start]) + [-1] + list(x.shape[stop + 1 :])
        return x.reshape(shape)
    return PF.flatten(x, start)


@contextlib.contextmanager
def reshape_flatten() -> Iterator[None]:
    """Temporarily rebind ``paddle.flatten`` and ``Tensor.flatten`` to a reshape-based version."""
    saved = (paddle.flatten, paddle.Tensor.flatten)
    paddle.flatten = _flatten_by_reshape
    paddle.Tensor.flatten = _flatten_by_reshape
    try:
        yield
    finally:
        paddle.flatten, paddle.Tensor.flatten = saved


def _wrap_forward(model: nn.Layer) -> None:
    """Swap the model's class for a subclass whose forward runs inside :func:`reshape_flatten`."""
    cls = type(model)
    if getattr(cls, "_privbox_twice_differentiable", False):
        return

    def forward(self, *args, **kwargs):
        with reshape_flatten():
            return cls.forward(self, *args, **kwargs)

    model.__class__ = type(cls.__name__, (cls,), {"forward": forward, "_privbox_twice_differentiable": True})


def make_twice_differentiable(model: nn.Layer) -> nn.Layer:
    """Make ``model`` twice differentiable in place and return it.

    (A bare parameter-free layer such as ``nn.MaxPool2D`` passed as ``model`` is returned as a
    new privbox layer, so always use the return value.)

    Swaps BatchNorm (eval mode → affine), max-pool (gather based), ``nn.Flatten`` (reshape),
    dropout (Bernoulli mask), upsampling, transposed convolution, Group/LayerNorm, GELU and
    softmax for double-differentiable versions, and makes ``paddle.flatten`` calls inside the
    model's ``forward`` use reshape. Parameter names and values are unchanged, so gradients of
    the converted model are keyed exactly like those of the original.
    """
    if not isinstance(model, nn.Layer):
        raise TypeError(f"make_twice_differentiable expects a paddle.nn.Layer, got {type(model).__name__}")
    if type(model) in _LAYER_REPLACEMENTS:
        # A bare parameter-free layer (e.g. nn.MaxPool2D) cannot be fixed in place: return its
        # replacement (use the return value, as with every call of this function).
        new = _LAYER_REPLACEMENTS[type(model)](model)
        new.training = model.training
        return new
    # Collect first, replace after: replacing during the walk recurses (PADDLE.md §3).
    pending: list[tuple[nn.Layer, str, nn.Layer]] = []
    for _, parent in model.named_sublayers(include_self=True):
        for attr, child in parent.named_children():
            pending.append((parent, attr, child))
    # Validate and build every replacement before mutating anything, so that a model the
    # converter refuses (ValueError) is left exactly as it was.
    swaps: list[tuple[nn.Layer, type]] = []
    replacements: list[tuple[nn.Layer, str, nn.Layer]] = []
    for parent, attr, child in pending:
        swap = _CLASS_SWAPS.get(type(child))
        if swap is not None:
            _check_swappable(child)
            swaps.append((child, swap))
            continue
        replace = _LAYER_REPLACEMENTS.get(type(child))
        if replace is not None:
            new = replace(child)
            new.training = child.training
            replacements.append((parent, attr, new))
    if type(model) in _CLASS_SWAPS:
        _check_swappable(model)
    for child, swap in swaps:
        child.__class__ = swap
    for parent, attr, new in replacements:
        setattr(parent, attr, new)
    if type(model) in _CLASS_SWAPS:
        model.__class__ = _CLASS_SWAPS[type(model)]
    else:
        _wrap_forward(model)
    return model


class DoubleGradError(RuntimeError):
    """A model cannot be differentiated twice; names the Paddle op and the layer."""

    def __init__(self, message: str, op: Optional[str], layer: Optional[str]) -> None:
        super().__init__(message)
        self.op = op
        self.layer = layer


_OP_PATTERN = re.compile(r"([A-Za-z0-9_]+_grad)\b")


def _failing_op(message: str) -> Optional[str]:
    match = _OP_PATTERN.search(message)
    if match:
        return match.group(1)
    if "Pool op grad grad" in message:
        return "pool2d_grad_grad (max-pool)"
    if "is_test" in message:
        return "batch_norm_grad (eval mode)"
    if "GradSlotMeta" in message:
        return "conv2d_transpose_grad"
    return None


@dataclass
class DoubleGradReport:
    """Result of a successful :func:`check_double_grad` probe."""

    input_grad_norm: float
    num_parameters: int


def trainable_parameters(model: nn.Layer) -> list[tuple[str, paddle.Tensor]]:
    """``(name, tensor)`` for parameters that receive gradients (BN running stats excluded)."""
    return [(name, p) for name, p in model.named_parameters() if not p.stop_gradient]


def _double_grad_loss(model: nn.Layer, x: paddle.Tensor) -> tuple[paddle.Tensor, list[paddle.Tensor]]:
    """The forward half of the probe: the training loss at ``x`` and the trainable parameters."""
    params = [p for _, p in trainable_parameters(model)]
    if not params:
        raise ValueError("the model has no trainable parameters, so it has no gradient to match")
    out = model(x)
    if out.ndim == 2:
        labels = paddle.zeros([out.shape[0]], dtype="int64")
        loss = PF.cross_entropy(out, labels)
    else:
        loss = (out * out).mean()
    return loss, params


def _double_grad_step(loss: paddle.Tensor, params: list[paddle.Tensor], x: paddle.Tensor) -> paddle.Tensor:
    """The backward half: ``grad(sum ||grad(loss, params)||^2, x)``."""
    # The input joins the first-order call: without it Paddle 3.3's conv2d double backward
    # drops a term (see privbox.nn.functional_model); the probe then matches the attacks.
    grads = paddle.grad(loss, params + [x], create_graph=True, allow_unused=True)[: len(params)]
    objective = sum(((g * g).sum() for g in grads if g is not None), paddle.zeros([]))
    return paddle.grad(objective, x)[0]


def _probe_leaf(layer: nn.Layer, shape: Sequence[int], dtype) -> Optional[str]:
    """Return the error text if ``layer`` alone fails a double-backward, else None."""
    x = paddle.randn(list(shape)).astype(dtype)
    x.stop_gradient = False
    weight = paddle.ones([1], dtype=dtype)
    weight.stop_gradient = False
    try:
        out = layer(x * weight)
        if not isinstance(out, paddle.Tensor) or out.dtype not in (paddle.float32, paddle.float64):
            return None
        params = [p for p in layer.parameters() if not p.stop_gradient] + [weight]
        grads = paddle.grad((out * out).sum(), params, create_graph=True, allow_unused=True)
        objective = sum((g * g).sum() for g in grads if g is not None)
        paddle.grad(objective, x, allow_unused=True)
    except Exception as exc:  # noqa: BLE001 - Paddle raises several error types here
        return str(exc)
    return None


def _locate_failing_layer(model: nn.Layer, input_shape: Sequence[int]) -> tuple[Optional[str], Optional[str]]:
    """Run each leaf layer alone on its recorded input shape; return (layer name, error)."""
    shapes: dict[str, tuple[list[int], object]] = {}
    handles = []
    for name, layer in model.named_sublayers():
        if list(layer.children()):
            continue

        def hook(lay, inputs, output, _name=name):
            if inputs and isinstance(inputs[0], paddle.Tensor) and _name not in shapes:
                shapes[_name] = (list(inputs[0].shape), inputs[0].dtype)

        handles.append(layer.register_forward_post_hook(hook))
    try:
        with paddle.no_grad():
            model(paddle.randn(list(input_shape)))
    finally:
        for handle in handles:
            handle.remove()
    sublayers = dict(model.named_sublayers())
    for name, (shape, dtype) in shapes.items():
        if dtype not in (paddle.float32, paddle.float64):
            continue
        error = _probe_leaf(sublayers[name], shape, dtype)
        if error is not None:
            return f"{name} ({type(sublayers[name]).__name__})", error
    return None, None


def check_double_grad(model: nn.Layer, input_shape: Sequence[int], seed: int = 0) -> DoubleGradReport:
    """Run one double backward through ``model`` on a random input of ``input_shape``.

    Computes ``g = grad(CE(model(x)), params, create_graph=True)`` and ``grad(sum g^2, x)``. On
    failure raises :class:`DoubleGradError` naming the failing op (from Paddle's message) and,
    when it sits inside a sublayer, that sublayer; the fix is usually
    ``make_twice_differentiable(model)``.
    """
    input_shape = [int(s) for s in input_shape]
    paddle.seed(seed)
    x = paddle.randn(input_shape)
    x.stop_gradient = False
    # Forward errors (a wrong input shape, no trainable parameters) propagate unchanged. Every
    # error of the double backward is reported as a DoubleGradError, whatever its type: Paddle
    # raises RuntimeError for "<op>_grad doesn't have any grad op", but ValueError for max-pool
    # ("Pool op grad grad only supports avgpool") and SystemError for conv-transpose.
    loss, params = _double_grad_loss(model, x)
    try:
        grad = _double_grad_step(loss, params, x)
    except Exception as exc:  # noqa: BLE001
        message = str(exc)
        layer, layer_error = _locate_failing_layer(model, input_shape)
        op = _failing_op(layer_error or message)
        where = f"in layer {layer}" if layer else f"in the forward of {type(model).__name__} (a functional call)"
        raise DoubleGradError(
            f"{type(model).__name__} is not twice differentiable: op {op or 'unknown'} has no double "
            f"gradient, {where}. Fix: call privbox.nn.make_twice_differentiable(model) or replace that "
            f"layer with its privbox.nn.layers version. Paddle said: {message.strip().splitlines()[0][:300]}",
            op=op,
            layer=layer,
        ) from exc
    norm = float(paddle.sqrt((grad * grad).sum()))
    if norm != norm:
        raise DoubleGradError(
            f"{type(model).__name__}: the double backward produced NaN; check the model for "
            "degenerate BatchNorm (train mode at 1x1 spatial size) or use eval mode",
            op=None,
            layer=None,
        )
    return DoubleGradReport(input_grad_norm=norm, num_parameters=len(trainable_parameters(model)))
