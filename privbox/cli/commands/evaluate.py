"""``privbox evaluate``: score a reconstruction against the secret (PSNR, SSIM, MSE, label accuracy).

Example::

    privbox evaluate --reconstruction run/dlg/reconstruction.safetensors --secret run/secret.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``evaluate`` subcommand."""
    from ...metrics import MATCHINGS

    parser = subparsers.add_parser(
        "evaluate",
        help="compare a reconstruction with the ground truth (PSNR, SSIM, MSE, label accuracy)",
        description="Score --reconstruction against --secret in pixel space [0, 1]. The matching of "
        "reconstructions to targets defaults to the honest one: index order when the attack kept the "
        "sample order (labels given), else the one-to-one Hungarian assignment.",
    )
    parser.add_argument("--reconstruction", required=True, metavar="R", help="reconstruction.safetensors")
    parser.add_argument("--secret", required=True, metavar="S", help="secret.safetensors written by privbox capture")
    parser.add_argument("--matching", choices=list(MATCHINGS), help="matching mode (default: the honest one)")
    parser.add_argument("--out", metavar="JSON", help="write the metrics to this JSON file")
    parser.add_argument("--figure", metavar="PNG", help="write an originals-vs-reconstructions grid")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``privbox evaluate``; returns the exit code."""
    import numpy as np

    from ...attacks import Reconstruction
    from ...metrics import evaluate
    from ...report import markdown_table, save_comparison_grid, write_json_atomic
    from ...core.update import Secret
    from ..main import CliError

    recon = Reconstruction.load(args.reconstruction)
    secret = Secret.load(args.secret)
    if recon.pixels.shape != secret.images.shape:
        raise CliError(
            f"the reconstruction has shape {list(recon.pixels.shape)} but the secret {list(secret.images.shape)}; "
            "evaluate the reconstruction of the update captured together with this secret"
        )
    scores = evaluate(recon, secret, matching=args.matching)
    scores["reconstruction"] = str(args.reconstruction)
    scores["secret"] = str(args.secret)
    row = {k: scores.get(k) for k in ("attack", "matching", "psnr", "psnr_std", "ssim", "mse", "label_accuracy")}
    print(markdown_table([row], ["attack", "matching", "psnr", "psnr_std", "ssim", "mse", "label_accuracy"],
                         ["attack", "matching", "PSNR (dB)", "± std", "SSIM", "MSE", "label acc."], digits=3), end="")
    print(f"per-image PSNR: {', '.join(f'{p:.2f}' for p in scores['per_image']['psnr'])}")
    if args.out:
        write_json_atomic(Path(args.out), scores)
        print(f"metrics written to {args.out}")
    if args.figure:
        assignment = scores.get("assignment")
        matched = recon.pixels[np.asarray(assignment)] if assignment is not None and len(assignment) == len(secret.images) \
            and min(assignment) >= 0 else recon.pixels
        save_comparison_grid(
            Path(args.figure), secret.images, {f"{recon.attack} ({scores['matching']})": matched},
            {f"{recon.attack} ({scores['matching']})": [f"{p:.1f} dB" for p in scores["per_image"]["psnr"]]},
        )
        print(f"figure written to {args.figure}")
    return 0
