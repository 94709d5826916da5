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
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (default: a one-line message, exit code 2)")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, also after the subcommand
    args = parser.parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ..core.errors import PrivboxError
    from ..core.interrupts import interruptible

    try:
        with interruptible():
            _check_output_args(parser, args)
            from ..runtime import configure_threads

            configure_threads(args.threads)
            return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        print(f"privbox {args.command}: interrupted ({exc or 'Ctrl-C'}); nothing half-written was left", file=sys.stderr)
        return 130
    except (CliError, PrivboxError, ValueError, OSError) as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.filename:
            message = f"{exc.filename}: {exc.strerror or exc}. Check the path and its permissions"
        print(f"privbox {args.command}: error: {message}", file=sys.stderr)
        return 2


def _check_output_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check ``--out`` before any work: a folder (metavar DIR or none) or a file (other metavars)."""
    from ..core.validate import check_output_path

    out = getattr(args, "out", None)
    if not out:
        return
    kind = "dir"
    for action in parser._subparsers._group_actions[0].choices[args.command]._actions:  # noqa: SLF001
        if action.dest == "out" and action.metavar not in (None, "DIR"):
            kind = "file"
    check_output_path(out, kind)

if __name__ == "__main__":  # pragma: no cover
    # Run through the package module so that ``CliError`` raised by the subcommands (imported
    # from ``privbox.cli.main``) is the class caught above, also under ``python -m``.
    from privbox.cli.main import main as _package_main

    sys.exit(_package_main())
