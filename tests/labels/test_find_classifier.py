"""Locating the classifier in a gradient dict by name or shape (never by position)."""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from privbox.labels import classifier_parameters, find_classifier, last_layer_gradients, yin


def _grads(**shapes):
    return {name: np.zeros(shape, dtype=np.float32) for name, shape in shapes.items()}


def test_found_by_shape_regardless_of_position():
    grads = {
        "fc.weight": np.zeros((64, 10)),
        "fc.bias": np.zeros(10),
        "conv.weight": np.zeros((8, 3, 3, 3)),
        "conv.bias": np.zeros(8),
        "hidden.weight": np.zeros((27, 64)),
        "hidden.bias": np.zeros(64),
    }
    assert find_classifier(grads, 10) == ("fc.weight", "fc.bias")


def test_paddle_auto_names_and_missing_bias():
    grads = _grads(**{"linear_0.w_0": (32, 16), "linear_1.w_0": (16, 5), "linear_1.b_0": (5,)})
    assert find_classifier(grads, 5) == ("linear_1.w_0", "linear_1.b_0")
    grads = _grads(**{"head.weight": (16, 5)})
    assert find_classifier(grads, 5) == ("head.weight", None)
    assert find_classifier(_grads(**{"head.weight": (16, 5), "b": (5,)}), 5, bias_name="b") == ("head.weight", "b")


def test_ambiguous_lists_candidates_and_asks_for_weight_name():
    grads = _grads(**{"0.weight": (20, 10), "0.bias": (10,), "2.weight": (10, 10), "2.bias": (10,)})
    with pytest.raises(ValueError) as info:
        find_classifier(grads, 10)
    message = str(info.value)
    assert "ambiguous" in message and "'0.weight' [20, 10]" in message and "'2.weight' [10, 10]" in message
    assert "weight_name" in message
    assert find_classifier(grads, 10, weight_name="2.weight") == ("2.weight", "2.bias")


def test_absent_classifier_says_what_to_do():
    grads = _grads(**{"fc.weight": (64, 10), "fc.bias": (10,)})
    with pytest.raises(ValueError) as info:
        find_classifier(grads, 100)
    message = str(info.value)
    assert "no classifier weight found" in message and "'fc.weight' [64, 10]" in message
    assert "weight_name" in message


def test_pytorch_layout_gets_a_transpose_hint():
    grads = _grads(**{"fc.weight": (10, 64), "fc.bias": (10,)})
    with pytest.raises(ValueError, match="transpose"):
        find_classifier(grads, 10)
    with pytest.raises(ValueError, match="transpose"):
        find_classifier(grads, 10, weight_name="fc.weight")


def test_bad_explicit_names():
    grads = _grads(**{"fc.weight": (64, 10), "fc.bias": (10,)})
    with pytest.raises(ValueError, match="'head.weight' is not in the gradient dict"):
        find_classifier(grads, 10, weight_name="head.weight")
    with pytest.raises(ValueError, match="expected \\[10\\]"):
        find_classifier(_grads(**{"fc.weight": (64, 10), "x": (3,)}), 10, bias_name="x")
    with pytest.raises(ValueError, match="dict of gradients"):
        find_classifier([np.zeros((64, 10))], 10)


def test_last_layer_gradients_inputs():
    dw, db = np.arange(6.0).reshape(2, 3), np.array([1.0, -2.0, 1.0])
    out_w, out_b, _ = last_layer_gradients((paddle.to_tensor(dw), paddle.to_tensor(db)), 3)
    assert out_w.dtype == np.float64 and out_b.tolist() == [1.0, -2.0, 1.0]
    assert last_layer_gradients(dw)[1] is None
    with pytest.raises(ValueError, match="num_classes is required"):
        last_layer_gradients({"fc.weight": dw})
    with pytest.raises(ValueError, match="transposed"):
        last_layer_gradients(dw.T, 3)
    with pytest.raises(ValueError, match="bias gradient must have shape"):
        last_layer_gradients((dw, np.zeros(2)), 3)
    with pytest.raises(ValueError, match="NaN"):
        last_layer_gradients(np.full((2, 3), np.nan), 3)
    with pytest.raises(ValueError, match="batch_size"):
        yin(dw, 0, 3)


def test_classifier_parameters_from_model():
    paddle.seed(0)
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 5))
    weight, bias = classifier_parameters(model, 5)
    assert weight.shape == [8, 5] and bias.shape == [5]
    square = nn.Sequential(nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 5))
    with pytest.raises(ValueError, match="ambiguous"):
        classifier_parameters(square, 5)
    weight, _ = classifier_parameters(square, 5, weight_name="2.weight")
    assert weight is square[2].weight
