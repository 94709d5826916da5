"""Deep Gradient Compression (ALGORITHMS.md §6.1) against a NumPy reference."""

import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

from privbox.defenses import DGCCompressor, DGCMomentum, TopKPruning, dgc_warmup_schedule
from privbox.defenses._common import keep_count, topk_mask


def np_topk_mask(values, k):
    order = np.argsort(-np.abs(values), kind="stable")  # ties: lower index first
    mask = np.zeros(values.size, bool)
    mask[order[:k]] = True
    return mask


class NumpyDGC:
    """Independent reference of one worker's DGC state."""

    def __init__(self, sparsity, momentum=0.9, nesterov=False, clip=None, workers=1, dense_below=0):
        self.s, self.m, self.nesterov = sparsity, momentum, nesterov
        self.clip, self.workers, self.dense_below = clip, workers, dense_below
        self.u, self.v = {}, {}

    def compress(self, grads):
        grads = {k: g.astype(np.float64) for k, g in grads.items()}
        if self.clip is not None:
            norm = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
            bound = self.clip / math.sqrt(self.workers)
            if norm > bound:
                grads = {k: g * (bound / norm) for k, g in grads.items()}
        out = {}
        for k, g in grads.items():
            u = self.u.get(k, np.zeros_like(g))
            if g.size < self.dense_below:
                u = self.m * (u + g) if self.nesterov else self.m * u + g
                self.u[k] = u
                out[k] = u + g if self.nesterov else u
                continue
            v = self.v.get(k, np.zeros_like(g))
            if self.nesterov:
                u = self.m * (u + g)
                v = v + u + g
            else:
                u = self.m * u + g
                v = v + u
            n = g.size
            kk = max(1, math.ceil(round((1 - self.s) * n, 9)))
            mask = np_topk_mask(v.ravel(), kk).reshape(g.shape)
            out[k] = np.where(mask, v, 0.0)
            self.v[k] = np.where(mask, 0.0, v)
            self.u[k] = np.where(mask, 0.0, u)
        return out


def random_grads(rng, shapes, dtype="float32"):
    return {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}


SHAPES = {"conv.weight": (4, 3, 3, 3), "conv.bias": (4,), "fc.weight": (36, 10), "fc.bias": (10,)}


def test_keep_count_is_robust_to_round_off():
    assert keep_count(1 - 0.7, 10) == 3  # 0.30000000000000004 * 10
    assert keep_count(1 - 0.8, 10) == 2
    assert keep_count(0.25, 10) == 3
    assert keep_count(0.0, 10, at_least_one=True) == 1
    assert keep_count(1 - 0.999, 100, at_least_one=True) == 1


