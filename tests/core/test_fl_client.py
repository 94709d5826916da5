"""The one client: ClientSpec serialisation and Client.local_train against hand-written NumPy SGD.

The references below are written from the definitions (softmax cross-entropy of a linear model,
its gradient X^T (softmax − onehot) / B, SGD with heavy-ball momentum and L2 weight decay,
per-sample clipping), in float64, independently of privbox's code.
"""

from __future__ import annotations

import json

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from privbox.core.errors import ConfigError
from privbox.fl.client import Client
from privbox.fl.spec import ClientSpec, DataSpec, DefenseSpec

C, D = 3, 2 * 4 * 4


def _linear(seed: int = 0) -> nn.Layer:
    paddle.seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(D, C))


def _batch(n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 2, 4, 4)).astype(np.float32), rng.integers(0, C, n)


def _np_grad(w, b, x, y):
    """Gradient of the batch-mean softmax cross-entropy of logits x @ w + b (w: [D, C])."""
    z = x @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return x.T @ p / len(y), p.mean(axis=0)


def _np_local_sgd(w, b, x, y, lr, batches, momentum=0.0, wd=0.0):
    vw = vb = None
    grads = []
    for idx in batches:
        gw, gb = _np_grad(w, b, x[idx], y[idx])
        grads.append((gw, gb))
        dw, db = gw + wd * w, gb + wd * b
        if momentum:
            vw = dw if vw is None else momentum * vw + dw
            vb = db if vb is None else momentum * vb + db
            dw, db = vw, vb
        w, b = w - lr * dw, b - lr * db
    return w, b, grads


def _params(model):
    lin = model[1]
    return lin.weight.numpy().astype(np.float64), lin.bias.numpy().astype(np.float64)


def _spec(**kw):
    base = dict(model="custom", num_classes=C, channels=2, seed=0)
    base.update(kw)
    return ClientSpec(**base)


@pytest.mark.parametrize("momentum, wd", [(0.0, 0.0), (0.9, 1e-2)])
def test_delta_matches_numpy_sgd_over_epochs_and_minibatches(momentum, wd):
    images, labels = _batch(6)
    model = _linear()
    w0, b0 = _params(model)
    spec = _spec(num_images=6, batch_size=4, local_epochs=2, lr=0.3, share="delta",
                 optimizer_kwargs={"momentum": momentum, "weight_decay": wd})
    x = images.reshape(6, -1).astype(np.float64)
    batches = [np.arange(0, 4), np.arange(4, 6)] * 2  # contiguous, last one smaller, two epochs
    w, b, _ = _np_local_sgd(w0, b0, x, labels, 0.3, batches, momentum, wd)
    update, secret = Client(spec, model=model).run_round(batch=(images, labels))
    assert update.kind == "weight_delta" and update.meta.local_steps == 4 and update.meta.batch_size == 4
    np.testing.assert_allclose(update.tensors["1.weight"], w - w0, atol=1e-5)
    np.testing.assert_allclose(update.tensors["1.bias"], b - b0, atol=1e-5)
    np.testing.assert_array_equal(_params(model)[0], w0)  # θ0 restored
    np.testing.assert_array_equal(secret.images, images)


def test_gradient_of_several_steps_is_the_mean_step_gradient_and_one_step_is_fedsgd():
    images, labels = _batch(6, seed=1)
    model = _linear(1)
    w0, b0 = _params(model)
    x = images.reshape(6, -1).astype(np.float64)
    one, _ = Client(_spec(num_images=6), model=model).run_round(batch=(images, labels))
    gw, gb = _np_grad(w0, b0, x, labels)
    np.testing.assert_allclose(one.tensors["1.weight"], gw, atol=1e-6)
    np.testing.assert_allclose(one.tensors["1.bias"], gb, atol=1e-6)
    three, _ = Client(_spec(num_images=6, local_steps=3, lr=0.5), model=model).run_round(batch=(images, labels))
    _, _, grads = _np_local_sgd(w0, b0, x, labels, 0.5, [np.arange(0, 2), np.arange(2, 4), np.arange(4, 6)])
    np.testing.assert_allclose(three.tensors["1.weight"], np.mean([g[0] for g in grads], axis=0), atol=1e-6)
    assert three.kind == "gradient"


