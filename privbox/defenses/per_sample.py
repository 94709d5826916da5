"""Per-sample gradients for DP-SGD without ``vmap`` (PADDLE.md §7).

Two methods:

* **hooks** (fast): a forward post-hook stores each supported layer's input ``a``; a gradient
  hook on the layer output receives δ = ∂L/∂out during ``loss.backward()``. The per-sample
  weight gradient then follows in closed form — ``einsum('bi,bo->bio', a, δ)`` for ``nn.Linear``
  (Paddle weight layout [in, out]), δ_i·unfold(a_i)ᵀ for ``nn.Conv2D``, and Σ δ⊙x̂ for
  ``nn.GroupNorm`` / ``nn.LayerNorm``. For a *mean* loss δ carries a 1/B factor, which is undone.
* **micro-batch** (reference, any layer): one forward/backward per sample.

BatchNorm in training mode mixes the samples of a batch, so per-sample gradients do not exist;
:func:`check_no_batchnorm` rejects it and :func:`freeze_batchnorm` is the frozen alternative.
Per-sample clipping is the core of DP-SGD (Abadi et al., CCS 2016).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

__all__ = [
    "PerSampleGradients",
    "per_sample_gradients",
    "per_sample_gradients_microbatch",
    "check_no_batchnorm",
    "freeze_batchnorm",
    "supports_hooks",
    "HOOK_LAYERS",
]

#: Layer types whose per-sample gradients are computed from hooks.
HOOK_LAYERS: Tuple[type, ...] = (nn.Linear, nn.Conv2D, nn.GroupNorm, nn.LayerNorm)

_BN_TYPES: Tuple[type, ...] = tuple(
    t for t in (getattr(nn, "BatchNorm", None), getattr(nn.layer.norm, "_BatchNormBase", None)) if t is not None
)

LossFn = Callable[[paddle.Tensor, paddle.Tensor], paddle.Tensor]


# --------------------------------------------------------------------------------- BatchNorm
def _bn_is_frozen(layer: nn.Layer) -> bool:
    uses_running_stats = (not layer.training) or bool(getattr(layer, "_use_global_stats", False))
    return uses_running_stats


def check_no_batchnorm(model: nn.Layer) -> None:
    """Raise ``ValueError`` if a BatchNorm layer of ``model`` would use batch statistics.

    BN in training mode normalises each sample with statistics of the whole batch, so the
    gradient of one sample depends on the others and per-sample clipping bounds nothing.
    Frozen BN (eval mode or ``use_global_stats=True``, see :func:`freeze_batchnorm`) is fine.
    """
    for name, layer in model.named_sublayers(include_self=True):
        if isinstance(layer, _BN_TYPES) and not _bn_is_frozen(layer):
            raise ValueError(
                f"DP-SGD needs per-sample gradients, but BatchNorm layer {name or type(layer).__name__!r} "
                "uses batch statistics, which mix the samples of a batch. Replace it with nn.GroupNorm "
                "(e.g. nn.GroupNorm(num_groups, channels)) or freeze it with "
                "privbox.defenses.freeze_batchnorm(model) (running statistics, fixed affine parameters)."
            )


def freeze_batchnorm(model: nn.Layer, freeze_affine: bool = True) -> List[str]:
    """Make every BatchNorm layer use its running statistics, also after ``model.train()``.

    Sets ``use_global_stats`` on each BN layer (running statistics are neither used from the
    batch nor updated) and, if ``freeze_affine``, ``stop_gradient=True`` on its scale and shift.
    Returns the names of the frozen layers.
    """
    frozen = []
    for name, layer in model.named_sublayers(include_self=True):
        if isinstance(layer, _BN_TYPES):
            layer._use_global_stats = True
            if hasattr(layer, "_trainable_statistics"):
                layer._trainable_statistics = False
            if freeze_affine:
                for p in layer.parameters(include_sublayers=False):
                    p.stop_gradient = True
            frozen.append(name)
    return frozen


# ------------------------------------------------------------------------------ hook support
def _conv_unfold_args(layer: nn.Conv2D) -> Optional[dict]:
    """unfold() arguments reproducing the conv's sliding windows, or None if unsupported."""
    if getattr(layer, "_data_format", "NCHW") != "NCHW":
        return None
    if getattr(layer, "_padding_mode", "zeros") != "zeros":
        return None
    pad = layer._padding
    if isinstance(pad, str):
        return None
    if isinstance(pad, int):
        paddings = [pad, pad]
    else:
        pad = list(pad)
        if len(pad) == 2 and all(isinstance(v, int) for v in pad):
            paddings = pad
        elif len(pad) == 4 and all(isinstance(v, int) for v in pad):
            top, bottom, left, right = pad  # conv order; unfold wants [top, left, bottom, right]
            paddings = [top, left, bottom, right]
        else:
            return None
    return {
        "kernel_sizes": list(layer._kernel_size),
        "strides": list(layer._stride),
        "paddings": paddings,
        "dilations": list(layer._dilation),
    }


