"""``privbox demo``: the quick defense x attack matrix on the embedded images."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the quick defense x attack matrix on the embedded sample images (about 3 minutes on 2 CPU cores)",
        description="Run every attack family at a small budget against no defense, DGC over 3 rounds, per-sample "
        "DP-SGD, GaussianPrivacy, top-k pruning and a label defense on the embedded photographs; writes the heatmap "
        "matrix.png, grid.png, matrix.md/.csv/.json, metrics.json and results.md, and says which attacks leaked and "
        "which defenses stopped them.",
    )
    parser.add_argument("--out", default="privbox-demo", help="output folder (default: ./privbox-demo)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="cap every attack's iterations at N (default: the demo budgets)")
    parser.add_argument("--seeds", default="0", help="comma-separated client seeds (default: 0)")
    parser.add_argument("--attacks", default=None, help="comma-separated subset of the demo's attacks")
    parser.add_argument("--defenses", default=None, help="comma-separated subset of the demo's defenses")
    parser.add_argument("--no-utility", action="store_true", help="skip the model-accuracy measurement")
    parser.add_argument("--progress", action="store_true", help="progress bar inside each attack")
    parser.set_defaults(func=run)


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{what} needs at least one value")
    return values


def run(args: argparse.Namespace) -> int:
    from ...demo import run_demo

    if args.iterations is not None and args.iterations < 1:
        raise ValueError("--iterations must be >= 1")
    split = (lambda t: [x.strip() for x in t.split(",") if x.strip()] if t else None)
    result = run_demo(args.out, iterations=args.iterations, seeds=_ints(args.seeds, "--seeds"),
                      attacks=split(args.attacks), defenses=split(args.defenses), utility=not args.no_utility,
                      progress=args.progress)
    print(f"\nprivbox demo finished in {result.wall_time:.0f} s. Outputs in {result.out_dir.resolve()}:")
    for path in [*result.figures, result.metrics_path, result.table_path, result.out_dir / "matrix.md"]:
        print(f"  {path}")
    print()
    print(result.table_path.read_text(encoding="utf-8").split("\n\n")[1])
    return 0
