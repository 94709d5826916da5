"""Update transforms (ALGORITHMS.md §6.2, §6.4) against NumPy references."""

import numpy as np
import paddle
import pytest

from privbox.defenses import BatchClipNoise, Compose, GaussianPrivacy, TopKPruning, UpdateDefense


def make_update(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "conv.weight": paddle.to_tensor(rng.standard_normal((4, 3, 3, 3)).astype("float32")),
        "conv.bias": paddle.to_tensor(np.zeros(4, dtype="float32")),  # zeros excluded from percentile
        "bn._mean": paddle.to_tensor(rng.standard_normal(4).astype("float32") * 0.01),
        "fc.weight": paddle.to_tensor(rng.standard_normal((36, 10)).astype("float64")),
        "steps": paddle.to_tensor(np.array([3], dtype="int64")),
    }


def test_gaussian_privacy_sigma_is_sigma0_times_percentile():
    update = make_update()
    mags = np.concatenate(
        [np.abs(v.numpy().astype(np.float64)).ravel() for k, v in update.items() if k != "steps"]
    )
    p95 = np.percentile(mags[mags > 0], 95)
    gp = GaussianPrivacy(sigma0=10.0, percentile=95, seed=0)
    out = gp(update)
    assert gp.last_percentile_value == pytest.approx(p95, rel=1e-12)
    assert gp.last_sigma == pytest.approx(10.0 * p95, rel=1e-12)
    # dtypes preserved (noise cast back), ints untouched
    assert out["conv.weight"].dtype == paddle.float32 and out["fc.weight"].dtype == paddle.float64
    np.testing.assert_array_equal(out["steps"].numpy(), [3])
    # noise is added to every float entry, including zero ones and BN statistics
    assert np.all(out["conv.bias"].numpy() != 0)
    # the noise reproduces a NumPy reference with the same seed and order
    rng = np.random.default_rng(0)
    for k in ("conv.weight", "conv.bias", "bn._mean", "fc.weight"):
        v = update[k].numpy()
        ref = v + rng.normal(0.0, gp.last_sigma, size=v.shape).astype(v.dtype)
        np.testing.assert_allclose(out[k].numpy(), ref, rtol=1e-6, atol=1e-6)
    assert gp.history[-1]["sigma"] == gp.last_sigma


def test_gaussian_privacy_noise_std():
    update = {"w": paddle.to_tensor(np.linspace(-1, 1, 20001).astype("float32"))}
    gp = GaussianPrivacy(sigma0=2.0, seed=1)
    noise = gp(update)["w"].numpy() - update["w"].numpy()
    assert noise.std() == pytest.approx(gp.last_sigma, rel=0.03)


def test_gaussian_privacy_numpy_input_and_noop():
    update = {"w": np.arange(1, 5, dtype=np.float32)}
    out = GaussianPrivacy(1.0, seed=0)(update)
    assert isinstance(out["w"], np.ndarray) and out["w"].dtype == np.float32
    gp = GaussianPrivacy(0.0)
    with pytest.warns(UserWarning, match="sigma0 = 0"):
        same = gp(update)
    assert same["w"] is update["w"] and gp.last_sigma == 0.0


def test_gaussian_privacy_state_resumes_rng():
    update = make_update()
    a = GaussianPrivacy(5.0, seed=3)
    a(update)
    state = a.state_dict()
    b = GaussianPrivacy(5.0, seed=99)
    b.set_state_dict(state)
    np.testing.assert_array_equal(a(update)["fc.weight"].numpy(), b(update)["fc.weight"].numpy())


@pytest.mark.parametrize("kwargs, match", [({"sigma0": -1}, "sigma0"), ({"sigma0": 1, "percentile": 101}, "percentile")])
def test_gaussian_privacy_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianPrivacy(**kwargs)


def test_gaussian_privacy_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        GaussianPrivacy(1.0)({"w": paddle.to_tensor([1.0, float("nan")])})


def np_prune(values, ratio):
    flat = values.ravel()
    k = int(np.ceil(round((1 - ratio) * flat.size, 9)))
    order = np.argsort(-np.abs(flat), kind="stable")
    out = np.zeros_like(flat)
    out[order[:k]] = flat[order[:k]]
    return out.reshape(values.shape)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.7, 0.95, 1.0])
def test_topk_per_tensor_matches_numpy(ratio):
    update = make_update(1)
    out = TopKPruning(ratio)(update)
    for k, v in update.items():
        if k == "steps":
            np.testing.assert_array_equal(out[k].numpy(), v.numpy())
            continue
        np.testing.assert_array_equal(out[k].numpy(), np_prune(v.numpy(), ratio))


def test_topk_global_and_ties():
    update = {"a": paddle.to_tensor([1.0, 5.0, 2.0]), "b": paddle.to_tensor([2.0, 2.0, -6.0, 0.5])}
    out = TopKPruning(4 / 7, scope="global")(update)  # keep ceil(3/7 * 7) = 3
    assert out["a"].numpy().tolist() == [0.0, 5.0, 2.0]  # the tie at 2.0 goes to the lowest index
    assert out["b"].numpy().tolist() == [0.0, 0.0, -6.0, 0.0]
    np_update = {k: v.numpy() for k, v in update.items()}
    np_out = TopKPruning(4 / 7, scope="global")(np_update)
    assert isinstance(np_out["a"], np.ndarray)
    np.testing.assert_array_equal(np_out["b"], out["b"].numpy())


def test_compose_and_custom_defense():
    class Scale(UpdateDefense):
        def __init__(self, factor):
            self.factor = factor

        def apply(self, update, step=0, ctx=None):
            return {k: v * self.factor for k, v in update.items()}

    update = {"w": paddle.to_tensor([1.0, -3.0, 2.0, 0.5])}
    chain = Compose([TopKPruning(0.5), Scale(2.0), GaussianPrivacy(1.0, seed=0)])
    out = chain(update, step=3)
    assert chain.defenses[2].last_percentile_value == pytest.approx(np.percentile([6.0, 4.0], 95))
    assert out["w"].shape == [4]
    state = chain.state_dict()
    assert "2.rng_state" in state
    chain.set_state_dict(state)
    assert "Scale" in repr(chain)
    with pytest.raises(TypeError, match="apply"):
        Compose([object()])
    with pytest.raises(NotImplementedError):
        UpdateDefense()({"w": update["w"]})


def test_batch_clip_noise_defense_is_seeded():
    update = {"w": paddle.to_tensor([3.0, 4.0])}
    a = BatchClipNoise(seed=0)(update)["w"].numpy()
    b = BatchClipNoise(seed=0)(update)["w"].numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, [0.6, 0.8], atol=0.05)


def test_bad_update_types():
    with pytest.raises(TypeError, match="dict"):
        TopKPruning(0.5)([1, 2])
    with pytest.raises(TypeError, match="paddle.Tensor"):
        TopKPruning(0.5)({"w": [1.0, 2.0]})
    with pytest.raises(ValueError, match="prune_ratio"):
        TopKPruning(1.5)
    with pytest.raises(ValueError, match="scope"):
        TopKPruning(0.5, scope="layer")
