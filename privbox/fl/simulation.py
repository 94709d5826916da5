"""The in-process FedAvg simulation with a per-round leakage audit (ALGORITHMS.md §9).

:func:`run_simulation` runs the experiment of a :class:`~privbox.fl.config.FLConfig`:

1. the data pool is split into one shard per row of the client table; every client is a
   :class:`privbox.fl.client.Client` (the one local-training loop of privbox) built from its
   spec, whose defenses end with the federation's update transforms
   (:func:`privbox.fl.filters.client_defenses`: GaussianPrivacy σ0, then any other);
2. each round the server broadcasts the full global state (BN running statistics included);
   the sampled clients train locally and send their defended weight delta; audited clients pass
   it through the :class:`~privbox.fl.filters.LeakageFilter`, which drops it when RDLV exceeds
   the threshold; DP-SGD clients are charged in the :class:`~privbox.fl.ledger.PrivacyLedger`
   and stop once their budget is spent;
3. the server aggregates with FedAvg weighted by local samples (or steps), evaluates the global
   model on the held-out set and keeps the best one;
4. after every completed round the run state is written atomically; ``resume=True`` continues
   from the last completed round to the same final state.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..core.errors import CheckpointError
from ..report.tables import write_json_atomic
from .config import FLConfig
from .data import build_fl_data
from .filters import NO_GUARANTEE, LeakageFilter, client_defenses
from .ledger import PrivacyLedger, dp_setting
from .records import config_fingerprint, join_state, load_run_state, save_run_state, split_state, write_audit
from .server import FedAvgServer

__all__ = ["FLResult", "run_simulation", "build_clients"]

logger = logging.getLogger("privbox.fl")


@dataclass
class FLResult:
    """What a run produced (also written to ``out_dir``)."""

    out_dir: Path
    history: list = field(default_factory=list)
    audits: list = field(default_factory=list)
    ledger: list = field(default_factory=list)
    best_round: Optional[int] = None
    best_accuracy: Optional[float] = None
    final_state: dict = field(default_factory=dict)
    best_state: Optional[dict] = None
    figures: list = field(default_factory=list)
    wall_time: float = 0.0


def build_clients(config: FLConfig, shards: list) -> list:
    """One :class:`~privbox.fl.client.Client` per table row, holding its shard of the pool."""
    from .client import Client

    clients = []
    for spec, shard, row in zip(config.client_specs(), shards, config.clients):
        full = spec.replace(defenses=client_defenses(spec.defenses, config.defense))
        clients.append(Client(full, dataset=shard))
    return clients


def _attack_model(update):
    """The architecture an attacker rebuilds from the update's metadata."""
    from ..nn import build_model

    return build_model(update.meta.model_id, num_classes=update.meta.num_classes, **update.meta.model_kwargs)


def _sigma(update) -> Optional[float]:
    for text in update.meta.defenses:
        if text.startswith("GaussianPrivacy(") and "sigma=" in text:
            try:
                return float(text.split("sigma=")[1].split(";")[0].split(")")[0])
            except ValueError:
                return None
    return None


def _defense_state(clients: list) -> tuple[dict, dict]:
    arrays: dict = {}
    json_part = {}
    for i, client in enumerate(clients):
        parts = []
        for j, d in enumerate(list(client.transforms) + list(client.step_defenses)):
            getter = getattr(d, "state_dict", None)
            parts.append(split_state(getter(), f"{i}/{j}", arrays) if callable(getter) else None)
        json_part[str(i)] = parts
    return json_part, arrays


def _restore_defenses(clients: list, json_part: dict, arrays: dict) -> None:
    for i, client in enumerate(clients):
        for d, state in zip(list(client.transforms) + list(client.step_defenses), json_part.get(str(i), [])):
            if state is not None and callable(getattr(d, "set_state_dict", None)):
                d.set_state_dict(join_state(state, arrays))


def _describe(client, sigma0: float) -> str:
    """The defense column of the tables; noise-only defenses are labelled as giving no guarantee."""
    parts = []
    for d in client.spec.defenses:
        label = d.name
        if d.name == "gaussian_privacy":
            label = f"gaussian_privacy(sigma0={sigma0:g}; {NO_GUARANTEE})"
        parts.append(label)
    return ", ".join(parts) if parts else "none"


