"""An image-folder dataset: ``root/<class_name>/<image files>``.

>>> from privbox.data import ImageFolder
>>> ds = ImageFolder("my_images", size=32)          # doctest: +SKIP
>>> image, label = ds[0]  # doctest: +SKIP
>>> # image: float32 [3, 32, 32] in [0, 1]; label: int64
"""

from __future__ import annotations

import os

import numpy as np
import paddle

from .samples import (
    center_square,
    check_channels,
    check_size,
    resize_square,
    to_channels,
    to_chw_float32,
    to_float_image,
)

__all__ = ["ImageFolder", "IMAGE_EXTENSIONS"]

#: File extensions (lower case) that :class:`ImageFolder` reads.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _is_image(filename: str) -> bool:
    return not filename.startswith(".") and filename.lower().endswith(IMAGE_EXTENSIONS)


class ImageFolder(paddle.io.Dataset):
    """Images arranged as ``root/<class_name>/*.png|jpg|jpeg|bmp|tif|tiff``.

    Class indices follow the sorted class-folder names (``classes[i]`` is the name of class
    ``i``); files inside a class folder (and its sub-folders) are taken in sorted order. Hidden
    files and folders (starting with ``.``) are ignored. Each image is read with
    :func:`skimage.io.imread`, alpha is composited onto white, the largest centred square is
    cropped and resized with anti-aliasing to ``size``.

    Items are ``(image, label)``: float32 ``[channels, size, size]`` in [0, 1] and an int64
    scalar.

    Args:
        root: the folder that holds one sub-folder per class.
        size: output side, 8 to 224.
        channels: 3 (RGB; grey images are replicated) or 1 (luminance).

    Attributes:
        classes: sorted class-folder names.
        class_to_idx: ``{class_name: index}``.
        samples: ``[(path, label), ...]``.
        labels: int64 array of all labels (cheap access for batch selection).
    """

    def __init__(self, root: str | os.PathLike, size: int = 32, channels: int = 3) -> None:
        super().__init__()
        self.size = check_size(size)
        self.channels = check_channels(channels)
        self.root = os.fspath(root)
        if not os.path.exists(self.root):
            raise FileNotFoundError(
                f"image folder {self.root!r} does not exist; pass a folder laid out as "
                "root/<class_name>/<image files>"
            )
        if not os.path.isdir(self.root):
            raise ValueError(
                f"{self.root!r} is a file, not a folder; pass a folder laid out as "
                "root/<class_name>/<image files>"
            )
        entries = sorted(os.listdir(self.root))
        self.classes: list[str] = [
            e for e in entries
            if not e.startswith(".") and os.path.isdir(os.path.join(self.root, e))
        ]
        if not self.classes:
            loose = [e for e in entries if _is_image(e)]
            hint = (f" (found {len(loose)} image file(s) directly in it: move them into "
                    "root/<class_name>/)" if loose else "")
            raise ValueError(
                f"image folder {self.root!r} has no class folders{hint}; expected "
                "root/<class_name>/<image files>, one sub-folder per class"
            )
        self.class_to_idx: dict[str, int] = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        empty: list[str] = []
        for cls in self.classes:
            found = self._scan(os.path.join(self.root, cls))
            if not found:
                empty.append(cls)
            self.samples.extend((path, self.class_to_idx[cls]) for path in found)
        exts = ", ".join(IMAGE_EXTENSIONS)
        if not self.samples:
            raise ValueError(
                f"image folder {self.root!r} has class folders {self.classes} but no images "
                f"in them; supported extensions: {exts}"
            )
        if empty:
            raise ValueError(
                f"class folder(s) {empty} of {self.root!r} hold no images ({exts}); add images "
                "or remove those folders (every class folder defines a class index)"
            )
        self.labels = np.asarray([label for _, label in self.samples], dtype=np.int64)

    @staticmethod
    def _scan(folder: str) -> list[str]:
        paths: list[str] = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            paths.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f))
        return paths

    def __len__(self) -> int:
        return len(self.samples)

    def sample_name(self, index: int) -> str:
        """The image path relative to ``root`` (used as the name in target batches)."""
        return os.path.relpath(self.samples[index][0], self.root)

    def load(self, path: str) -> np.ndarray:
        """Read one file and return float32 ``[channels, size, size]`` in [0, 1]."""
        from skimage.io import imread

        try:
            raw = imread(path)
        except Exception as exc:  # decoder errors carry no path; add it
            raise ValueError(f"cannot read image {path!r}: {exc}") from exc
        try:
            image = to_float_image(raw)
        except ValueError as exc:
            raise ValueError(f"{path!r}: {exc}") from exc
        image = resize_square(center_square(image), self.size)
        return to_chw_float32(to_channels(image, self.channels))

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.int64]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        path, label = self.samples[index]
        return self.load(path), np.int64(label)

    def __repr__(self) -> str:
        n = len(self) if hasattr(self, "labels") else "?"
        return f"ImageFolder(root={getattr(self, 'root', '?')!r}, images={n})"
