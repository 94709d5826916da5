"""Entry point of the ``privbox`` command.

Each subcommand lives in ``privbox/cli/commands/<name>.py`` and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` to a callable taking the
parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from .._version import __version__

SUBCOMMANDS = ("demo", "privacy", "rank", "config", "capture", "attack", "evaluate", "labels", "tune", "fl", "matrix")


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="privbox",
        description="Measure and defend against gradient leakage in federated learning (PaddlePaddle).",
    )
    parser.add_argument("--version", action="version", version=f"privbox {__version__}")
    parser.add_argument(
        "--threads", type=int, default=None, metavar="N",
        help="CPU threads for Paddle and NumPy's BLAS (default: 1 on small or busy machines; see docs/en/performance.md)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"privbox.cli.commands.{name}").register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``privbox`` command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        from ..runtime import configure_threads

        configure_threads(args.threads)
        return int(args.func(args) or 0)
    except (CliError, ValueError, FileNotFoundError) as exc:
        print(f"privbox {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    # Run through the package module so that ``CliError`` raised by the subcommands (imported
    # from ``privbox.cli.main``) is the class caught above, also under ``python -m``.
    from privbox.cli.main import main as _package_main

    sys.exit(_package_main())
