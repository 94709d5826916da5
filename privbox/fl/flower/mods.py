"""The client-side filter chain as Flower client mods (ALGORITHMS.md §9.3).

``ClientApp(mods=make_mods(get))`` wraps the privbox train handler in, from the inside out:

1. :func:`defense_mod`: the federation's update transforms (``defense.sigma0`` GaussianPrivacy,
   ``defense.transforms``) applied to the outgoing weight delta with
   :func:`privbox.defenses.apply.defend_update`, their state kept in the node's ``Context.state``;
2. :func:`leakage_filter_mod`: on audited rows, in due rounds, the RDLV leakage filter runs the
   attack on the *defended* update; above the threshold the reply becomes an error message, which
   Flower's FedAvg leaves out of the aggregate (the update is dropped);
3. :func:`state_mod`: θ0 + ΔW for every state entry under ``arrays``, the one ArrayRecord
   Flower's FedAvg averages (with the ``num-examples`` weight): the same FedAvg step as the
   embedded server's.
"""

from __future__ import annotations

import logging
from typing import Callable

from flwr.app import ConfigRecord, Context, Error, Message, RecordDict

from .arrays import full_state, record_to_state, records_to_update, state_to_record, update_to_records

__all__ = ["make_mods", "defense_mod", "leakage_filter_mod", "state_mod", "DROPPED"]

logger = logging.getLogger("privbox.fl")

#: Error code of a reply the leakage filter dropped.
DROPPED = 4501

Next = Callable[[Message, Context], Message]


def _update_of(msg: Message, reply: Message):
    content = reply.content
    return records_to_update(content["update"], content["privbox"], record_to_state(msg.content["arrays"]))


def _with_update(msg: Message, reply: Message, update) -> Message:
    arrays, meta = update_to_records(update)
    old = reply.content["privbox"]
    for key in ("client", "partition", "round", "invert"):
        meta[key] = old[key]
    return Message(RecordDict({"update": arrays, "privbox": meta, "metrics": reply.content["metrics"]}), reply_to=msg)


def _on_update(step: Callable[[Message, Context, Message], Message]) -> Callable[[Message, Context, Next], Message]:
    """A mod that runs ``step(msg, context, reply)`` on replies that carry a privbox update."""

    def mod(msg: Message, context: Context, call_next: Next) -> Message:
        reply = call_next(msg, context)
        if reply.has_error() or "update" not in reply.content.array_records:
            return reply
        return step(msg, context, reply)

    return mod


def defense_mod(get) -> Callable[[Message, Context, Next], Message]:
    """The update-transform mod for the federation ``get(context)``."""
    from ...defenses.apply import defend_update
    from .node import load_states, partition, save_states

    def step(msg: Message, context: Context, reply: Message) -> Message:
        fed = get(context)
        index = partition(context)
        transforms = fed.transforms(index)
        if not transforms:
            return reply
        load_states(context, "privbox-federation", transforms)
        update = _update_of(msg, reply)
        for t in transforms:
            update = defend_update(update, t, step=int(reply.content["privbox"]["round"]))
        save_states(context, "privbox-federation", transforms)
        return _with_update(msg, reply, update)

    return _on_update(step)


def leakage_filter_mod(get) -> Callable[[Message, Context, Next], Message]:
    """The RDLV leakage-filter mod: drops the reply when RDLV > threshold."""

    def step(msg: Message, context: Context, reply: Message) -> Message:
        fed = get(context)
        meta = reply.content["privbox"]
        round_index, index = int(meta["round"]), int(meta["partition"])
        if not (bool(meta["invert"]) and fed.config.audit.due(round_index)):
            return reply
        from ..records import write_audit
        from ..simulation import _attack_model

        update = _update_of(msg, reply)
        secret = fed.secrets.pop((index, round_index))
        outcome = fed.leak_filter()(_attack_model(update), update, secret, round_index, str(meta["client"]))
        if fed.out is not None and fed.config.audit.save_images:
            write_audit(fed.out / "clients", outcome, secret.images, None, {"sigma0": fed.config.defense.sigma0})
        logger.info("privbox fl (flower): round %d client %s RDLV %.3f%s", round_index, meta["client"],
                    outcome.rdlv.value, " -> dropped" if outcome.dropped else "")
        reply.content["privbox"]["rdlv"] = float(outcome.rdlv.value)
        if outcome.dropped:
            return Message(Error(code=DROPPED, reason=f"privbox leakage filter: RDLV {outcome.rdlv.value:.3f} > threshold "
                                                      f"{fed.config.audit.threshold:g}; update dropped"), reply_to=msg)
        return reply

    return _on_update(step)


def state_mod(get) -> Callable[[Message, Context, Next], Message]:
    """Turn the (defended, audited) delta into θ0 + ΔW under ``arrays`` for Flower's FedAvg."""

    def step(msg: Message, context: Context, reply: Message) -> Message:
        global_state = record_to_state(msg.content["arrays"])
        update = _update_of(msg, reply)
        info = ConfigRecord({k: v for k, v in reply.content["privbox"].items() if k not in ("meta", "order")})
        return Message(RecordDict({"arrays": state_to_record(full_state(update, global_state)), "privbox": info,
                                   "metrics": reply.content["metrics"]}), reply_to=msg)

    return _on_update(step)


def make_mods(get) -> list:
    """``[state_mod, leakage_filter_mod, defense_mod]``: Flower calls the last one first on the way out."""
    return [state_mod(get), leakage_filter_mod(get), defense_mod(get)]
