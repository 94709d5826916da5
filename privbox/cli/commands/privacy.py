"""``privbox privacy``: DP-SGD privacy accounting from the command line (RDP accountant).

Examples::

    privbox privacy --noise-multiplier 1.5 --sample-rate 0.04 --epochs 90 --delta 1e-5
    privbox privacy --target-epsilon 8 --sample-rate 0.04 --epochs 90 --delta 1e-5
"""

from __future__ import annotations

import argparse
import json
import math


def register(subparsers) -> None:
    """Add the ``privacy`` subcommand."""
    p = subparsers.add_parser(
        "privacy",
        help="compute the DP-SGD epsilon (RDP accountant) or the noise multiplier for a target epsilon",
        description=(
            "Privacy accounting for DP-SGD with Poisson sampling: Renyi DP of the sampled Gaussian mechanism "
            "(Mironov et al. 2019) converted to (epsilon, delta) with Balle et al. 2020. Give --noise-multiplier "
            "to get epsilon, or --target-epsilon to search the noise multiplier (Opacus procedure)."
        ),
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--noise-multiplier", type=float, metavar="SIGMA", help="noise std / clipping norm")
    what.add_argument("--target-epsilon", type=float, metavar="EPS", help="search the noise multiplier for this epsilon")
    p.add_argument("--sample-rate", type=float, required=True, metavar="Q", help="batch size / dataset size")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, metavar="T", help="number of DP-SGD steps")
    length.add_argument("--epochs", type=float, metavar="E", help="epochs; steps = int(epochs / sample_rate)")
    p.add_argument("--delta", type=float, default=1e-5, help="target delta (default 1e-5)")
    p.add_argument(
        "--conversion",
        choices=("balle", "classic"),
        default="balle",
        help="RDP to (eps, delta) conversion: balle (default, tighter) or classic moments-accountant bound",
    )
    p.add_argument("--tolerance", type=float, default=0.01, help="epsilon tolerance of the sigma search (default 0.01)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``privbox privacy``; returns the exit code."""
    from privbox.core.errors import InputError
    from privbox.defenses.accountant import get_noise_multiplier, get_privacy_spent

    q = args.sample_rate
    if not (q is not None and 0.0 < q <= 1.0):
        raise ValueError(f"--sample-rate must be in (0, 1] (batch size / dataset size), got {q}")
    if not 0.0 < args.delta < 1.0:
        raise ValueError(f"--delta must be in (0, 1), e.g. 1e-5, got {args.delta}")
    if args.steps is not None and args.steps < 1:
        raise InputError(f"must be >= 1, got {args.steps}", where="--steps",
                         fix="zero steps spend no privacy budget; give the number of DP-SGD steps taken")
    if args.epochs is not None and not (args.epochs > 0 and math.isfinite(args.epochs)):
        raise InputError(f"must be > 0, got {args.epochs}", where="--epochs", fix="give a positive number of epochs")
    steps = args.steps if args.steps is not None else int(args.epochs / q)
    if steps < 1:
        raise InputError(f"{args.epochs} epochs at sample rate {q:g} are {args.epochs / q:.3g} steps, fewer than one",
                         where="--epochs", fix="give more epochs, or --steps")
    if not (args.tolerance > 0 and math.isfinite(args.tolerance)):
        raise InputError(f"must be a positive number, got {args.tolerance}", where="--tolerance", fix="e.g. 0.01")

    if args.target_epsilon is not None:
        if not args.target_epsilon > 0:
            raise ValueError(f"--target-epsilon must be > 0, got {args.target_epsilon}")
        if args.conversion != "balle":
            raise ValueError("--conversion classic is only for reporting epsilon; the sigma search uses balle")
        sigma = get_noise_multiplier(args.target_epsilon, args.delta, q, steps=steps, epsilon_tolerance=args.tolerance)
        eps, alpha = get_privacy_spent(q, sigma, steps, args.delta)
        result = {"noise_multiplier": sigma, "epsilon": eps, "optimal_alpha": alpha, "target_epsilon": args.target_epsilon}
        text = (
            f"noise multiplier: {sigma:.10g}  (target epsilon {args.target_epsilon:g})\n"
            f"epsilon: {eps:.6f}  optimal alpha: {alpha:g}"
        )
    else:
        if not (args.noise_multiplier >= 0 and math.isfinite(args.noise_multiplier)):
            raise ValueError(f"--noise-multiplier must be >= 0, got {args.noise_multiplier}")
        eps, alpha = get_privacy_spent(q, args.noise_multiplier, steps, args.delta, method=args.conversion)
        result = {"noise_multiplier": args.noise_multiplier, "epsilon": eps, "optimal_alpha": alpha}
        text = f"epsilon: {eps:.6f}  optimal alpha: {alpha:g}"
    result.update({"sample_rate": q, "steps": steps, "delta": args.delta, "conversion": args.conversion})
    if args.json:
        print(json.dumps(result))
    else:
        print(text)
        print(f"sample rate: {q:g}  steps: {steps}  delta: {args.delta:g}  accountant: RDP ({args.conversion} conversion)")
    return 0
