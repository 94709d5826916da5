"""RDLV (ALGORITHMS.md §8.5) on hand-made images, against scikit-image's SSIM computed here."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from privbox.core.errors import ConfigError, InputError
from privbox.metrics.rdlv import SIMILARITIES, relative_data_leakage


def _ssim(a, b):
    return structural_similarity(np.transpose(a, (1, 2, 0)), np.transpose(b, (1, 2, 0)), data_range=1.0, channel_axis=-1, win_size=7)


def _images():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16] / 15.0
    a = np.stack([xx, yy, xx * yy])            # smooth gradients
    b = np.stack([1 - xx, yy ** 2, 0.5 + 0 * xx])
    prior = np.full((3, 16, 16), 0.5) + 0.2 * (xx - 0.5)
    noisy = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    return a, b, np.clip(prior, 0, 1), noisy


def test_rdlv_matches_the_formula_with_skimage_ssim():
    a, b, prior, noisy = _images()
    targets = np.stack([a, b])
    recons = np.stack([noisy, prior, a])
    r = relative_data_leakage(targets, recons, prior, rescale="clip")
    s = np.array([[_ssim(t, rc) for rc in recons] for t in targets])
    sp = np.array([_ssim(t, prior) for t in targets])
    expected = (s - sp[:, None]) / sp[:, None]
    np.testing.assert_allclose(r.all[:, :, 0], expected, rtol=1e-10)
    np.testing.assert_allclose(r.prior_similarity[:, 0], sp, rtol=1e-10)
    # image a is reconstructed exactly: RDLV = (1 - S_p) / S_p; b's best match is chosen by the first metric
    assert r.closest[0] == 2
    assert r.per_image[0, 0] == pytest.approx((1 - sp[0]) / sp[0], rel=1e-10)
    assert r.closest[1] == int(np.argmax(expected[1]))
    assert r.value == pytest.approx(expected.max(axis=1).max(), rel=1e-10)


def test_reconstruction_equal_to_the_prior_scores_zero_and_no_prior_gives_raw_similarity():
    a, b, prior, _ = _images()
    r = relative_data_leakage(a[None], prior[None], prior, rescale="clip")
    assert r.value == pytest.approx(0.0, abs=1e-12)
    raw = relative_data_leakage(a[None], a[None], None, rescale="clip")
    assert raw.value == pytest.approx(1.0)
    assert raw.prior_similarity is None


def test_minmax_rescale_and_grey_reconstructions():
    a, _, prior, _ = _images()
    grey = a.mean(axis=0, keepdims=True)
    scaled = grey * 0.5 + 0.2                      # min-max rescaling undoes this affine change
    r = relative_data_leakage(np.repeat(grey, 3, 0)[None], scaled[None], None, rescale="minmax")
    ref = (grey - grey.min()) / (grey.max() - grey.min())
    expected = _ssim(np.repeat(grey, 3, 0), np.repeat(ref, 3, 0))
    assert r.value == pytest.approx(expected, rel=1e-10)


def test_several_metrics_and_min_reduction():
    a, b, prior, noisy = _images()
    r = relative_data_leakage(a[None], np.stack([noisy, a]), prior, metrics=["mse", "ssim"], reduce="min", rescale="clip")
    # closest by MSE is the exact copy: MSE 0 -> RDLV -1 (the distance fell to nothing)
    assert r.closest[0] == 1 and r.value == pytest.approx(-1.0)
    assert r.per_image.shape == (1, 2)
    assert "ncc" in SIMILARITIES and "psnr" in SIMILARITIES


def test_bad_input_is_reported():
    a, _, prior, _ = _images()
    with pytest.raises(ConfigError):
        relative_data_leakage(a[None], a[None], prior, metrics=["nope"])
    with pytest.raises(ConfigError):
        relative_data_leakage(a[None], a[None], prior, reduce="median")
    with pytest.raises(InputError):
        relative_data_leakage(a[None], a[None, :, :8], prior)
    with pytest.raises(InputError):  # a zero-similarity prior makes the relative value undefined
        relative_data_leakage(a[None], a[None], np.zeros((3, 16, 16)) + 0.5 * 0, metrics=["ncc"])
