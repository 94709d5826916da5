"""``privbox attack``: invert an observed client update with a configured attack preset.

The model is rebuilt from the update's metadata; the run writes periodic snapshots
(``DIR/snapshots/*.png``) and resumable checkpoints (``DIR/checkpoints/``), then
``reconstruction.safetensors``, ``reconstruction.png``, ``loss.png`` and ``attack.json``. Every file
is written atomically. Stopped by Ctrl-C or SIGTERM, it exits with code 130 and a message; the same
command with ``--resume`` continues and reaches the same result as an uninterrupted run.

Example::

    privbox attack -c inverting_gradients --update run/update.safetensors --out run/ig -o attack.iterations=200
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ...core.interrupts import check_interrupted
from .._common import (
    Interrupted,
    add_config_args,
    file_sha256,
    load_cli_config,
    save_image_grid,
    set_device,
    sigterm_as_keyboard_interrupt,
)

RUN_FILE = "run.json"
#: AttackConfig fields that do not change the result (may differ when resuming).
COSMETIC_FIELDS = ("progress", "snapshot_every")


def register(subparsers) -> None:
    """Add the ``attack`` subcommand."""
    parser = subparsers.add_parser(
        "attack",
        help="reconstruct the client's batch from an update (resumable, with snapshots)",
        description="Run the attack of the 'attack' config section on --update. Writes snapshots and checkpoints "
        "while running, then reconstruction.safetensors, reconstruction.png, loss.png and attack.json. "
        "Interrupted (Ctrl-C, SIGTERM), rerun the same command with --resume.",
    )
    add_config_args(parser, "e.g. dlg, idlg, inverting_gradients, gradinversion, e2egi, ga")
    parser.add_argument("--update", required=True, metavar="U", help="the client update (.safetensors)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in DIR")
    parser.add_argument("--snapshot-every", type=int, metavar="N",
                        help="snapshot (PNG + checkpoint) every N iterations (overrides run.snapshot_every)")
    from ...distributed.cli import add_distributed_arguments

    add_distributed_arguments(parser, "attack")
    # Test hook: behave as if interrupted right after the snapshot at iteration N.
    parser.add_argument("--_interrupt-after", dest="interrupt_after", type=int, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``privbox attack``; returns the exit code (130 when interrupted)."""
    from ...core.update import ClientUpdate
    from ...distributed.cli import attack_job

    extra = [f"run.snapshot_every={args.snapshot_every}"] if args.snapshot_every is not None else []
    config = load_cli_config(args, extra)
    update_path = Path(args.update)
    update = ClientUpdate.load(update_path)
    device = set_device(config.run.device)
    attack_config = config.attack.build()
    try:
        # --distributed: every rank runs this; rank 0 alone writes (privbox.distributed.cli).
        with attack_job(args, attack_config, update, update_path) as job:
            recon = run_attack_to_dir(
                attack_config, config.run, update, update_path, Path(args.out), resume=args.resume,
                interrupt_after=args.interrupt_after, device=device, command="attack", writer=job.writer,
                log=job.log, extra_record=job.record,
            )
    except Interrupted as exc:
        print(f"privbox attack: {exc}")
        return 130
    if not job.writer:
        return 0
    print(f"privbox attack: {attack_config.name} finished: {recon.iterations} iterations, best gradient loss "
          f"{recon.best_loss:.4g} at iteration {recon.best_iteration}, {recon.wall_time:.1f} s")
    print(f"  labels: {recon.labels.tolist()} ({recon.label_method})")
    print(f"  outputs in {Path(args.out).resolve()}: reconstruction.safetensors, reconstruction.png, loss.png, attack.json")
    return 0


def _comparable(config_dict: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: v for k, v in config_dict.items() if k not in COSMETIC_FIELDS}, default=str))


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def read_run_record(run_file: Path) -> dict[str, Any]:
    """The JSON object of ``run.json``; garbage raises :class:`~privbox.core.errors.CheckpointError`."""
    from ...core.errors import CheckpointError

    fix = f"delete {run_file} (and its folder's checkpoints) to start afresh, or choose a new --out"
    try:
        record = json.loads(run_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"the run record is not valid JSON ({exc})", where=str(run_file), fix=fix) from None
    if not isinstance(record, dict) or not isinstance(record.get("attack_config", {}), dict) \
            or record.get("status") not in ("running", "interrupted", "failed", "complete"):
        raise CheckpointError("the run record is not one privbox wrote (no object with a known status)",
                              where=str(run_file), fix=fix)
    return record


