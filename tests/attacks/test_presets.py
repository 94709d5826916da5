"""Published preset defaults, lr schedules in closed form, threat-model guards, BN-statistic
recovery, the GA early stop, and the Inverting Gradients acceptance test on a ResNet."""

import math

import numpy as np
import paddle
import pytest

from privbox.attacks import (
    GradientInversion,
    e2egi,
    ga,
    gradinversion,
    inverting_gradients,
    recover_bn_statistics,
)
from privbox.attacks.regularizers import _total_variation
from privbox.attacks.schedules import cosine, cosine_e2egi, step_ig, warmup_cosine
from privbox.fl.capture import compute_update
from privbox.core.images import denormalize
from privbox.data import make_target_batch
from privbox.metrics import evaluate, psnr
from privbox.nn import resnet18
from privbox.core.update import MissingCapabilityError

from tiny_victim import tiny_capture


# ------------------------------------------------------------------ published defaults
def test_inverting_gradients_preset():
    cfg = inverting_gradients()
    assert (cfg.objective, cfg.optimizer, cfg.lr, cfg.iterations, cfg.schedule) == ("cosine", "adam", 0.1, 24000, "step_ig")
    assert cfg.regularizers == {"tv": 1e-4}
    assert cfg.signed and cfg.boxed and cfg.init == "randn" and cfg.restarts == 1
    assert cfg.adam_betas == (0.9, 0.999) and cfg.noise == 0.0
    assert cfg.label_strategy == "recover" and cfg.label_method == "auto"


def test_e2egi_preset():
    cfg = e2egi()
    assert (cfg.objective, cfg.optimizer, cfg.lr, cfg.iterations, cfg.schedule) == ("cosine", "adam", 0.1046, 24000, "cosine_e2egi")
    assert cfg.regularizers == {"tv": 0.0114, "bn": {"weight": 0.0357, "source": "exact"}}
    assert cfg.noise == 0.2 and cfg.signed and cfg.boxed and cfg.return_best
    assert cfg.label_strategy == "given" and cfg.early_stop_tv == 0.0


def test_ga_preset():
    cfg = ga()
    assert (cfg.objective, cfg.lr, cfg.iterations, cfg.schedule) == ("cosine", 0.1, 15000, "cosine_e2egi")
    assert cfg.regularizers == {"tv": 0.1}  # no BN term
    assert cfg.noise == 0.0 and cfg.signed and cfg.boxed
    assert cfg.label_strategy == "recover" and cfg.label_method == "llg"
    assert cfg.early_stop_tv == 0.28


def test_gradinversion_preset():
    cfg = gradinversion()
    assert (cfg.objective, cfg.gradient_weight, cfg.iterations, cfg.noise) == ("l2", 1e-4, 20000, 0.01)
    assert cfg.regularizers == {"bn": {"weight": 0.1, "source": "running"}, "tv": 1e-4, "image_norm": 1e-6}
    assert "group" not in cfg.regularizers  # the group term is added by run_group_consistency
    assert (cfg.optimizer, cfg.lr, cfg.schedule, cfg.boxed) == ("adam", 0.1, "cosine", True)
    assert cfg.label_strategy == "recover" and cfg.label_method == "yin"


def test_presets_are_editable_and_validated():
    cfg = e2egi(iterations=100, regularizers={"tv": 0.02})
    assert cfg.iterations == 100 and cfg.regularizers == {"tv": 0.02} and cfg.lr == 0.1046
    assert cfg.replace(lr=0.5).lr == 0.5 and cfg.lr == 0.1046
    with pytest.raises(ValueError, match="unknown attack config keys"):
        inverting_gradients(learning_rate=0.1)


# ------------------------------------------------------------------------- schedules
def test_e2egi_cosine_has_period_t_plus_10_and_a_floor():
    T, lr0 = 24000, 0.1046
    assert cosine_e2egi(0, T, lr0) == lr0
    assert cosine_e2egi((T + 10) / 2, T, lr0) == pytest.approx((lr0 + 1e-3) / 2)
    assert cosine_e2egi(T + 10, T, lr0) == pytest.approx(1e-3)
    last = 1e-3 + (lr0 - 1e-3) * (1 + math.cos(math.pi * T / (T + 10))) / 2
    assert cosine_e2egi(T, T, lr0) == pytest.approx(last) and last > 1e-3
    assert cosine_e2egi(T, T, lr0, floor=0.0) < last


def test_inverting_gradients_step_decay_milestones():
    T = 24000
    assert [step_ig(t, T, 0.1) for t in (0, 8999)] == [0.1, 0.1]
    assert step_ig(9000, T, 0.1) == pytest.approx(0.01)
    assert step_ig(14999, T, 0.1) == pytest.approx(0.01)
    assert step_ig(15000, T, 0.1) == pytest.approx(0.001)
    assert step_ig(21000, T, 0.1) == pytest.approx(1e-4)
    assert step_ig(T - 1, T, 0.1) == pytest.approx(1e-4)


def test_cosine_and_warmup_cosine():
    assert cosine(0, 100, 0.1, end=0.01) == 0.1 and cosine(100, 100, 0.1, end=0.01) == pytest.approx(0.01)
    assert cosine(50, 100, 0.1) == pytest.approx(0.05)
    assert warmup_cosine(0, 1000, 0.1, warmup=100) == pytest.approx(0.001)
    assert warmup_cosine(49, 1000, 0.1, warmup=100) == pytest.approx(0.05)
    assert warmup_cosine(100, 1000, 0.1, warmup=100) == pytest.approx(0.1)
    assert warmup_cosine(550, 1000, 0.1, warmup=100) == pytest.approx(0.05)
    assert warmup_cosine(1000, 1000, 0.1, warmup=100) == pytest.approx(0.0)


