"""Image metrics equal scikit-image; matchings are honest and named."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from privbox.metrics import evaluate, hungarian_assignment, mse, psnr, score_images, ssim
from privbox.data import load_samples


@pytest.fixture
def images():
    return load_samples(32, 3)[:5].astype(np.float64)


def test_psnr_and_mse_match_skimage(images):
    rng = np.random.default_rng(0)
    noisy = np.clip(images + rng.normal(0, 0.05, images.shape), 0, 1)
    ours = psnr(images, noisy)
    for i in range(len(images)):
        assert ours[i] == pytest.approx(peak_signal_noise_ratio(images[i], noisy[i], data_range=1.0), abs=1e-9)
        assert mse(images, noisy)[i] == pytest.approx(np.mean((images[i] - noisy[i]) ** 2))


def test_psnr_caps_exact_match(images):
    assert psnr(images, images).tolist() == [100.0] * len(images)


def test_ssim_equals_skimage_on_same_arrays(images):
    rng = np.random.default_rng(1)
    noisy = np.clip(images + rng.normal(0, 0.1, images.shape), 0, 1)
    ours = ssim(images, noisy)
    for i in range(len(images)):
        ref = structural_similarity(
            np.transpose(images[i], (1, 2, 0)), np.transpose(noisy[i], (1, 2, 0)), data_range=1.0, channel_axis=-1
        )
        assert ours[i] == pytest.approx(ref, abs=1e-12)


def test_ssim_small_grey_images():
    rng = np.random.default_rng(2)
    a = rng.random((2, 1, 5, 5))
    b = np.clip(a + 0.1, 0, 1)
    ref = structural_similarity(a[0, 0], b[0, 0], data_range=1.0, win_size=5)
    assert ssim(a, b)[0] == pytest.approx(ref)


def test_shape_mismatch_is_an_error(images):
    with pytest.raises(ValueError, match="same shape"):
        psnr(images, images[:, :1])


def test_hungarian_recovers_a_permutation(images):
    perm = np.array([3, 0, 4, 1, 2])
    recon = images[perm] + 0.01
    assignment = hungarian_assignment(images, recon)
    # target i is at position j where perm[j] == i
    assert assignment.tolist() == np.argsort(perm).tolist()
    honest = score_images(images, recon, matching="hungarian")
    naive = score_images(images, recon, matching="index")
    assert honest.matching == "hungarian" and naive.matching == "index"
    assert honest.summary["psnr_mean"] > 35 > naive.summary["psnr_mean"]


def test_best_of_is_optimistic_and_named(images):
    recon = np.repeat(images[:1], 5, axis=0)
    best = score_images(images, recon, matching="best_of_per_target")
    hung = score_images(images, recon, matching="hungarian")
    assert best.matching == "best_of_per_target"
    assert best.summary["psnr_mean"] >= hung.summary["psnr_mean"]
    per_recon = score_images(images, recon, matching="best_of_per_recon")
    assert per_recon.psnr == [100.0] * 5  # every copy matches target 0
    with pytest.raises(ValueError, match="unknown matching"):
        score_images(images, recon, matching="greedy")


def test_same_label_matching_respects_labels(images):
    recon = images[[1, 0, 2, 3, 4]]
    labels = np.array([0, 1, 2, 3, 4])
    assign = hungarian_assignment(images, recon, target_labels=labels, recon_labels=labels)
    assert assign.tolist() == [0, 1, 2, 3, 4]  # forced to same-label pairs despite the swap


def test_evaluate_names_matching_and_label_accuracy(images):
    from privbox.attacks import Reconstruction
    from privbox.core.update import Secret

    secret = Secret(images=images[:2], labels=np.array([3, 5]))
    recon = Reconstruction(
        images=images[[1, 0]],
        pixels=images[[1, 0]],
        labels=np.array([3, 5]),
        label_order="unordered",
        loss_trace=[1.0],
        best_iteration=0,
        best_loss=1.0,
        seed=0,
        iterations=1,
        wall_time=0.1,
        attack="test",
    )
    result = evaluate(recon, secret)
    assert result["matching"] == "hungarian"
    assert result["psnr"] == 100.0
    assert result["label_accuracy"] == 1.0
    assert "label_index_accuracy" not in result
