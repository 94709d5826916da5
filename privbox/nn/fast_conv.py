"""Exact, twice-differentiable 2-D convolution whose kernels run through oneDNN on CPU.

Why (``docs/en/performance.md``): on CPU, Paddle 3.3's *eager* ``conv2d`` does not use oneDNN
(``FLAGS_use_mkldnn`` changes nothing in eager mode) and is about 3x slower than PyTorch's
oneDNN convolution, and a gradient-inversion iteration is mostly convolutions: one forward, the
first backward (input and filter gradients) and their derivatives in the second backward. The same
convolution inside a small static program, built under the old IR with ``FLAGS_use_mkldnn``, runs
through oneDNN and is 1.5-3x faster. (Under PIR, ``to_static`` with oneDNN crashes in Paddle 3.3.)

How: a convolution ``y = conv(x, w)`` (groups 1, any stride, padding and dilation) is a
``paddle.autograd.PyLayer`` whose backward is built from two more PyLayers, so the set is closed
under differentiation and any order of derivative stays inside it:

- ``conv(x, w)`` backward: ``dx = data(gy, w)``, ``dw = filter(x, gy)``;
- ``data(gy, w) = conv_transpose(gy, w)`` (the input gradient), backward:
  ``d gy = conv(g, w)``, ``d w = filter(g, gy)``;
- ``filter(x, gy)`` (the filter gradient, a convolution over the batch: the input transposed to
  ``[C_in, N, H, W]`` convolved with ``gy`` transposed to ``[C_out, N, H_o, W_o]``, stride and
  dilation swapped), backward: ``d x = data(gy, g)``, ``d gy = conv(x, g)``.

Each of the three is bilinear, so these are exact adjoint identities, not approximations; the
parameter gradients are formed explicitly by ``filter``. The kernels are small ``to_static``
programs (one per shape, cached) for float32, and Paddle's eager kernels otherwise (float64 runs the
very same PyLayer graph, which is how the tests check it against finite differences).

The backend is chosen per convolution shape: ``"reference"`` (Paddle's own ``conv2d`` and its
autograd), ``"onednn"`` (always the PyLayer path), or ``"auto"`` (default): the first time a shape
is met, the three kernels are timed on both sides and the PyLayer path is used where it is at
least :data:`AUTO_MARGIN` times faster. Set it with :func:`set_conv_backend`, the
:func:`conv_backend` context manager, or the ``PRIVBOX_CONV_BACKEND`` environment variable.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import paddle
import paddle.nn.functional as F

BACKENDS = ("reference", "onednn", "auto")
ENV_VAR = "PRIVBOX_CONV_BACKEND"
AUTO_MARGIN = 1.15  # the PyLayer path must be this much faster on kernel time (it adds graph work)
_CALIBRATION_REPEATS = 3
AUTO_MIN_MACS = 10_000_000  # smaller convolutions always take the reference path under "auto"

_lock = threading.Lock()
_backend: Optional[str] = None  # None: read the environment variable on first use
_static_cache: dict[tuple, Callable] = {}
_decisions: dict[tuple, bool] = {}
_kernel_choice: dict[tuple, bool] = {}  # (kind, geometry, shapes) -> oneDNN program measured faster
_counters = {"onednn": 0, "reference": 0}


def _check_backend(name: str, where: str) -> str:
    if name not in BACKENDS:
        from ..core.errors import ConfigError

        raise ConfigError(
            f"unknown convolution backend {name!r}",
            where=where,
            fix=f"use one of {', '.join(BACKENDS)}",
        )
    return name


def get_conv_backend() -> str:
    """The current convolution backend: ``"reference"``, ``"onednn"`` or ``"auto"``."""
    global _backend
    if _backend is None:
        _backend = _check_backend(os.environ.get(ENV_VAR, "auto").strip().lower() or "auto", f"${ENV_VAR}")
    return _backend


def set_conv_backend(name: str) -> str:
    """Choose how privbox's converted ``Conv2D`` layers compute; returns the previous backend.

    ``"reference"``: Paddle's eager ``conv2d`` and its own autograd (the path privbox used before).
    ``"onednn"``: the closed PyLayer set of this module, kernels through oneDNN static programs.
    ``"auto"``: per convolution shape, whichever measured faster (see module docstring).
    """
    global _backend
    previous = get_conv_backend()
    _backend = _check_backend(str(name).strip().lower(), "privbox.nn.set_conv_backend")
    return previous


@contextlib.contextmanager
def conv_backend(name: str) -> Iterator[None]:
    """Use backend ``name`` inside a ``with`` block, restoring the previous one afterwards."""
    previous = set_conv_backend(name)
    try:
        yield
    finally:
        set_conv_backend(previous)


def fast_path_calls() -> dict[str, int]:
    """How many convolutions ran on each path since import (for tests and benchmarks)."""
    return dict(_counters)


@dataclass(frozen=True)
class ConvGeometry:
    """Everything about a convolution except its tensors' values (hashable, a cache key)."""

    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    in_hw: tuple[int, int]
    kernel_hw: tuple[int, int]

    def out_hw(self) -> tuple[int, int]:
        return tuple(  # type: ignore[return-value]
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(self.in_hw, self.padding, self.dilation, self.kernel_hw, self.stride)
        )

    def output_padding(self) -> list[int]:
        """Extra rows/columns the transposed convolution needs to give back exactly ``in_hw``."""
        return [
            n - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
            for n, o, s, p, d, k in zip(self.in_hw, self.out_hw(), self.stride, self.padding, self.dilation, self.kernel_hw)
        ]


