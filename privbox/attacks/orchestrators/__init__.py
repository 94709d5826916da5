"""Orchestrators: how runs of one engine combine into one :class:`~privbox.attacks.Reconstruction`
(``restarts``, ``group``, ``mlco``), each an entry of :data:`privbox.attacks.ORCHESTRATORS`."""

from .base import NoOptions, Orchestrator
from .group import Combination, Group, GroupOptions, GroupResult, combine, run_group_consistency
from .mlco import MLCO, MLCOOptions, MLCOPhase, MLCOPhaseRecord, MLCOResult, mlco_plan, run_mlco
from .restarts import Restarts

__all__ = [
    "Orchestrator",
    "NoOptions",
    "Restarts",
    "Group",
    "GroupOptions",
    "GroupResult",
    "Combination",
    "combine",
    "run_group_consistency",
    "MLCO",
    "MLCOOptions",
    "MLCOPhase",
    "MLCOPhaseRecord",
    "MLCOResult",
    "mlco_plan",
    "run_mlco",
]
