"""Paper-faithful, editable attack presets.

Each function returns an :class:`AttackConfig` with the published defaults; pass keyword
overrides or call ``.replace(...)`` on the result, then build ``GradientInversion(config)``.
"""

from __future__ import annotations

from typing import Any

from .config import AttackConfig


def dlg(**overrides: Any) -> AttackConfig:
    """DLG (Zhu, Liu and Han, "Deep Leakage from Gradients", NeurIPS 2019).

    Joint optimisation of dummy images and soft-label logits, both N(0, I); squared L2
    gradient distance; L-BFGS with lr 1, history 100 and up to 20 inner iterations per step;
    300 outer steps; early stop when the distance falls below 1e-6 (iDLG repository).
    """
    base = AttackConfig(
        name="dlg",
        objective="l2",
        optimizer="lbfgs",
        lr=1.0,
        iterations=300,
        lbfgs_max_iter=20,
        lbfgs_history=100,
        label_strategy="joint",
        early_stop_loss=1e-6,
    )
    return base.replace(**overrides)


def idlg(**overrides: Any) -> AttackConfig:
    """iDLG (Zhao, Mopuri and Bilen, "iDLG: Improved Deep Leakage from Gradients", 2020).

    The label comes analytically from the last layer's gradient (the sign rule at B = 1; at
    B > 1 privbox uses LLG's set-and-fill, Wainakh et al. 2022), then DLG optimises the images
    only, with that hard label fixed.
    """
    return dlg(name="idlg", label_strategy="recover", label_method="auto").replace(**overrides)


PRESETS = {"dlg": dlg, "idlg": idlg}


def get_preset(name: str, **overrides: Any) -> AttackConfig:
    """Return the preset ``name`` with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown attack preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name](**overrides)
