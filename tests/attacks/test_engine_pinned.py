"""Pins of the engine around the loop: Hungarian matching with PSNR and SSIM costs on a permuted
batch (against a brute force over every permutation), a resume that must continue (not restart)
with the optimizer state it saved, and the Inverting Gradients acceptance test on a victim where
the gain over the random start is wide on several images and seeds."""

import itertools

import numpy as np
import paddle
import pytest
from skimage.metrics import structural_similarity

from privbox.attacks import GradientInversion, e2egi_single, inverting_gradients
from privbox.attacks.state import TrialState, config_fingerprint
from privbox.core.images import denormalize
from privbox.data import make_target_batch
from privbox.fl.capture import compute_update
from privbox.metrics import evaluate, psnr
from privbox.metrics.matching import hungarian_assignment, score_images
from privbox.nn import build_model

from tiny_victim import tiny_capture


# ----------------------------------------------------------------------------- matching
def _np_psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


def _np_ssim(a, b):
    return structural_similarity(np.transpose(a, (1, 2, 0)), np.transpose(b, (1, 2, 0)), data_range=1.0,
                                 channel_axis=-1, win_size=7)


@pytest.mark.parametrize("cost, score", [("psnr", _np_psnr), ("ssim", _np_ssim)])
def test_hungarian_matching_undoes_a_permutation(cost, score):
    targets = make_target_batch(5, size=16, seed=0).images.astype(np.float64)
    rng = np.random.default_rng(3)
    perm = np.array([3, 0, 4, 1, 2])
    recons = np.clip(targets[perm] + 0.08 * rng.standard_normal(targets.shape), 0, 1)
    # Brute force: the permutation maximising the summed score, computed without privbox.
    matrix = np.array([[score(t, r) for r in recons] for t in targets])
    best = max(itertools.permutations(range(5)), key=lambda p: sum(matrix[i, p[i]] for i in range(5)))
    assignment = hungarian_assignment(targets, recons, cost=cost)
    assert assignment.tolist() == list(best)
    assert [int(perm[j]) for j in assignment] == list(range(5))  # recon assignment[i] is target i
    scored = score_images(targets, recons, matching="hungarian", cost=cost)
    np.testing.assert_allclose(scored.psnr, [_np_psnr(targets[i], recons[best[i]]) for i in range(5)], rtol=1e-9)
    np.testing.assert_allclose(scored.ssim, [_np_ssim(targets[i], recons[best[i]]) for i in range(5)], rtol=1e-9)
    index = score_images(targets, recons, matching="index")
    assert np.mean(index.psnr) < np.mean(scored.psnr) - 3  # the permutation matters


def test_labels_restrict_the_matching():
    targets = make_target_batch(3, size=16, seed=0).images.astype(np.float64)
    recons = targets[[1, 0, 2]]
    free = hungarian_assignment(targets, recons, cost="psnr")
    assert free.tolist() == [1, 0, 2]
    forced = hungarian_assignment(targets, recons, cost="psnr", target_labels=np.array([0, 1, 2]),
                                  recon_labels=np.array([0, 1, 2]))
    assert forced.tolist() == [0, 1, 2]


# ------------------------------------------------------------------------------- resume
class _StopAt:
    def __init__(self, at):
        self.at = at

    def __call__(self, info):
        if info.iteration >= self.at:
            raise KeyboardInterrupt


def _config(**changes):
    # E2EGI's rule: signed Adam, cosine lr with floor, Langevin noise, box, exact BN term.
    return e2egi_single(iterations=12, progress=False, snapshot_every=1, **changes)


