"""Acceptance tests for privbox.labels (ALGORITHMS.md §5): seeded, CPU, small models."""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from privbox.labels import (
    LABEL_METHODS,
    classifier_parameters,
    compare_label_methods,
    e2egi,
    gradient_from_delta,
    idlg,
    ilrg,
    label_table_to_markdown,
    llg,
    llg_impact,
    recover_labels,
    yin,
)
from privbox.labels.methods import _repair_sum
from privbox.metrics.labels import label_counts, multiset_accuracy
from privbox.nn.functional import cross_entropy

paddle.set_device("cpu")


# ---------------------------------------------------------------- tiny victims


class SigmoidCNN(nn.Layer):
    """DLG-LeNet-style CNN: strided convolutions, sigmoid, no pooling (features h >= 0)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2D(3, 12, 5, stride=2, padding=2)
        self.conv2 = nn.Conv2D(12, 12, 5, stride=2, padding=2)
        self.conv3 = nn.Conv2D(12, 12, 5, stride=1, padding=2)
        self.fc = nn.Linear(12 * 4 * 4, num_classes)

    def forward(self, x):
        h = paddle.nn.functional.sigmoid(self.conv1(x))
        h = paddle.nn.functional.sigmoid(self.conv2(h))
        h = paddle.nn.functional.sigmoid(self.conv3(h))
        return self.fc(h.reshape([h.shape[0], -1]))


class ReluCNN(nn.Layer):
    """Two strided ReLU convolutions and a Linear classifier (ReLU features before the last layer)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2D(3, 16, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2D(16, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x):
        h = paddle.nn.functional.relu(self.conv1(x))
        h = paddle.nn.functional.relu(self.conv2(h))
        return self.fc(h.reshape([h.shape[0], -1]))


def observed_gradients(model: nn.Layer, x: paddle.Tensor, y) -> dict:
    """The FedSGD observation: mean-CE gradient keyed by parameter name (trainable only)."""
    named = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    loss = cross_entropy(model(x), paddle.to_tensor(np.asarray(y, dtype=np.int64)))
    grads = paddle.grad(loss, [p for _, p in named])
    return {n: g for (n, _), g in zip(named, grads)}


def make_victim(seed: int, num_classes: int, fc_std=None) -> ReluCNN:
    """Untrained ReluCNN. fc_std None keeps Paddle's init (Xavier-uniform W, zero b); a number
    draws W ~ N(0, fc_std²) and zeroes b (0.0 gives a uniform softmax)."""
    paddle.seed(seed)
    model = ReluCNN(num_classes)
    if fc_std is not None:
        rng = np.random.default_rng(seed)
        model.fc.weight.set_value(rng.normal(0.0, fc_std, model.fc.weight.shape).astype("float32"))
        model.fc.bias.set_value(np.zeros(num_classes, dtype="float32"))
    return model


def images(rng: np.random.Generator, batch: int) -> paddle.Tensor:
    return paddle.to_tensor(rng.random((batch, 3, 16, 16), dtype=np.float32))


def repeated_labels(rng: np.random.Generator, num_classes: int, distinct: int = 4, copies: int = 8) -> np.ndarray:
    return np.repeat(rng.choice(num_classes, distinct, replace=False), copies)


# ---------------------------------------------------------------- iDLG


def test_idlg_recovers_every_single_label_on_sigmoid_cnn():
    """iDLG at B = 1: 100 % over 20 random images and classes (iDLG README: 100 %)."""
    num_classes = 100
    paddle.seed(0)
    model = SigmoidCNN(num_classes)
    rng = np.random.default_rng(0)
    hits_bias = hits_weight = 0
    for _ in range(20):
        label = int(rng.integers(num_classes))
        grads = observed_gradients(model, images(rng, 1), [label])
        by_bias = idlg(grads, 1, num_classes)
        by_weight = idlg(grads, 1, num_classes, rule="weight")
        assert by_bias.diagnostics["rule"] == "bias" and by_bias.diagnostics["num_negative"] == 1
        assert by_bias.diagnostics["rules_agree"]
        hits_bias += int(by_bias.labels.tolist() == [label])
        hits_weight += int(by_weight.labels.tolist() == [label])
    assert hits_bias == 20
    assert hits_weight == 20


def test_idlg_rejects_batches_and_offers_extended_set():
    num_classes, batch = 10, 4
    model = make_victim(1, num_classes)
    rng = np.random.default_rng(1)
    y = np.array([1, 3, 5, 7])
    grads = observed_gradients(model, images(rng, batch), y)
    with pytest.raises(ValueError, match="batch_size=1"):
        idlg(grads, batch, num_classes)
    present = idlg(grads, batch, num_classes, extended=True)
    assert present.kind == "set" and present.method == "idlg_set"
    # With h >= 0 an absent class has a positive column sum, so the set never over-reports; it may
    # miss present classes (iLRG logs: LeAcc 0.514 on MNIST FCN-3) -- here it found 3 of 4.
    assert set(present.labels.tolist()) <= {1, 3, 5, 7} and present.labels.size >= 3
    dw = np.array([[0.2, -0.1, 0.3, -0.4]])
    assert idlg((dw, None), 2, 4, extended=True).labels.tolist() == [1, 3]


# ---------------------------------------------------------------- Yin and iLRG, unique labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_yin_and_ilrg_exact_on_unique_labels(seed):
    """Untrained ReLU CNN, C = 100, B = 24 unique labels: Yin and iLRG recover the exact counts."""
    num_classes, batch = 100, 24
    model = make_victim(seed, num_classes)
    rng = np.random.default_rng(seed)
    y = rng.choice(num_classes, batch, replace=False)
    grads = observed_gradients(model, images(rng, batch), y)
    truth = label_counts(y, num_classes)

    by_yin = yin(grads, batch, num_classes)
    assert by_yin.diagnostics["num_negative_minima"] == batch
    np.testing.assert_array_equal(by_yin.counts, truth)
    np.testing.assert_array_equal(by_yin.labels, np.sort(y))

    fc_w, fc_b = classifier_parameters(model, num_classes)
    by_ilrg = ilrg(grads, batch, num_classes, fc_w, fc_b)
    np.testing.assert_array_equal(by_ilrg.raw_counts, truth)
    np.testing.assert_array_equal(by_ilrg.counts, truth)
    assert by_ilrg.labels.dtype == np.int64 and by_ilrg.labels.size == batch

    assert yin(grads, batch, num_classes, variant="set").labels.tolist() == sorted(y.tolist())


def test_yin_refuses_more_samples_than_classes():
    dw = np.ones((3, 5))
    with pytest.raises(ValueError, match="batch_size=6 > num_classes=5"):
        yin(dw, 6, 5)


# ---------------------------------------------------------------- LLG and E2EGI


def test_e2egi_exact_when_softmax_is_uniform():
    """W_fc = 0 and b_fc = 0 give a uniform softmax: the E2EGI heuristic is then exact (§5.3)."""
    num_classes, batch = 100, 32
    for seed in range(3):
        model = make_victim(seed, num_classes, fc_std=0.0)
        rng = np.random.default_rng(seed)
        for y in (repeated_labels(rng, num_classes), rng.choice(10, batch)):
            grads = observed_gradients(model, images(rng, batch), y)
            result = e2egi(grads, batch, num_classes)
            assert result.diagnostics["impact_source"] == "max_positive"
            np.testing.assert_array_equal(result.labels, np.sort(y))


def test_llg_and_e2egi_on_4x8_batch():
    """B = 32 with 4 distinct labels x 8 copies (repetition rate (a) = 87.5 %), C = 100, 10 seeds.

    Measured multiset accuracy over these 10 seeds (Paddle 3.3.1, CPU):
    - uniform softmax (W_fc = 0): LLG 1.000 and E2EGI 1.000 on every seed;
    - Paddle's default init (Xavier-uniform W_fc): LLG 1.000 on every seed, E2EGI mean 0.347
      (min 0.250): E2EGI depends strongly on softmax uniformity (§5.3), LLG (κ = C) does not;
    - W_fc ~ N(0, 0.01²): E2EGI mean 0.831 (min 0.750).
    (LLG with κ = |I| = 4 over-estimates the impact by about 20 % here: 0.875 on every seed.)
    The asserted floors keep a margin below the measured values.
    """
    num_classes, batch = 100, 32
    scores = {key: [] for key in ("llg_uniform", "e2egi_uniform", "llg_default", "e2egi_default", "e2egi_0.01")}
    for seed in range(10):
        for setting, fc_std in (("uniform", 0.0), ("default", None), ("0.01", 0.01)):
            model = make_victim(seed, num_classes, fc_std=fc_std)
            rng = np.random.default_rng(100 + seed)
            y = repeated_labels(rng, num_classes)
            grads = observed_gradients(model, images(rng, batch), y)
            scores[f"e2egi_{setting}"].append(multiset_accuracy(y, e2egi(grads, batch, num_classes).labels))
            if setting != "0.01":
                scores[f"llg_{setting}"].append(multiset_accuracy(y, llg(grads, batch, num_classes).labels))
    assert min(scores["llg_uniform"]) == 1.0
    assert min(scores["e2egi_uniform"]) == 1.0
    assert np.mean(scores["llg_default"]) >= 0.95 and min(scores["llg_default"]) >= 0.9
    assert np.mean(scores["e2egi_0.01"]) >= 0.75 and min(scores["e2egi_0.01"]) >= 0.6
    assert np.mean(scores["e2egi_default"]) < np.mean(scores["llg_default"])


def test_llg_kappa_options():
    sums = np.array([-0.4, -0.4, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert llg_impact(sums, 8) == pytest.approx(-0.8 / 8 * (1 + 1 / 10))
    assert llg_impact(sums, 8, "present") == pytest.approx(-0.8 / 8 * (1 + 1 / 2))
    assert llg_impact(sums, 8, 4.0) == pytest.approx(-0.8 / 8 * (1 + 1 / 4))
    with pytest.raises(ValueError, match="kappa"):
        llg_impact(sums, 8, "bogus")


def test_llg_updates_the_newly_chosen_class():
    """Column sums of a uniform softmax with counts [4, 4, 0, ...]: s_c = 1/C − n_c/B.

    Updating the stale stage-1 index (breaching's bug) would return class 0 seven times.
    """
    num_classes, batch = 10, 8
    counts = np.array([4, 4] + [0] * 8)
    dw = (1.0 / num_classes - counts / batch).reshape(1, -1)
    assert llg((dw, None), batch, num_classes).counts.tolist() == counts.tolist()
    assert e2egi((dw, None), batch, num_classes).counts.tolist() == counts.tolist()


def test_e2egi_guards():
    # No positive column sum: falls back to LLG's impact instead of crashing.
    dw = np.array([[-0.3, -0.1, 0.0, 0.0]])
    result = e2egi((dw, None), 4, 4)
    assert result.diagnostics["impact_source"] == "llg_fallback"
    assert result.diagnostics["impact"] == pytest.approx(-llg_impact(dw[0], 4))
    assert result.labels.size == 4
    # More negatives than B: keep the B most negative.
    dw = np.array([[-0.5, -0.1, -0.4, -0.2, 1.2]])
    result = e2egi((dw, None), 2, 5)
    assert result.diagnostics["truncated"]
    assert result.labels.tolist() == [0, 2]
    assert llg((dw, None), 2, 5).labels.tolist() == [0, 2]


def test_llg_rejects_gradient_without_label_signal():
    with pytest.raises(ValueError, match="gradient_from_delta"):
        llg((np.zeros((2, 3)), None), 2, 3)


# ---------------------------------------------------------------- iLRG


def test_ilrg_counts_on_4x8_batch():
    """iLRG on the repeated-label batch (default init, 10 seeds): exact raw and repaired counts."""
    num_classes, batch = 100, 32
    for seed in range(10):
        model = make_victim(seed, num_classes)
        rng = np.random.default_rng(100 + seed)
        y = repeated_labels(rng, num_classes)
        grads = observed_gradients(model, images(rng, batch), y)
        fc_w, fc_b = classifier_parameters(model, num_classes)
        result = ilrg(grads, batch, num_classes, fc_w, fc_b)
        truth = label_counts(y, num_classes)
        np.testing.assert_array_equal(result.raw_counts, truth)
        np.testing.assert_array_equal(result.counts, truth)


def test_ilrg_variants_at_uniform_softmax():
    num_classes, batch = 100, 32
    model = make_victim(3, num_classes, fc_std=0.0)
    rng = np.random.default_rng(3)
    y = repeated_labels(rng, num_classes)
    grads = observed_gradients(model, images(rng, batch), y)
    truth = label_counts(y, num_classes)
    estimate = ilrg(grads, batch, num_classes, variant="estimate")
    assert estimate.method == "ilrg_estimate"
    np.testing.assert_array_equal(estimate.counts, truth)
    fc_w, fc_b = classifier_parameters(model, num_classes)
    simplified = ilrg(grads, batch, num_classes, fc_w, fc_b, variant="simplified", present_classes=np.unique(y))
    np.testing.assert_array_equal(simplified.counts, truth)
    with pytest.raises(ValueError, match="present_classes"):
        ilrg(grads, batch, num_classes, fc_w, fc_b, variant="simplified")
    with pytest.raises(ValueError, match="fc_weight"):
        ilrg(grads, batch, num_classes)
    with pytest.raises(ValueError, match="bias gradient"):
        ilrg((grads["fc.weight"], None), batch, num_classes, fc_w, fc_b)
    with pytest.raises(ValueError, match="transpose"):
        ilrg(grads, batch, num_classes, fc_w.numpy().T, fc_b)


def test_ilrg_sum_repair():
    float_counts = np.array([1.4, 1.3, 1.45, 0.2, 0.1])
    raw = np.array([1, 1, 1, 0, 0])
    # Two short: increment the two most negative rounding errors (classes 2 and 0). The iLRG
    # repository's inds[:num_mod] with num_mod = -2 would have incremented three entries.
    assert _repair_sum(raw, float_counts, 5).tolist() == [2, 1, 2, 0, 0]
    # One too many: decrement the largest positive error, never below zero.
    # Class 2 has the largest error (0 - (-0.9)) but is already 0; the repository would make it -1.
    float_counts = np.array([1.6, 0.7, -0.9, 0.9])
    raw = np.array([2, 1, 0, 1])
    assert _repair_sum(raw, float_counts, 3).tolist() == [1, 1, 0, 1]
    # Differences larger than C are handled by repeating the step.
    assert _repair_sum(np.zeros(3, dtype=int), np.zeros(3), 7).sum() == 7


# ---------------------------------------------------------------- weight deltas, registry, comparison


def test_gradient_from_delta_recovers_gradient_of_one_sgd_step():
    num_classes, batch, lr = 10, 6, 0.05
    model = make_victim(4, num_classes, fc_std=0.0)
    rng = np.random.default_rng(4)
    x, y = images(rng, batch), np.array([0, 0, 3, 3, 3, 9])
    grads = observed_gradients(model, x, y)
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    opt = paddle.optimizer.SGD(learning_rate=lr, parameters=model.parameters())
    loss = cross_entropy(model(x), paddle.to_tensor(y))
    loss.backward()
    opt.step()
    delta = {n: p.numpy() - before[n] for n, p in model.named_parameters()}
    pseudo = gradient_from_delta(delta, lr, 1)
    for name, g in grads.items():
        np.testing.assert_allclose(pseudo[name], g.numpy(), rtol=1e-4, atol=1e-6)
    assert llg(pseudo, batch, num_classes).labels.tolist() == sorted(y.tolist())
    as_tensor = gradient_from_delta(paddle.to_tensor(delta["fc.weight"]), lr, 1)
    assert isinstance(as_tensor, paddle.Tensor)
    with pytest.raises(ValueError, match="lr"):
        gradient_from_delta(delta, 0.0, 1)
    with pytest.raises(ValueError, match="local_steps"):
        gradient_from_delta(delta, lr, 0)


def test_registry_and_recover_labels():
    assert set(LABEL_METHODS) == {"idlg", "yin", "llg", "e2egi", "ilrg"}
    dw = np.array([[0.1, -0.3, 0.2]])
    assert recover_labels("llg", (dw, None), 1, 3).labels.tolist() == [1]
    assert recover_labels("idlg", (dw, np.array([0.2, -0.5, 0.3])), 1, 3).labels.tolist() == [1]
    with pytest.raises(ValueError, match="unknown label-recovery method"):
        recover_labels("dlg", (dw, None), 1, 3)


def test_compare_label_methods_table():
    num_classes, batch = 100, 24
    model = make_victim(5, num_classes)
    rng = np.random.default_rng(5)
    y = rng.choice(num_classes, batch, replace=False)
    grads = observed_gradients(model, images(rng, batch), y)
    fc_w, fc_b = classifier_parameters(model, num_classes)
    rows = compare_label_methods(grads, fc_w, fc_b, batch, num_classes, true_labels=y)
    assert [r["method"] for r in rows] == ["idlg_set", "yin", "llg", "e2egi", "ilrg"]
    for row in rows:
        assert row["error"] is None
        assert row["multiset_acc"] == 1.0 and row["le_acc"] == 1.0 and row["ln_acc"] == 1.0
    assert rows[-1]["scored_on"] == "raw counts"
    markdown = label_table_to_markdown(rows)
    assert markdown.count("\n") == len(rows) + 1 and "| ilrg | multiset |" in markdown

    # Without a bias gradient iLRG cannot run: reported as an error row, the others still run.
    rows = compare_label_methods((grads["fc.weight"], None), fc_w, fc_b, batch, num_classes)
    assert rows[-1]["error"] is not None and "bias gradient" in rows[-1]["error"]
    assert all(r["error"] is None for r in rows[:-1])
    assert "error: iLRG needs" in label_table_to_markdown(rows)