# ----------------------------------------------------------------------------------- kernels


def _conv_kernel(x, w, g: ConvGeometry):
    return F.conv2d(x, w, stride=list(g.stride), padding=list(g.padding), dilation=list(g.dilation))


def _data_kernel_as_conv(gy, w, g: ConvGeometry):
    # Stride 1: the transposed convolution is a convolution with the kernel flipped and its
    # channel axes swapped, padded by d*(k-1)-p (training-mode oneDNN programs have conv2d, but
    # refuse conv2d_transpose, and inference-mode ones cache the filter between calls).
    pad = [d * (k - 1) - p for d, k, p in zip(g.dilation, g.kernel_hw, g.padding)]
    return F.conv2d(gy, w.flip([2, 3]).transpose([1, 0, 2, 3]), padding=pad, dilation=list(g.dilation))


def _data_kernel(gy, w, g: ConvGeometry):
    return F.conv2d_transpose(
        gy, w, stride=list(g.stride), padding=list(g.padding), output_padding=g.output_padding(), dilation=list(g.dilation)
    )


def _filter_kernel(x, gy, g: ConvGeometry):
    # dW[o, i, a, b] = sum_{n, u, v} gy[n, o, u, v] * x_pad[n, i, u*s + a*d, v*s + b*d]: a
    # convolution with the batch as the reduced channel axis, stride d and dilation s.
    out = F.conv2d(
        x.transpose([1, 0, 2, 3]),
        gy.transpose([1, 0, 2, 3]),
        stride=list(g.dilation),
        padding=list(g.padding),
        dilation=list(g.stride),
    )
    kh, kw = g.kernel_hw
    return out[:, :, :kh, :kw].transpose([1, 0, 2, 3])


_KERNELS = {"conv": _conv_kernel, "data": _data_kernel, "filter": _filter_kernel}


@contextlib.contextmanager
def _onednn_program_mode() -> Iterator[None]:
    """Old IR + ``FLAGS_use_mkldnn`` for building and running a static program, restored after."""
    from paddle.pir_utils import DygraphOldIrGuard

    previous = paddle.get_flags(["FLAGS_use_mkldnn"])["FLAGS_use_mkldnn"]
    paddle.set_flags({"FLAGS_use_mkldnn": True})
    try:
        with DygraphOldIrGuard():
            yield
    finally:
        paddle.set_flags({"FLAGS_use_mkldnn": previous})


