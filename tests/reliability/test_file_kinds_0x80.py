"""Issue 12, "false pickle refusals": every privbox file kind (update, secret, reconstruction,
attack checkpoint) whose header length starts with byte 0x80 loads, and a DLG run resumes from
such a checkpoint to the uninterrupted result."""

from __future__ import annotations

import numpy as np
import pytest

from privbox.attacks import GradientInversion, Reconstruction, get_preset
from privbox.attacks.state import TrialState
from privbox.fl.capture import compute_update
from privbox.core.update import ClientUpdate, Secret
from privbox.data import make_target_batch
from privbox.nn import build_model

from st_bytes import repad_low_byte


def _victim():
    batch = make_target_batch(2, num_classes=4, size=8, channels=1, seed=0)
    model = build_model("dlg_lenet", num_classes=4, in_channels=1, image_size=8)
    update, secret = compute_update(model, batch.images, batch.labels, [0.5], [0.5], model_id="dlg_lenet",
                                    model_kwargs={"in_channels": 1, "image_size": 8}, share_labels=True)
    return model, update, secret


def test_update_with_0x80_header_length_loads(tmp_path):
    _, update, _ = _victim()
    path = update.save(tmp_path / "u.safetensors")
    repad_low_byte(path)
    loaded = ClientUpdate.load(path)
    assert loaded.names() == update.names()
    for key in update.tensors:
        np.testing.assert_array_equal(loaded.tensors[key], update.tensors[key])
    np.testing.assert_array_equal(loaded.labels, update.labels)


def test_secret_with_0x80_header_length_loads(tmp_path):
    secret = Secret(images=np.full((1, 1, 4, 4), 0.25, np.float32), labels=np.array([3]), names=["a"])
    path = secret.save(tmp_path / "s.safetensors")
    repad_low_byte(path)
    loaded = Secret.load(path)
    np.testing.assert_array_equal(loaded.images, secret.images)
    assert loaded.labels.tolist() == [3] and loaded.names == ["a"]


def test_reconstruction_with_0x80_header_length_loads(tmp_path):
    recon = Reconstruction(images=np.zeros((1, 1, 2, 2), np.float32), pixels=np.full((1, 1, 2, 2), 0.5, np.float32),
                           labels=np.array([1]), label_order="sample", loss_trace=[2.0, 1.0], best_iteration=1,
                           best_loss=1.0, seed=0, iterations=2, wall_time=0.1, attack="dlg")
    path = recon.save(tmp_path / "r.safetensors")
    repad_low_byte(path)
    loaded = Reconstruction.load(path)
    assert loaded.loss_trace == [2.0, 1.0] and loaded.best_iteration == 1
    np.testing.assert_array_equal(loaded.pixels, recon.pixels)


def test_checkpoint_with_0x80_header_length_loads(tmp_path):
    state = TrialState(iteration=4, x=np.ones((1, 1, 2, 2), np.float32), y=None, best_x=np.ones((1, 1, 2, 2), np.float32),
                       best_y=None, best_loss=0.5, best_iteration=3, trace=[1.0, 0.5], lr_scale=1.0, nan_restores=0,
                       events=[], rng_state={"seed": 1})
    path = state.save(tmp_path / "state_restart0.safetensors", "f" * 16, 0)
    repad_low_byte(path)
    loaded = TrialState.load(path, "f" * 16, 0)
    assert loaded.iteration == 4 and loaded.trace == [1.0, 0.5]


def test_dlg_resume_from_a_0x80_checkpoint_equals_the_uninterrupted_run(tmp_path):
    model, update, _ = _victim()
    config = get_preset("dlg", iterations=8, lbfgs_max_iter=4, early_stop_loss=0.0, progress=False, snapshot_every=1)
    full = GradientInversion(config).run(model, update)

    def stop(info):
        if info.iteration >= 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        GradientInversion(config).run(model, update, callback=stop, checkpoint_dir=str(tmp_path), checkpoint_every=2)
    checkpoint = tmp_path / "state_restart0.safetensors"
    repad_low_byte(checkpoint)
    resumed = GradientInversion(config).run(model, update, checkpoint_dir=str(tmp_path), checkpoint_every=2, resume=True)
    np.testing.assert_array_equal(full.images, resumed.images)
    assert full.loss_trace == resumed.loss_trace
    # A finished run's final checkpoint, repadded, resumes to the same result too.
    repad_low_byte(checkpoint)
    again = GradientInversion(config).run(model, update, checkpoint_dir=str(tmp_path), checkpoint_every=2, resume=True)
    np.testing.assert_array_equal(full.images, again.images)
