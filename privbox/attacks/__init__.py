"""Gradient-inversion attacks: one engine, many presets."""

from .config import AttackConfig, ConfigError
from .dlg import DLG, IDLG
from .engine import GradientInversion, IterationInfo
from .objectives import OBJECTIVES
from .presets import PRESETS, dlg, e2egi, ga, get_preset, gradinversion, idlg, inverting_gradients
from .regularizers import REGULARIZERS, recover_bn_statistics
from .schedules import SCHEDULES
from .reconstruction import Reconstruction
from .group import Combination, GroupResult, combine, run_group_consistency
from .mlco import MLCOPhase, MLCOPhaseRecord, MLCOResult, mlco_plan, run_mlco
from .fedavg import FedAvgInversion, FedAvgOptions, LocalTraining, prior_batch, simulate_local_sgd
from .presets import nvidia_fl

__all__ = [
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
    "ga",
    "REGULARIZERS",
    "SCHEDULES",
    "recover_bn_statistics",
    "get_preset",
    "Reconstruction",
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