def run_simulation(
    config: FLConfig,
    out_dir,
    resume: bool = False,
    stop_after: Optional[int] = None,
    on_round: Optional[Callable[[dict], None]] = None,
) -> FLResult:
    """Run (or resume) the simulation of ``config`` into ``out_dir``; see the module docstring.

    Args:
        config: the experiment.
        out_dir: the run folder (created).
        resume: continue from ``out_dir/state`` if present (the config must be the same).
        stop_after: stop after this many completed rounds in total (to test interruption).
        on_round: called with each round's record.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_dict = config.to_dict()
    fingerprint = config_fingerprint(config_dict)
    write_json_atomic(out / "config.json", config_dict)

    specs = config.client_specs()
    data = build_fl_data(config.data, sum(s.num_images for s in specs))
    shards = data.shard([s.num_images for s in specs])
    clients = build_clients(config, shards)
    names = [row.name for row in config.clients]

    from .client import Client

    init = Client(specs[0].replace(seed=config.fl.seed, defenses=[]), dataset=shards[0])
    server = FedAvgServer(init.model, weighting=config.fl.weighting)
    mean, std = specs[0].normalisation()
    ledger = PrivacyLedger(config.ledger.delta, config.ledger.epsilon_budget)
    inverted = [row.invert for row in config.clients]
    leak_filter = LeakageFilter(config.audit, data.prior) if any(inverted) else None

    history: list = []
    audits: list = []
    best_state, best_round, best_acc = None, None, None
    first_round = 0
    if resume:
        saved = load_run_state(out, fingerprint)
        if saved is not None:
            header, global_state, best_state, arrays = saved
            server.load(global_state)
            history, audits = list(header["history"]), list(header["audits"])
            best_round, best_acc = header.get("best_round"), header.get("best_accuracy")
            ledger.set_state_dict(header["ledger"])
            _restore_defenses(clients, header["defenses"], arrays)
            first_round = int(header["completed_rounds"])
            logger.info("privbox fl: resuming after round %d", first_round - 1)
    elif (out / "state" / "run.safetensors").exists():
        raise CheckpointError("this folder holds an earlier run", where=str(out), fix="pass --resume to continue it, or choose another --out")

    rounds = config.fl.rounds if stop_after is None else min(config.fl.rounds, int(stop_after))
    for t in range(first_round, rounds):
        global_state = server.global_state()
        chosen = list(range(len(clients)))
        if config.fl.clients_per_round is not None and config.fl.clients_per_round < len(clients):
            rng = np.random.default_rng([config.fl.seed, t])
            chosen = sorted(rng.choice(len(clients), config.fl.clients_per_round, replace=False).tolist())
        kept, record = [], {"round": t, "participants": [], "dropped": [], "skipped": [], "epsilon": {}, "sigma": {}, "train_loss": {}}
        for k in chosen:
            client, name = clients[k], names[k]
            setting = dp_setting(client, _steps(client))
            if not ledger.allows(name, setting, t):
                record["skipped"].append(name)
                continue
            update, secret = client.run_round(global_state, t)
            eps = ledger.record(name, setting, t)
            if eps is not None:
                record["epsilon"][name] = eps
            record["sigma"][name] = _sigma(update)
            losses = getattr(client.last_result, "losses", None) or []
            record["train_loss"][name] = float(np.mean(losses)) if losses else None
            if inverted[k] and leak_filter is not None and leak_filter.due(t):
                outcome = leak_filter(_attack_model(update), update, secret, t, name)
                summary = write_audit(out, outcome, secret.images, _sigma(update), {"epsilon": eps, "sigma0": config.defense.sigma0}) \
                    if config.audit.save_images else dict(outcome.summary(), sigma=_sigma(update))
                audits.append(summary)
                logger.info("privbox fl: round %d client %s RDLV %.3f%s", t, name, outcome.rdlv.value, " -> dropped" if outcome.dropped else "")
                if outcome.dropped:
                    record["dropped"].append(name)
                    continue
            kept.append(update)
            record["participants"].append(name)
        record["weights"] = server.aggregate(kept)
        record["weights"] = {record["participants"][int(i)]: w for i, w in record["weights"].items()}
        record["clamped_variances"] = server.last_clamped
        evaluation = server.evaluate(data.eval_images, data.eval_labels, mean, std)
        record["accuracy"], record["loss"] = evaluation.accuracy, evaluation.loss
        if best_acc is None or evaluation.accuracy > best_acc:
            best_acc, best_round, best_state = evaluation.accuracy, t, server.global_state()
        history.append(record)
        json_part, arrays = _defense_state(clients)
        header = {
            "fingerprint": fingerprint, "completed_rounds": t + 1, "history": history, "audits": audits,
            "best_round": best_round, "best_accuracy": best_acc, "ledger": ledger.state_dict(), "defenses": json_part,
        }
        save_run_state(out, header, server.state, best_state, arrays)
        logger.info("privbox fl: round %d accuracy %.3f (best %.3f at round %s)", t, evaluation.accuracy, best_acc, best_round)
        if on_round is not None:
            on_round(record)

    result = FLResult(
        out_dir=out, history=history, audits=audits, ledger=list(ledger.records), best_round=best_round,
        best_accuracy=best_acc, final_state=server.global_state(), best_state=best_state,
        wall_time=time.perf_counter() - start,
    )
    _write_outputs(result, config, clients, names, ledger)
    return result


def _steps(client) -> int:
    spec = client.plan
    b = spec.batch_size or spec.num_images
    if spec.local_steps is not None:
        return int(spec.local_steps)
    return int(spec.local_epochs) * -(-spec.num_images // b)


def _write_outputs(result: FLResult, config: FLConfig, clients: list, names: list, ledger: PrivacyLedger) -> None:
    from ..core.safetensors_io import write_privbox_file
    from ..report.fl_figures import plot_rdlv_per_round

    out = result.out_dir
    if result.best_state is not None:
        write_privbox_file(out / "best_model.safetensors", result.best_state, "privbox.FLModel",
                           {"round": result.best_round, "accuracy": result.best_accuracy})
    summary = {
        "sigma0": config.defense.sigma0, "rounds": config.fl.rounds, "best_round": result.best_round,
        "test_accuracy": result.best_accuracy, "history": result.history, "audits": result.audits,
        "ledger": result.ledger, "stopped": dict(ledger.stopped),
        "clients": [{"name": n, "invert": r.invert, "num_images": c.spec.num_images, "batch_size": c.spec.batch_size or c.spec.num_images,
                     "defenses": _describe(c, config.defense.sigma0), "epsilon": ledger.epsilon(n)}
                    for n, r, c in zip(names, config.clients, clients)],
    }
    write_json_atomic(out / "summary.json", summary)
    if result.audits:
        result.figures.append(plot_rdlv_per_round(result.audits, out / "rdlv_per_round.png",
                                                  title=f"RDLV per round (sigma0 = {config.defense.sigma0:g})"))
    _write_table(out / "summary.md", summary)


def _write_table(path: Path, summary: dict) -> None:
    from ..report.tables import write_text_atomic

    lines = [
        f"# Federated run: sigma0 = {summary['sigma0']:g}, best global model at round {summary['best_round']} "
        f"(test accuracy {summary['test_accuracy']:.3f})", "",
        "| client | images | batch | audited | defenses | epsilon (DP-SGD) | max RDLV | mean RDLV |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in summary["clients"]:
        values = [a for a in summary["audits"] if a["client"] == c["name"]]
        mx = max((a["rdlv"] for a in values), default=None)
        mean = float(np.mean([v for a in values for v in a["rdlv_per_image"]])) if values else None
        eps = "n/a" if c["epsilon"] is None else f"{c['epsilon']:.3f}"
        if "gaussian_privacy" in c["defenses"] and c["epsilon"] is None:
            eps = f"n/a ({NO_GUARANTEE})"
        lines.append(
            f"| {c['name']} | {c['num_images']} | {c['batch_size']} | {'yes' if c['invert'] else 'no'} | {c['defenses']} | {eps} | "
            f"{'-' if mx is None else f'{mx:.3f}'} | {'-' if mean is None else f'{mean:.3f}'} |"
        )
    write_text_atomic(path, "\n".join(lines) + "\n")
