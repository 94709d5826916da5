"""GInfoR, the per-sample gradient information ratio (``ALGORITHMS.md`` §7.3).

GInfoR (E2EGI / Label-based-Defense) asks how much each sample contributes to the batch gradient
the server observes. With ``G = ∇θ mean_n ℓ_n`` and ``g_i = ∇θ ℓ_i``, both taken from the *same*
full-batch forward pass (train-mode BatchNorm couples the samples, so a separate forward per
sample would give a different gradient):

    info_i = Σ_layers ⟨g_i, G⟩              (check: Σ_i info_i = B‖G‖²)
    c      = |min_j info_j| if that minimum is negative, else 0
    GIR_i  = 100 · (info_i + c) / (Σ_j info_j + B·c)   (sums to 100)

It is a diagnostic: a sample with a large GIR dominates the update and is the easiest to
reconstruct. Companion columns: true-class probability, predicted class and its probability,
mean per-layer ‖g_i‖, Σ‖g_i − G‖², 1 − cos(g_i, G) and the fraction of elements whose sign agrees
with G.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle

from ..nn.functional import cross_entropy

__all__ = ["GInfoRTable", "gradient_information_ratio", "ginfor_to_markdown"]

LossFn = Callable[[paddle.Tensor, paddle.Tensor], paddle.Tensor]


class GInfoRTable(list):
    """A list of per-sample row dicts, plus the batch-level checks of §7.3 as attributes.

    Attributes:
        batch_size: B.
        info_sum: Σ_i info_i.
        expected_info_sum: B‖G‖²; equals ``info_sum`` up to rounding.
        shift: the constant c added to every info_i.
        gir_sum: Σ_i GIR_i (100 up to rounding).
    """

    batch_size: int = 0
    info_sum: float = 0.0
    expected_info_sum: float = 0.0
    shift: float = 0.0
    gir_sum: float = 0.0

    def to_markdown(self, digits: int = 4) -> str:
        """Render the table as Markdown (see :func:`ginfor_to_markdown`)."""
        return ginfor_to_markdown(self, digits=digits)


def _per_sample_ce(logits: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
    return cross_entropy(logits, labels, reduction="none")


def _as_label_tensor(labels: Any) -> paddle.Tensor:
    if isinstance(labels, paddle.Tensor):
        return labels.reshape([-1]).astype("int64")
    return paddle.to_tensor(np.asarray(labels, dtype=np.int64).reshape(-1))


def _grads_to_numpy(grads: Sequence[Optional[paddle.Tensor]], params: Sequence[paddle.Tensor]) -> List[np.ndarray]:
    out = []
    for g, p in zip(grads, params):
        if g is None:  # parameter not reached by this loss (allow_unused)
            out.append(np.zeros(p.shape, dtype=np.float64))
        else:
            out.append(g.numpy().astype(np.float64))
    return out


def gradient_information_ratio(
    model: paddle.nn.Layer,
    inputs: paddle.Tensor,
    labels: Any,
    *,
    loss_fn: Optional[LossFn] = None,
    parameters: Optional[Sequence[Tuple[str, paddle.Tensor]]] = None,
    check: bool = True,
    rtol: float = 1e-3,
) -> GInfoRTable:
    """Per-sample gradient information ratio table (GInfoR, ``ALGORITHMS.md`` §7.3).

    One forward pass of the whole batch gives the per-sample losses ``ℓ_i``; ``G`` is the gradient
    of their mean and each ``g_i`` the gradient of ``ℓ_i`` alone (``paddle.grad`` with
    ``retain_graph=True``). The model is used in its current mode (``train()``/``eval()``): use the
    victim's mode. BatchNorm running statistics updated by a train-mode forward are restored
    afterwards. Cost: B + 1 backward passes; memory: one gradient at a time besides G.

    Args:
        model: the model (a ``paddle.nn.Layer`` returning logits ``[B, C]``).
        inputs: the batch ``[B, ...]``.
        labels: the labels ``[B]``.
        loss_fn: ``(logits, labels) -> per-sample losses [B]``; softmax cross-entropy by default.
            The batch loss is their **mean**, as in the victim's update (§1.2).
        parameters: ``(name, tensor)`` pairs to differentiate; the trainable entries of
            ``model.named_parameters()`` by default (BN running statistics are excluded).
        check: verify ``Σ info_i = B‖G‖²`` (relative tolerance ``rtol``) and ``Σ GIR_i = 100``.

    Returns:
        A :class:`GInfoRTable` (a list with one dict per sample, in batch order) with keys
        ``index``, ``label``, ``loss``, ``info``, ``gir_percent``, ``true_class_prob``,
        ``pred_class``, ``pred_prob``, ``mean_layer_grad_norm``, ``sq_dist_to_batch_grad``,
        ``one_minus_cos`` and ``sign_agreement``.

    Raises:
        ValueError: on shape mismatches, a non-per-sample loss, or a zero batch gradient (GIR is
            undefined then).
        RuntimeError: when the check fails. By linearity it holds for any per-sample loss, so a
            failure signals a numerical problem (float32 cancellation when the per-sample
            gradients nearly cancel); try a float64 model or pass ``check=False``.
    """
    labels_t = _as_label_tensor(labels)
    batch = int(inputs.shape[0])
    if int(labels_t.shape[0]) != batch:
        raise ValueError(f"got {batch} inputs but {int(labels_t.shape[0])} labels")
    if parameters is None:
        parameters = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    if not parameters:
        raise ValueError("the model has no trainable parameters to differentiate")
    params = [p for _, p in parameters]

    # A train-mode forward updates BatchNorm running statistics; this diagnostic must not.
    state = [(t, t.numpy().copy()) for _, t in model.named_parameters() if t.stop_gradient]
    state += [(t, t.numpy().copy()) for _, t in model.named_buffers() if t is not None]
    try:
        logits = model(inputs)
    finally:
        for tensor, value in state:
            tensor.set_value(value)
    if logits.ndim != 2 or int(logits.shape[0]) != batch:
        raise ValueError(f"the model must return logits of shape [B, C] = [{batch}, C], got {list(logits.shape)}")
    losses = (loss_fn or _per_sample_ce)(logits, labels_t)
    if list(losses.shape) != [batch]:
        raise ValueError(
            f"loss_fn must return one loss per sample, shape [{batch}], got {list(losses.shape)}; "
            "use reduction='none'"
        )

    batch_grad = _grads_to_numpy(
        paddle.grad(losses.mean(), params, retain_graph=True, allow_unused=True), params
    )
    batch_sq_norm = float(sum((g * g).sum() for g in batch_grad))
    batch_flat_norm = np.sqrt(batch_sq_norm)
    num_elements = sum(g.size for g in batch_grad)

    logits_np = logits.detach().numpy().astype(np.float64)
    shifted = logits_np - logits_np.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    labels_np = labels_t.numpy()
    losses_np = losses.detach().numpy().astype(np.float64)

    rows: List[Dict[str, Any]] = []
    for i in range(batch):
        grads_i = _grads_to_numpy(paddle.grad(losses[i], params, retain_graph=True, allow_unused=True), params)
        info = float(sum((g * G).sum() for g, G in zip(grads_i, batch_grad)))
        sq_norm = float(sum((g * g).sum() for g in grads_i))
        denom = np.sqrt(sq_norm) * batch_flat_norm
        rows.append(
            {
                "index": i,
                "label": int(labels_np[i]),
                "loss": float(losses_np[i]),
                "info": info,
                "true_class_prob": float(probs[i, labels_np[i]]),
                "pred_class": int(np.argmax(probs[i])),
                "pred_prob": float(np.max(probs[i])),
                "mean_layer_grad_norm": float(np.mean([np.sqrt((g * g).sum()) for g in grads_i])),
                "sq_dist_to_batch_grad": float(sum(((g - G) ** 2).sum() for g, G in zip(grads_i, batch_grad))),
                "one_minus_cos": float(1.0 - info / denom) if denom > 0 else float("nan"),
                "sign_agreement": float(
                    sum(np.count_nonzero(np.sign(g) == np.sign(G)) for g, G in zip(grads_i, batch_grad)) / num_elements
                ),
            }
        )

    infos = np.array([r["info"] for r in rows])
    info_sum = float(infos.sum())
    min_info = float(infos.min())
    shift = abs(min_info) if min_info < 0 else 0.0
    total = info_sum + batch * shift
    if not total > 0:
        raise ValueError(
            "the batch gradient is zero (Σ info_i + B·c = 0), so the gradient information ratio is undefined"
        )
    for row in rows:
        row["gir_percent"] = 100.0 * (row["info"] + shift) / total

    table = GInfoRTable(rows)
    table.batch_size = batch
    table.info_sum = info_sum
    table.expected_info_sum = batch * batch_sq_norm
    table.shift = shift
    table.gir_sum = float(sum(r["gir_percent"] for r in rows))
    if check:
        # rtol on B‖G‖², plus a float32 rounding allowance for batches whose gradients cancel.
        tolerance = rtol * abs(table.expected_info_sum) + 1e-6 * float(np.abs(infos).sum())
        if abs(info_sum - table.expected_info_sum) > tolerance:
            raise RuntimeError(
                f"GInfoR check failed: Σ info_i = {info_sum:.6g} but B‖G‖² = {table.expected_info_sum:.6g}. "
                "The per-sample gradients nearly cancel and float32 rounding dominates; use a float64 model "
                "or pass check=False to accept the table"
            )
        if abs(table.gir_sum - 100.0) > 1e-6:
            raise RuntimeError(f"GInfoR check failed: the ratios sum to {table.gir_sum} instead of 100")
    return table


_COLUMNS = [
    ("index", "i"),
    ("label", "label"),
    ("loss", "loss"),
    ("gir_percent", "GIR %"),
    ("info", "info"),
    ("true_class_prob", "p(true)"),
    ("pred_class", "argmax"),
    ("pred_prob", "p(argmax)"),
    ("mean_layer_grad_norm", "mean layer ‖g_i‖"),
    ("sq_dist_to_batch_grad", "Σ‖g_i − G‖²"),
    ("one_minus_cos", "1 − cos"),
    ("sign_agreement", "sign agree"),
]


def ginfor_to_markdown(rows: Sequence[Dict[str, Any]], digits: int = 4) -> str:
    """Render a GInfoR table as Markdown, one line per sample, with a closing sum line."""
    lines = [
        "| " + " | ".join(title for _, title in _COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]

    def fmt(value: Any) -> str:
        if isinstance(value, (int, np.integer)):
            return str(int(value))
        return f"{float(value):.{digits}g}"

    for row in rows:
        lines.append("| " + " | ".join(fmt(row[key]) for key, _ in _COLUMNS) + " |")
    total_gir = sum(float(r["gir_percent"]) for r in rows)
    total_info = sum(float(r["info"]) for r in rows)
    sums = ["**Σ**", "", "", f"{total_gir:.{digits}g}", f"{total_info:.{digits}g}"] + [""] * (len(_COLUMNS) - 5)
    lines.append("| " + " | ".join(sums) + " |")
    return "\n".join(lines)