# ------------------------------------------------------------------ threat-model guards
def test_e2egi_exact_bn_without_batch_statistics_raises():
    model, update, _ = tiny_capture(share_bn_stats=False)
    with pytest.raises(MissingCapabilityError, match="has_bn_batch_stats"):
        GradientInversion(e2egi(iterations=1, progress=False)).run(model, update)
    # the regularizer refuses too, even when the runner's capability check is bypassed
    from privbox.attacks.regularizers import BNStatistics

    with pytest.raises(MissingCapabilityError, match="never falls back"):
        BNStatistics(0.0357, source="exact").attach(model, update, {})


# ---------------------------------------------------------------- BN-statistic recovery
def test_recovered_bn_statistics_equal_the_exact_batch_statistics():
    model, update, _ = tiny_capture(batch_size=4, seed=2)
    recovered = recover_bn_statistics(update.global_state, update.buffer_delta, momentum=0.9, convention="paddle")
    assert set(recovered) == set(update.bn_batch_stats) and len(recovered) == 8
    for key, exact in update.bn_batch_stats.items():
        np.testing.assert_allclose(recovered[key], exact, atol=1e-5, rtol=0, err_msg=key)


def test_torch_convention_ema_inversion_on_synthetic_numbers():
    rng = np.random.default_rng(0)
    m, n = 0.1, 6  # PyTorch momentum, N·H·W of the BN input
    old_mean, old_var = rng.standard_normal(5), rng.random(5) + 0.5
    batch_mean, batch_var = rng.standard_normal(5), rng.random(5) + 0.1  # biased batch variance
    new_mean = (1 - m) * old_mean + m * batch_mean
    new_var = (1 - m) * old_var + m * batch_var * n / (n - 1)  # PyTorch stores the unbiased variance
    state = {"bn._mean": old_mean, "bn._variance": old_var}
    delta = {"bn._mean": new_mean - old_mean, "bn._variance": new_var - old_var}
    out = recover_bn_statistics(state, delta, momentum=m, convention="torch", bn_input_size={"bn": n})
    np.testing.assert_allclose(out["bn.mean"], batch_mean, atol=1e-6)
    np.testing.assert_allclose(out["bn.var"], batch_var, atol=1e-6)
    unbiased = recover_bn_statistics(state, delta, momentum=m, convention="torch")
    np.testing.assert_allclose(unbiased["bn.var"], batch_var * n / (n - 1), atol=1e-6)
    with pytest.raises(ValueError, match="convention"):
        recover_bn_statistics(state, delta, convention="tf")


# ---------------------------------------------------------------------- GA early stop
def test_ga_early_stop_by_tv_fires():
    model, update, _ = tiny_capture(seed=4)
    # Start from a rough U(0, 1) image (TV ≈ 0.67 > 0.28): signed steps smooth it below 0.28.
    cfg = ga(iterations=300, init="rand", regularizers={"tv": 1.0}, progress=False)
    recon = GradientInversion(cfg).run(model, update)
    assert recon.iterations < 300
    assert any("early stop, TV of the best iterate < 0.28" in e for e in recon.events)
    assert float(_total_variation(paddle.to_tensor(recon.images))) < 0.28


# ------------------------------------------------------------------ acceptance test
CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
IG_ACCEPTANCE = {"iterations": 400, "lr": 0.5, "tv": 0.02}


def test_inverting_gradients_beats_the_random_init_by_6db_on_a_resnet18():
    """IG (signed Adam, global cosine, ×0.1 steps at 3/8, 5/8, 7/8 of T, box) on ResNet-18 (CIFAR
    stem, width 16) at 32x32, B = 1 (the first embedded sample), known label, eval-mode BN.

    Within IG's recipe only lr, TV and T are tuned: T = 400 instead of 24 000, so lr 0.5 (the
    sign makes it scale-free) and TV 0.02 (inversefed's 1e-4 is for 24 000 iterations and its TV
    normalisation). Measured on Paddle 3.3.1 CPU: 14.96 dB vs 8.50 dB (+6.45 dB) in ~30 s on one
    core (400 iterations at ~0.07 s). The margin is image dependent on this untrained eval-mode
    victim (its logits reach ±40, the landscape is rough): see docs/en/attacks.md §4.
    """
    paddle.seed(0)
    model = resnet18(num_classes=10, width=16)
    batch = make_target_batch(1, num_classes=10, seed=0)
    update, secret = compute_update(model, batch.images, batch.labels, CIFAR_MEAN, CIFAR_STD, bn_mode="eval",
                                    share_labels=True, model_id="resnet18", model_kwargs={"width": 16})
    cfg = inverting_gradients(iterations=IG_ACCEPTANCE["iterations"], lr=IG_ACCEPTANCE["lr"],
                              regularizers={"tv": IG_ACCEPTANCE["tv"]}, label_strategy="given", progress=False)
    recon = GradientInversion(cfg).run(model, update)
    init = np.random.default_rng(cfg.seed).standard_normal(secret.images.shape).astype(np.float32)
    baseline = float(psnr(secret.images, denormalize(init, CIFAR_MEAN, CIFAR_STD))[0])
    achieved = evaluate(recon, secret)["psnr"]
    print(f"IG acceptance: {achieved:.2f} dB vs random init {baseline:.2f} dB (margin {achieved - baseline:.2f} dB)")
    assert achieved >= baseline + 6.0
