"""Embedded sample images: hand-picked square crops of photographs bundled with scikit-image.

Every image comes from a file that ships *inside* the scikit-image wheel (``skimage/data/``),
read directly with :func:`skimage.io.imread`. Nothing is ever downloaded: the files that
``skimage.data`` fetches with ``pooch`` on demand (``eagle``, ``cells3d``, ``skin``, ...) are not
used. The crops are chosen by hand so that each one shows a recognisable region (a face, a cup,
a rocket, ...), then resized with anti-aliasing to the requested size.

>>> from privbox.data import load_samples, SAMPLE_NAMES
>>> x = load_samples(size=32, channels=3)          # float32 [N, 3, 32, 32] in [0, 1]
>>> x.shape[0] == len(SAMPLE_NAMES)
True
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "SAMPLE_NAMES",
    "MIN_SIZE",
    "MAX_SIZE",
    "load_samples",
    "sample_info",
]

#: Smallest and largest side length accepted by :func:`load_samples` (and the image loaders).
MIN_SIZE = 8
MAX_SIZE = 224


@dataclass(frozen=True)
class _Spec:
    name: str
    source: str  # the skimage.data function that returns the same picture
    filename: str  # file inside skimage/data/
    box: tuple[int, int, int]  # (top row, left column, side) of the square crop
    colour: bool  # True: RGB source; False: grey source
    description: str


# Order matters: make_target_batch takes the first B entries, so colourful, clearly different
# photographs come first and textures last.
_SPECS: tuple[_Spec, ...] = (
    _Spec("astronaut", "astronaut", "astronaut.png", (0, 100, 260), True,
          "astronaut Eileen Collins, head and shoulders"),
    _Spec("chelsea", "chelsea", "chelsea.png", (0, 60, 300), True, "face of Chelsea the cat"),
    _Spec("coffee", "coffee", "coffee.png", (0, 90, 400), True, "cup of espresso on a saucer"),
    _Spec("rocket", "rocket", "rocket.jpg", (100, 170, 320), True,
          "Falcon 9 rocket on the launch pad at dusk"),
    _Spec("motorcycle", "stereo_motorcycle", "motorcycle_left.png", (0, 190, 500), True,
          "red motorcycle in a garage (left stereo view)"),
    _Spec("hubble_deep_field", "hubble_deep_field", "hubble_deep_field.jpg", (250, 50, 450), True,
          "galaxies of the Hubble eXtreme Deep Field"),
    _Spec("retina", "retina", "retina.jpg", (380, 60, 520), True,
          "human retina: optic disc and blood vessels"),
    _Spec("immunohistochemistry", "immunohistochemistry", "ihc.png", (256, 180, 256), True,
          "stained tissue: one round gland"),
    _Spec("camera", "camera", "camera.png", (40, 80, 300), False,
          "cameraman: head and camera on a tripod"),
    _Spec("coins", "coins", "coins.png", (80, 170, 214), False, "Greek coins on a dark background"),
    _Spec("horse", "horse", "horse.png", (0, 60, 328), False, "silhouette of a horse"),
    _Spec("astronaut_shuttle", "astronaut", "astronaut.png", (60, 312, 200), True,
          "space shuttle model behind the astronaut"),
    _Spec("moon", "moon", "moon.png", (0, 40, 240), False, "lunar surface with a crater"),
    _Spec("logo", "logo", "logo.png", (0, 0, 500), True, "scikit-image logo (snake in an 'S')"),
    _Spec("colorwheel", "colorwheel", "color.png", (0, 0, 370), True, "colour wheel"),
    _Spec("phantom", "shepp_logan_phantom", "phantom.png", (0, 0, 400), False,
          "Shepp-Logan head phantom"),
    _Spec("page", "page", "page.png", (0, 0, 191), False, "scanned page of printed text"),
    _Spec("text", "text", "text.png", (0, 120, 172), False, "handwritten mathematics"),
    _Spec("brick", "brick", "brick.png", (128, 128, 256), False, "brick wall texture"),
    _Spec("grass", "grass", "grass.png", (128, 128, 256), False, "grass texture"),
    _Spec("gravel", "gravel", "gravel.png", (128, 128, 256), False, "gravel texture"),
)

_BY_NAME: dict[str, _Spec] = {spec.name: spec for spec in _SPECS}

#: Names of the embedded samples, in the order :func:`load_samples` returns them.
SAMPLE_NAMES: tuple[str, ...] = tuple(spec.name for spec in _SPECS)


def _skimage_data_dir() -> str:
    """Directory of the image files bundled inside the installed scikit-image wheel."""
    import skimage.data

    return os.path.dirname(os.path.abspath(skimage.data.__file__))


# --------------------------------------------------------------------------------------------
# Image helpers shared with the folder and CIFAR loaders.
# --------------------------------------------------------------------------------------------


def check_size(size: int) -> int:
    """Validate an output side length (``MIN_SIZE`` to ``MAX_SIZE``) and return it as ``int``."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int between {MIN_SIZE} and {MAX_SIZE}, got {size!r}")
    size = int(size)
    if size < MIN_SIZE:
        raise ValueError(
            f"size={size} is too small: images must be at least {MIN_SIZE}x{MIN_SIZE} pixels "
            f"(pass size between {MIN_SIZE} and {MAX_SIZE})"
        )
    if size > MAX_SIZE:
        raise ValueError(
            f"size={size} is too large: privbox images are at most {MAX_SIZE}x{MAX_SIZE} pixels "
            f"(pass size between {MIN_SIZE} and {MAX_SIZE})"
        )
    return size


