"""``privbox tune``: tune an attack on a simulation update of the attacker's own data, then attack.

The search never touches the target's ground truth: it builds a simulation update from a surrogate
batch (same θ0, B, label repetition, BN mode, normalisation; ALGORITHMS.md §4.8), scores trials by
the image MSE there, and runs the real attack on ``--update`` with the best values.

Outputs in DIR: ``tuning.json`` and ``tuning.md`` (all trials), ``best.yaml`` (a config with the
best values, usable with ``privbox attack -c``), ``search/`` (trial checkpoints, the search state)
and ``attack/`` (the real attack, as ``privbox attack`` writes it).

Example::

    privbox tune -c ga --update run/update.safetensors --surrogate-seed 1 --trials 8 --out run/tune \\
        -o tune.budget=40 -o tune.record_from=10 -o attack.iterations=100
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from .._common import Interrupted, add_config_args, load_cli_config, set_device, sigterm_as_keyboard_interrupt


def register(subparsers) -> None:
    """Add the ``tune`` subcommand."""
    parser = subparsers.add_parser(
        "tune",
        help="tune lr / TV / BN weights on a simulation update of your own data, then attack the target",
        description="Hyper-parameter search (ALGORITHMS.md §4.8) on a simulation update built from the attacker's "
        "own surrogate batch, mirroring the target (θ0, B, label repetition, BN mode, normalisation). Never "
        "tunes on the target. Then runs the attack on --update with the best values (tune.run_best).",
    )
    add_config_args(parser, "an attack config with optional 'tune' and 'run' sections")
    parser.add_argument("--update", required=True, metavar="U", help="the target client update (.safetensors)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--surrogate-seed", type=int, metavar="S", help="seed of the surrogate batch (tune.surrogate_seed)")
    parser.add_argument("--trials", type=int, metavar="N", help="number of trials (tune.trials)")
    parser.add_argument("--sampler", choices=("random", "optuna"), help="tune.sampler")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted search (and attack) in DIR")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``privbox tune``; returns the exit code (130 when interrupted)."""
    from ...attacks.tuning import HyperparameterSearch, simulation_update
    from ...report import write_json_atomic, write_text_atomic
    from ...core.update import ClientUpdate
    from ..main import CliError
    from .attack import run_attack_to_dir

    extra = []
    if args.surrogate_seed is not None:
        extra.append(f"tune.surrogate_seed={args.surrogate_seed}")
    if args.trials is not None:
        extra.append(f"tune.trials={args.trials}")
    if args.sampler is not None:
        extra.append(f"tune.sampler={args.sampler}")
    config = load_cli_config(args, extra)
    tune = config.tune
    update_path = Path(args.update)
    target = ClientUpdate.load(update_path)
    device = set_device(config.run.device)
    attack_config = config.attack.build()
    out = Path(args.out)
    search_dir = out / "search"
    if search_dir.exists() and not args.resume:
        raise CliError(f"{out} already holds a search; pass --resume to continue it, or choose a new --out")
    if args.resume and not search_dir.exists():
        raise CliError(f"nothing to resume in {out} (no search/ folder); run without --resume")

    simulation, truth, notes = simulation_update(
        target, images=tune.surrogate_images, seed=tune.surrogate_seed, distinct_labels=tune.distinct_labels
    )
    print("privbox tune: searching on a SIMULATION update built from the attacker's own surrogate batch "
          f"({', '.join(truth.names)}), never on the target.")
    for note in notes:
        print(f"  {note}")
    try:
        search = HyperparameterSearch(
            attack_config, simulation, truth, trials=tune.trials, budget=tune.budget, record_from=tune.record_from,
            sampler=tune.sampler, reduction_factor=tune.reduction_factor, seed=tune.seed, params=tune.params,
            ranges=tune.ranges, work_dir=str(search_dir), resume=args.resume,
        )
    except ValueError as exc:
        raise CliError(f"tune: {exc}") from None
    print(f"  {tune.trials} trials x {tune.budget} iterations, sampler {tune.sampler}, rungs {search.rungs}, "
          f"space: " + ", ".join(f"{d.name} [{d.low:g}, {d.high:g}{', log' if d.log else ''}]" for d in search.space))
    try:
        with sigterm_as_keyboard_interrupt():
            result = search.run()
    except ImportError as exc:
        raise CliError(str(exc)) from None
    except KeyboardInterrupt:
        print(f"privbox tune: interrupted; the search state and trial checkpoints are in {search_dir}. "
              "Rerun the same command with --resume to continue to the same result.")
        return 130
    result.notes.extend(notes)
    best_config = result.best_config(attack_config)
    names = {d.name for d in result.space}
    values = best_config.to_dict()
    tuned = {k: values[k] for k in ("lr", "gradient_weight", "iterations") if k in names}
    if names & {"tv", "bn", "image_norm"}:
        tuned["regularizers"] = values["regularizers"]
    best_yaml = {"attack": {"preset": config.attack.preset, **config.attack.settings, **tuned}}
    write_json_atomic(out / "tuning.json", {**result.to_dict(), "best_attack": best_yaml["attack"],
                                             "surrogate": {"names": truth.names, "labels": truth.labels.tolist(),
                                                           "seed": tune.surrogate_seed, "images": tune.surrogate_images}})
    write_text_atomic(out / "tuning.md", result.to_markdown())
    write_text_atomic(out / "best.yaml", "# written by privbox tune: the best values found on the simulation update\n"
                      + yaml.safe_dump(best_yaml, sort_keys=False))
    print(result.to_markdown(), end="")
    print(f"best trial {result.best.number}: " + ", ".join(f"{k}={v:.4g}" for k, v in result.best_params.items())
          + f" (simulation MSE {result.best.objective:.4g}); config written to {out / 'best.yaml'}")
    if not tune.run_best:
        return 0
    try:
        recon = run_attack_to_dir(best_config, config.run, target, update_path, out / "attack", resume=args.resume
                                  and (out / "attack" / "run.json").exists(), device=device, command="tune",
                                  extra_record={"tuned_params": result.best_params})
    except Interrupted as exc:
        print(f"privbox tune: the attack with the best values was {exc}")
        return 130
    print(f"privbox tune: attack with the best values finished ({recon.iterations} iterations, gradient loss "
          f"{recon.best_loss:.4g}); outputs in {out / 'attack'}")
    return 0
