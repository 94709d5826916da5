"""Helpers shared by the defenses: exact top-k masks, keep counts, tensor conversion."""

from __future__ import annotations

import math
from typing import Any, Mapping, Tuple, Union

import numpy as np
import paddle

TensorLike = Union[paddle.Tensor, np.ndarray]


def keep_count(keep_fraction: float, numel: int, at_least_one: bool = False) -> int:
    """k = ceil(keep_fraction · numel), robust to float round-off.

    ``(1 - 0.7) * 10`` is ``3.0000000000000004`` in floating point; a plain ``ceil`` would keep
    4 elements instead of 3. The product is snapped to the nearest integer when it is within a
    few ulps of it.
    """
    x = float(keep_fraction) * int(numel)
    tol = 8.0 * np.finfo(np.float64).eps * max(1.0, abs(x))
    nearest = round(x)
    k = int(nearest) if abs(x - nearest) <= tol else int(math.ceil(x))
    k = max(0, min(int(numel), k))
    if at_least_one and numel > 0:
        k = max(1, k)
    return k


def topk_mask(magnitude: paddle.Tensor, k: int) -> paddle.Tensor:
    """Boolean mask of the ``k`` largest entries of a 1-D tensor, exact and index based.

    Ties at the k-th value are broken by index (the lowest indices win), so exactly ``k``
    entries are selected whatever the values (the old PaddleSleeve DGC kept k−1 by comparing
    with a strict ``>``). The threshold stays in the input dtype (no float32-only cast).
    """
    n = int(magnitude.shape[0])
    if k <= 0:
        return paddle.zeros([n], dtype="bool")
    if k >= n:
        return paddle.ones([n], dtype="bool")
    kth = paddle.topk(magnitude, k, largest=True, sorted=True)[0][k - 1]
    greater = magnitude > kth
    equal = magnitude == kth
    need = k - int(greater.astype("int64").sum().item())
    rank_among_equal = paddle.cumsum(equal.astype("int64"))
    return paddle.logical_or(greater, paddle.logical_and(equal, rank_among_equal <= need))


def to_paddle(value: Any, name: str) -> Tuple[paddle.Tensor, bool]:
    """Return ``(tensor, was_numpy)`` for a paddle Tensor or NumPy array entry of an update."""
    if isinstance(value, paddle.Tensor):
        return value, False
    if isinstance(value, np.ndarray):
        return paddle.to_tensor(value), True
    raise TypeError(
        f"update entry {name!r} must be a paddle.Tensor or numpy.ndarray, got {type(value).__name__}"
    )


def from_paddle(value: paddle.Tensor, was_numpy: bool) -> TensorLike:
    """Give back the same container type the caller passed in."""
    return value.numpy() if was_numpy else value


def check_update(update: Mapping[str, Any], what: str) -> None:
    """Validate that ``update`` is a mapping of names to tensors."""
    if not isinstance(update, Mapping):
        raise TypeError(
            f"{what} expects a dict[str, paddle.Tensor] keyed by parameter name, got {type(update).__name__}"
        )
    for key in update:
        if not isinstance(key, str):
            raise TypeError(f"{what}: update keys must be parameter names (str), got {key!r}")


def is_floating(t: paddle.Tensor) -> bool:
    return t.dtype in (paddle.float16, paddle.float32, paddle.float64, paddle.bfloat16)


def numpy_dtype_name(t: paddle.Tensor) -> str:
    """NumPy-compatible dtype name of a paddle tensor (``'float32'``, ...)."""
    return str(t.dtype).replace("paddle.", "")