def _program_kernel(kind: str, g: ConvGeometry) -> Optional[Callable]:
    """The kernel a oneDNN program runs for ``kind``, or None where it must stay eager: the input
    gradient of a strided convolution (a transposed convolution, which oneDNN programs run only in
    inference mode, see :func:`_data_kernel_as_conv`)."""
    if kind != "data":
        return _KERNELS[kind]
    if g.stride != (1, 1) or any(d * (k - 1) < p for d, k, p in zip(g.dilation, g.kernel_hw, g.padding)):
        return None
    return _data_kernel_as_conv


def _static_kernel(kind: str, g: ConvGeometry, a: paddle.Tensor, b: paddle.Tensor) -> Callable:
    key = (kind, g, tuple(a.shape), tuple(b.shape), str(a.dtype))
    fn = _static_cache.get(key)
    if fn is None:
        kernel = _program_kernel(kind, g)

        def program(lhs, rhs):
            return kernel(lhs, rhs, g)

        specs = [
            paddle.static.InputSpec(list(a.shape), "float32", name="lhs"),
            paddle.static.InputSpec(list(b.shape), "float32", name="rhs"),
        ]
        with _lock, _onednn_program_mode():
            fn = paddle.jit.to_static(program, input_spec=specs, full_graph=True)
        _static_cache[key] = fn
    return fn


def _compiled_with_onednn() -> bool:
    core = paddle.base.core
    probe = getattr(core, "is_compiled_with_onednn", None) or getattr(core, "is_compiled_with_mkldnn", None)
    return bool(probe and probe())


_HAS_ONEDNN = _compiled_with_onednn()


def _onednn_usable(a: paddle.Tensor) -> bool:
    """oneDNN static kernels: float32 tensors on CPU in a build with oneDNN."""
    return _HAS_ONEDNN and a.dtype == paddle.float32 and a.place.is_cpu_place()


def _static_allowed(kind: str, g: ConvGeometry, a: paddle.Tensor, b: paddle.Tensor) -> bool:
    """oneDNN program for this kernel: possible, and not measured slower than the eager kernel."""
    if not _onednn_usable(a) or _program_kernel(kind, g) is None:
        return False
    return _kernel_choice.get((kind, g, tuple(a.shape), tuple(b.shape)), True)


def _run(kind: str, g: ConvGeometry, a: paddle.Tensor, b: paddle.Tensor) -> paddle.Tensor:
    """One kernel, without autograd: oneDNN static program for float32 on CPU, eager otherwise."""
    with paddle.no_grad():
        if _static_allowed(kind, g, a, b):
            fn = _static_kernel(kind, g, a, b)
            with _onednn_program_mode():
                out = fn(a.detach(), b.detach())
            return out.detach().clone()
        return _KERNELS[kind](a, b, g)


# ----------------------------------------------------------------- the closed PyLayer set


class _Held:
    """Carries the *other* operand of a bilinear kernel past PyLayer's tensor-argument handling.

    Paddle 3.3's PyLayer must return ``None`` for every tensor input whose path a partial
    ``paddle.grad(..., inputs)`` call prunes, but the backward cannot tell which ones those are:
    returning a gradient for a parameter while only ``grad(D, x)`` is asked for raises
    "backward function should return None at 1 position". So every PyLayer here has exactly one
    tensor input (a pruned node is then simply not called) and sees the other operand through
    this holder, with its graph intact for the next derivative.
    """

    __slots__ = ("tensor",)

    def __init__(self, tensor: paddle.Tensor) -> None:
        self.tensor = tensor


def _out_shape(kind: str, a: paddle.Tensor, b: paddle.Tensor, g: "ConvGeometry") -> list[int]:
    if kind == "conv":
        return [a.shape[0], b.shape[0], *g.out_hw()]
    if kind == "data":
        return [a.shape[0], b.shape[1], *g.in_hw]
    return [b.shape[1], a.shape[1], *g.kernel_hw]