def _layer_supported(layer: nn.Layer) -> bool:
    if isinstance(layer, nn.Conv2D):
        return _conv_unfold_args(layer) is not None
    if isinstance(layer, nn.GroupNorm):
        return getattr(layer, "_data_format", "NCHW") in ("NCHW", "NCL", "NCDHW")
    return isinstance(layer, HOOK_LAYERS)


def _trainable_own_params(layer: nn.Layer) -> List[Tuple[str, paddle.Tensor]]:
    return [(n, p) for n, p in layer.named_parameters(include_sublayers=False) if not p.stop_gradient]


def supports_hooks(model: nn.Layer) -> Tuple[bool, List[str]]:
    """Whether every trainable parameter of ``model`` sits in a hook-supported layer.

    Returns ``(ok, unsupported_layer_names)``.
    """
    bad = []
    for name, layer in model.named_sublayers(include_self=True):
        if _trainable_own_params(layer) and not _layer_supported(layer):
            bad.append(name or type(layer).__name__)
    return not bad, bad


def _normalised(x: paddle.Tensor, axes_from: int, groups: Optional[int], eps: float) -> paddle.Tensor:
    """x̂ of GroupNorm (groups given, channel axis 1) or LayerNorm (last dims from axes_from)."""
    if groups is not None:
        b = x.shape[0]
        xs = x.reshape([b, groups, -1])
        mean = xs.mean(axis=-1, keepdim=True)
        var = ((xs - mean) ** 2).mean(axis=-1, keepdim=True)
        return ((xs - mean) / paddle.sqrt(var + eps)).reshape(x.shape)
    axes = list(range(axes_from, x.ndim))
    mean = x.mean(axis=axes, keepdim=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdim=True)
    return (x - mean) / paddle.sqrt(var + eps)


