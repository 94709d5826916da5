"""CIFAR-10 from its *binary* distribution, read with numpy (never unpickled, never downloaded).

The binary version (``cifar-10-binary.tar.gz`` from https://www.cs.toronto.edu/~kriz/cifar.html)
holds ``cifar-10-batches-bin/data_batch_{1..5}.bin`` and ``test_batch.bin``: records of one label
byte followed by 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major 32x32). privbox
reads it from the tar archive itself or from the extracted folder.

The Python version (``cifar-10-python.tar.gz``, files ``data_batch_1`` ...) is a set of pickles;
unpickling runs arbitrary code, so privbox refuses it.
"""

from __future__ import annotations

import os
import tarfile

import numpy as np
import paddle

from .samples import check_channels, check_size, resize_square, to_channels, to_chw_float32

__all__ = ["CIFAR10", "CIFAR10_CLASSES", "looks_like_cifar"]

RECORD_BYTES = 1 + 3 * 32 * 32
_FOLDER = "cifar-10-batches-bin"
_SPLITS = {
    "train": tuple(f"data_batch_{k}.bin" for k in range(1, 6)),
    "test": ("test_batch.bin",),
}
_PY_NAMES = {f"data_batch_{k}" for k in range(1, 6)} | {"test_batch", "batches.meta"}

#: The CIFAR-10 class names, in label order (also in ``batches.meta.txt``).
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

_BINARY_HINT = (
    "download the binary version 'CIFAR-10 binary version (suitable for C programs)', "
    "cifar-10-binary.tar.gz, from https://www.cs.toronto.edu/~kriz/cifar.html and pass the "
    "tar.gz or its extracted cifar-10-batches-bin folder (privbox never downloads anything)"
)
_PICKLE_REFUSAL = (
    "{what} is the Python (pickled) version of CIFAR-10. privbox never unpickles files, "
    "because unpickling can execute arbitrary code; " + _BINARY_HINT
)


def _is_tar_path(path: str) -> bool:
    return path.lower().endswith((".tar.gz", ".tgz", ".tar"))


