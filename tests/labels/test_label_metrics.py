"""Label metrics (ALGORITHMS.md §5.5), golden cases worked out by hand."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from privbox.metrics.labels import (
    REPETITION_DEFINITIONS,
    index_accuracy,
    label_counts,
    label_metrics,
    label_repetition_rate,
    labels_from_counts,
    le_acc,
    ln_acc,
    multiset_accuracy,
    present_set_jaccard,
)

TRUTH = [0, 0, 1, 2]  # counts over C = 4: [2, 1, 1, 0]
RECOVERED = [0, 1, 1, 3]  # counts over C = 4: [1, 2, 0, 1]


def test_golden_case():
    # Σ min(n̂, n) = min(1,2) + min(2,1) + 0 + 0 = 2, over B = 4.
    assert multiset_accuracy(TRUTH, RECOVERED) == 0.5
    # Presence agrees for classes 0 and 1, not for 2 and 3.
    assert le_acc(TRUTH, RECOVERED, 4) == 0.5
    # No count is right.
    assert ln_acc(TRUTH, RECOVERED, 4) == 0.0
    # Over C = 5, class 4 is absent in both and counts as correct for both metrics.
    assert le_acc(TRUTH, RECOVERED, 5) == pytest.approx(3 / 5)
    assert ln_acc(TRUTH, RECOVERED, 5) == pytest.approx(1 / 5)
    # {0,1,2} vs {0,1,3}: intersection 2, union 4.
    assert present_set_jaccard(TRUTH, RECOVERED) == 0.5
    # Positions 0 and 2 agree.
    assert index_accuracy(TRUTH, RECOVERED) == 0.5
    # (a) 1 - 3 distinct / 4 ; (b) the two 0s are the only repeated samples.
    assert label_repetition_rate(TRUTH) == 0.25
    assert label_repetition_rate(TRUTH, "a") == 0.25
    assert label_repetition_rate(TRUTH, "repeated") == 0.5
    assert label_repetition_rate(TRUTH, "b") == 0.5
    assert label_metrics(TRUTH, RECOVERED, 4, ordered=True) == {
        "multiset_acc": 0.5,
        "le_acc": 0.5,
        "ln_acc": 0.0,
        "jaccard": 0.5,
        "index_acc": 0.5,
    }


def test_multiset_accuracy_is_order_free_and_perfect_on_permutation():
    assert multiset_accuracy([3, 1, 3, 2], [2, 3, 1, 3]) == 1.0
    assert index_accuracy([3, 1, 3, 2], [2, 3, 1, 3]) == 0.0
    # A recovered multiset of another size (raw iLRG counts) is scored over the true B.
    assert multiset_accuracy([0, 0, 1], [0, 0, 0, 1, 1]) == 1.0
    assert multiset_accuracy([0, 0, 1], [0]) == pytest.approx(1 / 3)


def test_repetition_rate_of_label_based_defense_batch():
    labels = np.repeat([3, 17, 40, 99], 8)  # --duplicate-label: 4 labels x 8, B = 32
    assert label_repetition_rate(labels, "distinct") == 0.875
    assert label_repetition_rate(labels, "repeated") == 1.0
    assert label_repetition_rate(np.arange(10)) == 0.0
    assert set(REPETITION_DEFINITIONS) == {"distinct", "repeated"}
    with pytest.raises(ValueError, match="'distinct'"):
        label_repetition_rate(labels, "c")


def test_counts_conversions_and_input_types():
    assert label_counts(paddle.to_tensor([2, 0, 2]), 4).tolist() == [1, 0, 2, 0]
    assert labels_from_counts([2, 0, 1]).tolist() == [0, 0, 2]
    assert le_acc(np.array([[1], [2]]), [2, 1], 3) == 1.0
    assert present_set_jaccard([], []) == 1.0


def test_input_errors():
    with pytest.raises(ValueError, match="out of range"):
        le_acc([0, 5], [0, 1], 4)
    with pytest.raises(ValueError, match="position by position"):
        index_accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="negative class index"):
        multiset_accuracy([0, -1], [0, 1])
    with pytest.raises(ValueError, match="integer class indices"):
        multiset_accuracy([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        multiset_accuracy([], [0])
    with pytest.raises(ValueError, match="non-negative integers"):
        labels_from_counts([1, -1])
