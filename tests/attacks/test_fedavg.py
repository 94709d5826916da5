"""FedAvg update inversion: functional forward, unrolled local SGD, both NVIDIA modes, docs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import paddle
import pytest

from privbox.attacks import ConfigError, FedAvgInversion, FedAvgOptions, nvidia_fl, prior_batch, simulate_local_sgd
from privbox.fl.capture import compute_fedavg_update, compute_update
from privbox.core.images import normalize
from privbox.data import make_target_batch
from privbox.metrics import evaluate
from privbox.nn import ConvNet
from privbox.nn.functional_model import functional_call, parameter_gradients, substitute_parameters
from privbox.core.update import MissingCapabilityError
from tutorials import blocks, page, run_blocks, shown_after

ROOT = Path(__file__).resolve().parents[2]
MEAN, STD = [0.5], [0.5]


def tiny_fedavg(batch_size=2, epochs=1, size=16, seed=0, **kwargs):
    """(update, secret, images) of a ConvNet(width 4) FedAvg client with 4 grey images."""
    paddle.seed(seed)
    model = ConvNet(num_classes=10, in_channels=1, width=4)
    batch = make_target_batch(4, num_classes=10, size=size, channels=1, seed=seed)
    options = dict(lr=0.1, batch_size=batch_size, local_epochs=epochs, share_labels=True, model_id="convnet")
    options.update(kwargs)
    update, secret = compute_fedavg_update(model, batch.images, batch.labels, MEAN, STD, **options)
    return model, update, secret


def fresh():
    return ConvNet(num_classes=10, in_channels=1, width=4)


# ------------------------------------------------------------------- functional forward
def test_substitution_evaluates_given_weights_and_restores_the_model():
    paddle.seed(0)
    model = ConvNet(num_classes=3, in_channels=1, width=2)
    model.eval()
    x = paddle.randn([2, 1, 8, 8])
    reference = model(x).numpy()
    doubled = {name: p * 2.0 for name, p in model.named_parameters() if name.startswith("fc.")}
    out = functional_call(model, doubled, x).numpy()
    manual = ConvNet(num_classes=3, in_channels=1, width=2)
    manual.set_state_dict(model.state_dict())
    manual.fc.weight.set_value(model.fc.weight * 2.0)
    manual.fc.bias.set_value(model.fc.bias * 2.0)
    manual.eval()
    np.testing.assert_allclose(out, manual(x).numpy(), atol=1e-6)
    np.testing.assert_allclose(model(x).numpy(), reference, atol=0)  # restored
    with pytest.raises(KeyError, match="not parameters"):
        with substitute_parameters(model, {"nope.weight": paddle.zeros([1])}):
            pass
    with pytest.raises(ValueError, match="shape"):
        with substitute_parameters(model, {"fc.bias": paddle.zeros([7])}):
            pass


def _finite_difference_check(loss_fn, x0: np.ndarray, points, eps=1e-6):
    x = paddle.to_tensor(x0)
    x.stop_gradient = False
    analytic = paddle.grad(loss_fn(x), x)[0].numpy()
    for index in points:
        plus, minus = x0.copy(), x0.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric = (float(loss_fn(paddle.to_tensor(plus))) - float(loss_fn(paddle.to_tensor(minus)))) / (2 * eps)
        assert abs(analytic[index] - numeric) <= 1e-5 * max(1.0, abs(numeric)), (index, analytic[index], numeric)


def test_unrolled_two_step_gradient_matches_finite_differences_in_float64():
    """Through conv, train-mode BN, ReLU, max-pool and Linear, across two SGD steps."""
    previous = paddle.get_default_dtype()
    paddle.set_default_dtype("float64")
    try:
        paddle.seed(0)
        model = ConvNet(num_classes=3, in_channels=1, width=2)
        model.train()
        rng = np.random.default_rng(0)
        x0 = rng.standard_normal((4, 1, 8, 8))
        labels = paddle.to_tensor([0, 1, 2, 1])
        names = [n for n, p in model.named_parameters() if not p.stop_gradient]
        target = [paddle.to_tensor(rng.standard_normal(p.shape)) for n, p in model.named_parameters() if not p.stop_gradient]

        def loss(x):
            sim = simulate_local_sgd(model, x, labels, lr=0.5, batch_size=2, create_graph=True)
            return sum(((sim.delta[n] - t) ** 2).sum() for n, t in zip(names, target))

        _finite_difference_check(loss, x0, [(0, 0, 1, 2), (1, 0, 3, 3), (2, 0, 5, 1), (3, 0, 7, 7)])
    finally:
        paddle.set_default_dtype(previous)


def test_parameter_gradients_fixes_paddles_conv_double_backward():
    """Paddle 3.3 drops a term of conv2d's double backward unless the input gradient is requested."""
    previous = paddle.get_default_dtype()
    paddle.set_default_dtype("float64")
    try:
        rng = np.random.default_rng(1)
        weight = paddle.to_tensor(rng.standard_normal((2, 1, 3, 3)))
        weight.stop_gradient = False

        def loss(x, fixed=True):
            out = paddle.nn.functional.conv2d(x, weight, padding=1)
            inputs = [x] if fixed else None
            (g,) = parameter_gradients((out**2).sum(), [weight], inputs=inputs)
            return (g**2).sum()

        _finite_difference_check(loss, rng.standard_normal((2, 1, 5, 5)), [(0, 0, 1, 1), (1, 0, 4, 2)])
        x = paddle.to_tensor(rng.standard_normal((2, 1, 5, 5)))
        x.stop_gradient = False
        fixed = paddle.grad(loss(x, True), x)[0].numpy()
        broken = paddle.grad(loss(x, False), x)[0].numpy()
        # If this starts failing, Paddle fixed its conv2d double grad; the workaround is then harmless.
        assert np.abs(fixed - broken).max() > 1e-3
    finally:
        paddle.set_default_dtype(previous)


