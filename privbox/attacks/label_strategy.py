"""The engine's label strategies (ALGORITHMS.md §1.3): optimise soft labels jointly (DLG), take
the labels the update grants, or recover them analytically from the last layer's gradient (§5)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..core.update import ClientUpdate, MissingCapabilityError
from .config import AttackConfig

__all__ = ["strategy_labels"]


def strategy_labels(config: AttackConfig, update: ClientUpdate, num_images: int) -> tuple[Optional[np.ndarray], str, str]:
    """Return (labels or ``None`` for joint optimisation, how they were obtained, order) for
    ``config.label_strategy``; the order is ``"sample"`` when label j belongs to the client's
    sample j, else ``"unordered"`` (a multiset)."""
    if config.label_strategy == "joint":
        # Dummy sample j is not tied to the client's sample j: the order is the attacker's.
        return None, "joint", "unordered"
    if config.label_strategy == "given":
        return np.asarray(update.labels, dtype=np.int64), "given", "sample"
    from ..labels import recover_labels

    method = config.label_method
    if method == "auto":
        method = "idlg" if num_images == 1 else "llg"
    if method == "ilrg":
        raise MissingCapabilityError("iLRG needs the classifier weights; recover labels with privbox.labels.ilrg and pass labels=")
    try:
        result = recover_labels(method, update.gradients(), num_images, update.num_classes)
    except ValueError as exc:
        raise MissingCapabilityError(f"label recovery with {method!r} failed: {exc}") from exc
    if result.labels.shape[0] != num_images:
        raise MissingCapabilityError(
            f"label method {method!r} returned {result.labels.shape[0]} labels for a batch of "
            f"{num_images}; use a counting method such as 'llg', 'e2egi' or 'ilrg'"
        )
    return result.labels, method, "unordered"