def _layer_per_sample(layer: nn.Layer, a: paddle.Tensor, delta: paddle.Tensor) -> Dict[str, paddle.Tensor]:
    """Per-sample gradients of the layer's own parameters from input a and output grad δ."""
    b = a.shape[0]
    out: Dict[str, paddle.Tensor] = {}
    if isinstance(layer, nn.Linear):
        a2 = a.reshape([b, -1, a.shape[-1]])
        d2 = delta.reshape([b, -1, delta.shape[-1]])
        out["weight"] = paddle.matmul(a2, d2, transpose_x=True)  # [b, in, out]
        out["bias"] = d2.sum(axis=1)
    elif isinstance(layer, nn.Conv2D):
        args = _conv_unfold_args(layer)
        groups = int(layer._groups)
        cols = F.unfold(a, **args)  # [b, cin*kh*kw, L]
        cout = delta.shape[1]
        d = delta.reshape([b, groups, cout // groups, -1])
        cols = cols.reshape([b, groups, cols.shape[1] // groups, -1])
        gw = paddle.matmul(d, cols, transpose_y=True)  # [b, g, cout/g, cin/g*kh*kw]
        out["weight"] = gw.reshape([b] + list(layer.weight.shape))
        out["bias"] = delta.reshape([b, cout, -1]).sum(axis=-1)
    elif isinstance(layer, nn.GroupNorm):
        xhat = _normalised(a, 1, int(layer._num_groups), float(layer._epsilon))
        c = a.shape[1]
        out["weight"] = (delta * xhat).reshape([b, c, -1]).sum(axis=-1)
        out["bias"] = delta.reshape([b, c, -1]).sum(axis=-1)
    elif isinstance(layer, nn.LayerNorm):
        nshape = list(layer._normalized_shape)
        xhat = _normalised(a, a.ndim - len(nshape), None, float(layer._epsilon))
        out["weight"] = (delta * xhat).reshape([b, -1] + nshape).sum(axis=1)
        out["bias"] = delta.reshape([b, -1] + nshape).sum(axis=1)
    else:  # pragma: no cover - guarded by _layer_supported
        raise TypeError(f"no per-sample rule for {type(layer).__name__}")
    return out


class PerSampleGradients:
    """Capture per-sample gradients of a model with hooks (Linear, Conv2D, GroupNorm, LayerNorm).

    Usage::

        psg = PerSampleGradients(model, loss_reduction="mean")
        loss = F.cross_entropy(model(x), y)          # mean over the batch
        loss.backward()
        grads = psg.gradients()                       # {param name: [B, *param.shape]}
        psg.clear()

    Args:
        model: the network. Every trainable parameter must belong to a supported layer
            (see :func:`supports_hooks`); otherwise use :func:`per_sample_gradients_microbatch`.
        loss_reduction: ``"mean"`` (the loss averages over the batch, δ is multiplied by B) or
            ``"sum"``.

    If a layer is called several times in one forward pass, its contributions are summed.
    """

    def __init__(self, model: nn.Layer, loss_reduction: str = "mean") -> None:
        if loss_reduction not in ("mean", "sum"):
            raise ValueError(f"loss_reduction must be 'mean' or 'sum', got {loss_reduction!r}")
        ok, bad = supports_hooks(model)
        if not ok:
            raise ValueError(
                f"per-sample gradient hooks support {', '.join(t.__name__ for t in HOOK_LAYERS)} "
                f"(Conv2D: NCHW, zero padding); these layers have trainable parameters but are not "
                f"supported: {bad}. Use per_sample_gradients_microbatch / mode='microbatch', or freeze them."
            )
        self.model = model
        self.loss_reduction = loss_reduction
        self._names: Dict[int, str] = {id(p): n for n, p in model.named_parameters()}
        self._grads: Dict[int, paddle.Tensor] = {}
        self._params: Dict[int, paddle.Tensor] = {}
        self.batch_size: Optional[int] = None
        self._error: Optional[str] = None
        self._handles: list = []
        self.attach()

    def attach(self) -> None:
        """Register the hooks (done by the constructor)."""
        if self._handles:
            return
        for _, layer in self.model.named_sublayers(include_self=True):
            if _trainable_own_params(layer) and _layer_supported(layer):
                self._handles.append(layer.register_forward_post_hook(self._forward_hook))

    def detach(self) -> None:
        """Remove all hooks; the model behaves as before."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def clear(self) -> None:
        """Forget the captured per-sample gradients."""
        self._grads = {}
        self._params = {}
        self.batch_size = None
        self._error = None

    def _forward_hook(self, layer: nn.Layer, inputs: tuple, output: paddle.Tensor) -> None:
        if not paddle.is_grad_enabled() or not isinstance(output, paddle.Tensor) or output.stop_gradient:
            return None
        if not _trainable_own_params(layer):
            return None
        a = inputs[0].detach()

        def grad_hook(grad: paddle.Tensor) -> None:
            self._accumulate(layer, a, grad)
            return None

        output.register_hook(grad_hook)
        return None

    @paddle.no_grad()
    def _accumulate(self, layer: nn.Layer, a: paddle.Tensor, grad: paddle.Tensor) -> None:
        b = int(a.shape[0])
        if self.batch_size is not None and self.batch_size != b:
            # Raising inside a Paddle gradient hook surfaces as an opaque OSError; remember the
            # problem and report it when the gradients are read.
            self._error = (
                f"per-sample gradients of batch size {self.batch_size} were stored and a backward pass "
                f"with batch size {b} arrived; call step()/clear_grad() (or clear()) after every backward pass"
            )
            return
        self.batch_size = b
        delta = grad.detach() * (b if self.loss_reduction == "mean" else 1)
        per = _layer_per_sample(layer, a, delta)
        for pname, p in layer.named_parameters(include_sublayers=False):
            if p.stop_gradient or pname not in per:
                continue
            g = per[pname].astype(p.dtype)
            key = id(p)
            self._grads[key] = self._grads[key] + g if key in self._grads else g
            self._params[key] = p

    def gradients_by_param(self) -> Dict[int, paddle.Tensor]:
        """Captured per-sample gradients keyed by ``id(param)``."""
        if self._error:
            raise ValueError(self._error)
        return dict(self._grads)

    def gradients(self) -> Dict[str, paddle.Tensor]:
        """Captured per-sample gradients keyed by the model's parameter names, each [B, *shape]."""
        if self._error:
            raise ValueError(self._error)
        return {self._names.get(k, self._params[k].name): g for k, g in self._grads.items()}

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.detach()
        except Exception:
            pass


def per_sample_gradients_microbatch(
    model: nn.Layer,
    loss_fn: LossFn,
    inputs: paddle.Tensor,
    labels: paddle.Tensor,
    parameters: Optional[Sequence[paddle.Tensor]] = None,
) -> Dict[str, paddle.Tensor]:
    """Reference per-sample gradients: one forward/backward per sample (works for any layer).

    ``loss_fn(model(x_i[None]), y_i[None])`` is differentiated for each sample i; returns
    ``{param name: [B, *shape]}`` for the trainable parameters (or ``parameters``).
    """
    named = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    if parameters is not None:
        wanted = {id(p) for p in parameters}
        named = [(n, p) for n, p in named if id(p) in wanted]
    if not named:
        raise ValueError("the model has no trainable parameters (all have stop_gradient=True)")
    params = [p for _, p in named]
    b = int(inputs.shape[0])
    rows: List[List[paddle.Tensor]] = []
    for i in range(b):
        loss = loss_fn(model(inputs[i : i + 1]), labels[i : i + 1])
        grads = paddle.grad(loss, params, allow_unused=True)
        rows.append([paddle.zeros_like(p) if g is None else g.detach() for g, p in zip(grads, params)])
    return {n: paddle.stack([r[j] for r in rows]) for j, (n, _) in enumerate(named)}


def per_sample_gradients(
    model: nn.Layer,
    loss_fn: LossFn,
    inputs: paddle.Tensor,
    labels: paddle.Tensor,
    mode: str = "auto",
) -> Dict[str, paddle.Tensor]:
    """One-shot per-sample gradients ``{name: [B, *shape]}`` with hooks or micro-batches.

    ``loss_fn`` must average over the batch (``reduction='mean'``). ``mode`` is ``"auto"``
    (hooks when every trainable layer is supported), ``"hooks"`` or ``"microbatch"``.
    Parameter ``.grad`` is left untouched.
    """
    if mode not in ("auto", "hooks", "microbatch"):
        raise ValueError(f"mode must be 'auto', 'hooks' or 'microbatch', got {mode!r}")
    check_no_batchnorm(model)
    if mode == "auto":
        mode = "hooks" if supports_hooks(model)[0] else "microbatch"
    if mode == "microbatch":
        return per_sample_gradients_microbatch(model, loss_fn, inputs, labels)
    psg = PerSampleGradients(model, loss_reduction="mean")
    try:
        params = [p for _, p in model.named_parameters() if not p.stop_gradient]
        loss = loss_fn(model(inputs), labels)
        paddle.grad(loss, params, allow_unused=True)
        return psg.gradients()
    finally:
        psg.detach()
