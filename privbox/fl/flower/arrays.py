"""Paddle state dicts and privbox updates as Flower records (and back).

A state dict (``{name: ndarray}``: parameters **and** BN running statistics) becomes an
``ArrayRecord`` with one ``Array`` per entry under the same name, in the same order and with the
same dtype; Flower serialises each with ``numpy.save(allow_pickle=False)``. A weight-delta
:class:`~privbox.core.update.ClientUpdate` travels between the client mods as an ``ArrayRecord``
(``param/<name>``: ΔW, ``buffer/<name>``: running-statistic deltas, ``labels`` when shared) plus
its metadata as JSON in a ``ConfigRecord``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Optional

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord

from ...core.errors import InputError
from ...core.update import ClientUpdate, UpdateMeta

__all__ = ["state_to_record", "record_to_state", "update_to_records", "records_to_update", "full_state"]


def state_to_record(state: dict) -> ArrayRecord:
    """``{name: ndarray}`` -> ``ArrayRecord`` (names, order and dtypes kept)."""
    return ArrayRecord({str(k): Array(np.ascontiguousarray(np.asarray(v))) for k, v in state.items()})


def record_to_state(record: ArrayRecord, like: Optional[dict] = None) -> dict:
    """``ArrayRecord`` -> ``{name: ndarray}``; with ``like``, names, shapes and dtypes must match it."""
    state = {k: v.numpy() for k, v in record.items()}
    if like is not None:
        missing, extra = sorted(set(like) - set(state)), sorted(set(state) - set(like))
        if missing or extra:
            raise InputError(f"the received state does not match the model (missing {missing[:5]}, unexpected {extra[:5]})",
                             where="flower", fix="run the ServerApp and the ClientApps with the same privbox config")
        for k, v in like.items():
            if state[k].shape != np.shape(v) or state[k].dtype != np.asarray(v).dtype:
                raise InputError(f"entry {k}: received {state[k].dtype}{list(state[k].shape)}, model {np.asarray(v).dtype}{list(np.shape(v))}",
                                 where="flower")
    return state


def update_to_records(update: ClientUpdate) -> tuple[ArrayRecord, ConfigRecord]:
    """A weight-delta update as (tensors, metadata) records (θ0 is the incoming global state)."""
    arrays = {f"param/{k}": v for k, v in update.tensors.items()}
    arrays.update({f"buffer/{k}": v for k, v in (update.buffer_delta or {}).items()})
    if update.labels is not None:
        arrays["labels"] = np.asarray(update.labels, dtype=np.int64)
    meta = ConfigRecord({"meta": json.dumps(dataclasses.asdict(update.meta)), "order": json.dumps(list(update.tensors))})
    return state_to_record(arrays), meta


def records_to_update(arrays: ArrayRecord, meta: ConfigRecord, global_state: dict) -> ClientUpdate:
    """Inverse of :func:`update_to_records`, with θ0 attached."""
    values = record_to_state(arrays)
    order = json.loads(str(meta["order"]))
    tensors = {k: values[f"param/{k}"] for k in order}
    buffers = {k[len("buffer/"):]: v for k, v in values.items() if k.startswith("buffer/")}
    return ClientUpdate(
        tensors=tensors, meta=UpdateMeta.from_dict(json.loads(str(meta["meta"]))), global_state=dict(global_state),
        buffer_delta=buffers or None, labels=values.get("labels"),
    )


def full_state(update: ClientUpdate, global_state: dict) -> dict:
    """θ0 + ΔW for every state entry (entries the update does not carry did not move)."""
    out = {}
    for k, v in global_state.items():
        delta = update.tensors.get(k)
        if delta is None and update.buffer_delta:
            delta = update.buffer_delta.get(k)
        out[k] = v if delta is None else (v + delta.astype(v.dtype)).astype(v.dtype)
    return out