def test_topk_mask_exact_with_ties():
    x = paddle.to_tensor([1.0, 3.0, 3.0, 2.0, 3.0, 0.0])
    assert topk_mask(x, 2).numpy().tolist() == [False, True, True, False, False, False]
    assert int(topk_mask(x, 4).numpy().sum()) == 4
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = rng.integers(0, 4, size=50).astype(np.float64)  # many ties
        k = int(rng.integers(1, 50))
        got = topk_mask(paddle.to_tensor(v), k).numpy()
        assert got.sum() == k
        np.testing.assert_array_equal(got, np_topk_mask(v, k))


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("clip", [None, 0.5])
def test_compressor_matches_numpy_reference(nesterov, clip):
    rng = np.random.default_rng(1)
    ours = DGCCompressor(sparsity=0.7, momentum=0.9, nesterov=nesterov, clip_norm=clip, num_workers=4)
    ref = NumpyDGC(0.7, 0.9, nesterov, clip, 4)
    for _ in range(5):
        grads = random_grads(rng, SHAPES)
        got = ours.compress({k: paddle.to_tensor(v) for k, v in grads.items()})
        want = ref.compress(grads)
        for k in SHAPES:
            np.testing.assert_allclose(got[k].numpy(), want[k], rtol=1e-5, atol=1e-6)
            n = int(np.prod(SHAPES[k]))
            assert int((got[k].numpy() != 0).sum()) == max(1, math.ceil(round(0.3 * n, 9)))
        for k in SHAPES:  # residuals and masked momenta agree too
            np.testing.assert_allclose(ours.residuals[k].numpy(), ref.v[k], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(ours.momenta[k].numpy(), ref.u[k], rtol=1e-5, atol=1e-6)


def test_first_step_equals_topk_pruning():
    rng = np.random.default_rng(2)
    grads = {k: paddle.to_tensor(v) for k, v in random_grads(rng, SHAPES).items()}
    dgc = DGCCompressor(sparsity=0.8).compress(grads)
    pruned = TopKPruning(0.8)(grads)
    for k in SHAPES:
        np.testing.assert_array_equal(dgc[k].numpy(), pruned[k].numpy())


def test_nothing_is_lost_sent_plus_residual_equals_accumulated():
    """With momentum 0, everything sent so far plus the residual equals the sum of gradients."""
    rng = np.random.default_rng(3)
    comp = DGCCompressor(sparsity=0.9, momentum=0.0)
    total = {k: np.zeros(s) for k, s in SHAPES.items()}
    sent = {k: np.zeros(s) for k, s in SHAPES.items()}
    for _ in range(6):
        grads = random_grads(rng, SHAPES)
        out = comp.compress({k: paddle.to_tensor(v) for k, v in grads.items()})
        for k in SHAPES:
            total[k] += grads[k]
            sent[k] += out[k].numpy()
    for k in SHAPES:
        np.testing.assert_allclose(sent[k] + comp.residuals[k].numpy(), total[k], rtol=1e-5, atol=1e-5)


def test_dense_below_sends_small_tensors_dense():
    rng = np.random.default_rng(4)
    ours = DGCCompressor(sparsity=0.9, dense_below=20)
    ref = NumpyDGC(0.9, dense_below=20)
    for _ in range(3):
        grads = random_grads(rng, SHAPES)
        got = ours.compress({k: paddle.to_tensor(v) for k, v in grads.items()})
        want = ref.compress(grads)
        for k in SHAPES:
            np.testing.assert_allclose(got[k].numpy(), want[k], rtol=1e-5, atol=1e-6)
    assert np.all(got["fc.bias"].numpy() != 0) and "fc.bias" not in ours.residuals


def test_float64_and_state_keyed_by_name():
    comp = DGCCompressor(sparsity=0.5)
    g = {"a": paddle.to_tensor(np.arange(8.0)), "b": paddle.to_tensor(np.ones(4))}
    out = comp.compress(g)
    assert out["a"].dtype == paddle.float64
    np.testing.assert_array_equal(out["a"].numpy(), [0, 0, 0, 0, 4, 5, 6, 7])
    # the set of parameters may change: "b" missing, "c" new; state stays keyed by name
    out2 = comp.compress({"a": paddle.to_tensor(np.zeros(8)), "c": paddle.to_tensor(np.ones(2))})
    assert set(out2) == {"a", "c"} and "b" in comp.residuals
    state = comp.state_dict()
    assert {"dgc.u.a", "dgc.v.a", "dgc.v.b", "dgc.u.c", "dgc.step_count"} <= set(state)
    other = DGCCompressor(sparsity=0.5)
    other.set_state_dict(state)
    assert other.step_count == 2
    np.testing.assert_array_equal(other.residuals["a"].numpy(), comp.residuals["a"].numpy())
    with pytest.raises(ValueError, match="shape"):
        comp.compress({"a": paddle.ones([3])})


def test_numpy_input_round_trip():
    out = DGCCompressor(sparsity=0.5).compress({"w": np.array([1.0, -4.0, 2.0, 0.5], dtype=np.float32)})
    assert isinstance(out["w"], np.ndarray)
    np.testing.assert_array_equal(out["w"], [0.0, -4.0, 2.0, 0.0])


def test_warmup_schedule_and_epoch_indexing():
    sched = dgc_warmup_schedule(0.999, 4)
    assert sched == pytest.approx([0.75, 0.9375, 0.984375, 0.99609375, 0.999])
    comp = DGCCompressor(sparsity=sched)
    assert comp.current_sparsity() == 0.75
    comp.set_epoch(2)
    assert comp.current_sparsity() == pytest.approx(0.984375)
    comp.set_epoch(40)
    assert comp.current_sparsity() == pytest.approx(0.999)
    by_step = DGCCompressor(sparsity=lambda t: 0.5 if t == 0 else 0.75, warmup_unit="step")
    out = by_step.compress({"w": paddle.arange(8, dtype="float32")})
    assert int((out["w"].numpy() != 0).sum()) == 4
    out = by_step.compress({"w": paddle.arange(8, dtype="float32")})
    assert int((out["w"].numpy() != 0).sum()) == 2


def test_sampled_threshold_selects_about_k():
    rng = np.random.default_rng(5)
    comp = DGCCompressor(sparsity=0.99, sampled_threshold=True, sample_ratio=0.05)
    v = rng.standard_normal(20000).astype("float32")
    out = comp.compress({"w": paddle.to_tensor(v)})["w"].numpy()
    k = 200
    count = int((out != 0).sum())
    assert 0.8 * k <= count <= 1.3 * k
    # everything emitted is at least as large as everything withheld
    assert np.abs(out[out != 0]).min() >= np.abs(v[out == 0]).max()


def make_net():
    paddle.seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def batch():
    rng = np.random.default_rng(6)
    return paddle.to_tensor(rng.standard_normal((5, 6)).astype("float32")), paddle.to_tensor(rng.integers(0, 3, 5))


def test_optimizer_step_compresses_and_applies_plain_sgd():
    net = make_net()
    x, y = batch()
    opt = DGCMomentum(learning_rate=0.1, momentum=0.9, parameters=net.named_parameters(), sparsity=0.75)
    ref = NumpyDGC(0.75, 0.9)
    for _ in range(3):
        before = {n: p.numpy().copy() for n, p in net.named_parameters()}
        F.cross_entropy(net(x), y).backward()
        grads = {n: p.grad.numpy().copy() for n, p in net.named_parameters()}
        opt.step()
        opt.clear_grad()
        want = ref.compress(grads)
        for n, p in net.named_parameters():
            # w <- w - lr * g_hat: no second momentum step
            np.testing.assert_allclose(p.numpy(), before[n] - 0.1 * want[n], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(opt.last_update[n].numpy(), want[n], rtol=1e-5, atol=1e-6)
    assert set(opt.state_dict()) >= {"dgc.u.0.weight", "dgc.v.2.bias"}


def test_optimizer_minimize_and_state_dict_by_param_name():
    net = make_net()
    x, y = batch()
    opt = DGCMomentum(0.1, parameters=net.parameters(), sparsity=0.75)
    before = net[0].weight.numpy().copy()
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    opt.minimize(loss)
    changed = int((net[0].weight.numpy() != before).sum())
    assert changed == 12  # ceil(0.25 * 48)
    state = opt.state_dict()
    assert f"dgc.v.{net[0].weight.name}" in state
    opt2 = DGCMomentum(0.1, parameters=net.parameters(), sparsity=0.75)
    opt2.set_state_dict(state)
    np.testing.assert_array_equal(
        opt2.compressor.residuals[net[0].weight.name].numpy(), opt.compressor.residuals[net[0].weight.name].numpy()
    )


def test_optimizer_with_paddle_model_and_lr_scheduler():
    net = make_net()
    x, y = batch()
    sched = paddle.optimizer.lr.StepDecay(0.1, step_size=1, gamma=0.5)
    opt = DGCMomentum(sched, parameters=net.parameters(), sparsity=0.75)
    model = paddle.Model(net)
    model.prepare(opt, nn.CrossEntropyLoss())
    before = net[0].weight.numpy().copy()
    model.train_batch([x], [y])
    assert int((net[0].weight.numpy() != before).sum()) == 12
    assert "LR_Scheduler" in opt.state_dict()


def test_weight_decay_and_training_reduces_loss():
    net = make_net()
    x, y = batch()
    opt = DGCMomentum(0.2, parameters=net.parameters(), sparsity=0.5, weight_decay=1e-4, clip_norm=5.0)
    first = float(F.cross_entropy(net(x), y))
    for _ in range(60):
        F.cross_entropy(net(x), y).backward()
        opt.step()
        opt.clear_grad()
    assert float(F.cross_entropy(net(x), y)) < 0.5 * first


def test_frozen_and_gradless_parameters_are_skipped():
    net = make_net()
    net[0].bias.stop_gradient = True
    x, y = batch()
    opt = DGCMomentum(0.1, parameters=net.named_parameters(), sparsity=0.5)
    frozen = net[0].bias.numpy().copy()
    F.cross_entropy(net(x), y).backward()
    opt.step()
    np.testing.assert_array_equal(net[0].bias.numpy(), frozen)
    assert "0.bias" not in opt.last_update


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sparsity": 1.0}, "sparsity"),
        ({"sparsity": []}, "empty"),
        ({"momentum": 1.0}, "momentum"),
        ({"clip_norm": 0.0}, "clip_norm"),
        ({"num_workers": 0}, "num_workers"),
        ({"clip_mode": "layer"}, "clip_mode"),
        ({"dense_below": -1}, "dense_below"),
        ({"warmup_unit": "round"}, "warmup_unit"),
    ],
)
def test_compressor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DGCCompressor(**kwargs)


def test_non_finite_and_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        DGCCompressor().compress({"w": paddle.to_tensor([1.0, float("nan")])})
    with pytest.raises(TypeError, match="dict"):
        DGCCompressor().compress([paddle.ones([2])])
    with pytest.raises(ValueError, match="parameters"):
        DGCMomentum(0.1, parameters=None)
