"""Hyper-parameter search on a *simulation* update (ALGORITHMS.md §4.8, after E2EGI).

The attacker cannot score a reconstruction of the client's batch: it has no ground truth. What it
has is the global model θ0, the client's batch size, BN mode, normalisation and label policy, and
data of its own. So it builds a **simulation update** from a surrogate batch of its own
(:mod:`.simulation`), where the ground truth is known, and tunes the attack there over the ranges
the registries declare (:mod:`.space`) with successive halving or Optuna (:mod:`.search`). Then
the real attack runs on the target with the best values (:meth:`TuningResult.best_config`).

**Never tune on the target itself** (E2EGI's README "demo" does): that uses the ground truth the
attacker does not have, and numbers obtained so are not attack results.
"""

from .search import HyperparameterSearch, TrialRecord, TuningResult, successive_halving_rungs
from .simulation import (
    build_model_for_update,
    estimate_distinct_labels,
    reconstruction_mse,
    simulation_update,
    surrogate_batch,
)
from .space import (
    SearchDimension,
    apply_params,
    default_parameters,
    default_ranges,
    search_space,
    tunable_parameters,
)

__all__ = [
    "SearchDimension",
    "TrialRecord",
    "TuningResult",
    "HyperparameterSearch",
    "build_model_for_update",
    "default_parameters",
    "default_ranges",
    "tunable_parameters",
    "search_space",
    "apply_params",
    "estimate_distinct_labels",
    "surrogate_batch",
    "simulation_update",
    "reconstruction_mse",
    "successive_halving_rungs",
]