def test_shards_without_bn_average_to_the_centralised_gradient():
    images, labels = _batch(8, seed=2)
    model = _linear(2)
    w0, b0 = _params(model)
    sharded, _ = Client(_spec(num_images=8, shards=4), model=model).run_round(batch=(images, labels))
    gw, _ = _np_grad(w0, b0, images.reshape(8, -1).astype(np.float64), labels)
    np.testing.assert_allclose(sharded.tensors["1.weight"], gw, atol=1e-6)
    with pytest.raises(ConfigError, match="divisible by 3"):
        Client(_spec(num_images=8, shards=3), model=model).run_round(batch=(images, labels))


def test_dp_sgd_defense_clips_each_sample_like_numpy():
    images, labels = _batch(4, seed=3)
    model = _linear(3)
    w0, b0 = _params(model)
    x = images.reshape(4, -1).astype(np.float64)
    spec = _spec(num_images=4, defenses=[DefenseSpec("dp_sgd", {"noise_multiplier": 0.0, "max_grad_norm": 0.05})])
    update, _ = Client(spec, model=model).run_round(batch=(images, labels))
    clipped = []
    for i in range(4):
        gw, gb = _np_grad(w0, b0, x[i : i + 1], labels[i : i + 1])
        norm = np.sqrt((gw ** 2).sum() + (gb ** 2).sum())
        clipped.append(gw * min(1.0, 0.05 / (norm + 1e-6)))
    np.testing.assert_allclose(update.tensors["1.weight"], np.mean(clipped, axis=0), atol=1e-6)
    assert any("DP-SGD" in d for d in update.meta.defenses)


def test_update_transforms_apply_in_order_after_local_training():
    images, labels = _batch(4, seed=4)
    model = _linear(4)
    plain, _ = Client(_spec(num_images=4), model=model).run_round(batch=(images, labels))
    spec = _spec(num_images=4, defenses=[DefenseSpec("top_k", {"prune_ratio": 0.75})])
    pruned, _ = Client(spec, model=model).run_round(batch=(images, labels))
    for name, g in plain.tensors.items():
        flat = np.abs(g.ravel())
        keep = int(np.ceil(0.25 * flat.size))
        threshold = np.sort(flat)[::-1][keep - 1]
        expected = np.where(np.abs(g) >= threshold, g, 0.0)
        np.testing.assert_allclose(pruned.tensors[name], expected, atol=0)
    assert pruned.meta.defenses == ["TopKPruning(prune_ratio=0.75, scope=tensor)"]


def test_client_builds_model_and_data_from_its_spec_and_loads_the_global_state():
    spec = ClientSpec(model="dlg_lenet", num_classes=5, image_size=16, num_images=3, data=DataSpec(distinct_labels=2),
                      include_labels=True, seed=7)
    client = Client(spec)
    update, secret = client.run_round(round_index=2)
    assert update.meta.round == 2 and update.meta.model_kwargs["image_size"] == 16
    assert len(set(secret.labels.tolist())) == 2 and update.labels.tolist() == secret.labels.tolist()
    shifted = {k: v + 0.01 for k, v in update.global_state.items()}
    moved, _ = client.run_round(global_state=shifted)
    np.testing.assert_allclose(moved.global_state["fc.weight"], shifted["fc.weight"])
    assert not np.allclose(moved.tensors["fc.weight"], update.tensors["fc.weight"])


def test_spec_round_trips_through_json_and_rejects_unknown_keys():
    spec = ClientSpec(model="convnet", model_kwargs={"width": 4}, data=DataSpec(images=["astronaut", "coffee"]),
                      num_images=2, batch_size=1, local_epochs=2, share="delta", scheme="RA+GH",
                      defenses=[DefenseSpec("gaussian_privacy", {"sigma0": 5.0})])
    again = ClientSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.data.images == ["astronaut", "coffee"]
    with pytest.raises(ConfigError, match="unknown keys \\['colour'\\].*valid keys are model, model_kwargs"):
        ClientSpec.from_dict({"colour": 1})
    with pytest.raises(ConfigError, match="client.data: unknown keys \\['bogus'\\]"):
        ClientSpec.from_dict({"data": {"bogus": 1}})
    with pytest.raises(ConfigError, match="share must be one of"):
        ClientSpec(share="weights")
    with pytest.raises(ConfigError, match="unknown defense 'nope'"):
        Client(ClientSpec(defenses=["nope"]))
