"""Analytic label recovery from the last-layer gradient (``ALGORITHMS.md`` §5).

Quick start::

    from privbox.labels import compare_label_methods, label_table_to_markdown
    rows = compare_label_methods(grads, fc_w, fc_b, batch_size=B, num_classes=C, true_labels=y)
    print(label_table_to_markdown(rows))

Methods: iDLG (Zhao et al. 2020), Yin et al. row-min (CVPR 2021), LLG (Wainakh et al., PETS 2022),
the E2EGI heuristic (Li et al.) and iLRG (Ma et al., ICLR 2023). Metrics live in
:mod:`privbox.metrics.labels`.
"""

from .classifier import (
    ArrayLike,
    GradientInput,
    classifier_parameters,
    find_classifier,
    gradient_from_delta,
    last_layer_gradients,
)
from .compare import DEFAULT_COMPARISON, compare_label_methods, label_table_to_markdown
from .methods import LABEL_METHODS, LABEL_REGISTRY, e2egi, idlg, ilrg, llg, llg_impact, recover_labels, yin
from .result import LabelRecovery, format_multiset

__all__ = [
    "ArrayLike",
    "GradientInput",
    "LabelRecovery",
    "LABEL_METHODS",
    "LABEL_REGISTRY",
    "DEFAULT_COMPARISON",
    "find_classifier",
    "gradient_from_delta",
    "last_layer_gradients",
    "classifier_parameters",
    "idlg",
    "yin",
    "llg",
    "llg_impact",
    "e2egi",
    "ilrg",
    "recover_labels",
    "compare_label_methods",
    "label_table_to_markdown",
    "format_multiset",
]
