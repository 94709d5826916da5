"""Matching reconstructions to targets before scoring them (ALGORITHMS.md §8.4).

A reconstructed batch comes back in an order the attacker chose; scoring it honestly needs an
explicit matching, and every result names the matching it used:

- ``index``: reconstruction j vs target j (valid only when labels were given in sample order);
- ``hungarian`` (default): a one-to-one assignment minimising a cost (MSE by default), via
  ``scipy.optimize.linear_sum_assignment``;
- ``best_of_per_target``: per target, the best value of each metric separately over all
  reconstructions (reuse allowed; optimistic, E2EGI's default);
- ``best_of_per_recon``: per reconstruction, its best target (GradAttack's convention).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
from scipy.optimize import linear_sum_assignment

from .image import HIGHER_IS_BETTER, METRICS

MATCHINGS = ("index", "hungarian", "best_of_per_target", "best_of_per_recon")


def pairwise(metric: str, targets: np.ndarray, recons: np.ndarray) -> np.ndarray:
    """Matrix ``M[i, j] = metric(target i, recon j)``."""
    fn = METRICS[metric]
    n_t, n_r = targets.shape[0], recons.shape[0]
    out = np.empty((n_t, n_r))
    for j in range(n_r):
        tiled = np.broadcast_to(recons[j : j + 1], targets.shape)
        out[:, j] = fn(targets, tiled)
    return out


def hungarian_assignment(
    targets: np.ndarray,
    recons: np.ndarray,
    cost: str = "mse",
    target_labels: Optional[np.ndarray] = None,
    recon_labels: Optional[np.ndarray] = None,
) -> np.ndarray:
    """For each target, the index of its reconstruction under a one-to-one assignment.

    ``cost`` is a metric name; metrics where higher is better are negated. When both label
    arrays are given, pairs with different labels get a prohibitive cost (same-label matching).
    """
    if cost not in METRICS:
        raise ValueError(f"unknown matching cost {cost!r}; choose one of {sorted(METRICS)}")
    matrix = pairwise(cost, targets, recons)
    if HIGHER_IS_BETTER[cost]:
        matrix = -matrix
    if target_labels is not None and recon_labels is not None:
        mismatch = np.asarray(target_labels)[:, None] != np.asarray(recon_labels)[None, :]
        matrix = matrix + mismatch * (np.abs(matrix).max() + 1.0) * 1e3
    rows, cols = linear_sum_assignment(matrix)
    assignment = np.full(targets.shape[0], -1, dtype=np.int64)
    assignment[rows] = cols
    return assignment


@dataclass
class ImageScores:
    """Per-image scores after matching, with the matching named."""

    matching: str
    mse: list[float]
    psnr: list[float]
    ssim: list[float]
    assignment: Optional[list[int]] = None
    cost: Optional[str] = None
    summary: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _summarise(values: np.ndarray) -> tuple[float, float]:
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return float(np.mean(values)), std


def score_images(
    targets: np.ndarray,
    recons: np.ndarray,
    matching: str = "hungarian",
    cost: str = "mse",
    target_labels: Optional[np.ndarray] = None,
    recon_labels: Optional[np.ndarray] = None,
) -> ImageScores:
    """Score reconstructions against targets (both ``[B, C, H, W]`` pixels in [0, 1]).

    Returns per-image MSE/PSNR/SSIM under ``matching`` and a summary with means and unbiased
    standard deviations.
    """
    targets = np.asarray(targets, dtype=np.float64)
    recons = np.asarray(recons, dtype=np.float64)
    if matching not in MATCHINGS:
        raise ValueError(f"unknown matching {matching!r}; choose one of {list(MATCHINGS)}")
    if targets.shape[1:] != recons.shape[1:]:
        raise ValueError(f"targets {targets.shape} and reconstructions {recons.shape} differ in image shape")
    assignment = None
    if matching == "index":
        if targets.shape[0] != recons.shape[0]:
            raise ValueError("index matching needs as many reconstructions as targets")
        values = {m: METRICS[m](targets, recons) for m in METRICS}
        assignment = list(range(targets.shape[0]))
    elif matching == "hungarian":
        if recons.shape[0] < targets.shape[0]:
            raise ValueError("hungarian matching needs at least as many reconstructions as targets")
        assign = hungarian_assignment(targets, recons, cost, target_labels, recon_labels)
        matched = recons[assign]
        values = {m: METRICS[m](targets, matched) for m in METRICS}
        assignment = assign.tolist()
    else:
        values = {}
        for metric in METRICS:
            matrix = pairwise(metric, targets, recons)
            axis = 1 if matching == "best_of_per_target" else 0
            values[metric] = matrix.max(axis=axis) if HIGHER_IS_BETTER[metric] else matrix.min(axis=axis)
    summary = {}
    for metric, vals in values.items():
        summary[f"{metric}_mean"], summary[f"{metric}_std"] = _summarise(np.asarray(vals))
    return ImageScores(
        matching=matching,
        mse=[float(v) for v in values["mse"]],
        psnr=[float(v) for v in values["psnr"]],
        ssim=[float(v) for v in values["ssim"]],
        assignment=assignment,
        cost=cost if matching == "hungarian" else None,
        summary=summary,
    )
