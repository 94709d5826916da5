"""The FedAvg client: K local SGD steps, ΔW = θ_K − θ_0, BN running-statistic deltas, θ0 restored."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from privbox.attacks import recover_bn_statistics
from privbox.core.bn import BNStatsRecorder, state_snapshot
from privbox.fl.capture import compute_fedavg_update, compute_update
from privbox.fl.step import local_minibatches
from privbox.core.images import normalize
from privbox.nn import ConvNet
from privbox.core.update import ClientUpdate

MEAN, STD = [0.5], [0.25]


@pytest.fixture()
def batch():
    rng = np.random.default_rng(0)
    images = rng.random((4, 1, 8, 8)).astype(np.float32)
    labels = np.array([0, 1, 2, 1])
    paddle.seed(0)
    return ConvNet(num_classes=3, in_channels=1, width=4), images, labels


def test_one_step_delta_is_minus_lr_times_the_fedsgd_gradient(batch):
    model, images, labels = batch
    gradient, _ = compute_update(model, images, labels, MEAN, STD)
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in gradient.global_state.items()})  # undo its BN move
    delta, _ = compute_fedavg_update(model, images, labels, MEAN, STD, lr=0.1)
    assert delta.kind == "weight_delta" and delta.meta.local_steps == 1
    assert list(delta.tensors) == list(gradient.tensors)
    for name, value in delta.tensors.items():
        np.testing.assert_allclose(value, -0.1 * gradient.tensors[name], atol=1e-6)
    pseudo = delta.gradients()
    for name, value in gradient.tensors.items():
        np.testing.assert_allclose(pseudo[name], value, atol=1e-5)


def test_one_step_running_delta_recovers_the_batch_statistics(batch):
    model, images, labels = batch
    theta0 = state_snapshot(model)
    update, _ = compute_fedavg_update(model, images, labels, MEAN, STD, lr=0.1)
    recovered = recover_bn_statistics(update.global_state, update.buffer_delta, momentum=0.9, convention="paddle", steps=1)
    model.train()
    with BNStatsRecorder(model) as recorder:
        model(normalize(images, MEAN, STD))
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in theta0.items()})
    assert set(recorder.stats) == set(recovered)
    for key, value in recorder.stats.items():
        np.testing.assert_allclose(recovered[key], value, atol=1e-5)


def test_model_is_restored_and_global_state_is_theta0(batch):
    model, images, labels = batch
    model.eval()
    theta0 = state_snapshot(model)
    update, _ = compute_fedavg_update(model, images, labels, MEAN, STD, lr=0.5, batch_size=2, local_epochs=2)
    after = state_snapshot(model)
    assert not model.training and not any(layer.training for layer in model.sublayers())
    for key, value in theta0.items():
        np.testing.assert_array_equal(after[key], value)
        np.testing.assert_array_equal(update.global_state[key], value)
    assert any(np.abs(v).max() > 0 for v in update.tensors.values())


def test_metadata_and_step_count_with_a_partial_last_batch(batch):
    model, images, labels = batch
    update, secret = compute_fedavg_update(
        model, images[:3], labels[:3], MEAN, STD, lr=0.05, batch_size=2, local_epochs=2, share_labels=True
    )
    meta = update.meta
    assert (meta.kind, meta.lr, meta.local_steps, meta.local_epochs, meta.batch_size, meta.num_samples) == (
        "weight_delta", 0.05, 4, 2, 2, 3,
    )
    assert update.labels.tolist() == [0, 1, 2] and secret.images.shape == (3, 1, 8, 8)
    steps = local_minibatches(3, 2, 2)
    assert [s.tolist() for s in steps] == [[0, 1], [2], [0, 1], [2]]


def test_shuffle_is_seeded(batch):
    model, images, labels = batch
    a, _ = compute_fedavg_update(model, images, labels, MEAN, STD, lr=0.1, batch_size=2, shuffle=True, seed=3)
    b, _ = compute_fedavg_update(model, images, labels, MEAN, STD, lr=0.1, batch_size=2, shuffle=True, seed=3)
    c, _ = compute_fedavg_update(model, images, labels, MEAN, STD, lr=0.1, batch_size=2, shuffle=False)
    for name in a.tensors:
        np.testing.assert_array_equal(a.tensors[name], b.tensors[name])
    orders = [s.tolist() for s in local_minibatches(4, 2, 1, shuffle=True, seed=3)]
    assert sorted(sum(orders, [])) == [0, 1, 2, 3]
    if [sorted(o) for o in orders] != [[0, 1], [2, 3]]:  # a different split changes the delta
        assert any(not np.allclose(a.tensors[n], c.tensors[n]) for n in a.tensors)


def test_bn_statistics_can_stay_fixed_and_eval_mode_sends_no_buffer_delta(batch):
    model, images, labels = batch
    frozen, _ = compute_fedavg_update(model, images, labels, MEAN, STD, lr=0.1, update_bn_stats=False)
    assert frozen.buffer_delta is None
    evaluated, _ = compute_fedavg_update(model, images, labels, MEAN, STD, lr=0.1, bn_mode="eval")
    assert evaluated.buffer_delta is None and evaluated.meta.bn_mode == "eval"
    trained, _ = compute_fedavg_update(model, images, labels, MEAN, STD, lr=0.1)
    assert trained.buffer_delta and all(k.endswith(("._mean", "._variance")) for k in trained.buffer_delta)
    # Train-mode BN normalises with batch statistics, so freezing the running ones leaves ΔW unchanged.
    for name in trained.tensors:
        np.testing.assert_allclose(frozen.tensors[name], trained.tensors[name], atol=1e-7)


def test_round_trip_through_safetensors(batch, tmp_path):
    model, images, labels = batch
    update, _ = compute_fedavg_update(model, images, labels, MEAN, STD, lr=0.1, batch_size=2)
    loaded = ClientUpdate.load(update.save(tmp_path / "delta.safetensors"))
    assert loaded.meta == update.meta
    for name in update.tensors:
        np.testing.assert_array_equal(loaded.tensors[name], update.tensors[name])
    assert set(loaded.buffer_delta) == set(update.buffer_delta)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": 0.0}, "lr must be a positive"),
        ({"lr": 0.1, "batch_size": 0}, "batch_size"),
        ({"lr": 0.1, "local_epochs": 0}, "local_epochs"),
        ({"lr": 0.1, "bn_mode": "test"}, "bn_mode"),
    ],
)
def test_bad_arguments_are_rejected(batch, kwargs, message):
    model, images, labels = batch
    with pytest.raises(ValueError, match=message):
        compute_fedavg_update(model, images, labels, MEAN, STD, **kwargs)


def test_pixels_outside_unit_range_are_rejected(batch):
    model, images, labels = batch
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        compute_fedavg_update(model, images * 3, labels, MEAN, STD, lr=0.1)
