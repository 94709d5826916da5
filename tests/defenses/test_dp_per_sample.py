"""Per-sample gradients: hooks equal the micro-batch loop (PADDLE.md §7, tolerance 1e-5)."""

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

from privbox.defenses import (
    PerSampleGradients,
    check_no_batchnorm,
    freeze_batchnorm,
    per_sample_gradients,
    per_sample_gradients_microbatch,
    supports_hooks,
)


def ce(out, y):
    return F.cross_entropy(out, y)


def assert_same(a, b, tol=1e-5):
    assert set(a) == set(b)
    for k in a:
        assert list(a[k].shape) == list(b[k].shape), k
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), atol=tol, rtol=1e-4, err_msg=k)


def test_linear_hooks_match_microbatch():
    paddle.seed(0)
    net = nn.Sequential(nn.Linear(7, 16), nn.Tanh(), nn.Linear(16, 4))
    x, y = paddle.randn([6, 7]), paddle.randint(0, 4, [6])
    hooks = per_sample_gradients(net, ce, x, y, mode="hooks")
    assert list(hooks["0.weight"].shape) == [6, 7, 16]  # Paddle layout [in, out]
    assert_same(hooks, per_sample_gradients_microbatch(net, ce, x, y))


class ConvNet(nn.Layer):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2D(3, 4, 3, stride=2, padding=1)
        self.gn = nn.GroupNorm(2, 4)
        self.c2 = nn.Conv2D(4, 6, 3, padding=[1, 0, 2, 1], dilation=2, groups=2)
        self.ln = nn.LayerNorm(6)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        h = F.relu(self.gn(self.c1(x)))
        h = self.c2(h).mean(axis=[2, 3])
        return self.fc(self.ln(h))


def test_conv_groupnorm_layernorm_hooks_match_microbatch():
    paddle.seed(1)
    net = ConvNet()
    x, y = paddle.randn([4, 3, 9, 9]), paddle.randint(0, 5, [4])
    hooks = per_sample_gradients(net, ce, x, y, mode="hooks")
    assert list(hooks["c2.weight"].shape) == [4, 6, 2, 3, 3]
    assert_same(hooks, per_sample_gradients_microbatch(net, ce, x, y))


def test_sum_of_per_sample_equals_batch_gradient_and_reused_layer():
    paddle.seed(2)

    class Shared(nn.Layer):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 5)
            self.out = nn.Linear(5, 3)

        def forward(self, x):
            return self.out(self.fc(F.relu(self.fc(x))))  # fc used twice

    net = Shared()
    x, y = paddle.randn([5, 5]), paddle.randint(0, 3, [5])
    psg = PerSampleGradients(net, loss_reduction="mean")
    loss = ce(net(x), y)
    loss.backward()
    per = psg.gradients()
    psg.detach()
    for n, p in net.named_parameters():
        np.testing.assert_allclose(per[n].numpy().mean(axis=0), p.grad.numpy(), atol=1e-6)
    assert_same(per, per_sample_gradients_microbatch(net, ce, x, y))


def test_sum_reduction():
    paddle.seed(3)
    net = nn.Linear(4, 3)
    x, y = paddle.randn([3, 4]), paddle.randint(0, 3, [3])
    psg = PerSampleGradients(net, loss_reduction="sum")
    F.cross_entropy(net(x), y, reduction="sum").backward()
    per = psg.gradients()
    psg.detach()
    assert_same(per, per_sample_gradients_microbatch(net, ce, x, y))


def test_mismatched_second_backward_is_reported():
    net = nn.Linear(4, 3)
    psg = PerSampleGradients(net)
    F.cross_entropy(net(paddle.randn([3, 4])), paddle.randint(0, 3, [3])).backward()
    F.cross_entropy(net(paddle.randn([2, 4])), paddle.randint(0, 3, [2])).backward()
    with pytest.raises(ValueError, match="clear_grad"):
        psg.gradients()
    psg.clear()
    assert psg.gradients() == {}
    psg.detach()


def test_unsupported_layer_falls_back_to_microbatch():
    paddle.seed(4)
    net = nn.Sequential(nn.Linear(4, 6), nn.PReLU(), nn.Linear(6, 2))
    ok, bad = supports_hooks(net)
    assert not ok and bad == ["1"]
    with pytest.raises(ValueError, match="microbatch"):
        PerSampleGradients(net)
    x, y = paddle.randn([3, 4]), paddle.randint(0, 2, [3])
    auto = per_sample_gradients(net, ce, x, y)  # auto -> micro-batch
    assert list(auto["1._weight"].shape) == [3, 1]


def test_batchnorm_rejected_with_advice_and_frozen_bn_accepted():
    paddle.seed(5)
    net = nn.Sequential(nn.Conv2D(1, 2, 3), nn.BatchNorm2D(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="GroupNorm"):
        check_no_batchnorm(net)
    assert freeze_batchnorm(net) == ["1"]
    net.train()  # freezing survives train()
    check_no_batchnorm(net)
    x, y = paddle.randn([3, 1, 4, 4]), paddle.randint(0, 2, [3])
    mean_before = net[1]._mean.numpy().copy()
    hooks = per_sample_gradients(net, ce, x, y, mode="hooks")
    assert "1.weight" not in hooks  # frozen affine parameters
    assert_same(hooks, per_sample_gradients_microbatch(net, ce, x, y))
    np.testing.assert_array_equal(net[1]._mean.numpy(), mean_before)  # running stats untouched


def test_bad_arguments():
    with pytest.raises(ValueError, match="loss_reduction"):
        PerSampleGradients(nn.Linear(2, 2), loss_reduction="none")
    with pytest.raises(ValueError, match="mode"):
        per_sample_gradients(nn.Linear(2, 2), ce, paddle.ones([1, 2]), paddle.zeros([1], "int64"), mode="vmap")
