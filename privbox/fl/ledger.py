"""The per-client privacy ledger of the federated simulation (ALGORITHMS.md §6.3, §9).

A client that trains with DP-SGD (an optimizer defense with a ``noise_multiplier``, e.g.
``dp_sgd``) spends privacy in every round it takes part in: K local steps of the sampled Gaussian
mechanism with its own noise multiplier σ and sampling rate q. The ledger keeps one
:class:`~privbox.defenses.RDPAccountant` per client and composes **only the rounds the client
took part in** (Mironov et al. 2019; Balle et al. 2020 conversion to (ε, δ)). q is the defense's
``sample_rate``; without one the ledger uses b/n, the rate of the client's fixed-size batches,
for which the Poisson-sampling accountant is an approximation (Opacus does the same).

With a budget, a client whose ε after the next round would exceed it stops participating, and
the simulation says so in the log. Noise-only defenses (GaussianPrivacy) have no accountant: every
table labels them :data:`privbox.fl.filters.NO_GUARANTEE`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

from ..defenses.accountant import RDPAccountant

__all__ = ["DPSetting", "PrivacyLedger", "dp_setting"]

logger = logging.getLogger("privbox.fl")


@dataclass(frozen=True)
class DPSetting:
    """What one round of a DP-SGD client costs: K steps at noise multiplier σ and sampling rate q."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    sample_rate_source: str  # "defense" or "b/n (fixed-size batches: the Poisson accountant is an approximation)"


def dp_setting(client: Any, steps: int) -> Optional[DPSetting]:
    """The DP-SGD setting of a built :class:`~privbox.fl.client.Client`, or ``None`` if it has none.

    A step defense with a ``noise_multiplier`` and an ``accountant`` is a DP-SGD step.
    """
    for d in getattr(client, "step_defenses", []):
        if hasattr(d, "noise_multiplier") and hasattr(d, "accountant"):
            spec = client.plan
            q = getattr(d, "sample_rate", None)
            source = "defense"
            if q is None:
                b = spec.batch_size or spec.num_images
                q = min(1.0, b / spec.num_images)
                source = "b/n (fixed-size batches: the Poisson accountant is an approximation)"
            return DPSetting(float(d.noise_multiplier), float(q), int(steps), source)
    return None


class PrivacyLedger:
    """One RDP accountant per client; ε per client and round."""

    def __init__(self, delta: float = 1e-5, budget: Optional[float] = None) -> None:
        self.delta = float(delta)
        self.budget = None if budget is None else float(budget)
        self.accountants: dict[str, RDPAccountant] = {}
        self.stopped: dict[str, int] = {}
        self.records: list[dict] = []

    def epsilon(self, client: str) -> Optional[float]:
        """ε spent so far by ``client`` (``None`` for a client without DP-SGD)."""
        acc = self.accountants.get(client)
        return None if acc is None else float(acc.get_epsilon(self.delta))

    def allows(self, client: str, setting: Optional[DPSetting], round_index: int) -> bool:
        """Whether ``client`` may take part in ``round_index`` without exceeding the budget."""
        if client in self.stopped:
            return False
        if setting is None or self.budget is None:
            return True
        trial = RDPAccountant()
        trial.set_state_dict(self.accountants[client].state_dict()) if client in self.accountants else None
        trial.step(setting.noise_multiplier, setting.sample_rate, setting.steps)
        eps = float(trial.get_epsilon(self.delta))
        if eps > self.budget:
            self.stopped[client] = int(round_index)
            logger.warning(
                "privbox fl: client %s stops participating at round %d: its privacy budget is spent "
                "(epsilon would reach %.4g > budget %.4g at delta %g)", client, round_index, eps, self.budget, self.delta,
            )
            return False
        return True

    def record(self, client: str, setting: Optional[DPSetting], round_index: int) -> Optional[float]:
        """Compose one round the client took part in; returns its ε so far (``None`` without DP-SGD)."""
        if setting is None:
            return None
        acc = self.accountants.setdefault(client, RDPAccountant())
        acc.step(setting.noise_multiplier, setting.sample_rate, setting.steps)
        eps = float(acc.get_epsilon(self.delta))
        self.records.append({
            "round": int(round_index), "client": client, "epsilon": eps, "delta": self.delta,
            "noise_multiplier": setting.noise_multiplier, "sample_rate": setting.sample_rate,
            "steps": setting.steps, "sample_rate_source": setting.sample_rate_source,
        })
        return eps

    def state_dict(self) -> dict:
        return {
            "delta": self.delta, "budget": self.budget, "stopped": dict(self.stopped), "records": list(self.records),
            "accountants": {k: v.state_dict() for k, v in self.accountants.items()},
        }

    def set_state_dict(self, state: dict) -> None:
        self.stopped = {k: int(v) for k, v in state.get("stopped", {}).items()}
        self.records = list(state.get("records", []))
        self.accountants = {}
        for name, acc_state in state.get("accountants", {}).items():
            acc = RDPAccountant()
            acc.set_state_dict(acc_state)
            self.accountants[name] = acc
