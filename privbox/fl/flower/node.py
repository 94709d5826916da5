"""Per-node helpers of the Flower apps: which client-table row a node serves, and defense state
kept in the node's ``Context.state`` between rounds (JSON plus arrays, never pickle)."""

from __future__ import annotations

import json

from flwr.app import ConfigRecord, Context

from ...core.errors import ConfigError
from ..records import join_state, split_state
from .arrays import record_to_state, state_to_record

__all__ = ["save_states", "load_states", "partition"]


def save_states(context: Context, key: str, objects: list) -> None:
    """Keep the ``state_dict`` of ``objects`` in the node's ``Context.state`` under ``key``."""
    arrays: dict = {}
    parts = [split_state(o.state_dict(), str(i), arrays) if callable(getattr(o, "state_dict", None)) else None
             for i, o in enumerate(objects)]
    context.state[f"{key}-json"] = ConfigRecord({"json": json.dumps(parts)})
    context.state[f"{key}-arrays"] = state_to_record(arrays)


def load_states(context: Context, key: str, objects: list) -> None:
    """Restore what :func:`save_states` kept (nothing on a node's first round)."""
    if f"{key}-json" not in context.state:
        return
    parts = json.loads(str(context.state[f"{key}-json"]["json"]))
    arrays = record_to_state(context.state[f"{key}-arrays"])
    for obj, part in zip(objects, parts):
        if part is not None and callable(getattr(obj, "set_state_dict", None)):
            obj.set_state_dict(join_state(part, arrays))


def partition(context: Context) -> int:
    if "partition-id" not in context.node_config:
        raise ConfigError("this node has no partition-id", where="flower node-config",
                          fix='start the SuperNode with --node-config "partition-id=<row of the client table>"')
    return int(context.node_config["partition-id"])