# --------------------------------------------------------------------- simulation
def test_simulation_reproduces_the_client_update():
    model, update, _ = tiny_fedavg(batch_size=2, epochs=2)
    x = normalize(make_target_batch(4, num_classes=10, size=16, channels=1, seed=0).images, MEAN, STD)
    model.train()
    sim = simulate_local_sgd(model, x, paddle.to_tensor(update.labels), 0.1, 2, 2, create_graph=False)
    assert sim.steps == update.meta.local_steps == 4
    for name, value in update.tensors.items():
        np.testing.assert_allclose(sim.delta[name].numpy(), value, atol=1e-5)
    tracked = simulate_local_sgd(model, x, paddle.to_tensor(update.labels), 0.1, 2, 2, create_graph=False, track_bn=True)
    for name, value in update.buffer_delta.items():
        np.testing.assert_allclose(sim.running_delta[name].numpy(), value, atol=1e-5)
        np.testing.assert_allclose(tracked.running_delta[name].numpy(), value, atol=1e-5)


def test_one_step_unrolled_delta_is_minus_lr_times_the_gradient():
    paddle.seed(0)
    model = ConvNet(num_classes=10, in_channels=1, width=4)
    batch = make_target_batch(4, num_classes=10, size=16, channels=1, seed=0)
    gradient, _ = compute_update(model, batch.images, batch.labels, MEAN, STD)
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in gradient.global_state.items()})
    model.train()
    x = normalize(batch.images, MEAN, STD)
    x.stop_gradient = False
    sim = simulate_local_sgd(model, x, paddle.to_tensor(batch.labels), 0.1, 4, create_graph=True)
    for name, value in gradient.tensors.items():
        np.testing.assert_allclose(sim.delta[name].numpy(), -0.1 * value, atol=1e-5)


# ------------------------------------------------------------------ attack errors
def test_gradient_updates_and_missing_lr_are_rejected():
    paddle.seed(0)
    model = fresh()
    batch = make_target_batch(2, num_classes=10, size=16, channels=1)
    gradient, _ = compute_update(model, batch.images, batch.labels, MEAN, STD)
    attack = FedAvgInversion(nvidia_fl(iterations=1, progress=False))
    with pytest.raises(MissingCapabilityError, match="weight_delta"):
        attack.run(fresh(), gradient)
    _, delta, _ = tiny_fedavg()
    delta.meta.lr = None
    with pytest.raises(MissingCapabilityError, match="lr"):
        attack.run(fresh(), delta)


def test_options_are_validated():
    with pytest.raises(ConfigError, match="unknown FedAvg options"):
        FedAvgInversion(nvidia_fl(extra={"modus": "reference"}))
    with pytest.raises(ConfigError, match="mode"):
        FedAvgInversion(nvidia_fl(extra={"mode": "magic"}))
    with pytest.raises(ConfigError, match="grey"):
        FedAvgOptions(mode="differentiable", grey=True)
    assert FedAvgOptions(mode="reference").resolved_bn_model() == "updated"
    assert FedAvgOptions().resolved_bn_model() == "global"


def test_nvidia_fl_preset_values():
    cfg = nvidia_fl()
    assert (cfg.optimizer, cfg.lr, cfg.adam_betas, cfg.iterations, cfg.schedule) == ("adam", 0.1, (0.9, 0.9), 40000, "warmup_cosine")
    assert (cfg.objective, cfg.gradient_weight, cfg.label_strategy) == ("l2_norm", 1e-3, "joint")
    assert cfg.regularizers == {"bn": {"weight": 0.1, "source": "recovered"}, "tv4": 1e-4, "image_norm": 1e-5}
    assert cfg.extra == {"mode": "differentiable"}
    assert nvidia_fl(extra={"mode": "reference"}).extra == {"mode": "reference"}
    from privbox.attacks import PRESETS

    assert PRESETS["nvidia_fl"] is nvidia_fl


def test_bn_convention_defaults_to_the_victims():
    model = fresh()
    assert FedAvgOptions().resolved_bn(model) == (0.9, "paddle")
    assert FedAvgOptions(bn_convention="torch").resolved_bn(model) == (0.1, "torch")
    attack = FedAvgInversion(nvidia_fl())
    runner = attack._resolved(model)
    assert runner.config.regularizers["bn"] == {"weight": 0.1, "source": "recovered", "momentum": 0.9, "convention": "paddle"}


