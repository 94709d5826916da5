"""privbox.defenses.DEFENSES: every entry builds from its declared ranges, a new defense is one
entry, and optimizer defenses act inside the client's local steps (checked against references
written independently: NumPy clipping, np.sign, and Paddle's own DGCMomentum optimiser loop)."""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from privbox.core.errors import ConfigError
from privbox.core.registry import Range
from privbox.defenses import DEFENSE_KINDS, DEFENSES, DGCMomentum, LocalStepDefense, UpdateDefense, build_defense
from privbox.fl.client import Client
from privbox.fl.spec import ClientSpec, DefenseSpec


def _linear(seed=0):
    paddle.seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))


def _batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3, 2, 2)).astype(np.float32), rng.integers(0, 3, n)


def _spec(**kw):
    return ClientSpec(**{"model": "custom", "num_classes": 3, "num_images": 4, "seed": 0, **kw})


def test_every_entry_declares_its_kind_and_builds_from_its_ranges():
    assert {"dp_sgd", "dgc_momentum", "batch_clip_step", "gaussian_privacy", "top_k", "dgc", "batch_clip_noise"} <= set(DEFENSES)
    for entry in DEFENSES.entries():
        assert entry.extra["kind"] in DEFENSE_KINDS and entry.description, entry.name
        assert entry.tunable and all(isinstance(r, Range) for r in entry.tunable.values()), entry.name
        params = {k: (int(r.low) if r.integer else r.low) for k, r in entry.tunable.items()}
        built = build_defense(entry.name, params, seed=0)
        wanted = LocalStepDefense if entry.extra["kind"] == "optimizer" else UpdateDefense
        assert isinstance(built, wanted), entry.name
    with pytest.raises(ConfigError, match="defenses.top_k.params"):
        build_defense("top_k", {"ratio": 0.5})
    with pytest.raises(ValueError, match="kind must be one of"):
        DEFENSES.add("bad", lambda params: None, kind="sometimes")


def test_a_new_defense_is_one_entry_and_the_client_applies_it():
    class SignOnly(UpdateDefense):
        def apply(self, update, step=0, ctx=None):
            return {k: np.sign(v) for k, v in update.items()}

        def describe(self):
            return "sign only"

    DEFENSES.add("toy_sign", lambda params: SignOnly(**params), kind="update_transform", description="send the signs")
    try:
        images, labels = _batch()
        plain, _ = Client(_spec(), model=_linear()).run_round(batch=(images, labels))
        signed, _ = Client(_spec(defenses=[DefenseSpec("toy_sign")]), model=_linear()).run_round(batch=(images, labels))
        for name, value in plain.tensors.items():
            np.testing.assert_array_equal(signed.tensors[name], np.sign(value))
        assert signed.meta.defenses == ["sign only"]
    finally:
        DEFENSES.unregister("toy_sign")


def test_batch_clip_step_clips_every_local_step_like_numpy():
    images, labels = _batch(4, seed=1)
    model = _linear(1)
    w, b = model[1].weight.numpy().astype(np.float64), model[1].bias.numpy().astype(np.float64)
    x = images.reshape(4, -1).astype(np.float64)
    w0 = w.copy()
    for idx in (np.arange(0, 2), np.arange(2, 4)):
        z = x[idx] @ w + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(2), labels[idx]] -= 1.0
        gw, gb = x[idx].T @ p / 2, p.mean(axis=0)
        factor = min(1.0, 0.01 / (np.sqrt((gw ** 2).sum() + (gb ** 2).sum()) + 1e-6))
        w, b = w - 0.5 * factor * gw, b - 0.5 * factor * gb
    spec = _spec(batch_size=2, lr=0.5, share="delta", defenses=[DefenseSpec("batch_clip_step", {"max_norm": 0.01})])
    update, _ = Client(spec, model=model).run_round(batch=(images, labels))
    np.testing.assert_allclose(update.tensors["1.weight"], w - w0, atol=1e-6)


def test_dgc_as_the_local_optimiser_matches_paddles_dgc_momentum_loop():
    images, labels = _batch(4, seed=2)
    params = {"sparsity": 0.5, "momentum": 0.9}
    spec = _spec(batch_size=2, local_epochs=2, lr=0.1, share="delta", defenses=[DefenseSpec("dgc_momentum", params)])
    update, _ = Client(spec, model=_linear(2)).run_round(batch=(images, labels))
    reference = _linear(2)
    theta0 = {k: v.numpy().copy() for k, v in reference.named_parameters()}
    opt = DGCMomentum(learning_rate=0.1, parameters=reference.named_parameters(), **params)
    x, y = paddle.to_tensor(images), paddle.to_tensor(labels)
    for _ in range(2):
        for s in (slice(0, 2), slice(2, 4)):
            loss = nn.functional.cross_entropy(reference(x[s]), y[s])
            loss.backward()
            opt.step()
            opt.clear_grad()
    for name, value in reference.named_parameters():
        np.testing.assert_allclose(update.tensors[name], value.numpy() - theta0[name], atol=1e-6)
    assert any(d.startswith("DGC local optimiser") for d in update.meta.defenses)


def test_requirements_are_checked_against_the_client_model():
    from privbox.defenses import unsupported_reason
    from privbox.nn import ConvNet, DLGLeNet

    assert unsupported_reason("dp_sgd", DLGLeNet(num_classes=3, image_size=8)) is None
    reason = unsupported_reason("dp_sgd", ConvNet(num_classes=3, width=4))
    assert reason.startswith("dp_sgd: BatchNorm layers") and "bn_mode='eval'" in reason
    assert unsupported_reason("dp_sgd", ConvNet(num_classes=3, width=4), bn_mode="eval") is None
    assert unsupported_reason("top_k", ConvNet(num_classes=3, width=4)) is None
