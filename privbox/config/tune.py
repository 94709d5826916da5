"""The ``tune`` section: the hyper-parameter search of ``privbox tune`` (ALGORITHMS.md §4.8)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..core.errors import ConfigError
from ..core.fields import described
from .checks import choose, positive

__all__ = ["TuneSection"]


@dataclass
class TuneSection:
    """Hyper-parameter search on a simulation update built from the attacker's own data (§4.8)."""

    trials: int = described(16, "number of sampled configurations")
    budget: int = described(5000, "attack iterations per trial (the paper: 5000)")
    record_from: int = described(2000, "first iteration at which trials are compared (the paper: 2000)")
    sampler: str = described("random", "'random' (built in, seeded, successive halving) or 'optuna' "
                                "(TPE + median pruning; pip install \"privbox[tune]\")", choices=("random", "optuna"))
    reduction_factor: int = described(4, "successive halving keeps 1/reduction_factor of the trials at each rung")
    seed: int = described(0, "seed of the sampler")
    surrogate_seed: int = described(1, "seed of the attacker's surrogate batch (labels and image choice)")
    surrogate_images: str = described("samples", "the attacker's own data, as capture.images; with 'samples' the "
                                          "embedded images after the first B are preferred")
    distinct_labels: Optional[int] = described(None, "label repetition of the surrogate batch; null: the target's "
                                              "(from shared labels, else counted by LLG label recovery)")
    params: Optional[list[str]] = described(None, "what to tune: names from the tunable tables below (engine "
                                                  "parameters, regularizer weights, <regularizer>.<option>); "
                                                  "null: lr and the tunable weights of the regularizers the attack uses")
    ranges: dict[str, list[Any]] = described({}, "search range per parameter, [low, high] or [low, high, log]; "
                                                 "default: the range its registry entry declares")
    run_best: bool = described(True, "after the search, run the attack on the target with the best values")

    def __post_init__(self) -> None:
        positive("tune", trials=self.trials, budget=self.budget, distinct_labels=self.distinct_labels)
        if self.record_from < 0:
            raise ConfigError(f"tune.record_from must be >= 0, got {self.record_from}")
        if self.reduction_factor < 2:
            raise ConfigError(f"tune.reduction_factor must be >= 2, got {self.reduction_factor}")
        choose("tune", "sampler", self.sampler, ("random", "optuna"))
        from ..attacks.tuning.space import tunable_parameters

        tunable = tunable_parameters()
        for name in list(self.params or []) + list(self.ranges):
            if name not in tunable:
                raise ConfigError(f"tune: unknown parameter {name!r}; tunable parameters are {tunable}")