def check_channels(channels: int) -> int:
    """Validate a channel count (1 = luminance, 3 = RGB) and return it as ``int``."""
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(
            f"channels must be 1 (grey, luminance) or 3 (RGB), got {channels!r}"
        )
    return int(channels)


def to_float_image(array: np.ndarray) -> np.ndarray:
    """Convert a decoded image (HxW, HxWx1, HxWx3 or HxWx4; any integer or float dtype) to
    float64 HxWx3 or HxW in [0, 1]. An alpha channel is composited onto a white background."""
    from skimage.util import img_as_float

    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.float64)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    else:
        arr = img_as_float(arr)
    arr = np.clip(arr, 0.0, 1.0)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 2:  # grey + alpha
        grey, alpha = arr[..., 0], arr[..., 1]
        arr = grey * alpha + (1.0 - alpha)
    elif arr.ndim == 3 and arr.shape[-1] == 4:  # RGBA
        rgb, alpha = arr[..., :3], arr[..., 3:4]
        arr = rgb * alpha + (1.0 - alpha)
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
        raise ValueError(
            f"cannot interpret an image array of shape {tuple(np.shape(array))}: expected "
            "HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA)"
        )
    return arr


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """HxW or HxWx3 float image -> HxWxchannels (1: luminance, 3: RGB; grey is replicated)."""
    from skimage.color import rgb2gray

    if channels == 1:
        grey = rgb2gray(image) if image.ndim == 3 else image
        return grey[..., None]
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    return image


def center_square(image: np.ndarray) -> np.ndarray:
    """Crop the largest centred square of an HxW[xC] image."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top:top + side, left:left + side]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a square HxW[xC] float image to size x size with anti-aliasing, clipped to [0, 1]."""
    from skimage.transform import resize

    # A large reduction (e.g. 520 -> 8) would need a Gaussian of sigma ~30 px, which is slow.
    # First average whole factor x factor blocks (an exact box filter, itself anti-aliasing)
    # down to at least 2x the target, then let `resize` do the anti-aliased final step.
    factor = image.shape[0] // (2 * size)
    if factor >= 2:
        side = image.shape[0] - image.shape[0] % factor
        off = (image.shape[0] - side) // 2
        image = image[off:off + side, off:off + side]
        blocks = side // factor
        image = image.reshape((blocks, factor, blocks, factor) + image.shape[2:]).mean(axis=(1, 3))
    if image.shape[0] == size and image.shape[1] == size:
        out = image
    else:
        out_shape = (size, size) + tuple(image.shape[2:])
        out = resize(image, out_shape, order=1, mode="reflect", anti_aliasing=True,
                     preserve_range=True)
    return np.clip(out, 0.0, 1.0)