class _Operand(paddle.autograd.PyLayer):
    """One operand of ``kind(a, b)``: forward gives the value (or zeros, when the other operand's
    node carries it); backward gives this operand's gradient by the adjoint rules below."""

    @staticmethod
    def forward(ctx, operand, side, other, kind, geometry, carries_value):
        ctx.side, ctx.other, ctx.kind, ctx.geometry = side, other, kind, geometry
        ctx.save_for_backward(operand)
        a, b = (operand, other.tensor) if side == 0 else (other.tensor, operand)
        if carries_value:
            return _run(kind, geometry, a, b)
        return paddle.zeros(_out_shape(kind, a, b, geometry), dtype=operand.dtype)

    @staticmethod
    def backward(ctx, cotangent):
        (operand,) = ctx.saved_tensor()
        a, b = (operand, ctx.other.tensor) if ctx.side == 0 else (ctx.other.tensor, operand)
        return _ADJOINTS[(ctx.kind, ctx.side)](cotangent, a, b, ctx.geometry)


def bilinear(kind: str, a: paddle.Tensor, b: paddle.Tensor, g: "ConvGeometry") -> paddle.Tensor:
    """``kind(a, b)`` for kind ``"conv"`` (x, w), ``"data"`` (gy, w) or ``"filter"`` (x, gy),
    differentiable to any order in both operands through :class:`_Operand` nodes."""
    need_a, need_b = not a.stop_gradient, not b.stop_gradient
    if need_a:
        value = _Operand.apply(a, 0, _Held(b), kind, g, True)
        if need_b:
            value = value + _Operand.apply(b, 1, _Held(a), kind, g, False)
        return value
    if need_b:
        return _Operand.apply(b, 1, _Held(a), kind, g, True)
    return _run(kind, g, a, b)


# Gradient of <c, kind(a, b)> with respect to operand `side`, as bilinear kernels again:
# conv(x, w): dx = data(c, w), dw = filter(x, c); data(gy, w): dgy = conv(c, w), dw = filter(c, gy);
# filter(x, gy): dx = data(gy, c), dgy = conv(x, c).
_ADJOINTS = {
    ("conv", 0): lambda c, a, b, g: bilinear("data", c, b, g),
    ("conv", 1): lambda c, a, b, g: bilinear("filter", a, c, g),
    ("data", 0): lambda c, a, b, g: bilinear("conv", c, b, g),
    ("data", 1): lambda c, a, b, g: bilinear("filter", c, a, g),
    ("filter", 0): lambda c, a, b, g: bilinear("data", b, c, g),
    ("filter", 1): lambda c, a, b, g: bilinear("conv", a, c, g),
}


def _geometry(x: paddle.Tensor, w: paddle.Tensor, stride, padding, dilation) -> ConvGeometry:
    return ConvGeometry(
        stride=tuple(int(s) for s in stride),
        padding=tuple(int(p) for p in padding),
        dilation=tuple(int(d) for d in dilation),
        in_hw=(int(x.shape[2]), int(x.shape[3])),
        kernel_hw=(int(w.shape[2]), int(w.shape[3])),
    )


def conv2d(
    x: paddle.Tensor,
    weight: paddle.Tensor,
    bias: Optional[paddle.Tensor] = None,
    stride=(1, 1),
    padding=(0, 0),
    dilation=(1, 1),
) -> paddle.Tensor:
    """2-D convolution (NCHW, groups 1, symmetric zero padding) on the closed PyLayer path.

    Equal to ``F.conv2d`` (float32 rounding aside), differentiable to any order through the same
    three PyLayers. ``weight`` may be a non-leaf tensor (unrolled FedAvg weights).
    """
    g = _geometry(x, weight, stride, padding, dilation)
    y = bilinear("conv", x, weight, g)
    if bias is not None:
        y = y + bias.reshape([1, -1, 1, 1])
    return y


# --------------------------------------------------------------------------- auto choice


