"""Value-level pins of every objective and regularizer against NumPy references written here,
independently of privbox (ALGORITHMS.md §2 and §3), in float64 on random inputs."""

import types

import numpy as np
import paddle
import pytest

from privbox.attacks import OBJECTIVES, REGULARIZERS, recover_bn_statistics
from privbox.attacks.regularizers import build_regularizers
from privbox.nn import layers as PL

RNG = np.random.default_rng(7)
SHAPES = [(4, 3, 3, 3), (4,), (10, 4), (10,)]
DUMMY = [RNG.standard_normal(s) for s in SHAPES]
TARGET = [RNG.standard_normal(s) for s in SHAPES]
WEIGHTS = [0.5, 2.0, 1.0, 3.0]


def _t(arrays):
    return [paddle.to_tensor(a) for a in arrays]


# ----------------------------------------------------------------------- NumPy references
def np_l2(d, t, w):
    return sum(wl * np.sum((a - b) ** 2) for a, b, wl in zip(d, t, w))


def np_l2_mean(d, t, w):
    return sum(wl * np.mean((a - b) ** 2) for a, b, wl in zip(d, t, w))


def np_l2_norm(d, t, w):
    return sum(wl * np.sqrt(np.sum((a - b) ** 2)) for a, b, wl in zip(d, t, w))


def np_cosine(d, t, w):
    # One cosine over the concatenation of sqrt(w_l)-scaled layers.
    dv = np.concatenate([np.sqrt(wl) * a.ravel() for a, wl in zip(d, w)])
    tv = np.concatenate([np.sqrt(wl) * b.ravel() for b, wl in zip(t, w)])
    return 1.0 - dv @ tv / (np.linalg.norm(dv) * np.linalg.norm(tv))


