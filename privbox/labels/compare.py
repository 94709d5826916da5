"""Run every label-recovery method on one gradient and tabulate the results side by side."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..metrics.labels import le_acc, ln_acc, multiset_accuracy, present_set_jaccard
from .classifier import ArrayLike, GradientInput
from .methods import LABEL_METHODS
from .result import LabelRecovery, format_multiset

__all__ = ["DEFAULT_COMPARISON", "compare_label_methods", "label_table_to_markdown"]

DEFAULT_COMPARISON: Sequence[str] = ("idlg", "yin", "llg", "e2egi", "ilrg")
"""Methods run by :func:`compare_label_methods` unless told otherwise."""


def _options_for(
    method: str, batch_size: int, num_classes: int, fc_weight: Any, fc_bias: Any
) -> Dict[str, Any]:
    if method == "idlg":
        return {"extended": batch_size > 1}
    if method == "yin":
        return {"variant": "topk" if batch_size <= num_classes else "set"}
    if method == "ilrg":
        if fc_weight is None:
            return {"variant": "estimate"}
        return {"fc_weight": fc_weight, "fc_bias": fc_bias}
    return {}


def compare_label_methods(
    gradients: GradientInput,
    fc_weight: Optional[ArrayLike],
    fc_bias: Optional[ArrayLike],
    batch_size: int,
    num_classes: int,
    true_labels: Optional[Any] = None,
    *,
    methods: Optional[Sequence[str]] = None,
    options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    weight_name: Optional[str] = None,
    bias_name: Optional[str] = None,
) -> List[Dict[str, Any]]:
    """Recover labels with several methods and report them side by side (one dict per method).

    Defaults per method: ``idlg`` uses the sign rule at B = 1 and the extended set otherwise;
    ``yin`` returns the B smallest column minima (the set variant when B > C); ``ilrg`` uses
    ``fc_weight``/``fc_bias`` or, when ``fc_weight`` is ``None``, the ``"estimate"`` variant.
    ``options`` overrides them per method, e.g. ``{"llg": {"kappa": "present"}}``. A method that
    fails is reported with its error message instead of stopping the comparison.

    Row keys: ``method`` (the variant actually run), ``kind`` (multiset or set), ``labels``
    (sorted list), ``num_labels``, ``seconds``, ``error`` (``None`` on success) and, when
    ``true_labels`` is given, ``multiset_acc``, ``le_acc``, ``ln_acc`` (over all C) and ``jaccard``
    (``privbox.metrics.labels``). iLRG rows are scored on the raw counts, as in the iLRG paper, and
    say so in ``scored_on``; its ``labels`` are the counts repaired to sum to B.
    """
    names = list(DEFAULT_COMPARISON if methods is None else methods)
    unknown = [m for m in names if m not in LABEL_METHODS]
    if unknown:
        raise ValueError(f"unknown label-recovery method(s) {unknown}; choose from {sorted(LABEL_METHODS)}")
    truth = None
    if true_labels is not None:
        truth = np.asarray(true_labels.numpy() if hasattr(true_labels, "numpy") else true_labels).reshape(-1)
        if truth.size != batch_size:
            raise ValueError(f"true_labels has {truth.size} entries but batch_size={batch_size}")
    rows: List[Dict[str, Any]] = []
    for name in names:
        opts = _options_for(name, batch_size, num_classes, fc_weight, fc_bias)
        opts.update((options or {}).get(name, {}))
        start = time.perf_counter()
        row: Dict[str, Any] = {"method": name, "kind": None, "labels": None, "num_labels": None}
        try:
            result: LabelRecovery = LABEL_METHODS[name](
                gradients, batch_size, num_classes, weight_name=weight_name, bias_name=bias_name, **opts
            )
        except ValueError as exc:
            row.update(seconds=time.perf_counter() - start, error=str(exc))
            rows.append(row)
            continue
        row.update(
            method=result.method,
            kind=result.kind,
            labels=result.labels.tolist(),
            num_labels=int(result.labels.size),
            seconds=time.perf_counter() - start,
            error=None,
        )
        if truth is not None:
            scored = result.metric_labels
            row.update(
                multiset_acc=multiset_accuracy(truth, scored),
                le_acc=le_acc(truth, scored, num_classes),
                ln_acc=ln_acc(truth, scored, num_classes),
                jaccard=present_set_jaccard(truth, scored),
                scored_on="raw counts" if result.raw_counts is not None else "labels",
            )
        rows.append(row)
    return rows


def label_table_to_markdown(rows: Sequence[Mapping[str, Any]], digits: int = 3, max_classes: int = 20) -> str:
    """Render :func:`compare_label_methods` rows as a Markdown table.

    Labels are written compactly as ``class×count``; failed methods show their error.
    """
    with_metrics = any("multiset_acc" in r for r in rows)
    header = ["method", "kind", "labels"]
    if with_metrics:
        header += ["multiset acc", "LeAcc", "LnAcc", "Jaccard"]
    header += ["time (ms)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if row.get("error"):
            labels = f"error: {row['error']}".replace("|", "\\|")
        else:
            labels = format_multiset(row["labels"], max_items=max_classes)
        cells = [str(row["method"]), str(row.get("kind") or "-"), labels]
        if with_metrics:
            for key in ("multiset_acc", "le_acc", "ln_acc", "jaccard"):
                value = row.get(key)
                cells.append("-" if value is None else f"{value:.{digits}f}")
        cells.append(f"{1000.0 * row.get('seconds', 0.0):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
