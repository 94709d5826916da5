"""Architecture facts that parameter names and shapes cannot reveal, checked on both sides.

The ``RA`` scheme of Label-based-Defense ("Label is the culprit", github.com/zhaohuali/
Label-based-Defense) changes only the kernel of the ResNet stem max-pool (19 instead of 3), which
has no parameters; an attacker with a stock model would match the wrong function silently (the
original repository's attack loader made exactly this mistake). The kernel is recorded in the
update's ``meta.model_kwargs`` and checked here.
"""

from __future__ import annotations

from typing import Any, Optional

import paddle.nn as nn

from .errors import ModelMismatchError

__all__ = ["is_maxpool2d", "maxpools", "stem_maxpool_kernel", "check_maxpool_kernel"]


def is_maxpool2d(layer: nn.Layer) -> bool:
    """Paddle's ``MaxPool2D`` or privbox's twice-differentiable one (same attributes)."""
    return isinstance(layer, nn.MaxPool2D) or (type(layer).__name__ == "MaxPool2D" and hasattr(layer, "kernel_size"))


def maxpools(model: nn.Layer) -> list[tuple[str, nn.Layer]]:
    """The 2-D max-pool layers of ``model`` in definition order."""
    return [(name, layer) for name, layer in model.named_sublayers() if is_maxpool2d(layer)]


def stem_maxpool_kernel(model: nn.Layer) -> Optional[int]:
    """Kernel size of the first 2-D max-pool of ``model`` (the ResNet stem), None if it has none."""
    pools = maxpools(model)
    if not pools:
        return None
    layer = pools[0][1]
    k = getattr(layer, "kernel_size", None)
    if k is None:
        k = getattr(layer, "ksize", None)
    if isinstance(k, (list, tuple)):
        if len(set(int(v) for v in k)) != 1:
            return None
        k = k[0]
    return int(k)


def check_maxpool_kernel(model: nn.Layer, meta: Any) -> None:
    """Raise :class:`ModelMismatchError` if ``model`` lacks the stem kernel in ``meta.model_kwargs``.

    ``meta`` is an :class:`~privbox.core.update.UpdateMeta` (model id, kwargs, defenses).
    """
    expected = meta.model_kwargs.get("maxpool_kernel")
    if expected is None:
        return
    actual = stem_maxpool_kernel(model)
    if actual != int(expected):
        raise ModelMismatchError(
            f"the update's model has a stem max-pool kernel {expected} (meta.model_kwargs "
            f"{meta.model_kwargs}; defenses {meta.defenses}), the attack model has {actual}",
            fix="rebuild it with privbox.defenses.build_attack_model(update), i.e. privbox.nn.build_model("
            "update.meta.model_id, num_classes=update.meta.num_classes, **update.meta.model_kwargs)",
        )
