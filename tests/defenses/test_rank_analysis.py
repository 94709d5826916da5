"""RA-i (ALGORITHMS.md §7.1) and the coefficient-matrix rank (§7.2)."""

import numpy as np
import paddle
import paddle.nn as nn
import pytest
from paddle.vision.models import LeNet, resnet18

from privbox.analysis import (
    coefficient_matrix_rank,
    fc_coefficient_system,
    ra_index,
    ra_index_from_sizes,
    rank_analysis,
    set_maxpool_kernel,
    softmax_ce_deltas,
    trace_layer_sizes,
)


@pytest.fixture(scope="module")
def resnet_sizes():
    """Per-sample layer sizes of ResNet-18 at 224x224, stock and with the k=19 stem max-pool.

    Each trace is one batch-1 forward pass; RA-i for batch B scales the traced n_x, n_z by B
    (every counted layer maps samples independently), see rank_analysis(trace_batch_size=...).
    """
    model = resnet18()
    stock = trace_layer_sizes(model, [3, 224, 224])
    set_maxpool_kernel(model, 19)
    ra = trace_layer_sizes(model, [3, 224, 224])
    return stock, ra


@pytest.mark.parametrize("batch", [1, 8, 32])
def test_resnet18_golden(resnet_sizes, batch):
    stock, ra = resnet_sizes
    a = ra_index_from_sizes(stock, batch)
    b = ra_index_from_sizes(ra, batch)
    assert a.ra_i == -50176 * batch and a.argmax_layer == "maxpool"
    assert b.ra_i == 3072 * batch and b.argmax_layer == "maxpool" and b.underdetermined


def test_resnet18_layer_table(resnet_sizes):
    stock, _ = resnet_sizes
    kinds = [l.kind for l in stock]
    assert kinds == ["conv", "maxpool"] + ["block"] * 8 + ["avgpool", "fc"]
    conv1, pool, block1 = stock[0], stock[1], stock[2]
    assert (conv1.n_x, conv1.n_w, conv1.n_z) == (3 * 224 * 224, 64 * 3 * 7 * 7, 64 * 112 * 112)
    assert (pool.n_z, pool.n_w) == (64 * 56 * 56, 0)
    assert block1.n_w == 64 * 64 * 9  # conv2 only
    assert stock[4].n_w == 128 * 128 * 9 + 64 * 128  # conv2 + downsample conv
    assert stock[-1].n_w == 512 * 1000 + 1000  # weight and bias of the FC layer


def test_traced_batch_equals_scaled_batch():
    paddle.seed(0)
    model = resnet18(num_classes=10)
    set_maxpool_kernel(model, 7)
    scaled = rank_analysis(model, [3, 64, 64], batch_size=3)
    traced = rank_analysis(model, [3, 64, 64], batch_size=3, trace_batch_size=3)
    assert [vars(l) for l in scaled.layers] == [vars(l) for l in traced.layers]
    assert model.training  # train/eval state restored


def test_recursion_by_hand_and_lenet():
    res = ra_index_from_sizes([(10, 2, 20), (20, 0, 5), (5, 1, 1)])
    # layer 1: r=-12, RA=-12, n_v=10; layer 2: r=15, RA=5, n_v=max(0-15,0)+10=10; layer 3: r=3, RA=-7
    assert [l.ra for l in res.layers] == [-12, 5, -7] and res.ra_i == 5
    assert ra_index(LeNet(), [1, 28, 28]) == -392
    assert "maxpool" in rank_analysis(LeNet(), [1, 28, 28]).table()


def test_rank_errors():
    with pytest.raises(ValueError, match="does not fit"):
        rank_analysis(LeNet(), [1, 2, 2])
    with pytest.raises(ValueError, match="input_shape"):
        rank_analysis(LeNet(), [1, 0, 28])
    with pytest.raises(ValueError, match="no countable layer"):
        rank_analysis(nn.Sequential(nn.ReLU()), [4])
    with pytest.raises(ValueError, match="MaxPool2D"):
        set_maxpool_kernel(nn.Sequential(nn.ReLU()), 3)
    with pytest.raises(ValueError, match="batch_size"):
        ra_index_from_sizes([(1, 1, 1)], 0)


def test_coefficient_rank_drops_with_label_repetition():
    """Zero FC weights: δ_k = 1/C − e_{y_k} exactly, so rank(Δ) = number of distinct labels."""
    rng = np.random.default_rng(0)
    n_in, classes, b = 6, 10, 8
    x = rng.standard_normal((b, n_in))
    w = np.zeros((n_in, classes))
    distinct = fc_coefficient_system(x, w, None, np.arange(8))
    repeated = fc_coefficient_system(x, w, None, np.array([0, 1] * 4))
    assert distinct.rank_a == n_in * 8 == distinct.n_unknowns and distinct.unique
    assert repeated.rank_a == n_in * 2 and repeated.delta_rank == 2 and not repeated.unique
    assert distinct.consistent and repeated.consistent
    np.testing.assert_allclose(distinct.solution, x, atol=1e-8)  # unique -> exact recovery
    assert np.isinf(repeated.cond) and np.isfinite(distinct.cond)
    assert repeated.residual < 1e-8
    assert not np.allclose(repeated.solution, x, atol=1e-3)  # many solutions: lstsq picks another


def test_coefficient_rank_near_degenerate_with_tolerance():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 5))
    w = rng.standard_normal((5, 10)) * 1e-7  # nearly uniform softmax
    labels = np.array([3] * 4 + [7] * 4)
    exact = fc_coefficient_system(x, w, None, labels)
    tol = fc_coefficient_system(x, w, None, labels, rtol=1e-4)
    assert tol.delta_rank == 2 < exact.delta_rank


def test_coefficient_rank_with_paddle_tensors_and_errors():
    paddle.seed(0)
    fc = nn.Linear(4, 3)
    x = paddle.randn([5, 4])
    y = paddle.to_tensor([0, 1, 2, 0, 1])
    deltas = softmax_ce_deltas(fc(x), y)
    logits = fc(x)
    loss = paddle.nn.functional.cross_entropy(logits, y)
    loss.backward()
    # columns of Δ sum to zero, so rank(Δ) <= C - 1 = 2; float32 gradients need a tolerance
    sys = coefficient_matrix_rank(paddle.to_tensor(deltas), fc.weight.grad, rtol=1e-5)
    assert sys.delta_rank == 2 and sys.rank_a == 4 * 2 and sys.consistent and sys.residual < 1e-4
    with pytest.raises(ValueError, match="in, out"):
        coefficient_matrix_rank(deltas, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="reduction"):
        coefficient_matrix_rank(deltas, np.zeros((4, 3)), reduction="none")


def test_privbox_twice_differentiable_resnet_gives_the_same_ra_i():
    from privbox.nn import make_twice_differentiable

    stock = resnet18(num_classes=10)
    model = make_twice_differentiable(resnet18(num_classes=10))
    assert type(model.maxpool).__module__.startswith("privbox")
    assert rank_analysis(model, [3, 64, 64]).ra_i == rank_analysis(stock, [3, 64, 64]).ra_i
    set_maxpool_kernel(model, 11)
    set_maxpool_kernel(stock, 11)
    assert type(model.maxpool).__module__.startswith("privbox") and model.maxpool.kernel_size == 11
    assert rank_analysis(model, [3, 64, 64], batch_size=2).ra_i == rank_analysis(stock, [3, 64, 64], batch_size=2).ra_i
