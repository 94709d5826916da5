"""DP-SGD optimiser, noise statistics, samplers and the Label-based-Defense batch variant."""

import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

from privbox.defenses import (
    DPOptimizer,
    DPSGD,
    PoissonBatchSampler,
    UniformBatchSampler,
    batch_clip_noise,
    freeze_batchnorm,
    get_privacy_spent,
    per_sample_gradients_microbatch,
)


def ce(out, y):
    return F.cross_entropy(out, y)


def small_net(seed=0):
    paddle.seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return (
        paddle.to_tensor(rng.standard_normal((n, 5)).astype("float32") * 3),
        paddle.to_tensor(rng.integers(0, 3, n)),
    )


def reference_clipped_mean(net, x, y, c, normaliser, per_layer=False):
    per = per_sample_gradients_microbatch(net, ce, x, y)
    b = int(x.shape[0])
    if per_layer:
        out = {}
        for n, g in per.items():
            g = g.numpy().reshape(b, -1).astype(np.float64)
            f = np.minimum(1.0, c / (np.linalg.norm(g, axis=1) + 1e-6))
            out[n] = (g * f[:, None]).sum(0).reshape(per[n].shape[1:]) / normaliser
        return out
    flat = np.concatenate([g.numpy().reshape(b, -1) for g in per.values()], axis=1).astype(np.float64)
    f = np.minimum(1.0, c / (np.linalg.norm(flat, axis=1) + 1e-6))
    return {n: np.tensordot(f, g.numpy(), axes=1) / normaliser for n, g in per.items()}


@pytest.mark.parametrize("expected", [None, 10.0])
def test_clipping_and_normalisation_without_noise(expected):
    net = small_net()
    x, y = data()
    want = reference_clipped_mean(net, x, y, 0.5, expected or 6.0)
    engine = DPSGD(net, net.parameters(), learning_rate=0.1, noise_multiplier=0.0, max_grad_norm=0.5,
                   expected_batch_size=expected)
    ce(net(x), y).backward()
    got = engine.privatize()
    for n in want:
        np.testing.assert_allclose(got[n].numpy(), want[n], atol=1e-6)
    # the noisy gradient was written to .grad, so the inner SGD step uses it
    before = net[0].weight.numpy().copy()
    engine.optimizer.step()
    np.testing.assert_allclose(net[0].weight.numpy(), before - 0.1 * want["0.weight"], atol=1e-6)


def test_per_layer_clipping():
    net = small_net()
    x, y = data()
    want = reference_clipped_mean(net, x, y, 0.3, 6.0, per_layer=True)
    engine = DPSGD(net, noise_multiplier=0.0, max_grad_norm=0.3, clipping="per_layer")
    assert engine.sensitivity == pytest.approx(0.3 * 2)  # sqrt(4 * 0.3^2)
    engine.backward(ce, x, y)
    got = engine.privatize()
    for n in want:
        np.testing.assert_allclose(got[n].numpy(), want[n], atol=1e-6)


def test_noise_std_and_seed():
    """Zero per-sample gradients: the update is pure noise N(0, (σC)²)/normaliser."""
    paddle.seed(0)
    net = nn.Linear(100, 100)

    def run(seed):
        engine = DPSGD(net, noise_multiplier=1.3, max_grad_norm=2.0, expected_batch_size=4.0, seed=seed)
        (net(paddle.ones([4, 100])) * 0.0).sum().backward()
        out = engine.privatize()
        engine.clear_grad()
        engine.detach()
        return np.concatenate([out["weight"].numpy().ravel(), out["bias"].numpy().ravel()])

    noise = run(7)
    expected_std = 1.3 * 2.0 / 4.0
    n = noise.size
    assert abs(noise.mean()) < 4 * expected_std / math.sqrt(n)
    assert noise.std() == pytest.approx(expected_std, rel=4 * math.sqrt(1 / (2 * n)))
    np.testing.assert_array_equal(noise, run(7))  # seeded
    assert not np.array_equal(noise, run(8))


def test_empty_poisson_batch_step_is_noise_only():
    net = small_net()
    engine = DPSGD(net, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=5, sample_rate=0.1, seed=0)
    before = net[0].weight.numpy().copy()
    engine.step(empty_batch=True)
    assert not np.array_equal(net[0].weight.numpy(), before)
    assert len(engine.accountant) == 1
    no_expected = DPSGD(small_net(), noise_multiplier=1.0, max_grad_norm=1.0)
    with pytest.raises(ValueError, match="expected_batch_size"):
        no_expected.step(empty_batch=True)


def test_training_loop_with_poisson_loader_and_accounting():
    paddle.seed(0)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((120, 5)).astype("float32")
    ys = (xs[:, 0] > 0).astype("int64") + (xs[:, 1] > 0).astype("int64")
    dataset = paddle.io.TensorDataset([paddle.to_tensor(xs), paddle.to_tensor(ys)])
    q = 0.2
    sampler = PoissonBatchSampler(dataset, sample_rate=q, seed=0)
    loader = paddle.io.DataLoader(dataset, batch_sampler=sampler)
    net = small_net(1)
    engine = DPSGD(net, net.parameters(), learning_rate=0.5, noise_multiplier=0.8, max_grad_norm=1.0,
                   expected_batch_size=q * len(dataset), sample_rate=q, seed=0)
    X, Y = paddle.to_tensor(xs), paddle.to_tensor(ys)
    first = float(ce(net(X), Y))
    sizes = []
    for _ in range(6):
        for x, y in loader:
            sizes.append(int(x.shape[0]))
            loss = ce(net(x), y)
            loss.backward()
            engine.step()
            engine.clear_grad()
    assert float(ce(net(X), Y)) < first
    assert len(set(sizes)) > 1  # Poisson batches vary in size
    steps = engine.steps_taken
    assert steps == len(sizes) == len(engine.accountant)
    eps = engine.get_epsilon(1e-5)
    assert eps == pytest.approx(get_privacy_spent(q, 0.8, steps, 1e-5)[0])


