"""The ways a job can use several processes (``--distributed MODE``), one registry entry each."""

from __future__ import annotations

from ..core.registry import Registry
from .comm import SeedCollective, ShardCollective

#: Entry items build the mode's collective from a :class:`~privbox.distributed.comm.ProcessGroup`;
#: ``commands`` lists the CLI commands the mode applies to.
MODES: Registry[type] = Registry("distributed mode")
MODES.add(
    "shard", ShardCollective, commands=("attack", "capture"),
    description="split the batch into contiguous equal shards, one per rank (large batches; equals one process)",
)
MODES.add(
    "seeds", SeedCollective, commands=("attack",),
    description="every rank the whole batch with its own block of restarts; the lowest final loss wins (small batches)",
)