def to_chw_float32(image: np.ndarray) -> np.ndarray:
    """HxWxC -> CxHxW float32, contiguous."""
    return np.ascontiguousarray(np.transpose(image, (2, 0, 1)), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Sample loading
# --------------------------------------------------------------------------------------------


def _check_names(names: Sequence[str] | None) -> tuple[str, ...]:
    if names is None:
        return SAMPLE_NAMES
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not names:
        raise ValueError("names is empty: pass None for all samples or a list of SAMPLE_NAMES")
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise ValueError(
            f"unknown sample name(s) {unknown}; available samples: {', '.join(SAMPLE_NAMES)}"
        )
    return names


@functools.lru_cache(maxsize=None)
def _decoded_crop(name: str) -> np.ndarray:
    """Decode one bundled file and cut its hand-picked square: float64 HxW or HxWx3 in [0, 1]."""
    from skimage.io import imread

    spec = _BY_NAME[name]
    path = os.path.join(_skimage_data_dir(), spec.filename)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"sample {name!r} needs {spec.filename}, which should ship inside scikit-image "
            f"but is missing from {os.path.dirname(path)}; reinstall scikit-image "
            "(privbox never downloads data)"
        )
    image = to_float_image(imread(path))
    if not spec.colour and image.ndim == 3:  # grey pictures stored as RGB(A) files
        from skimage.color import rgb2gray

        image = rgb2gray(image)
    top, left, side = spec.box
    crop = image[top:top + side, left:left + side]
    if crop.shape[0] != side or crop.shape[1] != side:  # pragma: no cover - guards the table
        raise RuntimeError(f"crop box {spec.box} of sample {name!r} exceeds {image.shape}")
    crop = np.ascontiguousarray(crop)
    crop.setflags(write=False)
    return crop


@functools.lru_cache(maxsize=512)
def _sample(name: str, size: int, channels: int) -> np.ndarray:
    out = to_chw_float32(to_channels(resize_square(_decoded_crop(name), size), channels))
    out.setflags(write=False)
    return out


def load_samples(
    size: int = 32,
    channels: int = 3,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Load the embedded sample images.

    Args:
        size: output side length in pixels, from 8 to 224.
        channels: 3 for RGB (grey sources are replicated to 3 channels) or 1 for luminance
            (ITU-R BT.709 weights, as :func:`skimage.color.rgb2gray`).
        names: which samples, in this order; ``None`` means all of :data:`SAMPLE_NAMES`.

    Returns:
        A new float32 array ``[N, channels, size, size]`` with values in [0, 1]. The result is
        deterministic; decoded crops are cached, so repeated calls are cheap.
    """
    size = check_size(size)
    channels = check_channels(channels)
    chosen = _check_names(names)
    return np.stack([_sample(n, size, channels) for n in chosen]).astype(np.float32, copy=False)


def sample_info() -> list[dict]:
    """Describe every embedded sample, in :data:`SAMPLE_NAMES` order.

    Each dict has: ``name``; ``source`` (the ``skimage.data`` function that returns the same
    picture, e.g. ``"skimage.data.astronaut"``); ``file`` (the bundled file that is read);
    ``crop_box`` (``(top, left, bottom, right)`` in pixels of the source, bottom/right
    exclusive); ``colour`` (``"rgb"`` or ``"grey"``); ``description``.
    """
    info = []
    for spec in _SPECS:
        top, left, side = spec.box
        info.append({
            "name": spec.name,
            "source": f"skimage.data.{spec.source}",
            "file": spec.filename,
            "crop_box": (top, left, top + side, left + side),
            "colour": "rgb" if spec.colour else "grey",
            "description": spec.description,
        })
    return info