def test_dpoptimizer_wraps_adam_and_microbatch_mode():
    paddle.seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.PReLU(), nn.Linear(6, 3))
    opt = paddle.optimizer.Adam(learning_rate=0.01, parameters=net.parameters())
    engine = DPOptimizer(opt, net, noise_multiplier=0.5, max_grad_norm=1.0, seed=0)
    assert engine.mode == "microbatch"
    x, y = data()
    # a plain loss.backward() gives no per-sample gradients in micro-batch mode: clear error
    ce(net(x), y).backward()
    with pytest.raises(ValueError, match="engine.backward"):
        engine.step()
    engine.clear_grad()
    before = net[1]._weight.numpy().copy()
    loss = engine.backward(ce, x, y)
    assert loss.shape == [] and loss.stop_gradient
    engine.step()
    assert not np.array_equal(net[1]._weight.numpy(), before)
    with pytest.raises(ValueError, match="sample_rate"):
        engine.get_epsilon(1e-5)


def test_batchnorm_is_rejected_until_frozen():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1D(4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="GroupNorm"):
        DPSGD(net, noise_multiplier=1.0, max_grad_norm=1.0)
    freeze_batchnorm(net)
    engine = DPSGD(net, noise_multiplier=1.0, max_grad_norm=1.0)
    net[1]._use_global_stats = False  # un-freezing later is caught at step time
    with pytest.raises(ValueError, match="BatchNorm"):
        engine.step()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"noise_multiplier": -1.0}, "noise_multiplier"),
        ({"max_grad_norm": 0.0}, "max_grad_norm"),
        ({"expected_batch_size": 0}, "expected_batch_size"),
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"clipping": "norm"}, "clipping"),
        ({"per_sample": "vmap"}, "per_sample"),
        ({"max_grad_norm": [1.0, 2.0]}, "per_layer"),
        ({"clipping": "per_layer", "max_grad_norm": [1.0]}, "one bound per"),
    ],
)
def test_validation(kwargs, match):
    args = {"noise_multiplier": 1.0, "max_grad_norm": 1.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DPSGD(small_net(), **args)


def test_step_without_backward_is_an_error():
    engine = DPSGD(small_net(), noise_multiplier=1.0, max_grad_norm=1.0)
    with pytest.raises(ValueError, match="loss.backward"):
        engine.step()


def test_poisson_sampler_statistics_and_determinism():
    s = PoissonBatchSampler(1000, sample_rate=0.05, num_batches=400, seed=3)
    batches = list(s)
    assert len(s) == 400 and len(batches) == 400
    sizes = np.array([len(b) for b in batches])
    assert sizes.mean() == pytest.approx(50, rel=0.05)
    assert sizes.var() == pytest.approx(1000 * 0.05 * 0.95, rel=0.25)
    assert batches[:3] == list(PoissonBatchSampler(1000, 0.05, num_batches=400, seed=3))[:3]
    tiny = PoissonBatchSampler(3, 0.01, num_batches=50, seed=0, skip_empty=False)
    assert any(len(b) == 0 for b in tiny)
    assert all(len(b) > 0 for b in PoissonBatchSampler(3, 0.01, num_batches=50, seed=0))
    with pytest.raises(ValueError, match="sample_rate"):
        PoissonBatchSampler(10, 0.0)


def test_uniform_sampler():
    s = UniformBatchSampler(20, batch_size=4, seed=0)
    batches = list(s)
    assert len(batches) == 5 and all(len(b) == 4 and len(set(b)) == 4 for b in batches)
    assert s.sample_rate == 0.2
    with pytest.raises(ValueError, match="batch_size"):
        UniformBatchSampler(20, batch_size=21)


def test_batch_clip_noise_label_based_defense_variant():
    g = {"w": paddle.to_tensor([3.0, 4.0]), "b": paddle.to_tensor([0.0])}
    out = batch_clip_noise(g, max_norm=1.0, noise_multiplier=0.0)
    np.testing.assert_allclose(out["w"].numpy(), [0.6, 0.8], atol=1e-6)
    big = {"w": paddle.zeros([20000])}
    noisy = batch_clip_noise(big, max_norm=1.0, noise_multiplier=0.01, seed=0)["w"].numpy()
    assert noisy.dtype == np.float32
    assert noisy.std() == pytest.approx(0.01, rel=0.03)
    small = {"w": paddle.to_tensor([0.1, 0.1])}
    np.testing.assert_allclose(batch_clip_noise(small, noise_multiplier=0.0)["w"].numpy(), [0.1, 0.1], rtol=1e-6)


def test_unused_branch_after_clear_grad_is_not_an_error():
    class TwoHeads(nn.Layer):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(5, 4)
            self.head_a = nn.Linear(4, 3)
            self.head_b = nn.Linear(4, 3)

        def forward(self, x, head="a"):
            h = F.relu(self.body(x))
            return self.head_a(h) if head == "a" else self.head_b(h)

    paddle.seed(0)
    net = TwoHeads()
    x, y = data()
    engine = DPSGD(net, noise_multiplier=0.0, max_grad_norm=1.0)
    for head in ("b", "a", "a"):
        ce(net(x, head), y).backward()
        grads = engine.privatize()
        engine.optimizer.step()
        engine.clear_grad()
    assert float(grads["head_b.weight"].abs().sum()) == 0.0  # unused head: zero DP gradient
    assert float(grads["head_a.weight"].abs().sum()) > 0.0
