"""``privbox capture --distributed`` on 2 gloo ranks equals the one-process capture (ALGORITHMS.md §4.9).

Reference: the ordinary one-process ``privbox capture`` of the same config (model, batch and seed),
which runs :func:`privbox.fl.capture.compute_update`. With synchronised BN the gradient, the BN
running-statistic delta and the exact BN statistics must agree to 1e-5. With per-shard BN
(``--dist-bn shard``) the update must instead be the mean of the two half-batch gradients,
each computed by the one-process client on its half (the GH scheme's asynchronous BN).
"""

from __future__ import annotations

import numpy as np
import pytest

from privbox.fl.capture import compute_update
from privbox.core.update import ClientUpdate, Secret
from privbox.nn import build_model

from dist_helpers import BN_CAPTURE, capture, launch

BIG = ["-o", "capture.batch_size=8"]


@pytest.mark.slow
def test_synchronised_bn_capture_equals_one_process(tmp_path):
    single = ClientUpdate.load(capture(tmp_path / "one", BIG))
    result = launch(["capture", *BN_CAPTURE, *BIG, "--out", tmp_path / "two", "--distributed"], tmp_path / "log")
    assert result.returncode == 0, result.describe()
    multi = ClientUpdate.load(tmp_path / "two" / "update.safetensors")

    assert multi.batch_size == single.batch_size == 8
    assert sorted(multi.tensors) == sorted(single.tensors)
    for name, value in single.tensors.items():
        np.testing.assert_allclose(multi.tensors[name], value, rtol=0, atol=1e-5, err_msg=name)
    assert single.buffer_delta and sorted(multi.buffer_delta) == sorted(single.buffer_delta)
    for name, value in single.buffer_delta.items():
        np.testing.assert_allclose(multi.buffer_delta[name], value, rtol=0, atol=1e-5, err_msg=name)
    for name, value in single.bn_batch_stats.items():
        np.testing.assert_allclose(multi.bn_batch_stats[name], value, rtol=0, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(multi.labels, single.labels)


@pytest.mark.slow
def test_per_shard_bn_capture_is_the_mean_of_half_batch_gradients(tmp_path):
    single = ClientUpdate.load(capture(tmp_path / "one", BIG))
    result = launch(["capture", *BN_CAPTURE, *BIG, "--out", tmp_path / "two", "--distributed", "--dist-bn", "shard"],
                    tmp_path / "log")
    assert result.returncode == 0, result.describe()
    multi = ClientUpdate.load(tmp_path / "two" / "update.safetensors")

    secret_images = Secret.load(tmp_path / "one" / "secret.safetensors").images
    halves = []
    for part in (slice(0, 4), slice(4, 8)):
        model = build_model("convnet", num_classes=4, width=4)
        model.set_state_dict({k: v for k, v in single.global_state.items()})
        update, _ = compute_update(model, secret_images[part], single.labels[part], single.meta.mean, single.meta.std)
        halves.append(update.tensors)
    differs = 0.0
    for name in single.tensors:
        expected = (halves[0][name] + halves[1][name]) / 2
        np.testing.assert_allclose(multi.tensors[name], expected, rtol=0, atol=1e-5, err_msg=name)
        differs = max(differs, float(np.abs(expected - single.tensors[name]).max()))
    assert differs > 1e-3  # per-shard BN really changes the gradient


@pytest.mark.slow
def test_fedavg_capture_with_synchronised_bn_equals_one_process(tmp_path):
    """Two local SGD steps on minibatches of 4, each minibatch split over the 2 ranks."""
    fedavg = [*BIG, "-o", "capture.kind=weight_delta", "-o", "capture.local_batch_size=4", "-o", "capture.local_lr=0.1",
              "-o", "capture.share_bn_stats=false"]
    single = ClientUpdate.load(capture(tmp_path / "one", fedavg))
    result = launch(["capture", *BN_CAPTURE, *fedavg, "--out", tmp_path / "two", "--distributed"], tmp_path / "log")
    assert result.returncode == 0, result.describe()
    multi = ClientUpdate.load(tmp_path / "two" / "update.safetensors")
    assert multi.kind == single.kind == "weight_delta" and multi.meta.local_steps == single.meta.local_steps == 2
    for name, value in single.tensors.items():
        assert np.abs(value).max() > 0
        np.testing.assert_allclose(multi.tensors[name], value, rtol=0, atol=1e-5, err_msg=name)
    for name, value in single.buffer_delta.items():
        np.testing.assert_allclose(multi.buffer_delta[name], value, rtol=0, atol=1e-5, err_msg=name)
