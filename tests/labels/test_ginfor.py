"""GInfoR, the per-sample gradient information ratio (ALGORITHMS.md §7.3)."""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from privbox.analysis.ginfor import GInfoRTable, ginfor_to_markdown, gradient_information_ratio
from privbox.nn.functional import cross_entropy

paddle.set_device("cpu")


class BNNet(nn.Layer):
    """Conv + train-mode BatchNorm (couples the samples) + ReLU + Linear."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.conv = nn.Conv2D(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2D(4)
        self.fc = nn.Linear(4 * 8 * 8, num_classes)

    def forward(self, x):
        h = paddle.nn.functional.relu(self.bn(self.conv(x)))
        return self.fc(h.reshape([h.shape[0], -1]))


def _flat_grad(loss, params):
    return np.concatenate([g.numpy().astype(np.float64).ravel() for g in paddle.grad(loss, params)])


def test_sums_with_train_mode_batchnorm():
    paddle.seed(0)
    model = BNNet()
    model.train()
    x = paddle.randn([6, 1, 8, 8])
    y = [0, 1, 2, 3, 4, 0]
    running_mean = model.bn._mean.numpy().copy()
    table = gradient_information_ratio(model, x, y)
    assert isinstance(table, GInfoRTable) and len(table) == 6
    np.testing.assert_array_equal(model.bn._mean.numpy(), running_mean)  # diagnostic has no side effect
    # Σ info_i = B‖G‖², with G recomputed independently (BN running stats are not trainable).
    params = [p for p in model.parameters() if not p.stop_gradient]
    model.train()
    G = _flat_grad(cross_entropy(model(x), paddle.to_tensor(y)), params)
    assert table.expected_info_sum == pytest.approx(6 * float(G @ G), rel=1e-5)
    assert sum(r["info"] for r in table) == pytest.approx(table.expected_info_sum, rel=1e-4)
    assert sum(r["gir_percent"] for r in table) == pytest.approx(100.0, abs=1e-9)
    assert table.gir_sum == pytest.approx(100.0, abs=1e-9)
    assert [r["index"] for r in table] == list(range(6))
    assert [r["label"] for r in table] == y
    # This seed has a negative info (sample 0); c shifts it to a ratio of exactly 0.
    assert table.shift == pytest.approx(-min(r["info"] for r in table))
    assert min(r["gir_percent"] for r in table) == pytest.approx(0.0, abs=1e-9)
    for row in table:
        assert 0.0 <= row["sign_agreement"] <= 1.0
        assert -1e-9 <= row["one_minus_cos"] <= 2.0 + 1e-9
        assert 0.0 < row["true_class_prob"] <= row["pred_prob"] <= 1.0


def test_matches_independent_per_sample_gradients_without_coupling():
    """Without BN, g_i from the batch forward equals the gradient of a forward of sample i alone."""
    paddle.seed(1)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4))
    x = paddle.randn([5, 10])
    y = np.array([0, 1, 2, 3, 1])
    table = gradient_information_ratio(model, x, y)
    params = list(model.parameters())
    G = _flat_grad(cross_entropy(model(x), paddle.to_tensor(y)), params)
    probs = paddle.nn.functional.softmax(model(x)).numpy()
    infos = []
    for i in range(5):
        g_i = _flat_grad(cross_entropy(model(x[i : i + 1]), paddle.to_tensor(y[i : i + 1])), params)
        infos.append(float(g_i @ G))
        row = table[i]
        assert row["info"] == pytest.approx(infos[-1], rel=1e-4, abs=1e-7)
        assert row["sq_dist_to_batch_grad"] == pytest.approx(float(((g_i - G) ** 2).sum()), rel=1e-4)
        cos = float(g_i @ G / np.linalg.norm(g_i) / np.linalg.norm(G))
        assert row["one_minus_cos"] == pytest.approx(1.0 - cos, abs=1e-5)
        assert row["sign_agreement"] == pytest.approx(float(np.mean(np.sign(g_i) == np.sign(G))), abs=1e-6)
        assert row["true_class_prob"] == pytest.approx(float(probs[i, y[i]]), rel=1e-5)
        assert row["pred_class"] == int(np.argmax(probs[i]))
    infos = np.array(infos)
    shift = max(-infos.min(), 0.0)
    expected = 100.0 * (infos + shift) / (infos.sum() + 5 * shift)
    np.testing.assert_allclose([r["gir_percent"] for r in table], expected, rtol=1e-4, atol=1e-6)


def test_markdown_and_parameter_subset():
    paddle.seed(2)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = paddle.randn([4, 6]), [0, 1, 2, 0]
    table = gradient_information_ratio(model, x, y, parameters=[("2.weight", model[2].weight)])
    assert sum(r["gir_percent"] for r in table) == pytest.approx(100.0)
    text = ginfor_to_markdown(table)
    lines = text.splitlines()
    assert len(lines) == 2 + 4 + 1 and lines[0].startswith("| i | label |") and "GIR %" in lines[0]
    assert lines[-1].startswith("| **Σ** |") and "| 100 |" in lines[-1]
    assert table.to_markdown() == text


def test_errors():
    paddle.seed(3)
    model = nn.Sequential(nn.Linear(6, 3))
    x = paddle.randn([4, 6])
    with pytest.raises(ValueError, match="4 inputs but 3 labels"):
        gradient_information_ratio(model, x, [0, 1, 2])
    with pytest.raises(ValueError, match="one loss per sample"):
        gradient_information_ratio(model, x, [0, 1, 2, 0], loss_fn=lambda z, t: cross_entropy(z, t))
