"""Model accuracy under a defense row, from the same client spec as the attacked cells.

The victim of the attack entry (model, kwargs, image size, classes, normalisation, BN mode), with
the defense row's defenses, scheme and client settings, becomes every client of a short FedAvg run
of :func:`privbox.fl.simulation.run_simulation` on the embedded-photograph task (one class per
photograph, jittered crops, held-out evaluation images). The result is the final held-out accuracy
and, for DP-SGD clients, the largest ε the privacy ledger recorded. All rows of a matrix use the
same data, rounds, clients and learning rate, so the accuracies are a matched comparison. The
task is a proxy that ranks defenses by how much they slow learning, not a benchmark accuracy.
"""

from __future__ import annotations

import tempfile
from typing import Any

from .spec import AttackEntry, DefenseEntry, UtilitySpec

__all__ = ["utility_key", "measure_row_utility", "fl_config"]

#: client-spec fields that describe the attacked capture, not how the victim trains
_CAPTURE_ONLY = ("share", "include_labels", "include_bn_stats", "include_global_state", "data", "num_images",
                 "batch_size", "local_steps", "local_epochs", "lr", "seed", "image_size", "channels")


def utility_key(attack: AttackEntry, defense: DefenseEntry) -> str:
    """Cells that share the victim architecture and the defense share one accuracy measurement."""
    client = attack.client
    kwargs = ",".join(f"{k}={v}" for k, v in sorted(dict(client.get("model_kwargs", {})).items()))
    return f"{client.get('model', 'dlg_lenet')}({kwargs})_{client.get('image_size', 32)}px__{defense.name}"


def fl_config(attack: AttackEntry, defense: DefenseEntry, utility: UtilitySpec, seed: int = 0):
    """The :class:`~privbox.fl.config.FLConfig` whose clients are the cell's victim under ``defense``."""
    from ..data import SAMPLE_NAMES
    from ..fl.config import FLConfig
    from .cell import client_spec

    spec = client_spec(attack, defense, seed)
    client = {k: v for k, v in spec.to_dict().items() if k not in _CAPTURE_ONLY}
    client.update(lr=utility.lr, batch_size=utility.batch_size, local_epochs=1)
    classes = list(SAMPLE_NAMES[: spec.num_classes or 10])
    return FLConfig.from_dict({
        "fl": {"rounds": utility.rounds, "seed": seed},
        "data": {"classes": classes, "image_size": spec.image_size, "channels": spec.channels, "grey": False,
                 "jitter": min(2, spec.image_size // 4), "eval_images": utility.eval_images, "aux_images": 4, "seed": seed},
        "client": client,
        "clients": [{"name": f"client{i}", "num_images": utility.images_per_client} for i in range(utility.clients)],
        "ledger": {"delta": utility.delta},
    })


def measure_row_utility(attack: AttackEntry, defense: DefenseEntry, utility: UtilitySpec, seed: int = 0) -> dict[str, Any]:
    """Held-out accuracy (and ε for DP-SGD) of the victim trained by FedAvg under ``defense``.

    Returns ``{"accuracy", "best_accuracy", "epsilon", "rounds", "seconds", "note"}``;
    ``accuracy`` is None when the clients refuse the defense (the reason is in ``note``).
    """
    from ..fl.simulation import run_simulation

    try:
        config = fl_config(attack, defense, utility, seed)
        with tempfile.TemporaryDirectory(prefix="privbox-utility-") as tmp:
            result = run_simulation(config, tmp)
    except ValueError as exc:  # PrivboxError kinds and the defenses' own refusals
        return {"accuracy": None, "best_accuracy": None, "epsilon": None, "note": f"training refused: {exc}"}
    eps = [r["epsilon"] for r in result.ledger if r.get("epsilon") is not None]
    final = result.history[-1]["accuracy"] if result.history else None
    return {
        "accuracy": None if final is None else float(final),
        "best_accuracy": None if result.best_accuracy is None else float(result.best_accuracy),
        "epsilon": float(max(eps)) if eps else None,
        "delta": utility.delta if eps else None,
        "rounds": len(result.history),
        "seconds": float(result.wall_time),
        "note": f"FedAvg, {utility.clients} clients x {utility.images_per_client} images, {utility.rounds} rounds, "
                f"lr {utility.lr:g}, batch {utility.batch_size}",
    }
