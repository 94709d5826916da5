"""``privbox fl``: a FedAvg simulation with a per-round leakage audit (ALGORITHMS.md §9).

``privbox fl -c fl.yaml [-o section.key=value ...] --out DIR`` runs one experiment;
``--sweep defense.sigma0=0,5,10,20`` runs one experiment per value into ``DIR/<key>=<value>/``
and writes the combined ``DIR/rdlv_vs_sigma0.png``; ``--resume`` continues an interrupted run
from its last completed round.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fl",
        help="run a FedAvg simulation with a per-round leakage audit (RDLV filter, privacy ledger)",
        description="Simulate federated learning (FedAvg) with GaussianPrivacy, the RDLV leakage filter and a "
        "per-client privacy ledger; writes audit records, rdlv_per_round.png and, with --sweep, rdlv_vs_sigma0.png.",
    )
    parser.add_argument("-c", "--config", default="fl", help="YAML config file or packaged config name (default: fl)")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. -o fl.rounds=3; repeatable")
    parser.add_argument("--sweep", metavar="SECTION.KEY=V1,V2,...", help="one run per value, e.g. defense.sigma0=0,5,10,20")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its last completed round")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.set_defaults(func=run)


def _sweep_values(text: str) -> tuple[str, list[str]]:
    from ...core.errors import ConfigError

    key, sep, values = text.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or "." not in key or not items:
        raise ConfigError(f"--sweep needs SECTION.KEY=V1,V2,..., got {text!r}", where="--sweep", fix="e.g. --sweep defense.sigma0=0,5,10,20")
    return key.strip(), items


def run(args: argparse.Namespace) -> int:
    from ...fl.config import load_fl_config
    from ...fl.simulation import run_simulation
    from ...report.fl_figures import plot_rdlv_vs_sigma0
    from ...report.tables import write_json_atomic

    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    if not args.sweep:
        config = load_fl_config(args.config, args.override)
        result = run_simulation(config, out, resume=args.resume)
        print(f"privbox fl: {len(result.history)} rounds in {result.wall_time:.0f} s; best global model at round "
              f"{result.best_round} (accuracy {result.best_accuracy:.3f}). Outputs in {out.resolve()}")
        print((out / "summary.md").read_text(encoding="utf-8"))
        return 0
    key, values = _sweep_values(args.sweep)
    runs = []
    for value in values:
        config = load_fl_config(args.config, [*args.override, f"{key}={value}"])
        folder = out / f"{key.split('.')[-1]}={value}"
        result = run_simulation(config, folder, resume=args.resume)
        runs.append({"sigma0": config.defense.sigma0, key: value, "folder": str(folder), "audits": result.audits,
                     "test_accuracy": result.best_accuracy, "best_round": result.best_round})
        print(f"privbox fl: {key}={value}: best accuracy {result.best_accuracy:.3f}, "
              f"max RDLV {max((a['rdlv'] for a in result.audits), default=float('nan')):.3f}")
    write_json_atomic(out / "sweep.json", {"key": key, "runs": runs})
    figure = plot_rdlv_vs_sigma0(runs, out / "rdlv_vs_sigma0.png") if key == "defense.sigma0" else None
    print(f"privbox fl: sweep of {key} over {values} in {out.resolve()}" + (f"; figure {figure}" if figure else ""))
    return 0