def test_prior_batch():
    prior = (np.arange(32 * 32, dtype=np.float32).reshape(32, 32) % 256).astype(np.uint8)
    batch = prior_batch(prior, 3, [3, 16, 16], [0.5] * 3, [0.5] * 3, normalize=True)
    assert batch.shape == (3, 3, 16, 16) and batch.min() >= -1.0 and batch.max() <= 1.0
    raw = prior_batch(prior, 2, [3, 16, 16], normalize=False, channels=1)
    assert raw.shape == (2, 1, 16, 16) and 0.0 <= raw.min() and raw.max() <= 1.0
    with pytest.raises(ValueError, match="prior image"):
        prior_batch(np.zeros((2, 2, 2, 2)), 1, [1, 8, 8])


def test_gradient_distance_is_zero_at_the_client_data():
    _, update, secret = tiny_fedavg()
    attack = FedAvgInversion(nvidia_fl(objective="cosine", label_strategy="given"))
    distance = attack.gradient_distance(fresh(), update)
    truth = normalize(secret.images, MEAN, STD).numpy()
    assert distance(truth) < 1e-5
    assert distance(np.random.default_rng(0).standard_normal(truth.shape).astype(np.float32)) > 0.1


# --------------------------------------------------------------- the attacks run
def test_differentiable_attack_beats_its_random_start():
    _, update, secret = tiny_fedavg()
    cfg = nvidia_fl(
        iterations=40, label_strategy="given", objective="cosine", gradient_weight=1.0, schedule="cosine",
        lr=0.1, boxed=True, regularizers={"bn": {"weight": 0.1, "source": "recovered"}}, progress=False,
    )
    start = FedAvgInversion(cfg.replace(iterations=1, lr=1e-9)).run(fresh(), update)
    result = FedAvgInversion(cfg).run(fresh(), update)
    assert result.best_loss < 0.5 * result.loss_trace[0]
    before, after = evaluate(start, secret)["psnr"], evaluate(result, secret)["psnr"]
    assert after > before + 1.0, (before, after)


def test_differentiable_attack_with_joint_labels_bn_delta_and_updated_bn_model():
    _, update, _ = tiny_fedavg(batch_size=4)
    cfg = nvidia_fl(iterations=3, progress=False, extra={"bn_model": "updated", "bn_delta_weight": 1.0})
    result = FedAvgInversion(cfg).run(fresh(), update, prior=np.full((16, 16), 128, np.uint8))
    assert result.images.shape == (4, 1, 16, 16) and result.labels.shape == (4,)
    assert np.all(np.isfinite(result.loss_trace))


@pytest.mark.parametrize("grad_weight", [1e-3, 0.0])
def test_reference_mode_runs_for_any_number_of_classes(grad_weight):
    paddle.seed(0)
    model = ConvNet(num_classes=3, in_channels=3, width=2)
    batch = make_target_batch(3, num_classes=3, size=16, channels=3, seed=0)
    update, _ = compute_fedavg_update(model, batch.images, batch.labels, [0.5] * 3, [0.5] * 3, lr=0.01, batch_size=2)
    cfg = nvidia_fl(iterations=4, gradient_weight=grad_weight, snapshot_every=1, progress=False, extra={"mode": "reference"})
    seen = []
    result = FedAvgInversion(cfg).run(
        ConvNet(num_classes=3, in_channels=3, width=2), update, prior=np.full((32, 32), 100, np.uint8),
        callback=lambda info: seen.append(info.images),
    )
    # N = ceil(n/b)·b grey images replicated to 3 channels, 3-column logits.
    assert result.images.shape == (4, 3, 16, 16)
    np.testing.assert_array_equal(result.images[:, 0], result.images[:, 2])
    assert len(result.loss_trace) == 4 and result.best_iteration == 3
    np.testing.assert_array_equal(result.images, seen[-1])  # the last pre-step iterate
    assert not np.allclose(seen[0], seen[-1])
    if grad_weight == 0.0:
        assert any("skipped" in e for e in result.events)


# ------------------------------------------------------------------------- docs
def test_tutorial_runs_as_written_and_shows_its_output():
    page_blocks = blocks(page("fedavg-inversion.md"))
    checked = 0
    for index, printed in run_blocks(page_blocks, {"__name__": "fedavg_tutorial"}, "fedavg-inversion.md", kinds=("python",)):
        shown = shown_after(page_blocks, index)
        if shown is None:
            continue
        if printed.startswith("PSNR"):
            # Attack PSNRs may differ in the last digit across CPUs; check the claim instead.
            before, after = (float(v) for v in re.findall(r"([0-9.]+) dB", printed))
            assert after > before + 1.0 and abs(after - float(re.findall(r"([0-9.]+) dB", shown)[1])) < 1.0
        else:
            assert printed == shown, f"output of block {index} differs"
        checked += 1
    assert checked == 6