def np_cosine_layer(d, t, w):
    return sum(wl * (1.0 - a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b, wl in zip(d, t, w))


REFERENCES = {"l2": np_l2, "l2_mean": np_l2_mean, "l2_norm": np_l2_norm, "cosine": np_cosine, "cosine_layer": np_cosine_layer}


def test_every_objective_has_a_reference_here():
    assert set(REFERENCES) == set(OBJECTIVES.names())


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("weights", [None, WEIGHTS])
def test_objective_values(name, weights):
    w = weights or [1.0] * len(SHAPES)
    got = float(OBJECTIVES.get(name)(_t(DUMMY), _t(TARGET), weights))
    assert got == pytest.approx(REFERENCES[name](DUMMY, TARGET, w), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", ["cosine", "cosine_layer", "l2_norm"])
def test_objective_gradients_match_finite_differences(name):
    dummy = _t(DUMMY)
    for d in dummy:
        d.stop_gradient = False
    value = OBJECTIVES.get(name)(dummy, _t(TARGET), WEIGHTS)
    grads = paddle.grad(value, dummy)
    eps = 1e-6
    for layer in (0, 3):
        for index in [(0,) * DUMMY[layer].ndim, tuple(s - 1 for s in DUMMY[layer].shape)]:
            plus = [a.copy() for a in DUMMY]
            minus = [a.copy() for a in DUMMY]
            plus[layer][index] += eps
            minus[layer][index] -= eps
            numeric = (REFERENCES[name](plus, TARGET, WEIGHTS) - REFERENCES[name](minus, TARGET, WEIGHTS)) / (2 * eps)
            assert float(grads[layer].numpy()[index]) == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_cosine_is_scale_invariant_and_l2_is_not():
    scaled = [3.0 * a for a in DUMMY]
    assert float(OBJECTIVES.get("cosine")(_t(scaled), _t(TARGET))) == pytest.approx(np_cosine(DUMMY, TARGET, [1] * 4), rel=1e-9)
    assert float(OBJECTIVES.get("cosine")(_t(TARGET), _t(TARGET))) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------- regularizers
X = RNG.standard_normal((2, 3, 5, 6))


def np_tv(x):
    return np.mean(np.abs(x[..., :, 1:] - x[..., :, :-1])) + np.mean(np.abs(x[..., 1:, :] - x[..., :-1, :]))


def np_direction_diffs(x):
    """x[i + di, j + dj] − x[i, j] over the valid region for the four neighbour directions."""
    h, w = x.shape[2:]
    out = []
    for di, dj in ((0, 1), (1, 0), (1, -1), (1, 1)):
        rows = range(0, h - di)
        cols = range(max(0, -dj), w - max(0, dj))
        out.append(np.array([[x[:, :, i + di, j + dj] - x[:, :, i, j] for j in cols] for i in rows]))
    return out


def np_tv4(x, weight, l1_weight):
    diffs = np_direction_diffs(x)
    l2 = sum(np.sqrt(np.sum(d**2)) for d in diffs)
    l1 = sum(np.mean(np.abs(d)) for d in diffs)
    return weight * l2 + l1_weight * l1


def np_image_norm(x):
    return np.mean([np.linalg.norm(x[i].ravel()) for i in range(x.shape[0])])


def _value(spec, x=X, model=None, update=None, context=None):
    (reg,) = build_regularizers(spec)
    reg.attach(model, update, context if context is not None else {})
    try:
        if model is not None:
            model(paddle.to_tensor(x, dtype="float32"))
        return reg.weight * float(reg(paddle.to_tensor(x, dtype="float32" if model is not None else "float64")))
    finally:
        reg.detach()


def test_tv_and_image_norm():
    assert _value({"tv": 0.3}) == pytest.approx(0.3 * np_tv(X), rel=1e-9)
    assert _value({"image_norm": 2.0}) == pytest.approx(2.0 * np_image_norm(X), rel=1e-9)


@pytest.mark.parametrize("l1_weight", [0.0, 0.25])
def test_four_direction_tv_l2_and_l1_parts(l1_weight):
    # l1_weight 0 is the pure L2 (Frobenius, not squared) TV; otherwise NVIDIA's L1 + L2 TV.
    got = _value({"tv4": {"weight": 0.5, "l1_weight": l1_weight}})
    assert got == pytest.approx(np_tv4(X, 0.5, l1_weight), rel=1e-9)


def _bn_model():
    """BN on the input itself, a 1x1 conv, then a second BN: both BN inputs computable in NumPy."""
    paddle.seed(4)
    model = paddle.nn.Sequential(PL.BatchNorm2D(3), paddle.nn.Conv2D(3, 4, 1), PL.BatchNorm2D(4))
    rng = np.random.default_rng(5)
    bn1, conv, bn2 = model[0], model[1], model[2]
    bn1.weight.set_value(rng.uniform(0.5, 1.5, 3).astype("float32"))
    bn1.bias.set_value(rng.standard_normal(3).astype("float32"))
    for bn, c in ((bn1, 3), (bn2, 4)):
        bn._mean.set_value(rng.standard_normal(c).astype("float32"))
        bn._variance.set_value(rng.uniform(0.5, 2.0, c).astype("float32"))
    model.train()
    return model


def np_bn_inputs(model, x):
    bn1, conv, bn2 = model[0], model[1], model[2]
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    h = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + bn1._epsilon)
    h = h * bn1.weight.numpy()[None, :, None, None] + bn1.bias.numpy()[None, :, None, None]
    w = conv.weight.numpy()[:, :, 0, 0].astype(np.float64)
    second = np.einsum("oc,bchw->bohw", w, h) + conv.bias.numpy()[None, :, None, None]
    return {"0": x, "2": second}


def np_bn_term(inputs, targets, first_multiplier=1.0):
    total = 0.0
    for i, name in enumerate(("0", "2")):
        a = inputs[name]
        mean, var = a.mean(axis=(0, 2, 3)), a.var(axis=(0, 2, 3))  # biased variance
        term = np.linalg.norm(mean - targets[f"{name}.mean"]) + np.linalg.norm(var - targets[f"{name}.var"])
        total += term * (first_multiplier if i == 0 else 1.0)
    return total


def test_bn_matching_against_exact_running_and_recovered_statistics():
    model = _bn_model()
    x = RNG.standard_normal((3, 3, 4, 4)).astype(np.float32)
    inputs = np_bn_inputs(model, x.astype(np.float64))
    rng = np.random.default_rng(9)
    exact = {f"{n}.{k}": rng.standard_normal(c).astype(np.float32) ** (2 if k == "var" else 1)
             for n, c in (("0", 3), ("2", 4)) for k in ("mean", "var")}
    update = types.SimpleNamespace(bn_batch_stats=exact, global_state=None, buffer_delta=None,
                                   meta=types.SimpleNamespace(local_steps=1))
    got = _value({"bn": {"weight": 0.1, "source": "exact", "first_bn_multiplier": 3.0}}, x, model, update)
    assert got == pytest.approx(0.1 * np_bn_term(inputs, exact, 3.0), rel=1e-5)

    running = {f"{n}.mean": model[int(n)]._mean.numpy() for n in ("0", "2")}
    running |= {f"{n}.var": model[int(n)]._variance.numpy() for n in ("0", "2")}
    got = _value({"bn": {"weight": 1.0, "source": "running"}}, x, model, update)
    assert got == pytest.approx(np_bn_term(inputs, running), rel=1e-5)

    # Recovered: the running statistics moved by one Paddle EMA step r1 = m r0 + (1 − m) b (m 0.9);
    # the regularizer inverts it, so its targets are b.
    batch = {k: v + 0.5 for k, v in running.items()}
    state = {f"{n}._mean": running[f"{n}.mean"] for n in ("0", "2")} | {f"{n}._variance": running[f"{n}.var"] for n in ("0", "2")}
    delta = {k: (0.9 * v + 0.1 * batch[k.replace("._mean", ".mean").replace("._variance", ".var")]) - v for k, v in state.items()}
    recovered = types.SimpleNamespace(bn_batch_stats=None, global_state=state, buffer_delta=delta,
                                      meta=types.SimpleNamespace(local_steps=1))
    for key, value in recover_bn_statistics(state, delta).items():
        np.testing.assert_allclose(value, batch[key], rtol=1e-4, atol=1e-5)
    got = _value({"bn": {"weight": 1.0, "source": "recovered"}}, x, model, recovered)
    assert got == pytest.approx(np_bn_term(inputs, batch), rel=1e-4)


def test_torch_convention_and_several_steps_invert_the_ema():
    old, b = np.array([1.0, -2.0]), np.array([0.25, 4.0])
    r = old.copy()
    for _ in range(3):  # torch: r ← (1 − m) r + m b with m = 0.1
        r = 0.9 * r + 0.1 * b
    stats = recover_bn_statistics({"l._mean": old}, {"l._mean": r - old}, momentum=0.1, convention="torch", steps=3)
    np.testing.assert_allclose(stats["l.mean"], b, rtol=1e-6)


def test_group_consistency_is_the_mean_squared_distance_to_the_consensus():
    consensus = RNG.standard_normal(X.shape)
    context = {}
    (reg,) = build_regularizers({"group": 0.7})
    reg.attach(None, None, context)
    assert float(reg(paddle.to_tensor(X))) == 0.0  # no consensus yet
    context["group_consensus"] = consensus
    assert 0.7 * float(reg(paddle.to_tensor(X))) == pytest.approx(0.7 * np.mean((X - consensus) ** 2), rel=1e-9)


def test_every_regularizer_has_a_pin_here():
    assert set(REGULARIZERS.names()) == {"tv", "tv4", "image_norm", "bn", "group"}