def looks_like_cifar(path: str | os.PathLike) -> bool:
    """True when ``path`` looks like CIFAR-10 files (binary or pickled): a ``.tar.gz``/``.tgz``/
    ``.tar`` archive, or a folder holding ``cifar-10-batches-bin``/``-py`` or the batch files."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return _is_tar_path(path) or os.path.basename(path) in _PY_NAMES
    if os.path.isdir(path):
        names = set(os.listdir(path))
        return bool(names & ({_FOLDER, "cifar-10-batches-py", "batches.meta.txt"}
                             | set(_SPLITS["train"]) | set(_SPLITS["test"]) | _PY_NAMES))
    return False


def _parse_records(raw: bytes | np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, bytes) else raw
    if data.size == 0 or data.size % RECORD_BYTES:
        raise ValueError(
            f"{source} has {data.size} bytes, not a positive multiple of {RECORD_BYTES} "
            "(1 label byte + 3072 pixel bytes per image): the file is truncated or is not "
            "CIFAR-10 binary; re-extract it from cifar-10-binary.tar.gz"
        )
    records = data.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ValueError(
            f"{source} holds label {int(labels.max())} > 9: not CIFAR-10 binary (CIFAR-100 "
            "binary files have 2 label bytes per record and are not supported)"
        )
    return labels, records[:, 1:].reshape(-1, 3, 32, 32)


class CIFAR10(paddle.io.Dataset):
    """CIFAR-10 (binary version) as a ``paddle.io.Dataset``.

    Args:
        path: ``cifar-10-binary.tar.gz`` (or ``.tgz``/``.tar``), the extracted
            ``cifar-10-batches-bin`` folder, or a folder that contains it.
        split: ``"train"`` (50 000 images, data_batch_1..5.bin) or ``"test"`` (10 000 images,
            test_batch.bin).
        size: output side (default 32, the native size; 8 to 224, resized with anti-aliasing).
        channels: 3 (RGB) or 1 (luminance).

    Items are ``(image, label)``: float32 ``[channels, size, size]`` in [0, 1], int64 scalar.

    Attributes:
        labels: int64 array of all labels. classes: class names. split: the split.

    Raises:
        FileNotFoundError: missing path or batch files.
        ValueError: the pickled Python version (refused), truncated files, wrong content.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", size: int = 32,
                 channels: int = 3) -> None:
        super().__init__()
        if split not in _SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.split = split
        self.size = check_size(size)
        self.channels = check_channels(channels)
        self.path = os.fspath(path)
        self.classes: list[str] = list(CIFAR10_CLASSES)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"CIFAR-10 path {self.path!r} does not exist; {_BINARY_HINT}")
        parts = None
        if os.path.isdir(self.path):
            parts = self._read_folder(self.path)
        elif tarfile.is_tarfile(self.path):
            parts = self._read_tar(self.path)
        if parts is None:
            self._refuse_if_pickle_file(self.path)
            raise ValueError(
                f"{self.path!r} is neither a folder nor a tar archive of CIFAR-10 binary files; "
                + _BINARY_HINT
            )
        self.labels = np.concatenate([p[0] for p in parts])
        self._pixels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]

    # -- readers ----------------------------------------------------------------------------

    @staticmethod
    def _refuse_if_pickle_file(path: str) -> None:
        with open(path, "rb") as fh:
            head = fh.read(2)
        if os.path.basename(path) in _PY_NAMES or head[:1] == b"\x80":
            raise ValueError(_PICKLE_REFUSAL.format(what=repr(path)))

    def _read_folder(self, root: str) -> list[tuple[np.ndarray, np.ndarray]]:
        folder = root
        if os.path.isdir(os.path.join(root, _FOLDER)):
            folder = os.path.join(root, _FOLDER)
        names = set(os.listdir(folder))
        wanted = _SPLITS[self.split]
        missing = [n for n in wanted if n not in names]
        if missing:
            if "cifar-10-batches-py" in names or names & _PY_NAMES:
                raise ValueError(_PICKLE_REFUSAL.format(what=f"folder {folder!r}"))
            raise FileNotFoundError(
                f"CIFAR-10 binary files {missing} for split {self.split!r} are missing from "
                f"{folder!r}; expected {list(wanted)} there; {_BINARY_HINT}"
            )
        self._read_class_names(os.path.join(folder, "batches.meta.txt"))
        parts = []
        for name in wanted:
            file = os.path.join(folder, name)
            parts.append(_parse_records(np.fromfile(file, dtype=np.uint8), repr(file)))
        return parts

    def _read_tar(self, archive: str) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """Parts of the split, or None when the file is not really a tar archive (zero blocks
        pass tarfile.is_tarfile)."""
        wanted = _SPLITS[self.split]
        with tarfile.open(archive, "r:*") as tar:
            members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
            if not members:
                return None
            missing = [n for n in wanted if n not in members]
            if missing:
                if set(members) & _PY_NAMES or any(
                        "cifar-10-batches-py" in m for m in tar.getnames()):
                    raise ValueError(_PICKLE_REFUSAL.format(what=f"archive {archive!r}"))
                raise FileNotFoundError(
                    f"archive {archive!r} lacks the CIFAR-10 binary files {missing} of split "
                    f"{self.split!r}; {_BINARY_HINT}"
                )
            meta = members.get("batches.meta.txt")
            if meta is not None:
                fh = tar.extractfile(meta)
                if fh is not None:
                    self._set_class_names(fh.read().decode("utf-8", "replace"))
            parts = []
            for name in wanted:
                fh = tar.extractfile(members[name])
                if fh is None:  # pragma: no cover - isfile() members always extract
                    raise ValueError(f"cannot read {name} from {archive!r}")
                parts.append(_parse_records(fh.read(), f"{name} in {archive!r}"))
        return parts

    def _read_class_names(self, meta_path: str) -> None:
        if os.path.isfile(meta_path):
            with open(meta_path, encoding="utf-8", errors="replace") as fh:
                self._set_class_names(fh.read())

    def _set_class_names(self, text: str) -> None:
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if len(names) == 10:
            self.classes = names

    # -- dataset protocol ---------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def sample_name(self, index: int) -> str:
        """``"cifar10-<split>[index]"`` (used as the name in target batches)."""
        return f"cifar10-{self.split}[{int(index)}]"

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.int64]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} CIFAR-10 images")
        chw = self._pixels[index]
        if self.size == 32 and self.channels == 3:
            image = chw.astype(np.float32) / np.float32(255.0)
        else:
            hwc = np.transpose(chw, (1, 2, 0)).astype(np.float64) / 255.0
            image = to_chw_float32(to_channels(resize_square(hwc, self.size), self.channels))
        return image, np.int64(self.labels[index])

    def __repr__(self) -> str:
        n = len(self) if hasattr(self, "labels") else "?"
        path, split = getattr(self, "path", "?"), getattr(self, "split", "?")
        return f"CIFAR10(path={path!r}, split={split!r}, images={n})"