def test_resume_continues_with_the_saved_iteration_and_adam_moments(tmp_path):
    model, update, _ = tiny_capture()
    config = _config()
    full = GradientInversion(config).run(model, update)
    with pytest.raises(KeyboardInterrupt):
        GradientInversion(config).run(model, update, callback=_StopAt(5), checkpoint_dir=str(tmp_path), checkpoint_every=5)
    checkpoint = tmp_path / "state_restart0.safetensors"
    state = TrialState.load(checkpoint, config_fingerprint(config.to_dict()), config.seed)
    assert state.iteration == 5 and not state.finished and len(state.trace) == 5
    assert state.optimizer["kind"] == "adam" and state.optimizer["t"] == 5
    # Signed Adam sees gradients in {−1, +1}: after t steps v = (1 − β2^t) exactly and |m| <= 1 − β1^t.
    b1, b2 = config.adam_betas
    (v,), (m,) = state.optimizer["v"], state.optimizer["m"]
    np.testing.assert_allclose(v, 1 - b2**5, rtol=1e-5)
    assert np.abs(m).max() <= 1 - b1**5 + 1e-6 and np.abs(m).max() > 0.5 * (1 - b1**5)

    seen = []
    resumed = GradientInversion(config).run(model, update, callback=lambda info: seen.append(info.iteration),
                                            checkpoint_dir=str(tmp_path), checkpoint_every=5, resume=True)
    assert seen[0] == 6 and seen[-1] == 12  # continued at iteration 5, did not start again at 0
    assert "resumed at iteration 5" in resumed.events
    np.testing.assert_array_equal(resumed.images, full.images)
    assert resumed.loss_trace == full.loss_trace and resumed.best_iteration == full.best_iteration

    # The comparison is sensitive to the optimizer state: a checkpoint whose moments are dropped
    # (fresh Adam at iteration 5) resumes to a different result.
    state.optimizer = {}
    state.save(checkpoint, config_fingerprint(config.to_dict()), config.seed)
    dropped = GradientInversion(config).run(model, update, checkpoint_dir=str(tmp_path), checkpoint_every=5, resume=True)
    assert not np.array_equal(dropped.images, full.images)


def test_a_restarted_run_differs_from_a_continued_one(tmp_path):
    # Restarting from scratch for the remaining iterations is not the same as continuing.
    model, update, _ = tiny_capture()
    config = _config()
    full = GradientInversion(config).run(model, update)
    restarted = GradientInversion(config.replace(iterations=7)).run(model, update)
    assert not np.array_equal(restarted.images, full.images)


# -------------------------------------------------------------------- IG acceptance test
def _ig_gain(image_seed, seed):
    """IG's recipe (signed Adam, global cosine, ×0.1 steps at 3/8, 5/8, 7/8 of T, box, TV 1e-4)
    on the DLG LeNet at 16x16, B = 1, known label, 150 iterations; (gain over the random start,
    final PSNR) in dB."""
    mean = std = [0.5] * 3
    paddle.seed(seed)
    model = build_model("dlg_lenet", num_classes=10, image_size=16)
    batch = make_target_batch(1, num_classes=10, size=16, seed=image_seed, shuffle_images=image_seed > 0)
    update, secret = compute_update(model, batch.images, batch.labels, mean, std, share_labels=True,
                                    model_id="dlg_lenet", model_kwargs={"image_size": 16})
    config = inverting_gradients(iterations=150, label_strategy="given", progress=False, seed=seed)
    recon = GradientInversion(config).run(model, update)
    start = np.random.default_rng(seed).standard_normal(secret.images.shape).astype(np.float32)
    baseline = float(psnr(secret.images, denormalize(start, mean, std))[0])
    final = evaluate(recon, secret)["psnr"]
    return final - baseline, final


# Measured on Paddle 3.3 CPU (about 3 s a run on one free core): gains +12.1 to +14.7 dB over the
# random start, final 17-22 dB, on three embedded images x two seeds. The floor, +8 dB on every
# run and 15 dB absolute, leaves 4 dB of margin; the published IG recipe is unchanged but T.
IG_FLOOR_GAIN, IG_FLOOR_PSNR = 8.0, 15.0


@pytest.mark.parametrize("image_seed, seed", [(0, 0), (2, 1)])
def test_inverting_gradients_gains_well_over_the_floor(image_seed, seed):
    gain, final = _ig_gain(image_seed, seed)
    assert gain >= IG_FLOOR_GAIN and final >= IG_FLOOR_PSNR, (gain, final)


@pytest.mark.slow
def test_inverting_gradients_gains_well_over_the_floor_on_three_images_and_two_seeds():
    runs = [_ig_gain(i, s) for i in (0, 1, 2) for s in (0, 1)]
    print("IG acceptance (gain, final) dB:", [(round(g, 2), round(f, 2)) for g, f in runs])
    assert min(g for g, _ in runs) >= IG_FLOOR_GAIN and min(f for _, f in runs) >= IG_FLOOR_PSNR
