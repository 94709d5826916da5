"""Target batches (privbox.data.batch)."""

from __future__ import annotations

import os

import numpy as np
import paddle
import pytest
from skimage.io import imsave

from privbox.data import (
    SAMPLE_NAMES,
    TargetBatch,
    load_samples,
    make_target_batch,
    make_target_batch_from_dataset,
)


def _counts(labels):
    return np.unique(labels, return_counts=True)[1]


def test_default_batch_has_unique_labels_and_first_samples():
    batch = make_target_batch(8)
    assert isinstance(batch, TargetBatch)
    assert batch.batch_size == 8
    assert batch.images.shape == (8, 3, 32, 32) and batch.images.dtype == np.float32
    assert batch.labels.dtype == np.int64 and batch.labels.shape == (8,)
    assert batch.num_distinct_labels == 8
    assert (batch.labels >= 0).all() and (batch.labels < 10).all()
    assert batch.names == list(SAMPLE_NAMES[:8])
    np.testing.assert_array_equal(batch.images, load_samples(32, names=SAMPLE_NAMES[:8]))


@pytest.mark.parametrize("batch_size", [4, 8, 16])
@pytest.mark.parametrize("which", ["one", "two", "all"])
def test_distinct_label_counts(batch_size, which):
    num_classes = 20
    k = {"one": 1, "two": 2, "all": batch_size}[which]
    batch = make_target_batch(batch_size, num_classes=num_classes, distinct_labels=k, size=8,
                              seed=5)
    assert batch.num_distinct_labels == k
    counts = _counts(batch.labels)
    assert counts.sum() == batch_size and counts.max() - counts.min() <= 1
    assert batch.labels.max() < num_classes


def test_uneven_and_capped_by_num_classes():
    batch = make_target_batch(16, num_classes=10, size=8)
    assert batch.num_distinct_labels == 10  # default min(B, num_classes)
    assert sorted(_counts(batch.labels).tolist()) == [1] * 4 + [2] * 6
    batch = make_target_batch(7, num_classes=100, distinct_labels=3, size=8)
    assert sorted(_counts(batch.labels).tolist()) == [2, 2, 3]
    batch = make_target_batch(5, num_classes=1, size=8)
    assert (batch.labels == 0).all()


def test_seeded_and_deterministic():
    a = make_target_batch(8, num_classes=100, seed=1, size=8)
    b = make_target_batch(8, num_classes=100, seed=1, size=8)
    c = make_target_batch(8, num_classes=100, seed=2, size=8)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.labels, c.labels)
    np.testing.assert_array_equal(a.images, c.images)  # images do not depend on the seed
    s1 = make_target_batch(6, seed=1, size=8, shuffle_images=True)
    s2 = make_target_batch(6, seed=1, size=8, shuffle_images=True)
    s3 = make_target_batch(6, seed=3, size=8, shuffle_images=True)
    assert s1.names == s2.names and len(set(s1.names)) == 6
    assert s1.names != s3.names


def test_grey_and_large():
    batch = make_target_batch(2, size=224, channels=1)
    assert batch.images.shape == (2, 1, 224, 224)


