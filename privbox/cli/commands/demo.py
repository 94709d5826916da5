"""``privbox demo``: DLG and iDLG against an undefended DLG LeNet on the embedded images."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run DLG and iDLG on the embedded sample images and write figures and metrics",
        description="Run DLG and iDLG against an undefended DLG LeNet at batch 1 and 4 on the embedded "
        "sample images; writes reconstruction grids, metrics.json and results.md.",
    )
    parser.add_argument("--out", default="privbox-demo", help="output folder (default: ./privbox-demo)")
    parser.add_argument("--iterations", type=int, default=120, help="L-BFGS steps per attack (default: 120)")
    parser.add_argument("--batch-sizes", default="1,4", help="comma-separated client batch sizes (default: 1,4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ...demo import run_demo

    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise ValueError(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}") from None
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError("--batch-sizes needs at least one positive batch size")
    if args.iterations < 1:
        raise ValueError("--iterations must be >= 1")
    result = run_demo(args.out, batch_sizes, args.iterations, seed=args.seed, progress=not args.no_progress)
    print(f"\nprivbox demo finished in {result.wall_time:.0f} s. Outputs in {result.out_dir.resolve()}:")
    for path in [*result.figures, result.metrics_path, result.table_path]:
        print(f"  {path}")
    print()
    print(result.table_path.read_text(encoding="utf-8").split("\n\n")[2])
    return 0
