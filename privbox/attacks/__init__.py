"""Gradient-inversion attacks: one engine, many presets, built from plain specs.

``build_attack(spec).run(model, update) -> Reconstruction``, where spec is a preset name of
:data:`ATTACKS`, a mapping or an :class:`AttackConfig`. The parts come from registries:
:data:`ENGINES`, :data:`ORCHESTRATORS`, :data:`OBJECTIVES`, :data:`REGULARIZERS`,
:data:`SCHEDULES` (and ``privbox.labels.LABEL_METHODS``).
"""

from .config import AttackConfig, ConfigError
from .registries import ATTACKS, ENGINES, ORCHESTRATORS
from .dlg import DLG, IDLG
from .engine import GradientInversion, IterationInfo
from .objectives import OBJECTIVES
from .presets import PRESETS, dlg, e2egi, e2egi_single, ga, get_preset, gradinversion, idlg, inverting_gradients, nvidia_fl
from .regularizers import REGULARIZERS, recover_bn_statistics
from .schedules import SCHEDULES
from .reconstruction import Reconstruction
from .orchestrators import (
    MLCO,
    Combination,
    Group,
    GroupResult,
    MLCOPhase,
    MLCOPhaseRecord,
    MLCOResult,
    Orchestrator,
    Restarts,
    combine,
    mlco_plan,
    run_group_consistency,
    run_mlco,
)
from .fedavg import FedAvgInversion, FedAvgOptions, LocalTraining, prior_batch, simulate_local_sgd
from .build import Attack, build_attack, resolve_config

__all__ = [
    "ATTACKS",
    "ENGINES",
    "ORCHESTRATORS",
    "Attack",
    "build_attack",
    "resolve_config",
    "AttackConfig",
    "ConfigError",
    "DLG",
    "IDLG",
    "GradientInversion",
    "IterationInfo",
    "OBJECTIVES",
    "PRESETS",
    "dlg",
    "idlg",
    "inverting_gradients",
    "gradinversion",
    "e2egi",
    "e2egi_single",
    "ga",
    "REGULARIZERS",
    "SCHEDULES",
    "recover_bn_statistics",
    "get_preset",
    "Reconstruction",
    "Orchestrator",
    "Restarts",
    "Group",
    "MLCO",
    "Combination",
    "GroupResult",
    "combine",
    "run_group_consistency",
    "MLCOPhase",
    "MLCOPhaseRecord",
    "MLCOResult",
    "mlco_plan",
    "run_mlco",
    "FedAvgInversion",
    "FedAvgOptions",
    "LocalTraining",
    "nvidia_fl",
    "prior_batch",
    "simulate_local_sgd",
]
