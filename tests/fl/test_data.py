"""The federation's data: an image folder with grey-to-3-channel, a prior from a file or the auxiliary mean."""

import numpy as np
import pytest
from skimage.io import imsave

from privbox.core.errors import ConfigError, InputError
from privbox.fl.data import FLDataSpec, build_fl_data


def _folder(root, per_class=12):
    rng = np.random.default_rng(0)
    for c, name in enumerate(["COVID", "Normal"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = np.full((20, 20, 3), 60 + 120 * c, np.uint8)
            img[..., 0] = rng.integers(0, 255, (20, 20))          # colour that grey mode must remove
            imsave(root / name / f"{i}.png", img, check_contrast=False)
    return root


def test_folder_source_grey_to_three_channels_and_prior_from_file(tmp_path):
    root = _folder(tmp_path / "xray")
    prior_file = tmp_path / "prior.png"
    imsave(prior_file, np.full((40, 40), 128, np.uint8), check_contrast=False)
    spec = FLDataSpec(source="folder", path=str(root), image_size=16, channels=3, grey=True, eval_images=4,
                      aux_images=4, prior=str(prior_file))
    data = build_fl_data(spec, train_images=10)
    assert data.class_names == ["COVID", "Normal"]
    assert data.train_images.shape == (10, 3, 16, 16) and data.eval_images.shape == (4, 3, 16, 16)
    for x in (data.train_images, data.eval_images):
        np.testing.assert_array_equal(x[:, 0], x[:, 1])          # grey replicated to every channel
        np.testing.assert_array_equal(x[:, 1], x[:, 2])
    assert data.prior.shape == (3, 16, 16)
    np.testing.assert_allclose(data.prior, 128 / 255, atol=1e-6)
    shards = data.shard([1, 8])
    assert shards[0][0].shape[0] == 1 and shards[1][0].shape[0] == 8
    with pytest.raises(ConfigError, match="need 12 training images"):
        data.shard([4, 8])


def test_prior_mean_of_the_auxiliary_set_and_errors(tmp_path):
    spec = FLDataSpec(image_size=16, eval_images=8, aux_images=8)
    data = build_fl_data(spec, train_images=4)
    expected = build_fl_data(spec, train_images=4)
    np.testing.assert_array_equal(data.train_images, expected.train_images)   # deterministic
    assert data.prior.shape == (3, 16, 16) and 0 <= data.prior.min() and data.prior.max() <= 1
    with pytest.raises(ConfigError):
        FLDataSpec(classes=["camera", "no-such-photo"])
    with pytest.raises(ConfigError):
        FLDataSpec(source="folder")
    with pytest.raises(InputError):
        build_fl_data(FLDataSpec(image_size=16, eval_images=2, aux_images=2, prior=str(tmp_path / "missing.png")), 1)
    with pytest.raises(ConfigError, match="the folder has"):
        build_fl_data(FLDataSpec(source="folder", path=str(_folder(tmp_path / "small", 2)), image_size=16,
                                 eval_images=4, aux_images=4), 10)
