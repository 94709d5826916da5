"""The defenses registry: every defense a client can apply, by name (ALGORITHMS.md §6).

An entry's ``item`` is a builder ``params -> defense object``; its ``extra`` says

* ``kind``: ``"optimizer"`` (acts inside local training on every step:
  :class:`~privbox.defenses.local.LocalStepDefense`) or ``"update_transform"`` (acts on what the
  client sends: :class:`~privbox.defenses.transforms.UpdateDefense`);
* ``seeded``: the builder takes a ``seed``; the client passes its own when ``params`` has none.

``requires`` names what the defense needs from the *client* (not from the update: a defense acts
before anything is sent): ``"no_train_bn"``, no BatchNorm that uses batch statistics, as DP-SGD's
per-sample gradients need. :func:`unsupported_reason` checks these against a model, so a runner can
skip an impossible pair and say why. ``tunable`` gives the ranges the matrix and the tuner explore. Adding a defense is one ``@DEFENSES.register(...)`` in one file::

    @DEFENSES.register("sign", kind="update_transform", description="send only the signs")
    def _sign(params):
        return SignOnly()
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from ..core.errors import ConfigError
from ..core.registry import Range, Registry
from .dgc import DGCCompressor
from .local import BatchClipStep, DGCStep, DPSGDStep
from .transforms import BatchClipNoise, GaussianPrivacy, TopKPruning

__all__ = ["DEFENSES", "DEFENSE_KINDS", "CLIENT_REQUIREMENTS", "build_defense", "defense_kind", "unsupported_reason"]

DEFENSE_KINDS = ("optimizer", "update_transform")

Builder = Callable[[Mapping[str, Any]], Any]


class DefenseRegistry(Registry[Builder]):
    """A :class:`Registry` whose entries must declare a valid ``kind``."""

    def add(self, name: str, item: Builder, **kwargs: Any):  # type: ignore[override]
        kind = kwargs.get("kind")
        if kind not in DEFENSE_KINDS:
            raise ValueError(f"defense {name!r}: kind must be one of {DEFENSE_KINDS}, got {kind!r}")
        return super().add(name, item, **kwargs)


DEFENSES: DefenseRegistry = DefenseRegistry("defense")


def defense_kind(name: str) -> str:
    """``"optimizer"`` or ``"update_transform"`` for a registered defense."""
    return DEFENSES.entry(name).extra["kind"]


def _train_bn_layers(model: Any) -> list:
    from .per_sample import _BN_TYPES, _bn_is_frozen

    return [name for name, layer in model.named_sublayers() if isinstance(layer, _BN_TYPES) and not _bn_is_frozen(layer)]


#: what a defense may require of the client, and how to check it on a model (None: satisfied)
CLIENT_REQUIREMENTS: dict[str, Callable[[Any, str], Optional[str]]] = {
    "no_train_bn": lambda model, bn_mode: (
        f"BatchNorm layers {_train_bn_layers(model)[:3]} use batch statistics (per-sample gradients do not exist); "
        "use a model without BatchNorm or bn_mode='eval'"
        if bn_mode == "train" and _train_bn_layers(model) else None
    ),
}


def unsupported_reason(name: str, model: Any, bn_mode: str = "train") -> Optional[str]:
    """Why the defense ``name`` cannot run on a client with ``model`` in ``bn_mode``, or None."""
    for requirement in sorted(DEFENSES.entry(name).requires):
        check = CLIENT_REQUIREMENTS.get(requirement)
        if check is None:
            raise ConfigError(f"defense {name!r} requires {requirement!r}, which privbox cannot check",
                              fix=f"use one of {sorted(CLIENT_REQUIREMENTS)}")
        reason = check(model, bn_mode)
        if reason:
            return f"{name}: {reason}"
    return None


def build_defense(name: str, params: Optional[Mapping[str, Any]] = None, seed: Optional[int] = None) -> Any:
    """Build the defense ``name`` from ``params`` (a seeded entry gets ``seed`` unless ``params`` has one).

    Raises :class:`ConfigError` for an unknown name or parameters the defense does not take.
    """
    entry = DEFENSES.entry(name)
    values = dict(params or {})
    if entry.extra.get("seeded") and "seed" not in values and seed is not None:
        values["seed"] = int(seed)
    try:
        return entry.item(values)
    except TypeError as exc:
        raise ConfigError(f"bad parameters {sorted(values)} ({exc})", where=f"defenses.{name}.params",
                          fix=f"see the parameters of the {name!r} defense (privbox.defenses.DEFENSES)") from None


@DEFENSES.register(
    "dp_sgd", kind="optimizer", seeded=True, requires={"no_train_bn"},
    description="DP-SGD (Abadi et al. 2016): per-sample clipping to C, Gaussian noise sigma*C, RDP accountant",
    tunable={"noise_multiplier": Range(0.1, 10.0, log=True), "max_grad_norm": Range(0.01, 10.0, log=True)},
)
def _dp_sgd(params: Mapping[str, Any]) -> DPSGDStep:
    return DPSGDStep(**params)


@DEFENSES.register(
    "dgc_momentum", kind="optimizer",
    description="Deep Gradient Compression as the local optimiser (Lin et al. 2018): sparse momentum-corrected steps",
    tunable={"sparsity": Range(0.5, 0.999), "momentum": Range(0.0, 0.99)},
)
def _dgc_momentum(params: Mapping[str, Any]) -> DGCStep:
    return DGCStep(**params)


@DEFENSES.register(
    "batch_clip_step", kind="optimizer",
    description="clip every local step's whole-batch gradient to C (Label-based-Defense DP-SGD with local "
                "iterations; no DP guarantee)",
    tunable={"max_norm": Range(0.01, 10.0, log=True)},
)
def _batch_clip_step(params: Mapping[str, Any]) -> BatchClipStep:
    return BatchClipStep(**params)


@DEFENSES.register(
    "gaussian_privacy", kind="update_transform", seeded=True,
    description="NVIDIA FLARE GaussianPrivacy: noise sigma0 x percentile of |update| on every entry (heuristic, no DP)",
    tunable={"sigma0": Range(0.0, 50.0), "percentile": Range(50.0, 100.0)},
)
def _gaussian_privacy(params: Mapping[str, Any]) -> GaussianPrivacy:
    return GaussianPrivacy(**params)


@DEFENSES.register(
    "top_k", kind="update_transform",
    description="gradient pruning: keep the largest (1 - prune_ratio) fraction of |values| (Zhu et al. 2019)",
    tunable={"prune_ratio": Range(0.0, 0.999)},
)
def _top_k(params: Mapping[str, Any]) -> TopKPruning:
    return TopKPruning(**params)


@DEFENSES.register(
    "dgc", kind="update_transform",
    description="Deep Gradient Compression of the sent update (Lin et al. 2018): stateful sparse momentum correction",
    tunable={"sparsity": Range(0.5, 0.999), "momentum": Range(0.0, 0.99)},
)
def _dgc(params: Mapping[str, Any]) -> DGCCompressor:
    return DGCCompressor(**params)


@DEFENSES.register(
    "batch_clip_noise", kind="update_transform", seeded=True,
    description="whole-update clip to C plus N(0, (sigma C)^2) (the Label-based-Defense 'DP-SGD'; no DP guarantee)",
    tunable={"max_norm": Range(0.01, 10.0, log=True), "noise_multiplier": Range(0.0, 1.0)},
)
def _batch_clip_noise(params: Mapping[str, Any]) -> BatchClipNoise:
    return BatchClipNoise(**params)
