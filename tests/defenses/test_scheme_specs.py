"""Schemes are named modifications of a ClientSpec, and a client's data can come from a folder."""

from __future__ import annotations

import numpy as np
import pytest

from privbox.core.errors import ConfigError
from privbox.defenses import SCHEMES, get_scheme
from privbox.fl.client import Client
from privbox.fl.spec import ClientSpec, DataSpec, DefenseSpec


def test_every_scheme_produces_a_valid_client_spec():
    base = ClientSpec(model="resnet18", model_kwargs={"stem": "imagenet"}, defenses=[DefenseSpec("top_k", {"prune_ratio": 0.5})])
    for name in SCHEMES.names():
        spec = SCHEMES[name].apply(base)
        assert isinstance(spec, ClientSpec) and spec.defenses[-1].name == "top_k", name  # user defenses come last
        assert SCHEMES.entry(name).description, name
    both = get_scheme("DP-SGD+local-iterations").apply(base)
    assert (both.local_steps, both.batch_size, both.lr, both.share) == (4, None, 0.1, "gradient")
    assert [d.name for d in both.defenses] == ["batch_clip_step", "batch_clip_noise", "top_k"]
    assert get_scheme("RA+GH").apply(base).model_kwargs == {"stem": "imagenet", "maxpool_kernel": 19}
    assert get_scheme("RA+GH").apply(base).shards == 4
    assert SCHEMES["grouped"].apply(base).label_order == "grouped"
    assert SCHEMES["no-dropout"].apply(base).dropout is False
    with pytest.raises(ConfigError, match="unknown scheme 'XYZ'"):
        Client(ClientSpec(scheme="pure+XYZ"))


def test_repository_dp_sgd_with_local_iterations_clips_each_step_and_noises_once():
    """Three local steps of plain SGD on chunks, every step gradient clipped to C, N(0, (σC)²) once."""
    import paddle
    import paddle.nn as nn

    rng = np.random.default_rng(0)
    images, labels = rng.random((6, 1, 2, 2)).astype(np.float32), rng.integers(0, 2, 6)
    paddle.seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    w, b = model[1].weight.numpy().astype(np.float64), model[1].bias.numpy().astype(np.float64)
    x = images.reshape(6, -1).astype(np.float64)
    steps = []
    for idx in (np.arange(0, 2), np.arange(2, 4), np.arange(4, 6)):
        z = x[idx] @ w + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(2), labels[idx]] -= 1.0
        gw, gb = x[idx].T @ p / 2, p.mean(axis=0)
        f = min(1.0, 0.05 / (np.sqrt((gw ** 2).sum() + (gb ** 2).sum()) + 1e-6))
        steps.append((f * gw, f * gb))
        w, b = w - 0.1 * f * gw, b - 0.1 * f * gb
    mean_w, mean_b = np.mean([s[0] for s in steps], axis=0), np.mean([s[1] for s in steps], axis=0)
    g = np.sqrt((mean_w ** 2).sum() + (mean_b ** 2).sum())
    f = min(1.0, 0.05 / (g + 1e-6))
    noise = np.random.default_rng(3)
    # batch_clip_noise draws the noise per tensor in the update's key order: weight, then bias
    expected_w = mean_w * f + noise.normal(0.0, 0.02 * 0.05, size=mean_w.shape)
    scheme = get_scheme("DP-SGD").replace(local_iterations=3, clip_norm=0.05, clip_noise_sigma=0.02)
    spec = ClientSpec(model="custom", num_classes=2, channels=1, num_images=6, seed=3)
    update, _ = Client(spec, model=model, scheme=scheme).run_round(batch=(images, labels))
    np.testing.assert_allclose(update.tensors["1.weight"], expected_w, atol=1e-6)


def test_folder_data_source(tmp_path):
    from skimage.io import imsave

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(3):
            imsave(tmp_path / label / f"{i}.png", (rng.random((12, 12, 3)) * 255).astype(np.uint8), check_contrast=False)
    spec = ClientSpec(model="dlg_lenet", num_classes=2, image_size=8, num_images=4,
                      data=DataSpec(source="folder", path=str(tmp_path)), seed=1)
    update, secret = Client(spec).run_round()
    assert secret.images.shape == (4, 3, 8, 8) and set(secret.labels.tolist()) <= {0, 1}
    assert update.meta.input_shape == [3, 8, 8]
    with pytest.raises(ConfigError, match="needs a path"):
        DataSpec(source="cifar")
