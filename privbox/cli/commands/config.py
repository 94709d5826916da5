"""``privbox config``: show a resolved config, list the packaged ones, print the config reference.

Examples::

    privbox config -c e2egi -o attack.lr=0.05     # the effective config, as YAML
    privbox config --list                        # packaged config names
    privbox config --reference                   # the reference of every section (Markdown)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._common import add_config_args, load_cli_config


def register(subparsers) -> None:
    """Add the ``config`` subcommand."""
    parser = subparsers.add_parser(
        "config",
        help="print the effective config (after -o overrides), the packaged configs or the config reference",
        description="Without options: print the config of -c with the -o overrides applied, as YAML (every key "
        "of every section). --list: the packaged config names. --reference: the generated reference of "
        "every section (Markdown); --write-reference FILE... replaces the generated block in those docs.",
    )
    add_config_args(parser, "file or packaged name")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="list the packaged configs")
    what.add_argument("--reference", action="store_true", help="print the config reference (Markdown)")
    what.add_argument("--write-reference", nargs="+", metavar="FILE",
                      help="update the generated reference block in these Markdown files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``privbox config``; returns the exit code."""
    from ...config import PACKAGED_CONFIG_DIR, config_reference_markdown, packaged_configs, replace_reference_block
    from ...report import write_text_atomic

    if args.list:
        for name in packaged_configs():
            first = (PACKAGED_CONFIG_DIR / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0]
            print(f"{name:24s} {first.lstrip('# ').strip()}")
        return 0
    if args.reference:
        print(config_reference_markdown(), end="")
        return 0
    if args.write_reference:
        reference = config_reference_markdown()
        for name in args.write_reference:
            path = Path(name)
            text = path.read_text(encoding="utf-8")
            updated = replace_reference_block(text, reference)
            if updated != text:
                write_text_atomic(path, updated)
                print(f"updated {path}")
            else:
                print(f"{path} is up to date")
        return 0
    config = load_cli_config(args)
    if config.source:
        print(f"# {config.source}" + (f" with {' '.join(args.override)}" if args.override else ""))
    print(config.to_yaml(), end="")
    return 0
