"""Rank analyses of gradient inversion (ALGORITHMS.md §7.1-7.2).

* **RA-i**, the rank-analysis index of the Label-based-Defense / E2EGI code (after R-GAP, Zhu
  and Blaschko, ICLR 2021): a layer-by-layer count of unknowns versus gradient constraints. A
  positive RA-i means the layer-wise linear system is under-determined, so R-GAP-style closed
  form recovery is impossible. Enlarging ResNet-18's stem max-pool kernel to 19 flips RA-i from
  −50 176·B to +3 072·B at 224² (the ``RA`` scheme of "Label is the culprit").
* **coefficient-matrix rank** of an FC layer's gradient equations, A = Δ ⊗ I: labels that repeat
  inside a batch make Δ (and A) rank deficient, so the input is not determined by the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn

__all__ = [
    "LayerRank",
    "RankAnalysis",
    "trace_layer_sizes",
    "ra_index_from_sizes",
    "rank_analysis",
    "ra_index",
    "resnet_block_weights",
    "set_maxpool_kernel",
    "CoefficientSystem",
    "coefficient_matrix_rank",
    "fc_coefficient_system",
    "softmax_ce_deltas",
]

BlockWeightFn = Callable[[nn.Layer], int]


# ------------------------------------------------------------------------------------ RA-i
@dataclass
class LayerRank:
    """One counted layer: sizes for the whole batch and the RA recursion values."""

    name: str
    kind: str  # "conv", "maxpool", "avgpool", "fc" or "block"
    n_x: int
    n_w: int
    n_z: int
    r: int = 0  # n_x − n_w − n_z
    ra: int = 0  # r − n_v (n_v before this layer)
    n_v: int = 0  # n_v after this layer


@dataclass
class RankAnalysis:
    """Result of :func:`rank_analysis`: ``ra_i`` = max over layers of ``ra``."""

    ra_i: int
    batch_size: int
    layers: List[LayerRank] = field(default_factory=list)

    @property
    def argmax_layer(self) -> str:
        """Name of the layer where the maximum is reached (first one on ties)."""
        best = max(range(len(self.layers)), key=lambda i: (self.layers[i].ra, -i))
        return self.layers[best].name

    @property
    def underdetermined(self) -> bool:
        """True when RA-i > 0 (closed-form layer-wise recovery impossible)."""
        return self.ra_i > 0

    def table(self) -> str:
        """A plain-text table of the per-layer values."""
        head = f"{'layer':<24}{'kind':<9}{'n_x':>12}{'n_w':>12}{'n_z':>12}{'RA_i':>13}{'n_v':>12}"
        rows = [head]
        for l in self.layers:
            rows.append(f"{l.name:<24}{l.kind:<9}{l.n_x:>12}{l.n_w:>12}{l.n_z:>12}{l.ra:>13}{l.n_v:>12}")
        return "\n".join(rows)


def _trainable_count(layer: Optional[nn.Layer]) -> int:
    if layer is None:
        return 0
    return int(sum(int(np.prod(p.shape)) for p in layer.parameters() if not p.stop_gradient))


def resnet_block_weights(block: nn.Layer) -> int:
    """n_w of a residual block: trainable parameters of ``conv2`` plus the downsample conv.

    This is the convention of the Label-based-Defense rank-analysis code (the first conv, BN and
    ReLU of the block are not counted), applied to Paddle's ``BasicBlock`` and
    ``BottleneckBlock`` alike.
    """
    n_w = _trainable_count(getattr(block, "conv2", None))
    down = getattr(block, "downsample", None)
    if down is not None:
        convs = [m for m in down.sublayers(include_self=True) if isinstance(m, nn.layer.conv._ConvNd)]
        if convs:
            n_w += _trainable_count(convs[0])
    return n_w


def _default_blocks() -> Dict[type, BlockWeightFn]:
    from paddle.vision.models.resnet import BasicBlock, BottleneckBlock

    return {BasicBlock: resnet_block_weights, BottleneckBlock: resnet_block_weights}


def _leaf_kind(layer: nn.Layer) -> Optional[str]:
    if isinstance(layer, nn.layer.conv._ConvNd):
        return "conv"
    if isinstance(layer, nn.Linear):
        return "fc"
    cls = type(layer).__name__
    # Paddle's pools and any parameter-free pool layer (e.g. privbox's double-differentiable
    # max-pool) are layers with zero weights.
    if "MaxPool" in cls:
        return "maxpool"
    if "AvgPool" in cls:
        return "avgpool"
    return None


def _pairs(padding, dims: int) -> Optional[List[Tuple[int, int]]]:
    """Per-spatial-dim (before, after) padding, or None when it cannot be read."""
    if isinstance(padding, str):
        return [(0, 0)] * dims if padding.upper() == "VALID" else None
    if isinstance(padding, int):
        return [(padding, padding)] * dims
    pad = list(padding)
    if len(pad) == dims and all(isinstance(v, int) for v in pad):
        return [(v, v) for v in pad]
    if len(pad) == 2 * dims and all(isinstance(v, int) for v in pad):
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(dims)]
    if len(pad) == dims + 2 and all(isinstance(v, (list, tuple)) for v in pad):
        return [(int(v[0]), int(v[1])) for v in pad[2:]]
    return None


def _as_list(value, dims: int) -> List[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)] * dims


def _check_window(layer: nn.Layer, x: paddle.Tensor) -> None:
    """Raise ValueError when a 2-D conv/pool window does not fit its input.

    Paddle 3.x can corrupt memory or hang instead of raising when the output size is <= 0,
    so the sizes are checked before the op runs.
    """
    if x.ndim != 4:
        return
    if isinstance(layer, nn.layer.conv._ConvNd):
        if getattr(layer, "_transposed", False) or getattr(layer, "_data_format", "NCHW") != "NCHW":
            return
        kernel, stride = _as_list(layer._kernel_size, 2), _as_list(layer._stride, 2)
        dilation, padding = _as_list(layer._dilation, 2), _pairs(layer._padding, 2)
    elif isinstance(layer, (nn.MaxPool2D, nn.AvgPool2D)):
        if getattr(layer, "data_format", "NCHW") != "NCHW":
            return
        kernel = _as_list(layer.ksize, 2)
        stride = _as_list(layer.stride if layer.stride is not None else layer.ksize, 2)
        dilation, padding = [1, 1], _pairs(layer.padding, 2)
    else:
        return
    if padding is None:
        return
    for size, k, st, d, (p0, p1) in zip(x.shape[2:], kernel, stride, dilation, padding):
        if size + p0 + p1 - d * (k - 1) - 1 < 0:
            raise ValueError(
                f"{type(layer).__name__} with kernel {kernel} does not fit its {list(x.shape[2:])} input "
                "(output size would be <= 0); use a larger input shape or a smaller kernel"
            )


def trace_layer_sizes(
    model: nn.Layer,
    input_shape: Sequence[int],
    trace_batch_size: int = 1,
    block_types: Optional[Mapping[type, BlockWeightFn]] = None,
    dtype: str = "float32",
) -> List[LayerRank]:
    """Per-sample n_x, n_z and n_w of the counted layers, in execution order.

    Counted layers: convolutions, max-pools, average pools (incl. adaptive), ``nn.Linear`` and
    residual blocks (``block_types``: type → n_w function, default Paddle's ResNet
    ``BasicBlock``/``BottleneckBlock`` with :func:`resnet_block_weights`), which count as one
    layer and are not entered. BN, activations, dropout and reshapes are ignored. One forward
    pass of a zero batch of ``trace_batch_size`` samples is run in eval mode without gradients.
    Sizes are returned per sample (numel / trace batch).
    """
    shape = [int(s) for s in input_shape]
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"input_shape must be positive per-sample sizes such as [3, 224, 224], got {list(input_shape)}")
    if trace_batch_size < 1:
        raise ValueError(f"trace_batch_size must be >= 1, got {trace_batch_size}")
    blocks = dict(_default_blocks() if block_types is None else block_types)
    records: List[LayerRank] = []
    handles = []

    def make_hook(name: str, kind: str, n_w: int):
        def hook(layer, inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            n_x = int(np.prod(inputs[0].shape)) // trace_batch_size
            n_z = int(np.prod(out.shape)) // trace_batch_size
            records.append(LayerRank(name=name, kind=kind, n_x=n_x, n_w=n_w, n_z=n_z))

        return hook

    def visit(layer: nn.Layer, prefix: str) -> None:
        for child_name, child in layer.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            block_fn = next((fn for t, fn in blocks.items() if isinstance(child, t)), None)
            if block_fn is not None:
                handles.append(child.register_forward_post_hook(make_hook(name, "block", int(block_fn(child)))))
                continue
            kind = _leaf_kind(child)
            if kind is not None:
                n_w = _trainable_count(child) if kind in ("conv", "fc") else 0
                handles.append(child.register_forward_post_hook(make_hook(name, kind, n_w)))
                continue
            visit(child, name)

    was_training = model.training
    visit(model, "")
    for sub in model.sublayers(include_self=True):
        if isinstance(sub, (nn.layer.conv._ConvNd, nn.MaxPool2D, nn.AvgPool2D)):
            handles.append(sub.register_forward_pre_hook(lambda layer, inputs: _check_window(layer, inputs[0])))
    try:
        model.eval()
        with paddle.no_grad():
            model(paddle.zeros([trace_batch_size] + shape, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        if was_training:
            model.train()
    if not records:
        raise ValueError(
            "no countable layer (Conv, MaxPool, AvgPool, Linear, residual block) ran in the forward pass; "
            "pass block_types for custom blocks"
        )
    return records


def ra_index_from_sizes(sizes: Sequence[Union[LayerRank, Tuple[int, int, int]]], batch_size: int = 1) -> RankAnalysis:
    """Run the RA-i recursion on per-sample sizes (n_x, n_w, n_z), scaled to ``batch_size``.

    For each layer: r = n_x − n_w − n_z; RA_i = r − n_v;
    n_v ← max(max(n_z − n_x, 0) − max(r, 0), 0) + n_v; RA-i = max_i RA_i.
    n_x and n_z are multiplied by ``batch_size`` (every counted layer maps samples
    independently), n_w is not.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    layers: List[LayerRank] = []
    n_v = 0
    for i, s in enumerate(sizes):
        if isinstance(s, LayerRank):
            name, kind, n_x, n_w, n_z = s.name, s.kind, s.n_x, s.n_w, s.n_z
        else:
            (n_x, n_w, n_z), name, kind = s, f"layer{i}", "layer"
        n_x, n_z = int(n_x) * int(batch_size), int(n_z) * int(batch_size)
        n_w = int(n_w)
        r = n_x - n_w - n_z
        ra = r - n_v
        n_v = max(max(n_z - n_x, 0) - max(r, 0), 0) + n_v
        layers.append(LayerRank(name=name, kind=kind, n_x=n_x, n_w=n_w, n_z=n_z, r=r, ra=ra, n_v=n_v))
    if not layers:
        raise ValueError("ra_index_from_sizes needs at least one layer")
    return RankAnalysis(ra_i=max(l.ra for l in layers), batch_size=int(batch_size), layers=layers)


