"""``privbox matrix``: every selected attack against every selected defense, or the sweeps."""

from __future__ import annotations

import argparse


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "matrix",
        help="run the defense x attack matrix (tables, heatmap, image grid) or the leakage-vs-privacy sweeps",
        description="Run each selected attack against each selected defense (and no defense) on the same target "
        "batches and seeds; writes matrix.md/.csv/.json, the heatmap matrix.png and grid.png. Resumes cell by cell "
        "from the output folder. With --sweep, writes leakage-vs-privacy curves (PNG + CSV) instead.",
    )
    parser.add_argument("-c", "--config", default="matrix",
                        help="matrix YAML file or packaged name (matrix, matrix_demo; default: matrix)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--attacks", help="comma-separated attack entries to run (default: all)")
    parser.add_argument("--defenses", help="comma-separated defense entries to run ('none' is always kept)")
    parser.add_argument("--seeds", help="comma-separated seeds (default: the config's)")
    parser.add_argument("--sweep", action="store_true", help="run the config's sweeps instead of the matrix")
    parser.add_argument("--no-resume", action="store_true", help="recompute cells already stored in --out")
    parser.add_argument("--no-utility", action="store_true", help="skip the model-accuracy measurements")
    parser.add_argument("--progress", action="store_true", help="show a progress bar inside each attack")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ...experiments import load_matrix_spec, run_matrix
    from ...experiments.summary import verdict_lines

    spec = load_matrix_spec(args.config).select(_names(args.attacks), _names(args.defenses))
    if args.seeds:
        try:
            spec = dataclasses.replace(spec, seeds=[int(s) for s in _names(args.seeds) or []])
        except ValueError:
            raise ValueError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    if args.no_utility:
        spec = dataclasses.replace(spec, utility=dataclasses.replace(spec.utility, enabled=False))
    if args.sweep:
        from ...experiments.sweep import run_sweeps

        result = run_sweeps(spec, args.out, resume=not args.no_resume)
        print(f"\nprivbox matrix --sweep finished in {result.wall_s:.0f} s; curves in {result.out_dir.resolve()}:")
        for path in result.files:
            print(f"  {path}")
        return 0
    result = run_matrix(spec, args.out, resume=not args.no_resume, progress=args.progress)
    print(f"\nprivbox matrix finished in {result.wall_s:.0f} s ({result.ran} cells run, {result.reused} reused). "
          f"Outputs in {result.out_dir.resolve()}:")
    for path in result.files.values():
        print(f"  {path}")
    print()
    for line in verdict_lines(result.summary):
        print(line)
    return 0
