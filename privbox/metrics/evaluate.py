"""One call that scores a reconstruction against the secret, naming the matching used."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .labels import index_accuracy, multiset_accuracy
from .matching import score_images


def evaluate(reconstruction, secret, matching: Optional[str] = None, cost: str = "mse") -> dict[str, Any]:
    """Score ``reconstruction`` (a :class:`~privbox.attacks.Reconstruction`) against ``secret``.

    Images are compared in pixel space ([0, 1], de-normalised and clamped). ``matching``
    defaults to the honest choice for the reconstruction: ``index`` when the attack kept the
    client's sample order (labels given or optimised per sample), ``hungarian`` otherwise.
    Label accuracy is the multiset accuracy (order-free); index accuracy is added when the
    sample order is known.
    """
    matching = matching or reconstruction.default_matching
    scores = score_images(secret.images, reconstruction.pixels, matching=matching, cost=cost)
    result: dict[str, Any] = {
        "attack": reconstruction.attack,
        "matching": scores.matching,
        "psnr": scores.summary["psnr_mean"],
        "psnr_std": scores.summary["psnr_std"],
        "ssim": scores.summary["ssim_mean"],
        "mse": scores.summary["mse_mean"],
        "label_accuracy": multiset_accuracy(secret.labels, reconstruction.labels),
        "label_accuracy_kind": "multiset",
        "per_image": {"psnr": scores.psnr, "ssim": scores.ssim, "mse": scores.mse},
        "assignment": scores.assignment,
        "iterations": reconstruction.iterations,
        "best_iteration": reconstruction.best_iteration,
        "gradient_loss": reconstruction.best_loss,
        "wall_time_s": reconstruction.wall_time,
        "seed": reconstruction.seed,
    }
    if reconstruction.label_order == "sample":
        result["label_index_accuracy"] = index_accuracy(secret.labels, np.asarray(reconstruction.labels))
    return result