def rank_analysis(
    model: nn.Layer,
    input_shape: Sequence[int],
    batch_size: int = 1,
    trace_batch_size: int = 1,
    block_types: Optional[Mapping[type, BlockWeightFn]] = None,
) -> RankAnalysis:
    """RA-i of ``model`` for batches of ``batch_size`` samples of shape ``input_shape``.

    The layer sizes are traced once with ``trace_batch_size`` samples (default 1) and scaled by
    ``batch_size``; this is exact because every counted layer maps each sample independently (in
    eval mode). Set ``trace_batch_size=batch_size`` to trace the full batch.

    Golden (ResNet-18, 224²): −50 176·B with the stock max-pool, +3 072·B with kernel 19.
    """
    sizes = trace_layer_sizes(model, input_shape, trace_batch_size=trace_batch_size, block_types=block_types)
    return ra_index_from_sizes(sizes, batch_size)


def ra_index(model: nn.Layer, input_shape: Sequence[int], batch_size: int = 1) -> int:
    """RA-i as an integer (see :func:`rank_analysis`)."""
    return rank_analysis(model, input_shape, batch_size).ra_i


def _is_maxpool2d(layer: nn.Layer) -> bool:
    return isinstance(layer, nn.MaxPool2D) or (type(layer).__name__ == "MaxPool2D" and hasattr(layer, "kernel_size"))


