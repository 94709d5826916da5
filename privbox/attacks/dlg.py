"""DLG and iDLG as named attacks on the shared engine."""

from __future__ import annotations

from .config import AttackConfig
from .engine import GradientInversion
from .presets import dlg, idlg


class DLG(GradientInversion):
    """Deep Leakage from Gradients (Zhu et al., NeurIPS 2019): joint images + soft labels, L-BFGS."""

    @classmethod
    def default_config(cls) -> AttackConfig:
        return dlg()


class IDLG(GradientInversion):
    """iDLG (Zhao et al., 2020): analytic label from the last layer, then DLG on the images."""

    @classmethod
    def default_config(cls) -> AttackConfig:
        return idlg()
