"""Paper-faithful, editable attack presets.

Each function returns an :class:`AttackConfig` with the published defaults; pass keyword
overrides or call ``.replace(...)`` on the result, then ``build_attack(config)``. Every preset is
an entry of :data:`~privbox.attacks.registries.ATTACKS` that declares which engine and
orchestrator run it and what it requires from the update; the config it returns says the same
(``engine``, ``orchestrator``), so nothing dispatches on a preset's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from ..core.registry_view import RegistryView
from .config import AttackConfig, ConfigError
from .registries import ATTACKS

PresetFn = Callable[..., AttackConfig]


def register_preset(
    name: str,
    *,
    description: str,
    requires: tuple[str, ...] = (),
    engine: str = "auto",
    orchestrator: str = "restarts",
) -> Callable[[PresetFn], PresetFn]:
    """Register a preset function in :data:`ATTACKS`, declaring its engine and orchestrator.

    The function must return a config whose ``engine`` and ``orchestrator`` are the declared ones
    (a test checks every entry).
    """

    def decorator(fn: PresetFn) -> PresetFn:
        ATTACKS.add(name, fn, description=description, requires=requires, engine=engine, orchestrator=orchestrator)
        return fn

    return decorator


@register_preset("dlg", description="DLG: joint images + soft labels, L2 distance, L-BFGS (Zhu et al. 2019)",
                 requires=("has_gradients",))
def dlg(**overrides: Any) -> AttackConfig:
    """DLG (Zhu, Liu and Han, "Deep Leakage from Gradients", NeurIPS 2019).

    Joint optimisation of dummy images and soft-label logits, both N(0, I); squared L2
    gradient distance; L-BFGS with lr 1, history 100 and up to 20 inner iterations per step;
    300 outer steps; early stop when the distance falls below 1e-6 (iDLG repository).

    Deviation: privbox uses a strong-Wolfe line search by default (the DLG code takes fixed
    unit steps). With exact second-order gradients, fixed unit steps often throw the dummy
    image far outside the pixel range into a saturated-sigmoid plateau (measured on the DLG
    LeNet: 2 of 3 embedded images stuck near 5 dB), while the line search converged on all five
    test images (41-65 dB in 100 steps). Set ``lbfgs_line_search=None`` for the original rule.
    """
    base = AttackConfig(
        name="dlg",
        objective="l2",
        optimizer="lbfgs",
        lr=1.0,
        iterations=300,
        lbfgs_max_iter=20,
        lbfgs_history=100,
        lbfgs_line_search="strong_wolfe",
        label_strategy="joint",
        early_stop_loss=1e-6,
    )
    return base.replace(**overrides)


@register_preset("idlg", description="iDLG: analytic labels, then DLG on the images (Zhao et al. 2020)",
                 requires=("has_gradients",))
def idlg(**overrides: Any) -> AttackConfig:
    """iDLG (Zhao, Mopuri and Bilen, "iDLG: Improved Deep Leakage from Gradients", 2020).

    The label comes analytically from the last layer's gradient (the sign rule at B = 1; at
    B > 1 privbox uses LLG's set-and-fill, Wainakh et al. 2022), then DLG optimises the images
    only, with that hard label fixed.
    """
    return dlg(name="idlg", label_strategy="recover", label_method="auto").replace(**overrides)


#: ``{name: preset function}``, a live read-only view of :data:`ATTACKS`.
PRESETS: Mapping[str, PresetFn] = RegistryView(ATTACKS)


def get_preset(name: str, **overrides: Any) -> AttackConfig:
    """Return the preset ``name`` with ``overrides`` applied (unknown names raise a
    :class:`ConfigError` listing the presets)."""
    if not isinstance(name, str) or name not in ATTACKS:
        raise ConfigError(f"unknown attack preset {name!r}; choose one of {ATTACKS.names()}")
    return ATTACKS.get(name)(**overrides)


@register_preset("inverting_gradients", description="Inverting Gradients: cosine + TV, signed Adam, box (Geiping et al. 2020)",
                 requires=("has_gradients",))
def inverting_gradients(**overrides: Any) -> AttackConfig:
    """Inverting Gradients (Geiping et al., NeurIPS 2020), inversefed's "ours" settings.

    Global cosine distance + α_TV·TV (1e-4); signed Adam lr 0.1 with ×0.1 steps at 3/8, 5/8 and
    7/8 of T = 24 000; box constraint; N(0, I) init; one restart. Labels: recovered from the
    update (iDLG at B = 1, LLG above) unless ``label_strategy="given"``.
    """
    base = AttackConfig(
        name="inverting_gradients",
        objective="cosine",
        optimizer="adam",
        lr=0.1,
        iterations=24000,
        schedule="step_ig",
        regularizers={"tv": 1e-4},
        signed=True,
        boxed=True,
        label_strategy="recover",
        label_method="auto",
    )
    return base.replace(**overrides)


@register_preset("gradinversion", description="GradInversion-style: L2 + BN (running) + TV + image norm, noise, Yin labels (Yin et al. 2021)",
                 requires=("has_gradients", "has_global_state"))
def gradinversion(**overrides: Any) -> AttackConfig:
    """GradInversion-style attack (Yin et al., CVPR 2021; breaching's See-Through-Gradients config).

    w_g·Σ‖ĝ − g‖² with w_g 1e-4, BN-statistics matching α_BN 0.1 against θ0's running
    statistics, TV 1e-4, image L2 1e-6, Langevin noise κ 0.01, Adam lr 0.1 with cosine decay,
    20 000 iterations, labels by Yin's row-min. The group-consistency term (S = 4 seeds,
    α_G 0.01, mean consensus) is added by :func:`privbox.attacks.group.run_group_consistency`.
    """
    base = AttackConfig(
        name="gradinversion",
        objective="l2",
        gradient_weight=1e-4,
        optimizer="adam",
        lr=0.1,
        iterations=20000,
        schedule="cosine",
        regularizers={"bn": {"weight": 0.1, "source": "running"}, "tv": 1e-4, "image_norm": 1e-6},
        noise=0.01,
        boxed=True,
        label_strategy="recover",
        label_method="yin",
    )
    return base.replace(**overrides)


@register_preset("e2egi_single", description="E2EGI single seed group: cosine + TV + exact BN, signed Adam, noise, box (Li et al.)",
                 requires=("has_gradients", "has_labels", "has_bn_batch_stats"))
def e2egi_single(**overrides: Any) -> AttackConfig:
    """E2EGI single-group attack (Li et al.; E2EGI README defaults for ResNet-50, B = 8, n_seed 1).

    Global cosine + TV 0.0114 + BN matching 0.0357 against exact batch statistics; signed Adam,
    lr0 0.1046 with E2EGI's cosine (floor 1e-3, period T+10), noise κ 0.2·lr, box, T 24 000,
    best iterate by gradient loss (``--min-grads-loss``); labels known. The paper's method runs
    this rule inside MLCO: :func:`e2egi`.
    """
    base = AttackConfig(
        name="e2egi_single",
        objective="cosine",
        optimizer="adam",
        lr=0.1046,
        iterations=24000,
        schedule="cosine_e2egi",
        regularizers={"tv": 0.0114, "bn": {"weight": 0.0357, "source": "exact"}},
        noise=0.2,
        signed=True,
        boxed=True,
        return_best=True,
        label_strategy="given",
    )
    return base.replace(**overrides)


@register_preset("e2egi", description="E2EGI with MLCO: 8 seeds, init/inner/final phases, greedy seed combination (Li et al.)",
                 requires=("has_gradients", "has_labels", "has_bn_batch_stats"), engine="gradient", orchestrator="mlco")
def e2egi(**overrides: Any) -> AttackConfig:
    """E2EGI (Li et al.; ALGORITHMS.md §4.6): the single-group rule of :func:`e2egi_single` run by
    the ``mlco`` orchestrator with the paper's MLCO settings (S = 8 seeds, T_in = 1000 inner
    iterations, α_G = 0.01, final phase from the fresh group; ``orchestrator_params`` changes them).

    ``GradientInversion(e2egi())`` runs one group of the rule; ``build_attack(e2egi())`` runs MLCO.
    """
    return e2egi_single(name="e2egi", engine="gradient", orchestrator="mlco").replace(**overrides)


@register_preset("ga", description="the Label-based-Defense gradient attack: E2EGI's rule, TV 0.1, LLG labels, TV early stop",
                 requires=("has_gradients",))
def ga(**overrides: Any) -> AttackConfig:
    """The gradient attack (GA) of the Label-based-Defense study ("Label is the culprit").

    E2EGI's update rule, always signed and boxed, lr 0.1, TV 0.1, no BN term, no noise,
    15 000 iterations, LLG labels, early stop once the TV of the best iterate is below 0.28.
    """
    return e2egi_single(
        name="ga",
        lr=0.1,
        iterations=15000,
        regularizers={"tv": 0.1},
        noise=0.0,
        label_strategy="recover",
        label_method="llg",
        early_stop_tv=0.28,
    ).replace(**overrides)


@register_preset("nvidia_fl", description="NVIDIA FL update inversion: unrolled local SGD, BN from running-stat deltas (Hatamizadeh et al. 2023)",
                 requires=("has_weight_delta", "has_local_hparams", "has_global_state", "has_bn_running_delta"), engine="fedavg")
def nvidia_fl(**overrides: Any) -> AttackConfig:
    """NVIDIA FL update inversion (Hatamizadeh et al., "Do Gradient Inversion Attacks Make
    Federated Learning Unsafe?", IEEE TMI 2023; ``config_inversion.json``), for
    :class:`privbox.attacks.fedavg.FedAvgInversion`.

    Adam lr 0.1 with β (0.9, 0.9), warm-up (100 iterations) + cosine to 0, 40 000 iterations;
    update matching Σ_p‖ΔŴ_p − ΔW_p‖ (``l2_norm``) weighted α_grad = 1e-3; BN matching α_BN 0.1
    against batch statistics recovered from the running-statistic delta (EMA convention and
    momentum default to the victim's: Paddle, the model's momentum); four-direction TV
    α_TV2 = 1e-4; image norm α_l2 = 1e-5; label logits optimised jointly; no box, no noise (the
    original's energy noise had no effect). Pass a prior image to ``run(..., prior=...)`` for
    NVIDIA's prior-image initialisation. ``extra["mode"]``: ``"differentiable"`` (unrolled local
    SGD, default) or ``"reference"`` (the original code's effective behaviour, ALGORITHMS.md
    §4.7); other FedAvg options are documented in ``privbox.attacks.fedavg.FedAvgOptions``.
    """
    extra = {"mode": "differentiable"}
    extra.update(overrides.pop("extra", {}))
    base = AttackConfig(
        name="nvidia_fl",
        engine="fedavg",
        objective="l2_norm",
        gradient_weight=1e-3,
        optimizer="adam",
        lr=0.1,
        adam_betas=(0.9, 0.9),
        iterations=40000,
        schedule="warmup_cosine",
        regularizers={"bn": {"weight": 0.1, "source": "recovered"}, "tv4": 1e-4, "image_norm": 1e-5},
        label_strategy="joint",
        extra=extra,
    )
    return base.replace(**overrides)

