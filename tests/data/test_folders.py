"""Image-folder dataset (privbox.data.folders)."""

from __future__ import annotations

import os

import numpy as np
import paddle
import pytest
from skimage.io import imsave

from privbox.data import ImageFolder


def _write(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    imsave(path, array, check_contrast=False)


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "images"
    # class "cat": a wide RGB image: left third red, middle green, right third blue
    wide = np.zeros((30, 90, 3), dtype=np.uint8)
    wide[:, :30, 0] = 255
    wide[:, 30:60, 1] = 255
    wide[:, 60:, 2] = 255
    _write(str(root / "cat" / "b_wide.png"), wide)
    _write(str(root / "cat" / "a_grey.png"), np.full((20, 20), 128, dtype=np.uint8))
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 0  # fully transparent -> white
    _write(str(root / "dog" / "rgba.png"), rgba)
    _write(str(root / "dog" / "sub" / "photo.jpg"), np.full((24, 24, 3), 200, dtype=np.uint8))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    return root


def test_classes_labels_and_items(folder):
    ds = ImageFolder(folder, size=8)
    assert isinstance(ds, paddle.io.Dataset)
    assert ds.classes == ["cat", "dog"]
    assert ds.class_to_idx == {"cat": 0, "dog": 1}
    assert len(ds) == 4
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1])
    assert [ds.sample_name(i) for i in range(4)] == [
        os.path.join("cat", "a_grey.png"), os.path.join("cat", "b_wide.png"),
        os.path.join("dog", "rgba.png"), os.path.join("dog", "sub", "photo.jpg")]
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (3, 8, 8) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert label.dtype == np.int64 and int(label) == ds.labels[i]
    grey, _ = ds[0]
    np.testing.assert_allclose(grey, 128 / 255, atol=1e-6)  # grey replicated to RGB
    wide, _ = ds[1]  # centre square crop keeps only the green middle third
    np.testing.assert_allclose(wide[1], 1.0, atol=1e-6)
    np.testing.assert_allclose(wide[[0, 2]], 0.0, atol=1e-6)
    transparent, _ = ds[2]
    np.testing.assert_allclose(transparent, 1.0, atol=1e-6)  # composited onto white


def test_one_channel_and_loader(folder):
    ds = ImageFolder(str(folder), size=16, channels=1)
    image, _ = ds[1]
    assert image.shape == (1, 16, 16)
    np.testing.assert_allclose(image, 0.7154, atol=1e-3)  # luminance of pure green
    loader = paddle.io.DataLoader(ds, batch_size=4, shuffle=False)
    images, labels = next(iter(loader))
    assert tuple(images.shape) == (4, 1, 16, 16)
    np.testing.assert_array_equal(labels.numpy().reshape(-1), [0, 0, 1, 1])


def test_errors(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "nowhere")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        ImageFolder(tmp_path / "file.png")
    loose = tmp_path / "loose"
    _write(str(loose / "x.png"), np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"no class folders \(found 1 image file"):
        ImageFolder(loose)
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "a" / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match="but no images"):
        ImageFolder(tmp_path / "noimg")
    (folder / "empty_class").mkdir()
    with pytest.raises(ValueError, match=r"\['empty_class'\].*hold no images"):
        ImageFolder(folder)
    with pytest.raises(ValueError, match="too large"):
        ImageFolder(folder, size=512)
    with pytest.raises(ValueError, match="channels"):
        ImageFolder(folder, channels=4)


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "r" / "a").mkdir(parents=True)
    (tmp_path / "r" / "a" / "broken.png").write_bytes(b"not a png")
    ds = ImageFolder(tmp_path / "r")
    with pytest.raises(ValueError, match="broken.png"):
        ds[0]
    with pytest.raises(IndexError):
        ds[5]
