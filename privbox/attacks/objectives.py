"""Gradient-matching objectives D(ĝ, g) (ALGORITHMS.md §2).

Each objective takes two equally long lists of tensors (dummy and observed gradients, paired by
parameter name upstream) and optional per-layer weights, and returns a scalar tensor. Norms are
``sqrt(Σx² + 1e-12)`` because ``paddle.linalg.norm`` has no double grad in base mode.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import paddle

from ..core.registry import Registry

Objective = Callable[[Sequence[paddle.Tensor], Sequence[paddle.Tensor], Optional[Sequence[float]]], paddle.Tensor]
OBJECTIVES: Registry[Objective] = Registry("objective")
_EPS = 1e-12


def _weights(weights: Optional[Sequence[float]], n: int) -> Sequence[float]:
    if weights is None:
        return [1.0] * n
    if len(weights) != n:
        raise ValueError(f"got {len(weights)} layer weights for {n} gradient tensors")
    return weights


@OBJECTIVES.register("l2", description="squared L2 distance summed over layers (DLG, iDLG)")
def l2(dummy: Sequence[paddle.Tensor], target: Sequence[paddle.Tensor], weights: Optional[Sequence[float]] = None) -> paddle.Tensor:
    """Σ_l w_l‖ĝ_l − g_l‖² (DLG, Zhu et al. 2019; iDLG)."""
    return paddle.add_n([w * paddle.square(d - t).sum() for d, t, w in zip(dummy, target, _weights(weights, len(dummy)))])


@OBJECTIVES.register("l2_mean", description="per-layer mean squared error, summed (old PaddleSleeve DLG)")
def l2_mean(dummy: Sequence[paddle.Tensor], target: Sequence[paddle.Tensor], weights: Optional[Sequence[float]] = None) -> paddle.Tensor:
    """Σ_l w_l‖ĝ_l − g_l‖²/numel_l (the old PaddleSleeve DLG distance; not a default)."""
    return paddle.add_n([w * paddle.square(d - t).mean() for d, t, w in zip(dummy, target, _weights(weights, len(dummy)))])


@OBJECTIVES.register("l2_norm", description="L2 norm (not squared) summed over layers (NVIDIA update matching)")
def l2_norm(dummy: Sequence[paddle.Tensor], target: Sequence[paddle.Tensor], weights: Optional[Sequence[float]] = None) -> paddle.Tensor:
    """Σ_l w_l‖ĝ_l − g_l‖, not squared (NVIDIA update matching, Hatamizadeh et al. 2023)."""
    return paddle.add_n(
        [w * paddle.sqrt(paddle.square(d - t).sum() + _EPS) for d, t, w in zip(dummy, target, _weights(weights, len(dummy)))]
    )


@OBJECTIVES.register("cosine", description="one global cosine distance over all layers (Inverting Gradients, E2EGI)")
def cosine(dummy: Sequence[paddle.Tensor], target: Sequence[paddle.Tensor], weights: Optional[Sequence[float]] = None) -> paddle.Tensor:
    """1 − Σ_l w_l⟨ĝ_l, g_l⟩ / (‖ĝ‖_w ‖g‖_w), one global cosine (Geiping et al., NeurIPS 2020)."""
    ws = _weights(weights, len(dummy))
    dot = paddle.add_n([w * (d * t).sum() for d, t, w in zip(dummy, target, ws)])
    dn = paddle.add_n([w * (d * d).sum() for d, w in zip(dummy, ws)])
    tn = paddle.add_n([w * (t * t).sum() for t, w in zip(target, ws)])
    return 1.0 - dot / (paddle.sqrt(dn + _EPS) * paddle.sqrt(tn + _EPS))


@OBJECTIVES.register("cosine_layer", description="sum of per-layer cosine distances (inversefed simlocal)")
def cosine_layer(dummy: Sequence[paddle.Tensor], target: Sequence[paddle.Tensor], weights: Optional[Sequence[float]] = None) -> paddle.Tensor:
    """Σ_l w_l(1 − cos(ĝ_l, g_l)), per-layer cosine (inversefed "simlocal")."""
    terms = []
    for d, t, w in zip(dummy, target, _weights(weights, len(dummy))):
        cos = (d * t).sum() / (paddle.sqrt((d * d).sum() + _EPS) * paddle.sqrt((t * t).sum() + _EPS))
        terms.append(w * (1.0 - cos))
    return paddle.add_n(terms)
