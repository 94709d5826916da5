"""Label order and repetition (privbox.data.label_transforms)."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from privbox.data import (
    few_class_batch_indices,
    group_by_label,
    label_repetition_rate,
    shard_labels,
)


def test_group_by_label_is_stable_and_keeps_labels():
    labels = np.array([3, 1, 3, 0, 1, 3, 0, 2])
    images = np.arange(8 * 2, dtype=np.float32).reshape(8, 2)
    new_images, new_labels, order = group_by_label(images, labels)
    np.testing.assert_array_equal(new_labels, [0, 0, 1, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(order, [3, 6, 1, 4, 7, 0, 2, 5])  # stable inside groups
    np.testing.assert_array_equal(new_images, images[order])
    np.testing.assert_array_equal(np.sort(new_labels), np.sort(labels))  # never overwritten
    assert order.dtype == np.int64
    np.testing.assert_array_equal(labels, [3, 1, 3, 0, 1, 3, 0, 2])  # input untouched


def test_group_by_label_paddle_tensors_and_lists():
    labels = paddle.to_tensor([2, 0, 2, 1], dtype="int64")
    images = paddle.arange(4 * 3, dtype="float32").reshape([4, 3])
    new_images, new_labels, order = group_by_label(images, labels)
    assert isinstance(new_images, paddle.Tensor) and isinstance(new_labels, paddle.Tensor)
    np.testing.assert_array_equal(new_labels.numpy(), [0, 1, 2, 2])
    np.testing.assert_array_equal(new_images.numpy(), images.numpy()[order])
    names, lab, order2 = group_by_label(["a", "b", "c", "d"], [1, 0, 1, 0])
    assert names == ["b", "d", "a", "c"]
    np.testing.assert_array_equal(lab, [0, 0, 1, 1])
    np.testing.assert_array_equal(order2, [1, 3, 0, 2])


def test_group_by_label_errors():
    with pytest.raises(ValueError, match="disagree on the batch size"):
        group_by_label(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="one-dimensional"):
        group_by_label(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="integer class indices"):
        group_by_label(np.zeros((2, 2)), [0.5, 1.0])


def test_shard_labels_contiguous_equal_shards():
    labels = np.repeat([5, 1, 7, 2], 8)
    shards = shard_labels(labels, 4)
    assert shards == [list(range(s * 8, s * 8 + 8)) for s in range(4)]
    assert all(len(set(labels[s])) == 1 for s in shards)  # 4 x 8 grouped: one label per shard
    assert shard_labels([0, 1, 2], 1) == [[0, 1, 2]]


def test_shard_labels_errors():
    with pytest.raises(ValueError, match=r"cannot be split into 3 equal shards.*\[1, 2, 4, 8\]"):
        shard_labels(np.zeros(8, dtype=int), 3)
    with pytest.raises(ValueError, match="exceeds the batch size"):
        shard_labels([0, 1], 4)
    with pytest.raises(ValueError, match="positive int"):
        shard_labels([0, 1], 0)
    with pytest.raises(ValueError, match="empty batch"):
        shard_labels([], 1)


def test_few_class_batch_4x8():
    dataset_labels = np.repeat(np.arange(10), 20)
    np.random.default_rng(1).shuffle(dataset_labels)
    idx = few_class_batch_indices(dataset_labels, 32, 4, seed=3)
    assert idx.shape == (32,) and idx.dtype == np.int64
    assert len(set(idx.tolist())) == 32
    lab = dataset_labels[idx]
    classes, counts = np.unique(lab, return_counts=True)
    assert classes.shape[0] == 4 and (counts == 8).all()
    assert (np.diff(lab) >= 0).all()  # grouped, contiguous, increasing label
    np.testing.assert_array_equal(idx, few_class_batch_indices(dataset_labels, 32, 4, seed=3))
    assert not np.array_equal(idx, few_class_batch_indices(dataset_labels, 32, 4, seed=4))
    mixed = few_class_batch_indices(dataset_labels, 32, 4, seed=3, grouped=False)
    assert sorted(mixed.tolist()) == sorted(idx.tolist())
    assert not (np.diff(dataset_labels[mixed]) >= 0).all()


def test_few_class_uneven_counts_and_errors():
    dataset_labels = np.repeat(np.arange(5), [3, 3, 3, 1, 10])
    idx = few_class_batch_indices(dataset_labels, 10, 3, seed=0)
    _, counts = np.unique(dataset_labels[idx], return_counts=True)
    assert sorted(counts.tolist()) == [3, 3, 4]
    with pytest.raises(ValueError, match="cannot draw 12 samples from exactly 3 classes"):
        few_class_batch_indices(dataset_labels, 12, 3, seed=0)
    with pytest.raises(ValueError, match="exceeds the dataset size"):
        few_class_batch_indices(dataset_labels, 100, 3)
    with pytest.raises(ValueError, match="from 1 to batch_size"):
        few_class_batch_indices(dataset_labels, 4, 5)


def test_label_repetition_rate_definitions():
    four_by_eight = np.repeat(np.arange(4), 8)
    assert label_repetition_rate(four_by_eight) == pytest.approx(0.875)  # §5.5 (a)
    assert label_repetition_rate(four_by_eight, "repeated") == 1.0  # §5.5 (b)
    unique = np.arange(8)
    assert label_repetition_rate(unique) == 0.0
    assert label_repetition_rate(unique, "repeated") == 0.0
    assert label_repetition_rate([0, 0, 1]) == pytest.approx(1 / 3)
    assert label_repetition_rate(paddle.to_tensor([0, 0, 1]), "repeated") == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="unknown definition"):
        label_repetition_rate([0, 1], "other")
    with pytest.raises(ValueError, match="empty"):
        label_repetition_rate([])