def run_attack_to_dir(
    config,
    run,
    update,
    update_path: Path,
    out: Path,
    resume: bool = False,
    interrupt_after: Optional[int] = None,
    device: str = "cpu",
    command: str = "attack",
    log: Callable[[str], None] = print,
    extra_record: Optional[dict[str, Any]] = None,
    writer: bool = True,
):
    """Run ``config`` on ``update`` with snapshots, checkpoints and atomic outputs in ``out``.

    Args:
        config: the :class:`~privbox.attacks.AttackConfig`.
        run: the :class:`~privbox.config.RunSection` (snapshot and checkpoint intervals, progress).
        update: the loaded :class:`~privbox.core.update.ClientUpdate`; ``update_path`` its file.
        out: output folder; ``run.json`` there records the config and the update's hash.
        resume: continue the interrupted run in ``out`` (refused if the config or update differ).
        interrupt_after: test hook: raise an interrupt after the snapshot at this iteration.
        command: the subcommand name, for messages.
        extra_record: more entries for ``attack.json``.
        writer: ``False`` on the ranks of a distributed run other than rank 0: run the attack
            (and its checkpoints) but write no snapshot, record or output.

    Returns:
        The :class:`~privbox.attacks.Reconstruction`.

    Raises:
        CliError: ``out`` holds another run (without ``resume``), or nothing to resume, or a
            resume with a different config or update.
        Interrupted: SIGINT/SIGTERM (or ``interrupt_after``); checkpoints are in ``out``.
    """
    from ... import __version__
    from ...attacks import build_attack
    from ...attacks.tuning import build_model_for_update
    from ...report import save_loss_curves, write_json_atomic
    from ..main import CliError

    out = Path(out)
    run_file = out / RUN_FILE
    snapshot_every, checkpoint_every = run.intervals(config.iterations)
    config = config.replace(snapshot_every=snapshot_every, progress=run.progress)
    # The engine and orchestrator come from the config's registry entries (never from the preset's
    # name); refuse an update the attack cannot use before anything is written.
    attack = build_attack(config)
    attack.check_update(update)
    model = build_model_for_update(update)
    update_sha = file_sha256(update_path)
    record = {"attack_config": _comparable(config.to_dict()), "update": str(update_path), "update_sha256": update_sha}
    if not writer:
        return attack.run(model, update, callback=lambda info: None, checkpoint_dir=str(out / "checkpoints"),
                          checkpoint_every=checkpoint_every, resume=resume)
    if run_file.exists():
        previous = read_run_record(run_file)
        if not resume and previous.get("status") != "failed":
            raise CliError(
                f"{out} already holds an attack run ({RUN_FILE}, status {previous.get('status')!r}); pass --resume "
                "to continue it, or choose a new --out"
            )
        if not resume:
            log(f"privbox {command}: the previous run in {out} failed; starting afresh")
        if previous.get("update_sha256") != update_sha:
            raise CliError(
                f"cannot resume: --update {update_path} is not the update the run in {out} attacked "
                f"({previous.get('update')}); pass that file, or start afresh with a new --out"
            )
        diffs = _differences(previous.get("attack_config", {}), record["attack_config"])
        if diffs:
            raise CliError(
                f"cannot resume the run in {out}: the attack config differs from the interrupted run's ("
                + "; ".join(diffs) + "). Resume with the original config and overrides, or start afresh with a new --out"
            )
    elif resume:
        raise CliError(f"nothing to resume in {out} (no {RUN_FILE}); run without --resume to start")
    if run_file.exists():
        from ...core.atomic import remove_stale_temporaries

        remove_stale_temporaries(out)  # what a SIGKILLed run left mid-write
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_file, {**record, "status": "running", "started": time.strftime("%Y-%m-%d %H:%M:%S")})

    snapshots = out / "snapshots"
    last = {"iteration": 0, "restart": 0}

    def callback(info) -> None:
        prefix = f"{info.phase.replace(' ', '_')}_seed{info.restart}_" if info.phase else (
            f"restart{info.restart}_" if config.restarts > 1 else "")
        save_image_grid(snapshots / f"{prefix}iter_{info.iteration:06d}.png", info.pixels,
                        title=f"{config.name}: iteration {info.iteration}, gradient loss {info.loss:.3g}")
        last.update(iteration=info.iteration, restart=info.restart, phase=info.phase)
        check_interrupted()
        if interrupt_after is not None and info.iteration >= interrupt_after:
            raise KeyboardInterrupt("--_interrupt-after")

    log(f"privbox {command}: {config.name} on {update_path} ({update.meta.model_id}, "
        + (f"FedAvg delta of n={update.meta.num_samples}" if update.kind == "weight_delta" else f"B={update.batch_size}")
        + "), "
        f"{config.iterations} iterations x {config.restarts} restart(s), device {device}"
        + (", resuming" if resume else ""))
    try:
        with sigterm_as_keyboard_interrupt():
            recon = attack.run(
                model, update, callback=callback, checkpoint_dir=str(out / "checkpoints"),
                checkpoint_every=checkpoint_every, resume=resume,
            )
            recon.save(out / "reconstruction.safetensors")
            save_image_grid(out / "reconstruction.png", recon.pixels,
                            title=f"{config.name}: best iterate {recon.best_iteration}, gradient loss {recon.best_loss:.3g}",
                            captions=[f"y={int(y)}" for y in recon.labels])
            if recon.loss_trace:
                save_loss_curves(out / "loss.png", {config.name: recon.loss_trace}, title=f"{config.name}: gradient loss")
            import paddle

            report = {
                **recon.summary(),
                "config": config.to_dict(),
                "update": {"path": str(update_path), "sha256": update_sha, "meta": update.meta.__dict__},
                "threat_model": attack.required_capabilities(update),
                "engine": attack.engine_name(update),
                "orchestrator": config.orchestrator,
                "resumed": bool(resume),
                "environment": {"privbox": __version__, "paddle": paddle.__version__, "device": device,
                                "machine": platform.machine()},
                "outputs": ["reconstruction.safetensors", "reconstruction.png", "loss.png", "attack.json"],
                **(extra_record or {}),
            }
            write_json_atomic(out / "attack.json", report)
            check_interrupted()  # a stop whose KeyboardInterrupt Python swallowed still stops the run
            write_json_atomic(run_file, {**record, "status": "complete"})
    except KeyboardInterrupt:
        write_json_atomic(run_file, {**record, "status": "interrupted", "last_snapshot": last})
        where = f"{last['phase']}, seed {last['restart']}" if last.get("phase") else f"restart {last['restart']}"
        raise Interrupted(
            f"interrupted (last snapshot: {where}, iteration {last['iteration']}); checkpoints "
            f"every {checkpoint_every} iterations are in {out / 'checkpoints'}. Rerun the same command with "
            "--resume to continue to the same result."
        ) from None
    except BaseException as exc:
        write_json_atomic(run_file, {**record, "status": "failed", "error": " ".join(str(exc).split())[:500]})
        raise
    return recon
