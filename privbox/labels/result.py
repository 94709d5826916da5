"""The result object shared by all label-recovery methods."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np

__all__ = ["LabelRecovery", "format_multiset"]


@dataclass(frozen=True, eq=False)
class LabelRecovery:
    """Labels recovered from one observed gradient.

    Attributes:
        method: registry name of the method (``"idlg"``, ``"yin"``, ``"llg"``, ``"e2egi"``, ``"ilrg"``).
        labels: recovered labels as a **sorted** int64 array. For ``kind == "multiset"`` it has one
            entry per sample (length B) and repeats a class as often as it was counted; sample
            order is not recovered. For ``kind == "set"`` it lists each class judged present once.
        counts: int64 array ``[C]`` with the number of occurrences per class (0/1 for a set).
        kind: ``"multiset"`` or ``"set"``.
        batch_size: the batch size ``B`` the method was told.
        raw_counts: iLRG only: the counts before the sum was repaired to B; the iLRG paper's
            metrics are computed on these (``ALGORITHMS.md`` §5.4, step 5).
        diagnostics: method-specific intermediate values (scores, impact, guards that fired...).
    """

    method: str
    labels: np.ndarray
    counts: np.ndarray
    kind: str
    batch_size: int
    raw_counts: Optional[np.ndarray] = None
    diagnostics: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_labels(
        cls,
        method: str,
        labels: Any,
        num_classes: int,
        batch_size: int,
        kind: str = "multiset",
        raw_counts: Optional[np.ndarray] = None,
        diagnostics: Optional[Dict[str, Any]] = None,
    ) -> "LabelRecovery":
        """Build a result from a (possibly unsorted) label list."""
        labels = np.sort(np.asarray(labels, dtype=np.int64).reshape(-1))
        counts = np.bincount(labels, minlength=num_classes).astype(np.int64)
        return cls(method, labels, counts, kind, int(batch_size), raw_counts, dict(diagnostics or {}))

    @classmethod
    def from_counts(
        cls,
        method: str,
        counts: Any,
        batch_size: int,
        kind: str = "multiset",
        raw_counts: Optional[np.ndarray] = None,
        diagnostics: Optional[Dict[str, Any]] = None,
    ) -> "LabelRecovery":
        """Build a result from per-class counts."""
        counts = np.asarray(counts, dtype=np.int64).reshape(-1)
        if np.any(counts < 0):
            raise ValueError("per-class counts must be non-negative")
        labels = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
        return cls(method, labels, counts, kind, int(batch_size), raw_counts, dict(diagnostics or {}))

    @property
    def num_classes(self) -> int:
        """Number of classes ``C``."""
        return int(self.counts.size)

    @property
    def present(self) -> np.ndarray:
        """Sorted classes with a non-zero count."""
        return np.flatnonzero(self.counts > 0).astype(np.int64)

    @property
    def metric_labels(self) -> np.ndarray:
        """Labels to score: the raw counts for iLRG (its paper's protocol), else :attr:`labels`."""
        if self.raw_counts is None:
            return self.labels
        return np.repeat(np.arange(self.raw_counts.size, dtype=np.int64), self.raw_counts)

    def __repr__(self) -> str:
        return (
            f"LabelRecovery(method={self.method!r}, kind={self.kind!r}, B={self.batch_size}, "
            f"labels={format_multiset(self.labels)})"
        )


def format_multiset(labels: Any, max_items: int = 40) -> str:
    """Compact text for a label multiset: ``"3×8 17×8 40"`` (class × count, count 1 omitted)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size == 0:
        return "(none)"
    classes, counts = np.unique(labels, return_counts=True)
    parts = [f"{c}×{n}" if n > 1 else f"{c}" for c, n in zip(classes.tolist(), counts.tolist())]
    if len(parts) > max_items:
        parts = parts[:max_items] + [f"… (+{len(classes) - max_items} classes)"]
    return " ".join(parts)
