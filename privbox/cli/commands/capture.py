"""``privbox capture``: the victim side. Build the model and the private batch, compute the update.

Writes ``DIR/update.safetensors`` (what the attacker observes) and, separately,
``DIR/secret.safetensors`` (the ground truth, for ``privbox evaluate`` only), plus ``DIR/secret.png``.

Example::

    privbox capture -c capture_lenet --out run/ -o capture.batch_size=4
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._common import add_config_args, load_cli_config, save_image_grid, set_device


def register(subparsers) -> None:
    """Add the ``capture`` subcommand."""
    parser = subparsers.add_parser(
        "capture",
        help="victim side: compute a client update from a private batch (update and secret saved apart)",
        description="Build the model (seeded) and the target batch from the 'capture' config section, compute the "
        "client's update (privbox.fl.client.Client) and write DIR/update.safetensors (the attacker's observation) and "
        "DIR/secret.safetensors (the ground truth, for 'privbox evaluate' only).",
    )
    add_config_args(parser, "e.g. capture_lenet, capture_resnet18")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--force", action="store_true", help="overwrite an update already in DIR")
    from ...distributed.cli import add_distributed_arguments

    add_distributed_arguments(parser, "capture")
    parser.set_defaults(func=run)


def client_spec_from_capture(cap) -> "ClientSpec":
    """The :class:`~privbox.fl.spec.ClientSpec` of a ``capture`` config section."""
    from ...fl.spec import ClientSpec

    mean, std = cap.normalisation()
    delta = cap.kind == "weight_delta"
    return ClientSpec(
        model=cap.model, model_kwargs=dict(cap.model_kwargs), num_classes=cap.num_classes,
        image_size=cap.image_size, channels=cap.channels, num_images=cap.batch_size,
        batch_size=cap.local_batch_size if delta else None, local_epochs=cap.local_epochs if delta else 1,
        lr=cap.local_lr, bn_mode=cap.bn_mode, mean=mean, std=std, share="delta" if delta else "gradient",
        include_labels=cap.share_labels, include_bn_stats=cap.share_bn_stats, seed=cap.seed,
        defenses=cap.defense_specs(),
    )


def run(args: argparse.Namespace) -> int:
    """Execute ``privbox capture``; returns the exit code."""
    from ...core.errors import ConfigError
    from ...data import make_target_batch
    from ...fl.client import Client
    from ..main import CliError

    config = load_cli_config(args)
    cap = config.capture
    out = Path(args.out)
    update_path, secret_path = out / "update.safetensors", out / "secret.safetensors"
    if update_path.exists() and not args.force:
        raise CliError(f"{update_path} already exists; pass --force to overwrite it, or choose another --out")
    set_device(config.run.device)

    batch = make_target_batch(
        cap.batch_size, num_classes=cap.num_classes, distinct_labels=cap.distinct_labels, size=cap.image_size,
        channels=cap.channels, seed=cap.seed, images=cap.images, shuffle_images=cap.shuffle_images,
    )
    spec = client_spec_from_capture(cap)
    try:
        client = Client(spec, dataset=batch)
    except ConfigError as exc:
        raise CliError(f"capture.model_kwargs {cap.model_kwargs} do not fit model {cap.model!r}: {exc}") from None
    mean, std = spec.normalisation()
    if getattr(args, "distributed", None):
        # Every rank builds the same model and batch and computes its shard; rank 0 writes.
        from ...distributed.cli import capture_job

        update, secret, writer = capture_job(args, cap, client, batch)
        if not writer:
            return 0
    else:
        update, secret = client.run_round()
    update.save(update_path)
    secret.save(secret_path)
    save_image_grid(out / "secret.png", secret.images, title="private batch (ground truth)",
                    captions=[f"{n} · y={int(y)}" for n, y in zip(secret.names, secret.labels)])

    n_params = sum(int(v.size) for v in update.tensors.values())
    shared = [name for name, on in (("labels", cap.share_labels), ("exact BN statistics", update.bn_batch_stats is not None)) if on]
    print(f"privbox capture: {cap.model} ({n_params:,} trainable parameters, {cap.num_classes} classes, BN {cap.bn_mode} mode)")
    if cap.kind == "weight_delta":
        print(f"  FedAvg weight delta: {update.meta.local_steps} local SGD step(s), lr {cap.local_lr}, "
              f"{cap.local_epochs} epoch(s), minibatch {update.meta.batch_size}")
    print(f"  batch: {cap.batch_size} x {cap.channels}x{cap.image_size}x{cap.image_size} from {cap.images!r}: "
          + ", ".join(f"{n} (y={int(y)})" for n, y in zip(batch.names, batch.labels)))
    print(f"  normalisation: mean {mean}, std {std}; shared besides the gradient and θ0: {', '.join(shared) or 'nothing'}")
    print(f"  update (the attacker's observation): {update_path}")
    print(f"  secret (ground truth, keep apart):    {secret_path}")
    return 0