def _min_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (builds programs, fills caches)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def _calibrate_kernels(x: paddle.Tensor, w: paddle.Tensor, g: ConvGeometry) -> None:
    """For each of the three kernels, time the oneDNN program against the eager kernel and keep
    the faster one for this shape (the program is not always faster: see performance.md)."""
    with paddle.no_grad():
        gy = paddle.randn([x.shape[0], w.shape[0], *g.out_hw()], dtype=x.dtype)
        for kind, a, b in (("conv", x, w), ("data", gy, w), ("filter", x, gy)):
            key = (kind, g, tuple(a.shape), tuple(b.shape))
            _kernel_choice[key] = True
            if not _static_allowed(kind, g, a, b):
                continue
            static = _min_time(lambda: _run(kind, g, a, b), _CALIBRATION_REPEATS)
            eager = _min_time(lambda: _KERNELS[kind](a, b, g), _CALIBRATION_REPEATS)
            _kernel_choice[key] = static < eager


def _double_backward_time(x: paddle.Tensor, w: paddle.Tensor, stride, padding, dilation, fast: bool) -> float:
    """CPU time of the work one attack iteration does for this convolution: forward, the first
    backward with ``create_graph`` (input and filter gradients) and the second backward to x."""
    xx = x.detach().clone()
    ww = w.detach().clone()
    xx.stop_gradient = ww.stop_gradient = False

    def once():
        if fast:
            y = conv2d(xx, ww, None, stride, padding, dilation)
        else:
            y = F.conv2d(xx, ww, stride=list(stride), padding=list(padding), dilation=list(dilation))
        gx, gw = paddle.grad((y * y).sum(), [xx, ww], create_graph=True)
        paddle.grad((gw * gw).sum() + (gx * gx).sum(), [xx])

    return _min_time(once, _CALIBRATION_REPEATS)


def _calibrate(x: paddle.Tensor, w: paddle.Tensor, stride, padding, dilation) -> bool:
    """True if this convolution's double backward is faster on the PyLayer path (measured)."""
    g = _geometry(x, w, stride, padding, dilation)
    with paddle.enable_grad():
        _calibrate_kernels(x.detach(), w.detach(), g)
        fast = _double_backward_time(x, w, stride, padding, dilation, True)
        slow = _double_backward_time(x, w, stride, padding, dilation, False)
    return fast * AUTO_MARGIN < slow


def _macs(x: paddle.Tensor, w: paddle.Tensor, g: ConvGeometry) -> int:
    oh, ow = g.out_hw()
    return int(x.shape[0]) * int(w.shape[0]) * oh * ow * int(w.shape[1]) * g.kernel_hw[0] * g.kernel_hw[1]


def use_fast_path(x: paddle.Tensor, w: paddle.Tensor, stride, padding, dilation) -> bool:
    """Whether this convolution should take the PyLayer path under the current backend.

    ``"auto"``: float32 on CPU with oneDNN only; convolutions under :data:`AUTO_MIN_MACS`
    multiply-accumulates stay on the reference path without measuring (a static program call
    costs about 0.1-0.3 ms, more than such a kernel); the others are measured once per shape.
    """
    backend = get_conv_backend()
    if backend == "reference":
        return False
    if backend == "onednn":
        return True
    if not _onednn_usable(x):
        return False
    g = _geometry(x, w, stride, padding, dilation)
    key = (g, tuple(x.shape), tuple(w.shape), str(x.dtype))
    decision = _decisions.get(key)
    if decision is None:
        decision = _macs(x, w, g) >= AUTO_MIN_MACS and _calibrate(x, w, stride, padding, dilation)
        _decisions[key] = decision
    return decision


def auto_decisions() -> dict[tuple, bool]:
    """The shapes calibrated so far and whether each took the oneDNN path (for reports)."""
    return dict(_decisions)


def count(path: str) -> None:
    """Record one convolution on ``path`` (``"onednn"`` or ``"reference"``)."""
    _counters[path] += 1