def set_maxpool_kernel(model: nn.Layer, kernel_size: int, index: int = 0) -> str:
    """Replace the kernel of the ``index``-th 2-D max-pool of ``model`` (stride and padding kept).

    Works for ``paddle.nn.MaxPool2D`` and privbox's double-differentiable
    ``privbox.nn.layers.MaxPool2D``. With ``index=0`` on a ResNet this is the stem max-pool;
    kernel 19 is the ``RA`` scheme of Label-based-Defense (the attacker must use the same
    kernel). Returns the name of the replaced layer.
    """
    if int(kernel_size) != kernel_size or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive integer, got {kernel_size}")
    pools = [(name, layer) for name, layer in model.named_sublayers() if _is_maxpool2d(layer)]
    if not pools:
        raise ValueError("the model has no MaxPool2D layer whose kernel could be changed")
    if not 0 <= index < len(pools):
        raise ValueError(f"index {index} out of range: the model has {len(pools)} MaxPool2D layers")
    name, old = pools[index]
    if isinstance(old, nn.MaxPool2D):
        new = nn.MaxPool2D(kernel_size=int(kernel_size), stride=old.stride, padding=old.padding, ceil_mode=old.ceil_mode)
    else:
        new = type(old)(int(kernel_size), stride=old.stride, padding=old.padding)
    new.training = old.training
    parent: nn.Layer = model
    parts = name.split(".")
    for p in parts[:-1]:
        parent = getattr(parent, p)
    setattr(parent, parts[-1], new)
    return name


