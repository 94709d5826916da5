"""A Flower ``ClientApp`` wrapping the privbox client and a ``ServerApp`` with FedAvg.

Both are built from the same :class:`~privbox.fl.config.FLConfig` as the embedded simulation
(:func:`privbox.fl.simulation.run_simulation`), so a Flower run with the same seeds computes the
same global models:

* the ClientApp serves one row of the client table, chosen by the node's ``partition-id``
  (Flower's simulation engine sets it; a SuperNode gets it from
  ``--node-config "partition-id=0"``). Each round it loads the received global state (all
  entries, BN running statistics included), runs :meth:`privbox.fl.client.Client.run_round`
  with the client's own defenses, and replies with its weight delta; the client mods
  (:mod:`privbox.fl.flower.mods`) then apply the federation's update transforms, the RDLV
  leakage filter and turn the delta into the full local state;
* the ServerApp runs Flower's ``FedAvg`` (weighted by the ``num-examples`` metric: local samples,
  or local steps with ``fl.weighting: steps``), evaluates every global model on the held-out
  set, and writes ``final_model.safetensors``, ``best_model.safetensors`` and
  ``flower_history.json`` to ``privbox-out``.

Defense state (noise generators, DGC residuals) lives in the node's ``Context.state`` between
rounds, as JSON and arrays, so it survives whichever worker process Flower runs a round in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from ...core.errors import ConfigError
from ..config import FLConfig, load_fl_config
from ..data import build_fl_data
from .arrays import record_to_state, state_to_record, update_to_records
from .node import load_states, partition, save_states

__all__ = ["Federation", "make_client_app", "make_server_app", "client_app", "server_app", "federation_for",
           "federation_from_context"]

_CACHE: dict[str, "Federation"] = {}


class Federation:
    """What a process needs of a config: the data shards, client specs and the leakage filter."""

    def __init__(self, config: FLConfig, out: Optional[str] = None) -> None:
        self.config = config
        self.out = Path(out) if out else None
        self.specs = config.client_specs()
        self.data = build_fl_data(config.data, sum(s.num_images for s in self.specs))
        self.shards = self.data.shard([s.num_images for s in self.specs])
        from ..filters import client_defenses

        self.transform_specs = client_defenses([], config.defense)
        self.secrets: dict = {}
        self.final_state: Optional[dict] = None
        self._filter = None
        self._initial: Optional[dict] = None

    def client(self, index: int):
        """A fresh :class:`~privbox.fl.client.Client` for row ``index`` (its own defenses only)."""
        from ..client import Client

        if not 0 <= index < len(self.specs):
            raise ConfigError(f"partition-id {index} is not a row of the client table (0..{len(self.specs) - 1})",
                              where="flower node-config", fix="start one SuperNode per client row")
        return Client(self.specs[index], dataset=self.shards[index])

    def transforms(self, index: int) -> list:
        """The federation's update transforms for row ``index``, seeded as the embedded client seeds them."""
        from ...defenses.registry import build_defense

        seed = self.specs[index].seed
        return [build_defense(t["name"], t["params"], seed=seed) for t in self.transform_specs]

    def initial_model(self):
        from ..client import Client

        return Client(self.specs[0].replace(seed=self.config.fl.seed, defenses=[]), dataset=self.shards[0]).model

    def initial_state(self) -> dict:
        """The initial global state (names, shapes and dtypes every received state must match)."""
        if self._initial is None:
            self._initial = {k: v.numpy() for k, v in self.initial_model().state_dict().items()}
        return self._initial

    def leak_filter(self):
        from ..filters import LeakageFilter

        if self._filter is None:
            self._filter = LeakageFilter(self.config.audit, self.data.prior)
        return self._filter


def federation_for(config: FLConfig, out: Optional[str] = None) -> Federation:
    """The process-wide :class:`Federation` of ``config`` (built once per process)."""
    from ..records import config_fingerprint

    key = config_fingerprint(config.to_dict()) + str(out)
    if key not in _CACHE:
        _CACHE[key] = Federation(config, out)
    return _CACHE[key]


