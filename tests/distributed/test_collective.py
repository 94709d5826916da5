"""Unit checks of the collective hook that need no second process."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import paddle
import pytest

from privbox.attacks import build_attack
from privbox.distributed.collective import LOCAL, active, use
from privbox.distributed.comm import EXIT_TIMEOUT, DistributedError, SeedCollective, ShardCollective
from privbox.distributed.sync_bn import SyncBatchNorm2D, convert_sync_batchnorm
from privbox.nn import build_model

from dist_helpers import REPO


def _group(rank: int, world: int):
    return SimpleNamespace(rank=rank, world_size=world)


def test_the_default_collective_is_the_identity_and_use_restores_it():
    assert active() is LOCAL and not LOCAL.distributed and LOCAL.file_suffix == ""
    x = np.arange(6.0).reshape(3, 2)
    assert LOCAL.shard(x) is x and LOCAL.gather(x) is x
    t = paddle.to_tensor(x)
    np.testing.assert_allclose(LOCAL.batch_mean(t, [0]).numpy(), x.mean(axis=0))
    other = ShardCollective(_group(1, 3))
    with use(other):
        assert active() is other
    assert active() is LOCAL


def test_contiguous_shards_and_the_divisibility_message():
    x = np.arange(12).reshape(6, 2)
    parts = [ShardCollective(_group(r, 3)).shard(x) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate(parts), x)
    np.testing.assert_array_equal(parts[1], x[2:4])
    with pytest.raises(DistributedError, match="a batch of 5 does not split into 2 equal shards.*divisible by 2"):
        ShardCollective(_group(0, 2)).shard(np.zeros((5, 1)))


def test_seed_blocks_cover_every_trial_once_in_order():
    for total, world in ((5, 2), (1, 3), (8, 4), (3, 3)):
        blocks = [list(SeedCollective(_group(r, world)).restarts(total)) for r in range(world)]
        assert [t for b in blocks for t in b] == list(range(max(total, world)))
        assert all(blocks)


def test_each_mode_refuses_attacks_it_cannot_split():
    attack = build_attack("inverting_gradients")
    shard = ShardCollective(_group(0, 2))
    shard.check_attack(attack, SimpleNamespace(batch_size=4, kind="gradient"))
    with pytest.raises(DistributedError, match="--distributed seeds"):  # FedAvg unrolls local steps over the batch
        shard.check_attack(attack, SimpleNamespace(batch_size=4, kind="weight_delta"))
    seeds = SeedCollective(_group(0, 2))
    seeds.check_attack(attack, None)
    with pytest.raises(DistributedError, match="--distributed shard"):
        seeds.check_attack(build_attack({"preset": "e2egi", "orchestrator": "mlco"}), None)


def test_converted_bn_equals_paddles_bn_in_one_process():
    """The composed (sum-based) train-mode BN against Paddle's fused batch_norm: outputs, input
    gradients and running statistics."""
    paddle.seed(0)
    native = build_model("convnet", num_classes=3, width=4)
    composed = build_model("convnet", num_classes=3, width=4)
    composed.set_state_dict(native.state_dict())
    assert convert_sync_batchnorm(composed) == 4
    assert all(type(layer) is SyncBatchNorm2D for layer in composed.sublayers() if "BatchNorm" in type(layer).__name__)
    data = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype("float32") * 2 + 1
    results = []
    for model in (native, composed):
        model.train()
        x = paddle.to_tensor(data, stop_gradient=False)
        out = model(x)
        (grad,) = paddle.grad((out * out).sum(), [x])
        results.append((out.numpy(), grad.numpy(), {k: v.numpy() for k, v in model.state_dict().items()}))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=0, atol=1e-4)
    for key, value in results[0][2].items():
        np.testing.assert_allclose(results[1][2][key], value, rtol=0, atol=1e-5, err_msg=key)


def test_the_watchdog_stops_a_rank_stuck_in_a_collective():
    code = (
        "import time\n"
        "from privbox.distributed.comm import Watchdog\n"
        "dog = Watchdog(1.0, rank=3)\n"
        "with dog.guard('all_reduce of a test'):\n"
        "    time.sleep(30)\n"
    )
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == EXIT_TIMEOUT
    assert time.monotonic() - start < 25
    assert "rank 3 waited more than 1 s in all_reduce of a test" in done.stderr
