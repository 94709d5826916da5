"""Embedded sample images (privbox.data.samples)."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import skimage.data
from skimage.util import img_as_float

from privbox.data import MAX_SIZE, MIN_SIZE, SAMPLE_NAMES, load_samples, sample_info
from privbox.data import samples as samples_mod

BT709 = np.array([0.2125, 0.7154, 0.0721], dtype=np.float64)


# First in the module: it decodes every file offline, which then fills the cache.
def test_loads_without_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled by test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    samples_mod._decoded_crop.cache_clear()
    samples_mod._sample.cache_clear()
    x = load_samples(size=8)
    assert x.shape[0] == len(SAMPLE_NAMES)
    # our reading of the bundled file equals skimage.data's own loader (also offline)
    top, left, bottom, right = sample_info()[0]["crop_box"]
    ref = img_as_float(skimage.data.astronaut())[top:bottom, left:right]
    np.testing.assert_allclose(samples_mod._decoded_crop("astronaut"), ref)


def test_at_least_16_distinct_samples():
    x = load_samples(size=32)
    assert len(SAMPLE_NAMES) >= 16
    assert len(set(SAMPLE_NAMES)) == len(SAMPLE_NAMES)
    assert x.shape[0] == len(SAMPLE_NAMES)
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    diff = np.abs(flat[:, None, :] - flat[None, :, :]).mean(-1)
    off_diag = diff[~np.eye(len(flat), dtype=bool)]
    assert off_diag.min() > 0.02  # pairwise clearly different, not just not identical
    # neither blank nor saturated
    assert (flat.std(axis=1) > 0.02).all()


@pytest.mark.parametrize("size", [8, 32, 64, 224])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_dtype_and_range(size, channels):
    names = SAMPLE_NAMES if size <= 64 else SAMPLE_NAMES[:4]
    x = load_samples(size=size, channels=channels, names=names)
    assert x.shape == (len(names), channels, size, size)
    assert x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x.flags.writeable


def test_grey_is_luminance_and_grey_sources_are_replicated():
    rgb = load_samples(16, 3).astype(np.float64)
    grey = load_samples(16, 1).astype(np.float64)
    expected = np.einsum("nchw,c->nhw", rgb, BT709)[:, None]
    np.testing.assert_allclose(grey, expected, atol=2e-3)
    info = {d["name"]: d for d in sample_info()}
    for i, name in enumerate(SAMPLE_NAMES):
        if info[name]["colour"] == "grey":
            np.testing.assert_array_equal(rgb[i, 0], rgb[i, 1])
            np.testing.assert_array_equal(rgb[i, 0], rgb[i, 2])
    assert any(d["colour"] == "grey" for d in info.values())
    assert sum(d["colour"] == "rgb" for d in info.values()) >= 8


def test_deterministic_and_cache_is_not_mutable_by_callers():
    a = load_samples(32, names=["astronaut", "camera"])
    a[:] = 0.0
    b = load_samples(32, names=["astronaut", "camera"])
    c = load_samples(32, names=["astronaut", "camera"])
    assert b.max() > 0
    np.testing.assert_array_equal(b, c)


def test_names_select_and_order():
    all_x = load_samples(16)
    sub = load_samples(16, names=[SAMPLE_NAMES[3], SAMPLE_NAMES[0]])
    np.testing.assert_array_equal(sub[0], all_x[3])
    np.testing.assert_array_equal(sub[1], all_x[0])
    single = load_samples(16, names="coffee")
    assert single.shape == (1, 3, 16, 16)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(size=MIN_SIZE - 1), "too small"),
        (dict(size=MAX_SIZE + 1), "too large"),
        (dict(channels=2), "channels must be 1"),
        (dict(names=["astronaut", "unicorn"]), "unknown sample name"),
        (dict(names=[]), "names is empty"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_samples(**kwargs)


def test_size_type_error():
    with pytest.raises(TypeError, match="size must be an int"):
        load_samples(size=32.0)


def test_sample_info_matches_bundled_files():
    info = sample_info()
    assert [d["name"] for d in info] == list(SAMPLE_NAMES)
    data_dir = os.path.dirname(skimage.data.__file__)
    for d in info:
        assert set(d) >= {"name", "source", "file", "crop_box", "colour", "description"}
        assert d["source"].startswith("skimage.data.")
        assert callable(getattr(skimage.data, d["source"].split(".")[-1]))
        # bundled inside the wheel, so no pooch download can ever be needed
        assert os.path.isfile(os.path.join(data_dir, d["file"])), d["file"]
        top, left, bottom, right = d["crop_box"]
        assert bottom - top == right - left > 0
    sources = {d["source"] for d in info}
    assert len(sources) >= 16  # mostly distinct source images
