"""Gradient-inversion attacks: one engine, many presets."""

from .config import AttackConfig, ConfigError
from .dlg import DLG, IDLG
from .engine import GradientInversion, IterationInfo
from .objectives import OBJECTIVES
from .presets import PRESETS, dlg, get_preset, idlg
from .reconstruction import Reconstruction

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
    "get_preset",
    "Reconstruction",
]