# ----------------------------------------------------------------------- coefficient matrix
@dataclass
class CoefficientSystem:
    """The linear system A·vec(X) = b of an FC layer's weight gradient (ALGORITHMS.md §7.2).

    Attributes:
        rank_a: rank(A) = n_in·rank(Δ).
        rank_ab: rank of the augmented matrix [A | b] (= rank_a iff the system is consistent).
        n_unknowns: B·n_in, the number of entries of X.
        cond: 2-norm condition number of A (∞ when rank deficient).
        solution: least-squares / minimum-norm solution X̂, shape [B, n_in].
        residual: ‖A·vec(X̂) − b‖.
        delta_rank: rank(Δ).
    """

    rank_a: int
    rank_ab: int
    n_unknowns: int
    cond: float
    solution: np.ndarray
    residual: float
    delta_rank: int

    @property
    def unique(self) -> bool:
        """True when the inputs are uniquely determined (full column rank)."""
        return self.rank_a == self.n_unknowns

    @property
    def consistent(self) -> bool:
        return self.rank_a == self.rank_ab


def _as_numpy(x: Union[paddle.Tensor, np.ndarray], name: str) -> np.ndarray:
    if isinstance(x, paddle.Tensor):
        x = x.numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf")
    return arr


def coefficient_matrix_rank(
    deltas: Union[paddle.Tensor, np.ndarray],
    weight_grad: Union[paddle.Tensor, np.ndarray],
    reduction: str = "mean",
    rtol: Optional[float] = None,
) -> CoefficientSystem:
    """Rank analysis of the gradient equations of a fully connected layer z_k = x_k·W.

    With Paddle's weight layout W ∈ R^{n_in×n_out}, ∇W·s = Σ_k x_k δ_kᵀ = X Δᵀ, where
    X = [x_1 … x_B] (n_in×B), Δ = [δ_1 … δ_B] (n_out×B), δ_k = ∂ℓ_k/∂z_k and s = B for a
    mean loss (1 for a sum). Column-major vectorisation gives A·vec(X) = vec(s·∇W) with
    A = Δ ⊗ I_{n_in}, so rank(A) = n_in·rank(Δ): repeated labels make the columns of Δ (nearly)
    equal and the input under-determined ("Label is the culprit", Label-based-Defense). At the
    output layer of a softmax cross-entropy the columns δ_k = p_k − e_{y_k} sum to zero, so
    rank(Δ) ≤ min(B, C − 1) in any case.

    Args:
        deltas: per-sample output gradients δ_k, shape [B, n_out].
        weight_grad: observed weight gradient ∇W, shape [n_in, n_out] (Paddle layout).
        reduction: ``"mean"`` (∇W of the batch-mean loss) or ``"sum"``.
        rtol: relative singular-value tolerance for the ranks (default: NumPy's
            max(M, N)·eps·σ_max). Use e.g. 1e-6 to count near-equal columns as dependent, and
            a tolerance of ~1e-5 when ``weight_grad`` is float32 (else [A | b] looks inconsistent).

    A is built explicitly ((n_out·n_in)×(B·n_in)), so keep n_in·B moderate (a few thousand).
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    d = _as_numpy(deltas, "deltas")
    gw = _as_numpy(weight_grad, "weight_grad")
    if d.ndim != 2 or gw.ndim != 2:
        raise ValueError(f"deltas must be [B, n_out] and weight_grad [n_in, n_out], got {list(d.shape)} and {list(gw.shape)}")
    b, n_out = d.shape
    n_in = gw.shape[0]
    if gw.shape[1] != n_out:
        raise ValueError(
            f"weight_grad has {gw.shape[1]} outputs but deltas have {n_out}; Paddle's Linear weight is [in, out]"
        )
    if n_in * b > 20000:
        raise ValueError(f"A would have {n_in * b} columns; use a smaller layer or batch (n_in*B <= 20000)")
    scale = b if reduction == "mean" else 1.0
    big_delta = d.T  # n_out × B
    a = np.kron(big_delta, np.eye(n_in))  # (n_out·n_in) × (B·n_in)
    rhs = (gw * scale).reshape(-1, order="F")  # vec over columns: index o·n_in + i

    def rank(m: np.ndarray) -> int:
        if rtol is None:
            return int(np.linalg.matrix_rank(m))
        s = np.linalg.svd(m, compute_uv=False)
        return int(np.sum(s > rtol * (s[0] if s.size else 0.0)))

    rank_a = rank(a)
    rank_ab = rank(np.concatenate([a, rhs[:, None]], axis=1))
    sv = np.linalg.svd(a, compute_uv=False)
    cond = float(sv[0] / sv[-1]) if sv.size and sv[-1] > 0 and rank_a == min(a.shape) else float("inf")
    sol, *_ = np.linalg.lstsq(a, rhs, rcond=rtol)
    residual = float(np.linalg.norm(a @ sol - rhs))
    x_hat = sol.reshape(n_in, b, order="F").T  # [B, n_in]
    return CoefficientSystem(
        rank_a=rank_a,
        rank_ab=rank_ab,
        n_unknowns=b * n_in,
        cond=cond,
        solution=x_hat,
        residual=residual,
        delta_rank=rank(big_delta),
    )


def softmax_ce_deltas(logits: Union[paddle.Tensor, np.ndarray], labels: Union[paddle.Tensor, np.ndarray]) -> np.ndarray:
    """δ_k = softmax(z_k) − onehot(y_k), the per-sample CE gradient w.r.t. the logits, [B, C]."""
    z = _as_numpy(logits, "logits")
    y = np.asarray(labels.numpy() if isinstance(labels, paddle.Tensor) else labels).reshape(-1).astype(np.int64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p


def fc_coefficient_system(
    features: Union[paddle.Tensor, np.ndarray],
    weight: Union[paddle.Tensor, np.ndarray],
    bias: Optional[Union[paddle.Tensor, np.ndarray]],
    labels: Union[paddle.Tensor, np.ndarray],
    rtol: Optional[float] = None,
) -> CoefficientSystem:
    """Coefficient-matrix analysis of a final FC layer trained with mean softmax cross-entropy.

    Computes logits = features·W + b, δ_k = softmax − onehot, ∇W = mean_k x_k δ_kᵀ and calls
    :func:`coefficient_matrix_rank`. ``features`` [B, n_in], ``weight`` [n_in, C] (Paddle layout).
    """
    x = _as_numpy(features, "features")
    w = _as_numpy(weight, "weight")
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ValueError(f"features [B, n_in] and weight [n_in, C] do not match: {list(x.shape)} vs {list(w.shape)}")
    logits = x @ w + (0.0 if bias is None else _as_numpy(bias, "bias"))
    deltas = softmax_ce_deltas(logits, labels)
    grad_w = x.T @ deltas / x.shape[0]
    return coefficient_matrix_rank(deltas, grad_w, reduction="mean", rtol=rtol)
