"""Compare a reconstruction with the ground truth: image metrics with honest matching, label
metrics, and the leakage scores. (Does not import :mod:`privbox.labels`, which imports this.)"""

from .evaluate import evaluate
from .image import mse, psnr, ssim, ssim_uint8
from .labels import index_accuracy, le_acc, ln_acc, multiset_accuracy, present_set_jaccard
from .matching import MATCHINGS, ImageScores, hungarian_assignment, score_images

__all__ = [
    "evaluate",
    "mse",
    "psnr",
    "ssim",
    "ssim_uint8",
    "multiset_accuracy",
    "le_acc",
    "ln_acc",
    "index_accuracy",
    "present_set_jaccard",
    "MATCHINGS",
    "ImageScores",
    "hungarian_assignment",
    "score_images",
]