def federation_from_context(context: Context) -> Federation:
    """The federation named by a Flower run config (``privbox-config``, ``privbox-overrides``, ``privbox-out``)."""
    run = dict(context.run_config)
    overrides = [o for o in str(run.get("privbox-overrides", "")).split(";") if o.strip()]
    config = load_fl_config(str(run.get("privbox-config", "fl")), overrides)
    return federation_for(config, str(run.get("privbox-out", "")) or None)


def _train(fed: Federation, msg: Message, context: Context) -> Message:
    index = partition(context)
    client = fed.client(index)
    own = list(client.transforms) + list(client.step_defenses)
    load_states(context, "privbox-own", own)
    global_state = record_to_state(msg.content["arrays"], like=fed.initial_state())
    round_index = int(msg.content["config"]["server-round"]) - 1
    update, secret = client.run_round(global_state, round_index)
    save_states(context, "privbox-own", own)
    fed.secrets[(index, round_index)] = secret
    arrays, meta = update_to_records(update)
    row = fed.config.clients[index]
    meta["client"], meta["partition"], meta["round"], meta["invert"] = row.name, index, round_index, row.invert
    weight = float(update.meta.num_samples if fed.config.fl.weighting == "samples" else update.meta.local_steps)
    losses = getattr(client.last_result, "losses", None) or [0.0]
    metrics = MetricRecord({"num-examples": weight, "train-loss": float(np.mean(losses))})
    return Message(RecordDict({"update": arrays, "privbox": meta, "metrics": metrics}), reply_to=msg)


def make_client_app(config: Optional[FLConfig] = None, out: Optional[str] = None) -> ClientApp:
    """A ClientApp for ``config`` (``None``: read it from the Flower run config), with the privbox mods."""
    from .mods import make_mods

    def get(context: Context) -> Federation:
        return federation_for(config, out) if config is not None else federation_from_context(context)

    app = ClientApp(mods=make_mods(get))

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return _train(get(context), msg, context)

    return app


def make_server_app(config: Optional[FLConfig] = None, out: Optional[str] = None) -> ServerApp:
    """A ServerApp running FedAvg on ``config`` (``None``: from the run config) with central evaluation."""
    from ...core.safetensors_io import write_privbox_file
    from ...report.tables import write_json_atomic
    from ..server import FedAvgServer

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        fed = federation_for(config, out) if config is not None else federation_from_context(context)
        server = FedAvgServer(fed.initial_model(), weighting=fed.config.fl.weighting)
        n = len(fed.config.clients)
        k = fed.config.fl.clients_per_round or n
        strategy = FedAvg(fraction_train=k / n, fraction_evaluate=0.0, min_train_nodes=k, min_available_nodes=n)
        mean, std = fed.specs[0].normalisation()
        history: list = []
        best: dict[str, Any] = {}

        def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            server.load(record_to_state(arrays, like=server.state))
            e = server.evaluate(fed.data.eval_images, fed.data.eval_labels, mean, std)
            history.append({"round": server_round - 1, "accuracy": e.accuracy, "loss": e.loss})
            if server_round > 0 and (not best or e.accuracy > best["accuracy"]):
                best.update(accuracy=e.accuracy, round=server_round - 1, state=server.global_state())
            return MetricRecord({"accuracy": e.accuracy, "loss": e.loss})

        result = strategy.start(grid=grid, initial_arrays=state_to_record(server.state),
                                num_rounds=fed.config.fl.rounds, evaluate_fn=evaluate)
        final = record_to_state(result.arrays, like=server.state)
        fed.final_state = final
        target = fed.out
        if target is not None:
            write_privbox_file(target / "final_model.safetensors", final, "privbox.FLModel", {"rounds": fed.config.fl.rounds})
            if best:
                write_privbox_file(target / "best_model.safetensors", best["state"], "privbox.FLModel",
                                   {"round": best["round"], "accuracy": best["accuracy"]})
            write_json_atomic(target / "flower_history.json", {"history": history, "best_round": best.get("round"),
                                                               "test_accuracy": best.get("accuracy")})

    return app


#: For ``flwr run`` / SuperLink + SuperNodes: the config comes from the Flower run config.
client_app = make_client_app()
server_app = make_server_app()
