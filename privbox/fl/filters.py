"""The client-side filter chain of the federated simulation (ALGORITHMS.md §9.3).

In order, on every client, before anything leaves it:

1. **update transforms** from :data:`privbox.defenses.DEFENSES` (kind ``update_transform``):
   ``GaussianPrivacy`` with σ = σ0 × the 95th percentile of the non-zero |update| over every key,
   BN running-statistic deltas included (NVIDIA FLARE; Hatamizadeh et al., IEEE TMI 2023), then
   any other transform (``top_k`` pruning, ``dgc``, ...). :func:`client_defenses` appends them to
   the client's own defenses, so :meth:`privbox.fl.client.Client.run_round` applies them, in
   this order, after local training;
2. the **leakage filter** (:class:`LeakageFilter`): on audited clients, every ``frequency``
   rounds from ``start_round``, an attack (any :func:`privbox.attacks.build_attack` spec) inverts
   the outgoing, *already defended* update; RDLV (:mod:`privbox.metrics.rdlv`) scores the
   reconstructions against the client's training images relative to the prior image, and the
   update is dropped (an empty update: the server skips it) when RDLV > ``threshold``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..core.errors import ConfigError
from ..core.update import ClientUpdate, Secret
from ..metrics.rdlv import RDLVResult, relative_data_leakage
from .config import AuditSection, DefenseSection

__all__ = ["client_defenses", "build_audit_attack", "LeakageFilter", "AuditOutcome", "NO_GUARANTEE"]

#: How every table labels a noise-only defense (GaussianPrivacy): it has no accountant.
NO_GUARANTEE = "no formal guarantee"


def client_defenses(own: list, defense: DefenseSection) -> list[dict]:
    """The client's defenses followed by the federation's update transforms, as DefenseSpec dicts."""
    from ..defenses.registry import DEFENSES, defense_kind

    out = [d.to_dict() if hasattr(d, "to_dict") else dict(d) for d in own]
    extra = []
    if defense.sigma0 > 0:
        extra.append({"name": "gaussian_privacy", "params": {"sigma0": defense.sigma0, "percentile": defense.percentile}})
    for i, item in enumerate(defense.transforms):
        if not isinstance(item, dict) or "name" not in item or set(item) - {"name", "params"}:
            raise ConfigError(f"a transform is {{name, params}}, got {item!r}", where=f"defense.transforms[{i}]")
        DEFENSES.entry(item["name"])  # unknown names list the valid ones
        if defense_kind(item["name"]) != "update_transform":
            raise ConfigError(f"{item['name']!r} is an optimizer defense, not an update transform",
                              where=f"defense.transforms[{i}]", fix="put optimizer defenses (dp_sgd, ...) in a client's defenses")
        extra.append({"name": item["name"], "params": dict(item.get("params") or {})})
    return out + copy.deepcopy(extra)


def build_audit_attack(spec: Any) -> Any:
    """The attack object of the leakage filter, from a preset name or a mapping."""
    from ..attacks import build_attack

    return build_attack(spec)


@dataclass
class AuditOutcome:
    """The leakage filter's verdict on one client update."""

    round: int
    client: str
    rdlv: RDLVResult
    dropped: bool
    reconstruction: np.ndarray
    attack: str
    seconds: float
    events: list = field(default_factory=list)

    def summary(self) -> dict:
        per_image = self.rdlv.per_image[:, 0]
        return {
            "round": self.round,
            "client": self.client,
            "rdlv": float(self.rdlv.value),
            "rdlv_mean": float(per_image.mean()),
            "rdlv_per_image": per_image.tolist(),
            "closest": self.rdlv.closest.tolist(),
            "dropped": self.dropped,
            "attack": self.attack,
            "seconds": round(self.seconds, 3),
        }


class LeakageFilter:
    """Run an attack on a defended update, score it with RDLV, decide whether to drop it.

    Args:
        audit: the ``audit`` config section.
        prior: ``[C, H, W]`` prior image in [0, 1] (the attack's starting point and the RDLV baseline).
        attack: an attack object (default: built from ``audit.attack``).
    """

    def __init__(self, audit: AuditSection, prior: Optional[np.ndarray], attack: Any = None) -> None:
        self.audit = audit
        self.prior = None if prior is None else np.asarray(prior, dtype=np.float32)
        self.attack = attack if attack is not None else build_audit_attack(audit.attack)

    def check(self, update: ClientUpdate) -> None:
        """Raise :class:`~privbox.core.errors.MissingCapabilityError` if the attack cannot use ``update``."""
        checker = getattr(self.attack, "check_update", None)
        if checker is not None:
            checker(update)

    def due(self, round_index: int) -> bool:
        return self.audit.due(round_index)

    def __call__(self, model: Any, update: ClientUpdate, secret: Secret, round_index: int, client: str) -> AuditOutcome:
        """Invert ``update`` (already defended) and score it against ``secret`` (never shown to the attack)."""
        self.check(update)
        start = time.perf_counter()
        kwargs = {"prior": self.prior} if self.audit.use_prior and self.prior is not None else {}
        recon = self.attack.run(model, update, **kwargs)
        result = relative_data_leakage(
            secret.images, recon.pixels, self.prior if self.audit.use_prior else None, metrics=self.audit.metrics,
            reduce=self.audit.reduce, convention=self.audit.convention, rescale=self.audit.rescale,
        )
        dropped = self.exceeds(result.value)
        return AuditOutcome(
            round=int(round_index), client=client, rdlv=result, dropped=dropped, reconstruction=np.asarray(recon.pixels),
            attack=str(getattr(recon, "attack", "")), seconds=time.perf_counter() - start, events=list(getattr(recon, "events", [])),
        )

    def exceeds(self, value: float) -> bool:
        """The drop rule: RDLV > threshold. With a distance (``reduce='min'``) leaking shows as a
        negative relative change, so the update is dropped when −RDLV > threshold."""
        return value > self.audit.threshold if self.audit.reduce == "max" else -value > self.audit.threshold
