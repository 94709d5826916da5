"""Model/shape compatibility, checked before Paddle sees a bad shape.

A convolution or pooling kernel larger than its (padded) input gives an empty output in Paddle
3.x: zero gradients instead of an error, and for some shapes a crash or a hang inside the
kernel. :func:`check_input_shape` therefore runs the model once on a zero batch of one sample
with a *forward pre-hook* on every convolution, pooling and linear layer; the hook compares the
layer's actual input shape with its kernel, stride, padding, dilation and weight shape and raises
:class:`~privbox.core.errors.ModelMismatchError` before that layer's Paddle op is called.
:func:`check_model_kwargs` checks the keyword arguments an update's metadata gives a model
constructor against its signature.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping, Optional, Sequence

from .errors import ModelMismatchError

__all__ = ["check_input_shape", "check_model_kwargs", "build_checked", "output_size", "MAX_KWARG_INT"]

#: Largest integer a model keyword argument may carry (an image side of 1e9 would allocate TBs).
MAX_KWARG_INT = 1 << 17


def output_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int = 1, ceil_mode: bool = False) -> int:
    """Output length of a convolution or pooling window along one axis (the usual formula)."""
    span = size + pad_total - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    return (math.ceil(span / stride) if ceil_mode else span // stride) + 1


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return int(value[0]), int(value[0])
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _pads(padding: Any) -> Optional[tuple[int, int]]:
    """Total padding along H and W, or None for 'SAME' (never shrinks below one output)."""
    if isinstance(padding, str):
        return None if padding.upper() == "SAME" else (0, 0)
    if isinstance(padding, (list, tuple)):
        flat = [p for item in padding for p in (item if isinstance(item, (list, tuple)) else [item])]
        if len(flat) == 2:
            return 2 * int(flat[0]), 2 * int(flat[1])
        if len(flat) == 4:
            return int(flat[0]) + int(flat[1]), int(flat[2]) + int(flat[3])
        if len(flat) == 8:  # NCHW pairs per axis
            return int(flat[4]) + int(flat[5]), int(flat[6]) + int(flat[7])
    return 2 * int(padding), 2 * int(padding)


def _window(layer: Any) -> Optional[dict[str, Any]]:
    """Kernel geometry of a 2-D convolution or pooling layer, None for other layers."""
    import paddle.nn as nn

    if isinstance(layer, nn.Conv2D):
        return {"kind": "convolution", "kernel": _pair(layer._kernel_size), "stride": _pair(layer._stride),
                "padding": layer._padding, "dilation": _pair(layer._dilation), "ceil": False,
                "in_channels": int(layer.weight.shape[1]) * int(layer._groups)}
    if isinstance(layer, (nn.MaxPool2D, nn.AvgPool2D)):
        return {"kind": "pooling", "kernel": _pair(layer.ksize), "stride": _pair(layer.stride if layer.stride is not None else layer.ksize),
                "padding": layer.padding, "dilation": (1, 1), "ceil": bool(layer.ceil_mode), "in_channels": None}
    if type(layer).__name__ == "MaxPool2D" and hasattr(layer, "kernel_size"):  # privbox.nn.layers.MaxPool2D
        return {"kind": "pooling", "kernel": _pair(layer.kernel_size), "stride": _pair(layer.stride),
                "padding": layer.padding, "dilation": (1, 1), "ceil": bool(layer.ceil_mode), "in_channels": None}
    return None


def _check_layer(name: str, layer: Any, shape: Sequence[int], where: str) -> None:
    import paddle.nn as nn

    window = _window(layer)
    if window is not None:
        if len(shape) != 4:
            raise ModelMismatchError(f"layer {name!r} ({type(layer).__name__}) gets an input of shape {list(shape)}, "
                                     "not [B, C, H, W]", where=where, fix="check meta.input_shape")
        if window["in_channels"] is not None and shape[1] != window["in_channels"]:
            raise ModelMismatchError(
                f"layer {name!r} expects {window['in_channels']} input channels but gets {shape[1]} (input {list(shape)})",
                where=where, fix="the update's input_shape and the model's in_channels must agree")
        pads = _pads(window["padding"])
        if pads is None:
            return
        for axis, size, kernel, stride, pad, dil in zip("HW", shape[2:], window["kernel"], window["stride"], pads,
                                                        window["dilation"]):
            if stride < 1:
                raise ModelMismatchError(f"layer {name!r} has stride {stride}", where=where, fix="use a stride >= 1")
            if output_size(size, kernel, stride, pad, dil, window["ceil"]) < 1:
                raise ModelMismatchError(
                    f"the {window['kind']} kernel of layer {name!r} spans {dil * (kernel - 1) + 1} along {axis} but its "
                    f"input is only {size} (+{pad} padding) there (input {list(shape)})",
                    where=where,
                    fix="use larger images (meta.input_shape), or a model with smaller kernels or fewer down-sampling steps",
                )
    elif isinstance(layer, nn.Linear):
        expected = int(layer.weight.shape[0])
        if not shape or shape[-1] != expected:
            raise ModelMismatchError(
                f"linear layer {name!r} expects {expected} input features but gets shape {list(shape)}",
                where=where, fix="the model was built for another image size; build it with the update's input_shape")


def check_input_shape(model: Any, input_shape: Sequence[int], where: str = "model") -> None:
    """Raise :class:`ModelMismatchError` unless ``model`` accepts ``[1, *input_shape]`` inputs.

    Every convolution, pooling and linear layer is checked by a forward pre-hook, so the first
    incompatible layer is named and Paddle never runs it on the bad shape. The model's train/eval
    modes are restored afterwards.
    """
    import paddle

    handles, modes = [], [(layer, layer.training) for layer in model.sublayers(include_self=True)]

    def hook_for(name: str) -> Callable:
        def hook(layer, inputs):
            first = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
            _check_layer(name, layer, [int(d) for d in first.shape], where)
            return None

        return hook

    for name, layer in model.named_sublayers(include_self=True):
        import paddle.nn as nn

        if _window(layer) is not None or isinstance(layer, nn.Linear):
            handles.append(layer.register_forward_pre_hook(hook_for(name or type(layer).__name__)))
    model.eval()
    try:
        with paddle.no_grad():
            model(paddle.zeros([1, *[int(d) for d in input_shape]], dtype="float32"))
    except ModelMismatchError:
        raise
    except (ValueError, RuntimeError, TypeError, IndexError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelMismatchError(f"the model fails on an input of shape {[1, *input_shape]}: {first_line}",
                                 where=where, fix="check meta.input_shape and the model's arguments") from None
    finally:
        for handle in handles:
            handle.remove()
        for layer, training in modes:
            layer.training = training


def check_model_kwargs(factory: Callable[..., Any], kwargs: Mapping[str, Any], where: str = "model_kwargs") -> None:
    """Raise :class:`ModelMismatchError` if ``factory`` does not take every key of ``kwargs``, or a
    value is an implausibly large integer (it would size a layer)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: nothing to check
        return
    params = signature.parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        accepted = sorted(n for n, p in params.items()
                          if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ModelMismatchError(
                f"{getattr(factory, '__name__', factory)!s} does not take {unknown}; it takes {accepted}",
                where=where, fix="remove those keys from the update's model_kwargs, or build the model yourself")
    for key, value in kwargs.items():
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= MAX_KWARG_INT:
            raise ModelMismatchError(f"{key}={value} is {'negative' if value < 0 else f'larger than {MAX_KWARG_INT}'}",
                                     where=f"{where}.{key}", fix="a layer is sized by it; check the metadata")


def build_checked(factory: Callable[..., Any], kwargs: Mapping[str, Any], where: str = "model_kwargs") -> Any:
    """``factory(**kwargs)`` after :func:`check_model_kwargs`; a constructor that rejects the values
    (Paddle's own shape assertions, a wrong type) raises :class:`ModelMismatchError`."""
    check_model_kwargs(factory, kwargs, where)
    try:
        return factory(**kwargs)
    except (TypeError, ValueError, AssertionError, ZeroDivisionError, OverflowError) as exc:
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ModelMismatchError(f"the model cannot be built with {dict(kwargs)}: {text}", where=where,
                                 fix="check the model arguments (the update's model_kwargs and num_classes)") from None
