"""CIFAR-10 binary reader (privbox.data.cifar) on small synthetic files."""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import paddle
import pytest

from privbox.data import CIFAR10, CIFAR10_CLASSES, make_target_batch, make_target_batch_from_dataset

PER_BATCH = 4


def _records(labels, seed):
    rng = np.random.default_rng(seed)
    n = len(labels)
    pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    pixels[:, 0] = 255  # red plane, pixel (0, 0)
    pixels[:, 1024] = 0  # green plane, pixel (0, 0)
    pixels[:, 2048 + 1] = 7  # blue plane, pixel (0, 1)
    raw = np.concatenate([np.asarray(labels, dtype=np.uint8)[:, None], pixels], axis=1)
    return raw.tobytes(), pixels.reshape(n, 3, 32, 32)


def _files():
    files, expected = {}, {}
    for k in range(1, 6):
        labels = [(k + j) % 10 for j in range(PER_BATCH)]
        files[f"data_batch_{k}.bin"], pix = _records(labels, k)
        expected.setdefault("train", []).append((labels, pix))
    files["test_batch.bin"], pix = _records([9, 0, 3], 99)
    expected["test"] = [([9, 0, 3], pix)]
    files["batches.meta.txt"] = ("\n".join(CIFAR10_CLASSES) + "\n\n").encode()
    return files, expected


def _write_folder(root):
    files, expected = _files()
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder, expected


def _write_tar(path, files, prefix="cifar-10-batches-bin"):
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo(prefix))  # a directory-like entry, ignored by the reader
        for name, data in files.items():
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _check(ds, expected):
    labels = np.concatenate([np.asarray(lab) for lab, _ in expected])
    pixels = np.concatenate([pix for _, pix in expected])
    assert len(ds) == len(labels)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.labels.dtype == np.int64
    for i in (0, len(ds) - 1):
        image, label = ds[i]
        assert image.shape == (3, 32, 32) and image.dtype == np.float32
        assert int(label) == labels[i] and label.dtype == np.int64
        np.testing.assert_allclose(image, pixels[i] / 255.0, atol=1e-7)
        assert image[0, 0, 0] == 1.0 and image[1, 0, 0] == 0.0  # R plane first, then G
        assert image[2, 0, 1] == pytest.approx(7 / 255)  # row-major inside a plane


def test_folder_train_and_test(tmp_path):
    folder, expected = _write_folder(tmp_path)
    _check(CIFAR10(folder, split="train"), expected["train"])
    _check(CIFAR10(tmp_path, split="test"), expected["test"])  # parent folder also works
    ds = CIFAR10(folder)
    assert ds.classes == list(CIFAR10_CLASSES)
    assert isinstance(ds, paddle.io.Dataset)
    assert ds.sample_name(3) == "cifar10-train[3]"


def test_tar_gz(tmp_path):
    files, expected = _files()
    archive = tmp_path / "cifar-10-binary.tar.gz"
    _write_tar(archive, files)
    _check(CIFAR10(archive, split="train"), expected["train"])
    _check(CIFAR10(str(archive), split="test"), expected["test"])


def test_resize_and_grey(tmp_path):
    folder, expected = _write_folder(tmp_path)
    ds = CIFAR10(folder, split="test", size=16, channels=1)
    image, _ = ds[0]
    assert image.shape == (1, 16, 16) and 0 <= image.min() and image.max() <= 1


def test_dataset_batch_and_loader(tmp_path):
    folder, _ = _write_folder(tmp_path)
    ds = CIFAR10(folder)
    batch = make_target_batch_from_dataset(ds, 6, seed=1, distinct_labels=2)
    assert batch.images.shape == (6, 3, 32, 32)
    assert batch.num_distinct_labels == 2
    assert all(n.startswith("cifar10-train[") for n in batch.names)
    loader = paddle.io.DataLoader(ds, batch_size=5, shuffle=False)
    images, labels = next(iter(loader))
    assert tuple(images.shape) == (5, 3, 32, 32)


def test_make_target_batch_from_cifar_paths(tmp_path):
    files, _ = _files()
    archive = tmp_path / "cifar-10-binary.tar.gz"
    _write_tar(archive, files)
    batch = make_target_batch(5, images=f"cifar10:{archive}", seed=2)
    assert batch.images.shape == (5, 3, 32, 32) and batch.num_distinct_labels == 5
    assert all(n.startswith("cifar10-train[") for n in batch.names)
    test = make_target_batch(3, images=f"cifar10-test:{archive}", size=16, channels=1)
    assert test.images.shape == (3, 1, 16, 16)
    np.testing.assert_array_equal(np.sort(test.labels), [0, 3, 9])
    bare = make_target_batch(2, images=str(archive))  # detected as CIFAR-10, train split
    assert bare.names[0].startswith("cifar10-train[")


def _pickle_like(n=64):
    # Bytes that *look* like a pickle (protocol-2 header); never unpickled by anyone.
    return b"\x80\x02}q\x00" + b"\x00" * n


def test_python_version_is_refused(tmp_path):
    py = tmp_path / "cifar-10-batches-py"
    py.mkdir()
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch", "batches.meta"]:
        (py / name).write_bytes(_pickle_like())
    for path in (py, tmp_path, py / "data_batch_1"):
        with pytest.raises(ValueError, match="never unpickles.*cifar-10-binary.tar.gz"):
            CIFAR10(path)
    archive = tmp_path / "cifar-10-python.tar.gz"
    _write_tar(archive, {n: _pickle_like() for n in ["data_batch_1", "test_batch",
                                                       "batches.meta"]},
               prefix="cifar-10-batches-py")
    with pytest.raises(ValueError, match="never unpickles"):
        CIFAR10(archive, split="test")


def test_truncated_files(tmp_path):
    folder, _ = _write_folder(tmp_path)
    data = (folder / "test_batch.bin").read_bytes()
    (folder / "test_batch.bin").write_bytes(data[:-100])
    with pytest.raises(ValueError, match="not a positive multiple of 3073.*truncated"):
        CIFAR10(folder, split="test")
    files, _ = _files()
    files["data_batch_3.bin"] = files["data_batch_3.bin"][:5000]
    archive = tmp_path / "bad.tar.gz"
    _write_tar(archive, files)
    with pytest.raises(ValueError, match="data_batch_3.bin.*not a positive multiple of 3073"):
        CIFAR10(archive)
    (folder / "test_batch.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="multiple of 3073"):
        CIFAR10(folder, split="test")


def test_other_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*cifar-10-binary"):
        CIFAR10(tmp_path / "missing.tar.gz")
    folder, _ = _write_folder(tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        CIFAR10(folder, split="valid")
    os.remove(folder / "data_batch_5.bin")
    with pytest.raises(FileNotFoundError, match=r"\['data_batch_5.bin'\]"):
        CIFAR10(folder)
    rec, _ = _records([12], 0)
    (folder / "test_batch.bin").write_bytes(rec)
    with pytest.raises(ValueError, match="label 12 > 9"):
        CIFAR10(folder, split="test")
    other = tmp_path / "random.bin"
    other.write_bytes(b"\x00" * 3073)
    with pytest.raises(ValueError, match="neither a folder nor a tar"):
        CIFAR10(other)
