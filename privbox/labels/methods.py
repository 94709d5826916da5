"""Analytic label recovery from the last-layer gradient (``ALGORITHMS.md`` §5).

All methods read the classifier gradient of a *mean* softmax cross-entropy loss,

    dW = (1/B) Σ_n h_n (p_n − e_{y_n})ᵀ      (Paddle layout [d, C])
    db = (1/B) Σ_n (p_n − e_{y_n})            ([C])

with ``h_n`` the penultimate features, and use the per-class column statistics
``s_c = Σ_k dW[k, c]`` (column sums, ``sum(axis=0)``) and ``m_c = min_k dW[k, c]`` (column minima,
``min(axis=0)``). Pass a *gradient*: a FedAvg weight delta has the opposite sign; convert it with
:func:`privbox.labels.gradient_from_delta` first.

Methods: :func:`idlg` (Zhao et al. 2020), :func:`yin` (Yin et al., CVPR 2021), :func:`llg`
(Wainakh et al., PETS 2022), :func:`e2egi` (Li et al., E2EGI) and :func:`ilrg` (Ma et al.,
ICLR 2023). Each returns a :class:`~privbox.labels.result.LabelRecovery`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Union

import numpy as np

from ..core.errors import ConfigError
from ..core.registry import Registry
from ..core.registry_view import RegistryView
from .classifier import ArrayLike, GradientInput, last_layer_gradients, to_numpy
from .result import LabelRecovery

__all__ = [
    "idlg",
    "yin",
    "llg",
    "e2egi",
    "ilrg",
    "llg_impact",
    "LABEL_METHODS",
    "recover_labels",
]


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (the number of samples B), got {batch_size!r}")
    return int(batch_size)


def _column_sums(dw: np.ndarray) -> np.ndarray:
    return dw.sum(axis=0)


# --------------------------------------------------------------------------------------------
# iDLG
# --------------------------------------------------------------------------------------------


def idlg(
    grads: GradientInput,
    batch_size: int = 1,
    num_classes: Optional[int] = None,
    *,
    extended: bool = False,
    rule: str = "auto",
    weight_name: Optional[str] = None,
    bias_name: Optional[str] = None,
) -> LabelRecovery:
    """iDLG label recovery (Zhao, Mopuri and Bilen, "iDLG: Improved Deep Leakage from Gradients", 2020).

    **Sign rule (B = 1).** With one sample, ``p − e_y`` is negative only at the true class, so the
    label is the unique class with a negative bias gradient, equivalently ``argmin_c s_c`` of the
    weight-gradient column sums when the features are non-negative (ReLU/sigmoid), §5.1.

    **Extended set (any B, ``extended=True``).** The classes with ``s_c < 0`` are reported as
    present (the baseline in the iLRG repository); counts are not recovered (``kind == "set"``).

    Args:
        grads: gradient dict, ``(dW, db)`` pair or ``dW`` (see :func:`last_layer_gradients`).
        batch_size: B; the sign rule requires 1.
        num_classes: C (required for a gradient dict).
        extended: return the extended present set instead of a single label.
        rule: sign-rule source: ``"bias"`` (argmin of db), ``"weight"`` (argmin of s_c) or
            ``"auto"`` (bias when a bias gradient exists, else weight).
        weight_name, bias_name: classifier keys, to resolve an ambiguous dict.
    """
    batch_size = _check_batch_size(batch_size)
    dw, db, info = last_layer_gradients(grads, num_classes, weight_name, bias_name)
    num_classes = dw.shape[1]
    sums = _column_sums(dw)
    diagnostics: Dict[str, Any] = dict(info)
    diagnostics["column_sums"] = sums
    if extended:
        present = np.flatnonzero(sums < 0)
        diagnostics["variant"] = "extended set {c : s_c < 0}"
        return LabelRecovery.from_labels("idlg_set", present, num_classes, batch_size, kind="set", diagnostics=diagnostics)
    if batch_size != 1:
        raise ValueError(
            f"iDLG's sign rule assumes batch_size=1, got {batch_size}; use idlg(..., extended=True) for the "
            "present-class set, or llg / e2egi / ilrg for counts at B > 1"
        )
    if rule not in ("auto", "bias", "weight"):
        raise ValueError(f"rule must be 'auto', 'bias' or 'weight', got {rule!r}")
    if rule == "bias" and db is None:
        raise ValueError("rule='bias' needs the classifier bias gradient, but none was found; use rule='weight'")
    used = "bias" if (rule == "bias" or (rule == "auto" and db is not None)) else "weight"
    scores = db if used == "bias" else sums
    label = int(np.argmin(scores))
    diagnostics.update(
        rule=used,
        num_negative=int(np.count_nonzero(scores < 0)),
        weight_rule_label=int(np.argmin(sums)),
    )
    if db is not None:
        diagnostics["bias_rule_label"] = int(np.argmin(db))
        diagnostics["rules_agree"] = diagnostics["bias_rule_label"] == diagnostics["weight_rule_label"]
    return LabelRecovery.from_labels("idlg", [label], num_classes, batch_size, diagnostics=diagnostics)


# --------------------------------------------------------------------------------------------
# Yin et al. (GradInversion) row-min
# --------------------------------------------------------------------------------------------


def yin(
    grads: GradientInput,
    batch_size: int,
    num_classes: Optional[int] = None,
    *,
    variant: str = "topk",
    weight_name: Optional[str] = None,
    bias_name: Optional[str] = None,
) -> LabelRecovery:
    """Row-min label recovery of GradInversion (Yin et al., "See Through Gradients", CVPR 2021).

    With non-negative features, every entry of an absent class's column is ≥ 0, while a present
    class has negative entries. The method takes the column minima ``m_c = min_k dW[k, c]`` (the
    "row" minima in PyTorch's ``[C, d]`` layout) and returns the B classes with the smallest
    ``m_c`` (``variant="topk"``, argsort ascending), or the set ``{c : m_c < 0}``
    (``variant="set"``), §5.1. It assumes **unique** labels (B ≤ C) and ``h ≥ 0``.

    ``diagnostics["num_negative_minima"]`` should equal B when the assumptions hold.
    """
    batch_size = _check_batch_size(batch_size)
    dw, _, info = last_layer_gradients(grads, num_classes, weight_name, bias_name)
    num_classes = dw.shape[1]
    minima = dw.min(axis=0)
    num_negative = int(np.count_nonzero(minima < 0))
    diagnostics: Dict[str, Any] = dict(info, column_minima=minima, num_negative_minima=num_negative)
    if variant == "set":
        return LabelRecovery.from_labels(
            "yin_set", np.flatnonzero(minima < 0), num_classes, batch_size, kind="set", diagnostics=diagnostics
        )
    if variant != "topk":
        raise ValueError(f"variant must be 'topk' or 'set', got {variant!r}")
    if batch_size > num_classes:
        raise ValueError(
            f"Yin's row-min rule returns B distinct labels, but batch_size={batch_size} > num_classes={num_classes}; "
            "the batch must repeat labels: use llg, e2egi or ilrg"
        )
    if num_negative != batch_size:
        diagnostics["warning"] = (
            f"{num_negative} classes have a negative column minimum but B={batch_size}: labels are probably repeated "
            "or the features are not non-negative"
        )
    labels = np.argsort(minima, kind="stable")[:batch_size]
    return LabelRecovery.from_labels("yin", labels, num_classes, batch_size, diagnostics=diagnostics)


# --------------------------------------------------------------------------------------------
# LLG (Wainakh et al.) and the E2EGI heuristic
# --------------------------------------------------------------------------------------------


def _resolve_kappa(kappa: Union[None, str, float], num_classes: int, num_negative: int) -> float:
    if kappa is None:
        return float(num_classes)
    if isinstance(kappa, str):
        if kappa == "present":
            return float(max(num_negative, 1))
        if kappa == "classes":
            return float(num_classes)
        raise ValueError(f"kappa must be a positive number, 'classes' (C) or 'present' (|I|), got {kappa!r}")
    value = float(kappa)
    if not value > 0:
        raise ValueError(f"kappa must be positive, got {kappa}")
    return value


def llg_impact(
    column_sums: np.ndarray, batch_size: int, kappa: Union[None, str, float] = None
) -> float:
    """LLG's impact of one occurrence ``m = (Σ_{c∈I} s_c)/B · (1 + 1/κ)``, ``I = {c : s_c < 0}`` (§5.2).

    ``m`` is negative. ``kappa`` is C by default (breaching ``wainakh-simple``); ``"present"`` uses
    ``|I|`` (Label-based-Defense); the paper's own constant is not known to us.
    """
    sums = np.asarray(column_sums, dtype=np.float64)
    negative = sums < 0
    kappa_value = _resolve_kappa(kappa, sums.size, int(negative.sum()))
    return float(sums[negative].sum() / batch_size * (1.0 + 1.0 / kappa_value))


def _keep_most_negative(sums: np.ndarray, batch_size: int) -> np.ndarray:
    """Classes with a negative column sum, at most the B most negative, in class-index order."""
    negative = np.flatnonzero(sums < 0)
    if negative.size > batch_size:
        negative = np.sort(negative[np.argsort(sums[negative], kind="stable")[:batch_size]])
    return negative


def _greedy_fill(sums: np.ndarray, first: np.ndarray, batch_size: int, shift: float) -> np.ndarray:
    """Append ``argmin(s)`` until B labels, adding ``shift`` to the chosen class each time.

    The update goes to the class that was *just* picked (breaching's wainakh-simple updates a stale
    loop index here; that bug is avoided).
    """
    scores = sums.copy()
    labels = list(int(c) for c in first)
    scores[first] += shift
    while len(labels) < batch_size:
        j = int(np.argmin(scores))
        labels.append(j)
        scores[j] += shift
    return np.asarray(labels, dtype=np.int64)


def llg(
    grads: GradientInput,
    batch_size: int,
    num_classes: Optional[int] = None,
    *,
    kappa: Union[None, str, float] = None,
    weight_name: Optional[str] = None,
    bias_name: Optional[str] = None,
) -> LabelRecovery:
    """LLG impact heuristic (Wainakh et al., "User-Level Label Leakage from Gradients in Federated
    Learning", PETS 2022), §5.2.

    ``I = {c : s_c < 0}`` are taken once each; the impact ``m`` (:func:`llg_impact`, negative) is
    subtracted from their column sums; then ``argmin s`` is appended and ``m`` subtracted from that
    *new* index until there are B labels. If more than B classes are negative, the B most negative
    are kept (privbox guard, as for :func:`e2egi`).

    Args:
        kappa: the constant κ in ``(1 + 1/κ)``: ``None``/``"classes"`` → C (default, breaching
            ``wainakh-simple``), ``"present"`` → ``|I|`` (Label-based-Defense), or a number.
    """
    batch_size = _check_batch_size(batch_size)
    dw, _, info = last_layer_gradients(grads, num_classes, weight_name, bias_name)
    num_classes = dw.shape[1]
    sums = _column_sums(dw)
    num_negative = int(np.count_nonzero(sums < 0))
    if num_negative == 0:
        raise ValueError(
            "LLG needs at least one class with a negative weight-gradient column sum, found none. If this is a "
            "FedAvg weight delta, convert it with gradient_from_delta(delta, lr, local_steps) first; an all-zero "
            "gradient carries no label information"
        )
    impact = llg_impact(sums, batch_size, kappa)
    first = _keep_most_negative(sums, batch_size)
    labels = _greedy_fill(sums, first, batch_size, -impact)
    diagnostics: Dict[str, Any] = dict(
        info,
        column_sums=sums,
        impact=impact,
        kappa=_resolve_kappa(kappa, num_classes, num_negative),
        num_negative=num_negative,
        truncated=num_negative > batch_size,
    )
    return LabelRecovery.from_labels("llg", labels, num_classes, batch_size, diagnostics=diagnostics)


def e2egi(
    grads: GradientInput,
    batch_size: int,
    num_classes: Optional[int] = None,
    *,
    fallback_kappa: Union[None, str, float] = None,
    weight_name: Optional[str] = None,
    bias_name: Optional[str] = None,
) -> LabelRecovery:
    """E2EGI label heuristic (Li et al., E2EGI: end-to-end gradient inversion), §5.3.

    ``P = max{s_c : s_c > 0}`` and ``m = C·P/B`` estimate the effect of one occurrence on a column
    sum (exact when the softmax is uniform and the per-sample feature sums are equal). Classes
    with ``s_c < 0`` are taken once and get ``+m``; then ``argmin s`` is appended and gets ``+m``
    until there are B labels. Needs only dW, B and C.

    privbox guards (documented deviations from the original code): with no positive ``s_c`` the
    impact falls back to LLG's ``|m|`` (:func:`llg_impact` with ``fallback_kappa``, default C)
    instead of crashing; with more than B negative classes only the B most negative are kept.
    """
    batch_size = _check_batch_size(batch_size)
    dw, _, info = last_layer_gradients(grads, num_classes, weight_name, bias_name)
    num_classes = dw.shape[1]
    sums = _column_sums(dw)
    num_negative = int(np.count_nonzero(sums < 0))
    positive = sums[sums > 0]
    if positive.size:
        impact = num_classes * float(positive.max()) / batch_size
        source = "max_positive"
    else:
        if num_negative == 0:
            raise ValueError(
                "E2EGI found no non-zero weight-gradient column sum: the classifier gradient carries no label "
                "information (all-zero features or gradient?)"
            )
        impact = -llg_impact(sums, batch_size, fallback_kappa)
        source = "llg_fallback"
    first = _keep_most_negative(sums, batch_size)
    labels = _greedy_fill(sums, first, batch_size, impact)
    diagnostics: Dict[str, Any] = dict(
        info,
        column_sums=sums,
        impact=impact,
        impact_source=source,
        num_negative=num_negative,
        truncated=num_negative > batch_size,
    )
    return LabelRecovery.from_labels("e2egi", labels, num_classes, batch_size, diagnostics=diagnostics)


# --------------------------------------------------------------------------------------------
# iLRG (Ma et al., ICLR 2023)
# --------------------------------------------------------------------------------------------


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    expo = np.exp(shifted)
    return expo / expo.sum(axis=1, keepdims=True)


def _repair_sum(raw: np.ndarray, float_counts: np.ndarray, total: int) -> np.ndarray:
    """Adjust rounded counts so that they sum to ``total`` (§5.4, step 4).

    Too many: decrement the positive entries with the largest rounding error ``n̂ − float``.
    Too few: increment the entries with the most negative error. The iLRG repository slices the
    increment candidates with a negative count (``inds[:num_mod]`` with ``num_mod < 0``), which
    changes all but the last few entries; here exactly ``|Σn̂ − K|`` entries change. A count is
    never decremented below zero, and differences larger than C are handled by repeating the step.
    """
    counts = raw.astype(np.int64).copy()
    error = counts - float_counts
    diff = int(counts.sum()) - int(total)
    while diff > 0:
        eligible = np.flatnonzero(counts > 0)
        chosen = eligible[np.argsort(-error[eligible], kind="stable")[:diff]]
        counts[chosen] -= 1
        error[chosen] -= 1
        diff -= chosen.size
    while diff < 0:
        chosen = np.argsort(error, kind="stable")[:-diff]
        counts[chosen] += 1
        error[chosen] += 1
        diff += chosen.size
    return counts


def ilrg(
    grads: GradientInput,
    batch_size: int,
    num_classes: Optional[int] = None,
    fc_weight: Optional[ArrayLike] = None,
    fc_bias: Optional[ArrayLike] = None,
    *,
    variant: str = "standard",
    present_classes: Optional[Sequence[int]] = None,
    alpha: float = 1.0,
    weight_name: Optional[str] = None,
    bias_name: Optional[str] = None,
) -> LabelRecovery:
    """iLRG per-class counts (Ma et al., "Instance-wise Batch Label Restoration via Gradients in
    Federated Learning", ICLR 2023), §5.4, computed in float64.

    1. ``ē_c = dW[:, c] / db_c``: a weighted mean of the class-c features (zero where ``db_c = 0``).
    2. ``p̂_c = softmax(α·(ē_c·W_fc + b_fc))``; the ``"estimate"`` variant uses ``p̂_c = 1/C``.
    3. Least squares by Moore–Penrose pseudo-inverse on the (C+1)×C system
       ``Σ_j k_j = K`` and ``Σ_j k_j p̂_j[c] − k_c = K·db_c`` (K = ``batch_size``).
    4. Negatives → 0, round, counts > K → 0: the raw counts (:attr:`LabelRecovery.raw_counts`, on
       which the paper's metrics are computed); then the sum is repaired to K
       (:attr:`LabelRecovery.counts` and ``labels``), with the repository's increment bug fixed.

    The ``"simplified"`` variant restricts unknowns and equations to known ``present_classes``.
    Assumes a Linear+bias last layer, mean softmax-CE and similar features within a class; best on
    untrained models.

    Args:
        grads: gradient dict, or a ``(dW, db)`` pair: the **bias gradient is required**.
        fc_weight: the model's classifier weight ``W_fc`` ``[d, C]`` (not needed for ``"estimate"``);
            :func:`~privbox.labels.classifier_parameters` returns it.
        fc_bias: the model's classifier bias ``b_fc`` ``[C]`` (zeros when ``None``).
        variant: ``"standard"``, ``"estimate"`` or ``"simplified"``.
        present_classes: the known present-class set (``"simplified"`` only).
        alpha: softmax temperature factor α (1 in the paper).
    """
    batch_size = _check_batch_size(batch_size)
    dw, db, info = last_layer_gradients(grads, num_classes, weight_name, bias_name)
    num_classes = dw.shape[1]
    if db is None:
        raise ValueError(
            "iLRG needs the classifier bias gradient, but none was found: pass a (dW, db) pair or name it with "
            "bias_name=...; a last layer without bias is not supported by iLRG"
        )
    if variant not in ("standard", "estimate", "simplified"):
        raise ValueError(f"variant must be 'standard', 'estimate' or 'simplified', got {variant!r}")

    diagnostics: Dict[str, Any] = dict(info, variant=variant)
    if variant == "estimate":
        probs = np.full((num_classes, num_classes), 1.0 / num_classes)
    else:
        if fc_weight is None:
            raise ValueError(
                f"iLRG variant {variant!r} needs the model's classifier weight fc_weight [d, C] (and fc_bias); "
                "get them with classifier_parameters(model, num_classes), or use variant='estimate'"
            )
        weight = to_numpy(fc_weight)
        if weight.shape != dw.shape:
            hint = " (transpose a PyTorch-layout [C, d] weight)" if weight.shape == dw.shape[::-1] else ""
            raise ValueError(f"fc_weight has shape {list(weight.shape)}, expected {list(dw.shape)}{hint}")
        bias = np.zeros(num_classes) if fc_bias is None else to_numpy(fc_bias)
        if bias.shape != (num_classes,):
            raise ValueError(f"fc_bias has shape {list(bias.shape)}, expected [{num_classes}]")
        nonzero = db != 0
        embeddings = np.zeros((num_classes, dw.shape[0]))
        embeddings[nonzero] = (dw[:, nonzero] / db[nonzero]).T
        probs = _softmax_rows(float(alpha) * (embeddings @ weight + bias))
        diagnostics["zero_bias_gradient_classes"] = np.flatnonzero(~nonzero)

    if variant == "simplified":
        if present_classes is None:
            raise ValueError("variant='simplified' needs present_classes (the known set of classes in the batch)")
        subset = np.unique(np.asarray(present_classes, dtype=np.int64).reshape(-1))
        if subset.size == 0 or subset.min() < 0 or subset.max() >= num_classes:
            raise ValueError(f"present_classes must be a non-empty set of class indices in [0, {num_classes})")
    else:
        subset = np.arange(num_classes)

    size = subset.size
    coef = np.empty((size + 1, size))
    coef[0] = 1.0
    coef[1:] = probs[np.ix_(subset, subset)].T - np.eye(size)
    values = np.concatenate([[float(batch_size)], batch_size * db[subset]])
    solution = np.linalg.pinv(coef) @ values

    float_counts = np.zeros(num_classes)
    float_counts[subset] = solution
    raw = np.round(np.where(float_counts > 0, float_counts, 0.0)).astype(np.int64)
    raw[raw > batch_size] = 0
    counts = _repair_sum(raw, float_counts, batch_size)
    diagnostics.update(
        float_counts=float_counts,
        probs=probs,
        residual=float(np.linalg.norm(coef @ solution - values)),
        repaired=int(raw.sum()) != batch_size,
    )
    name = "ilrg" if variant == "standard" else f"ilrg_{variant}"
    return LabelRecovery.from_counts(name, counts, batch_size, raw_counts=raw, diagnostics=diagnostics)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

#: Label-recovery methods by name; each is called as ``fn(grads, batch_size, num_classes, **options)``.
LABEL_REGISTRY: Registry[Callable[..., LabelRecovery]] = Registry("label-recovery method")
LABEL_REGISTRY.add("idlg", idlg, description="iDLG sign rule on the last layer's gradient, B = 1 (Zhao et al. 2020)")
LABEL_REGISTRY.add("yin", yin, description="Yin et al.'s row minima of the FC weight gradient, distinct labels (CVPR 2021)")
LABEL_REGISTRY.add("llg", llg, description="LLG set-and-fill from column sums with impact shift, repeated labels (Wainakh et al. 2022)")
LABEL_REGISTRY.add("e2egi", e2egi, description="E2EGI's counting heuristic from the FC bias/weight gradient (Li et al.)")
LABEL_REGISTRY.add("ilrg", ilrg, description="iLRG: label counts by least squares on the classifier's gradients and weights (Ma et al. 2023)",
                   requires=("has_global_state",))

#: ``{name: method}``, a live read-only view of :data:`LABEL_REGISTRY`.
LABEL_METHODS = RegistryView(LABEL_REGISTRY)


def recover_labels(
    method: str,
    grads: GradientInput,
    batch_size: int,
    num_classes: Optional[int] = None,
    **options: Any,
) -> LabelRecovery:
    """Run the label-recovery method registered as ``method`` in :data:`LABEL_METHODS`.

    ``options`` are passed through, e.g. ``fc_weight=..., fc_bias=...`` for ``"ilrg"``,
    ``kappa="present"`` for ``"llg"`` or ``extended=True`` for ``"idlg"``.
    """
    if method not in LABEL_REGISTRY:
        raise ConfigError(f"unknown label-recovery method {method!r}; choose one of {LABEL_REGISTRY.names()}")
    return LABEL_REGISTRY.get(method)(grads, batch_size, num_classes, **options)
