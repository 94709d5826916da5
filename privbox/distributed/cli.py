"""The ``--distributed`` options of ``privbox attack`` and ``privbox capture``, and the job around them.

Start the ranks with Paddle's launcher; every rank runs the same command::

    python -m paddle.distributed.launch --nproc_per_node 2 privbox attack -c CONFIG \\
        --update U --out DIR --distributed

Each rank rebuilds the attack from the config and the update file (nothing is pickled between
processes); :func:`attack_job` checks that every rank holds the same update, config and
options, that the batch splits into equal shards, and that each rank's setup succeeded, before
any work starts; rank 0 alone writes the outputs (atomically).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .. import __version__
from ..core.errors import PrivboxError
from .collective import LOCAL, Collective, use
from .comm import DEFAULT_TIMEOUT, ProcessGroup, init_process_group
from .modes import MODES


def add_distributed_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Add ``--distributed [MODE]``, ``--dist-bn`` and ``--dist-timeout`` to ``parser``."""
    modes = ", ".join(f"{e.name}: {e.description}" for e in MODES.entries() if command in e.extra["commands"])
    parser.add_argument(
        "--distributed", nargs="?", const="shard", default=None, metavar="MODE",
        help=f"run on the ranks started by 'python -m paddle.distributed.launch --nproc_per_node N privbox "
        f"{command} ...' (MODE {modes}; default shard; see docs/en/distributed.md)",
    )
    parser.add_argument(
        "--dist-bn", choices=("sync", "shard"), default="sync",
        help="BatchNorm statistics under --distributed: over the global batch (sync, the one-process result) or "
        "per rank's shard (the 'asynchronous' per-device BN of the GH scheme)",
    )
    parser.add_argument(
        "--dist-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
        help=f"seconds a rank waits for its peers in one collective before it stops (default {DEFAULT_TIMEOUT:g})",
    )


@dataclass
class Job:
    """What the command needs to know about its place in a (possibly) distributed run."""

    collective: Collective = LOCAL
    group: Any = None
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def writer(self) -> bool:
        """Whether this process writes outputs (rank 0, or the only process)."""
        return self.collective.rank == 0

    @property
    def log(self) -> Callable[[str], None]:
        """``print`` on the writer, silent elsewhere."""
        return print if self.writer else (lambda text: None)


def start_job(args: argparse.Namespace, command: str) -> Job:
    """Initialise the process group of ``--distributed`` and build the mode's collective."""
    entry = MODES.entry(args.distributed)
    if command not in entry.extra["commands"]:
        raise PrivboxError(f"mode {args.distributed!r} does not apply to privbox {command}", where="--distributed",
                           fix="choose one of " + ", ".join(e.name for e in MODES.entries() if command in e.extra["commands"]))
    group: ProcessGroup = init_process_group(args.dist_timeout)
    collective = entry.item(group, sync_bn=args.dist_bn == "sync")
    record = {"distributed": {"mode": args.distributed, "world_size": group.world_size,
                              "bn": args.dist_bn, "timeout_s": args.dist_timeout}}
    return Job(collective, group, record)


def check_job(job: Job, where: str, setup: Callable[[], None], items: dict[str, str]) -> None:
    """Run this rank's ``setup`` checks, stop every rank if one failed, then check that all ranks
    run the same job (``items``: name -> text, compared by hash)."""
    error = None
    try:
        setup()
    except PrivboxError as exc:
        error = exc
    job.group.check_setup(error, where)
    job.group.agree({**items, "privbox version": __version__, "world size": str(job.group.world_size)}, where)


@contextlib.contextmanager
def attack_job(args: argparse.Namespace, config, update, update_path: Path) -> Iterator[Job]:
    """The context of one ``privbox attack`` process: a no-op without ``--distributed``.

    With it, checks the job (same update file, attack config and options on every rank; the batch
    divides into the ranks' shards; an engine that supports sharding) and runs the block with the
    mode's collective active. On an error after the start, rank 0 marks ``DIR/run.json`` failed.
    """
    if not getattr(args, "distributed", None):
        yield Job()
        return
    from ..attacks import build_attack
    from ..cli._common import file_sha256

    job = start_job(args, "attack")

    def setup() -> None:
        job.collective.check_attack(build_attack(config), update)

    check_job(job, "privbox attack --distributed", setup, {
        "update file": file_sha256(update_path),
        "attack config": json.dumps(config.to_dict(), sort_keys=True, default=str),
        "options": json.dumps({k: getattr(args, k, None) for k in ("distributed", "dist_bn", "resume")}),
    })
    try:
        with use(job.collective):
            yield job
    except BaseException as exc:
        run_file = Path(args.out) / "run.json"
        if job.writer and run_file.exists():
            from ..report import write_json_atomic

            previous = json.loads(run_file.read_text(encoding="utf-8"))
            if previous.get("status") == "running":
                write_json_atomic(run_file, {**previous, "status": "failed", "error": str(exc),
                                             "failed": time.strftime("%Y-%m-%d %H:%M:%S")})
        raise


def capture_job(args: argparse.Namespace, cap, client, batch):
    """``privbox capture --distributed``: the client's round on ``batch`` computed by all ranks.

    Every rank builds the same :class:`~privbox.fl.client.Client` and batch; under the shard
    collective each local step's minibatch is split into contiguous shards, BatchNorm is
    synchronised (or per shard with ``--dist-bn shard``), and the shard gradients are summed,
    so every rank holds the same update (the one-process update with synchronised BN). Returns
    ``(update, secret, writer)``; rank 0 writes.

    Raises:
        PrivboxError: a minibatch that does not split into the ranks' shards, a client that
            already shards its batch in one process (a scheme with ``shards > 1``) or computes
            per-sample gradients (DP-SGD), or ranks that disagree on the config.
    """
    from ..core.errors import ConfigError

    job = start_job(args, "capture")
    where = "privbox capture --distributed"

    def setup() -> None:
        if client.plan.shards > 1:
            raise ConfigError(f"the client already splits each step into {client.plan.shards} per-shard BN forwards",
                              where=where, fix="drop the scheme's shards and use --dist-bn shard on that many ranks")
        if any(getattr(d, "computes_gradient", False) for d in client.step_defenses):
            raise ConfigError("per-sample gradient defenses (DP-SGD) cannot split a step over ranks", where=where,
                              fix="run this capture in one process")
        job.collective.shard(np.zeros(cap.local_batch_size or cap.batch_size))  # each minibatch splits

    check_job(job, where, setup, {
        "capture config": json.dumps(cap.__dict__, sort_keys=True, default=str),
        "batch": json.dumps([list(map(str, batch.names)), batch.labels.tolist(), float(np.asarray(batch.images).sum())]),
        "options": json.dumps({k: getattr(args, k, None) for k in ("distributed", "dist_bn")}),
    })
    job.collective.adapt_model(client.model)
    with use(job.collective):
        update, secret = client.run_round()
    job.log(f"privbox capture: batch of {len(batch.labels)} over {job.collective.world_size} ranks, "
            + ("synchronised BN" if job.collective.sync_bn else "per-shard (asynchronous) BN"))
    return update, secret, job.writer