def test_errors():
    n = len(SAMPLE_NAMES)
    with pytest.raises(ValueError, match=rf"maximum batch size.*is {n}.*folder.*CIFAR"):
        make_target_batch(n + 1)
    with pytest.raises(ValueError, match="choose 1 to 4"):
        make_target_batch(4, distinct_labels=5)
    with pytest.raises(ValueError, match="choose 1 to 3"):
        make_target_batch(8, num_classes=3, distinct_labels=4)
    with pytest.raises(ValueError, match="choose 1 to"):
        make_target_batch(4, distinct_labels=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        make_target_batch(0)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        make_target_batch(2, num_classes=0)
    with pytest.raises(ValueError, match="too small"):
        make_target_batch(2, size=4)
    with pytest.raises(ValueError, match="neither 'samples' nor an existing path"):
        make_target_batch(2, images="imagenet")


def test_target_batch_validation_and_helpers():
    images = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    batch = TargetBatch(images, np.array([2, 0, 2, 1]), ["a", "b", "c", "d"])
    grouped, order = batch.grouped_by_label()
    np.testing.assert_array_equal(grouped.labels, [0, 1, 2, 2])
    assert grouped.names == ["b", "d", "a", "c"]
    np.testing.assert_array_equal(grouped.images, images[order])
    sub = batch.select([3, 0])
    assert sub.names == ["d", "a"] and sub.batch_size == 2
    x, y = batch.to_tensors()
    assert isinstance(x, paddle.Tensor) and y.dtype == paddle.int64
    assert TargetBatch(images, [0, 1, 2, 3]).names == [f"sample[{i}]" for i in range(4)]
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        TargetBatch(images * 2 - 0.5, [0, 1, 2, 3], list("abcd"))
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        TargetBatch(images, [0, 1, 2], list("abc"))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        TargetBatch(images[0], [0, 1, 2], list("abc"))
    with pytest.raises(ValueError, match="divide uint8"):
        TargetBatch((images * 255).astype(np.uint8), [0, 1, 2, 3])


class _ToyDataset(paddle.io.Dataset):
    def __init__(self, n=40, classes=5, layout="chw", scale=1.0):
        super().__init__()
        rng = np.random.default_rng(0)
        self.images = rng.random((n, 3, 8, 8)).astype(np.float32) * scale
        self.targets = np.arange(n) % classes
        self.layout = layout

    def __getitem__(self, i):
        image = self.images[i]
        if self.layout == "hwc":
            image = image.transpose(1, 2, 0)
        return image, int(self.targets[i])

    def __len__(self):
        return len(self.images)


class _ToyIterable(paddle.io.IterableDataset):
    def __iter__(self):
        base = _ToyDataset()
        for i in range(len(base)):
            yield base[i]


def test_from_dataset_selection_modes():
    ds = _ToyDataset()
    uniform = make_target_batch_from_dataset(ds, 6, seed=0)
    assert uniform.images.shape == (6, 3, 8, 8) and len(set(uniform.names)) == 6
    assert uniform.names[0].startswith("_ToyDataset[")
    again = make_target_batch_from_dataset(ds, 6, seed=0)
    assert again.names == uniform.names
    exact = make_target_batch_from_dataset(ds, 3, seed=0, indices=[7, 2, -1])
    np.testing.assert_array_equal(exact.images, ds.images[[7, 2, 39]])
    np.testing.assert_array_equal(exact.labels, [2, 2, 4])
    few = make_target_batch_from_dataset(ds, 8, seed=3, distinct_labels=2)
    assert few.num_distinct_labels == 2 and (_counts(few.labels) == 4).all()
    for name, label in zip(few.names, few.labels):
        assert ds.targets[int(name.split("[")[1].rstrip("]"))] == label  # labels never changed


def test_from_iterable_and_loader():
    first = make_target_batch_from_dataset(_ToyIterable(), 4)
    np.testing.assert_array_equal(first.labels, [0, 1, 2, 3])
    few = make_target_batch_from_dataset(_ToyIterable(), 6, seed=1, distinct_labels=3)
    assert few.num_distinct_labels == 3
    loader = paddle.io.DataLoader(_ToyDataset(), batch_size=5, shuffle=False)
    from_loader = make_target_batch_from_dataset(loader, 7)
    assert from_loader.images.shape == (7, 3, 8, 8)
    np.testing.assert_array_equal(from_loader.labels, np.arange(7) % 5)


def test_from_dataset_errors():
    ds = _ToyDataset()
    with pytest.raises(ValueError, match="looks like HWC"):
        make_target_batch_from_dataset(_ToyDataset(layout="hwc"), 2)
    with pytest.raises(ValueError, match="remove Normalize"):
        make_target_batch_from_dataset(_ToyDataset(scale=3.0), 2)
    with pytest.raises(ValueError, match="got 2 indices but batch_size=3"):
        make_target_batch_from_dataset(ds, 3, indices=[0, 1])
    with pytest.raises(ValueError, match="duplicates"):
        make_target_batch_from_dataset(ds, 2, indices=[1, 1])
    with pytest.raises(ValueError, match="exceeds the dataset size"):
        make_target_batch_from_dataset(ds, 41)
    with pytest.raises(ValueError, match="cannot draw 40 samples from exactly 2 classes"):
        make_target_batch_from_dataset(ds, 40, distinct_labels=2)
    with pytest.raises(ValueError, match="map-style"):
        make_target_batch_from_dataset(_ToyIterable(), 2, indices=[0, 1])


def test_make_target_batch_from_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b", "c"):
        os.makedirs(tmp_path / c)
        for j in range(3):
            imsave(str(tmp_path / c / f"{j}.png"),
                   (rng.random((12, 12, 3)) * 255).astype(np.uint8), check_contrast=False)
    batch = make_target_batch(6, num_classes=3, size=8, images=f"folder:{tmp_path}")
    assert batch.images.shape == (6, 3, 8, 8)
    assert batch.num_distinct_labels == 3  # default: min(B, num_classes, classes present)
    assert all(n.endswith(".png") for n in batch.names)
    bare = make_target_batch(3, num_classes=5, distinct_labels=1, size=8, images=str(tmp_path))
    assert bare.num_distinct_labels == 1
    with pytest.raises(ValueError, match=r"at least 4 samples each, but"):
        make_target_batch(4, num_classes=5, distinct_labels=1, size=8, images=str(tmp_path))
    with pytest.raises(ValueError, match="num_classes >= 3"):
        make_target_batch(2, num_classes=2, images=str(tmp_path))
