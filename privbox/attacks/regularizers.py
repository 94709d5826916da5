"""Image priors and regularizers R_r(x̂) (ALGORITHMS.md §3).

A regularizer is a class registered by name. The engine builds each one with its weight and
options, calls :meth:`Regularizer.attach` once (it may register forward hooks on the model and
read what it needs from the update), evaluates it after every forward pass, and calls
:meth:`Regularizer.detach` at the end. A term with weight 0 is never evaluated.

Means over the batch go through the active collective's ``batch_mean`` (a plain mean in one
process): under ``--distributed`` a rank holds a shard of the batch, and the regularizer must
still be the one of the global batch (ALGORITHMS.md §4.9).
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

import numpy as np
import paddle
import paddle.nn as nn

from ..core.bn import BN_TYPES, batch_moments
from ..core.update import ClientUpdate, MissingCapabilityError
from ..core.errors import ConfigError
from ..core.registry import Range, Registry
from ..distributed.collective import active as active_collective

REGULARIZERS: Registry[type] = Registry("regularizer")
_EPS = 1e-12


class Regularizer:
    """Base class. Subclasses implement :meth:`__call__` and, if needed, attach/detach."""

    requires: tuple[str, ...] = ()

    def __init__(self, weight: float, **options: Any) -> None:
        if options:
            raise ConfigError(f"{type(self).__name__} takes no options {sorted(options)}; give only its weight")
        self.weight = float(weight)

    def attach(self, model: nn.Layer, update: ClientUpdate, context: dict) -> None:
        """Prepare (hooks, targets). ``context`` is shared with the engine and orchestrators."""

    def detach(self) -> None:
        """Remove hooks."""

    def __call__(self, x: paddle.Tensor) -> paddle.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def _total_variation(x: paddle.Tensor) -> paddle.Tensor:
    mean = active_collective().batch_mean
    dx = mean((x[:, :, :, 1:] - x[:, :, :, :-1]).abs())
    dy = mean((x[:, :, 1:, :] - x[:, :, :-1, :]).abs())
    return dx + dy


@REGULARIZERS.register("tv", description="anisotropic mean-L1 total variation (inversefed, E2EGI)",
                       tunable={"weight": Range(1e-6, 0.1, log=True)})
class TotalVariation(Regularizer):
    """Anisotropic mean-L1 TV: mean|∂x/∂w| + mean|∂x/∂h| (inversefed, E2EGI)."""

    def __call__(self, x: paddle.Tensor) -> paddle.Tensor:
        return _total_variation(x)


@REGULARIZERS.register("tv4", description="four-direction TV, L2 (Frobenius) plus optional L1 part (NVIDIA)",
                       tunable={"weight": Range(1e-6, 0.1, log=True), "l1_weight": Range(0.0, 1.0)})
class FourDirectionTV(Regularizer):
    """NVIDIA's four-direction TV: ``l2`` weight · Σ_d ‖D_d‖_F + ``l1`` weight · Σ_d mean|D_d|.

    The engine's weight scales the L2 (Frobenius, not squared) part; ``l1_weight`` is relative.
    """

    def __init__(self, weight: float, l1_weight: float = 0.0) -> None:
        super().__init__(weight)
        self.l1_weight = float(l1_weight)

    def __call__(self, x: paddle.Tensor) -> paddle.Tensor:
        diffs = [
            x[:, :, :, 1:] - x[:, :, :, :-1],
            x[:, :, 1:, :] - x[:, :, :-1, :],
            x[:, :, 1:, :-1] - x[:, :, :-1, 1:],
            x[:, :, :-1, :-1] - x[:, :, 1:, 1:],
        ]
        collective = active_collective()
        value = paddle.add_n([paddle.sqrt(collective.sum((d * d).sum()) + _EPS) for d in diffs])
        if self.l1_weight:
            value = value + self.l1_weight / max(self.weight, _EPS) * paddle.add_n([collective.batch_mean(d.abs()) for d in diffs])
        return value


@REGULARIZERS.register("image_norm", description="mean per-sample L2 norm of the image (E2EGI --input-norm, NVIDIA l2)",
                       tunable={"weight": Range(-1e-6, 0.0)})
class ImageNorm(Regularizer):
    """mean_i ‖x̂_i‖₂ over each sample's C·H·W values (E2EGI ``--input-norm``, NVIDIA ``l2``)."""

    def __call__(self, x: paddle.Tensor) -> paddle.Tensor:
        flat = x.reshape([x.shape[0], -1])
        return active_collective().batch_mean(paddle.sqrt((flat * flat).sum(axis=1) + _EPS))


def recover_bn_statistics(
    global_state: dict[str, np.ndarray],
    buffer_delta: dict[str, np.ndarray],
    momentum: float = 0.9,
    convention: str = "paddle",
    steps: int = 1,
    bn_input_size: Optional[dict[str, int]] = None,
) -> dict[str, np.ndarray]:
    """Batch statistics from a BN running-statistic delta by EMA inversion (ALGORITHMS.md §3.4).

    Paddle: r_new = m·r_old + (1−m)·b, so b = (r_new − m·r_old)/(1−m) (m = 0.9 by default).
    PyTorch: r_new = (1−m)·r_old + m·b, so b = (r_new − (1−m)·r_old)/m (m = 0.1). Exact for one
    BN update; for ``steps`` = K > 1 the equal-statistics generalisation
    b̂ = (r_K − a^K·r_0)/(1 − a^K) is used, with a the weight on the old value. In the PyTorch
    convention the running variance is unbiased; give ``bn_input_size`` (N·H·W per layer prefix)
    to convert it to the biased variance the hooks measure.

    Returns ``{"<layer>.mean": …, "<layer>.var": …}`` keyed like ``bn_batch_stats``.
    """
    if convention not in ("paddle", "torch"):
        raise ValueError(f"convention must be 'paddle' or 'torch', got {convention!r}")
    keep = momentum if convention == "paddle" else 1.0 - momentum
    if not 0.0 <= keep < 1.0:
        raise ValueError(f"momentum {momentum} gives an old-value weight of {keep}, which must be in [0, 1)")
    decay = keep**steps
    stats: dict[str, np.ndarray] = {}
    for key, delta in buffer_delta.items():
        if key.endswith("._mean"):
            prefix, kind = key[: -len("._mean")], "mean"
        elif key.endswith("._variance"):
            prefix, kind = key[: -len("._variance")], "var"
        else:
            continue
        old = np.asarray(global_state[key], dtype=np.float64)
        new = old + np.asarray(delta, dtype=np.float64)
        value = (new - decay * old) / (1.0 - decay)
        if kind == "var" and convention == "torch" and bn_input_size and prefix in bn_input_size:
            n = bn_input_size[prefix]
            value = value * (n - 1) / n
        stats[f"{prefix}.{kind}"] = value.astype(np.float32)
    if not stats:
        raise MissingCapabilityError("the buffer delta holds no BatchNorm running statistics (_mean/_variance)")
    return stats


@REGULARIZERS.register(
    "bn",
    description="BN-statistics matching against exact, running or recovered statistics (DeepInversion, E2EGI, NVIDIA)",
    requires=("has_bn_batch_stats",),  # with the default source "exact"; see BNStatistics.requires
    tunable={"weight": Range(1e-6, 0.1, log=True), "first_bn_multiplier": Range(1.0, 10.0)},
)
class BNStatistics(Regularizer):
    """BN-statistics matching (DeepInversion; Yin et al., CVPR 2021; E2EGI; NVIDIA).

    R_BN = Σ_l c_l(‖μ_l − μ*_l‖₂ + ‖σ²_l − σ*²_l‖₂) over the BN layers' inputs, plain (not squared)
    L2 norms, with c_1 = ``first_bn_multiplier`` and 1 elsewhere. ``source`` picks the targets:
    ``exact`` (the update's ``bn_batch_stats``; raises if absent), ``running`` (θ0's running
    statistics) or ``recovered`` (EMA inversion of the update's running-statistic delta, §3.4).
    """

    def __init__(
        self,
        weight: float,
        source: str = "exact",
        first_bn_multiplier: float = 1.0,
        momentum: float = 0.9,
        convention: str = "paddle",
    ) -> None:
        super().__init__(weight)
        if source not in ("exact", "running", "recovered"):
            raise ConfigError(f"bn source must be 'exact', 'running' or 'recovered', got {source!r}")
        self.source = source
        self.first_bn_multiplier = float(first_bn_multiplier)
        self.momentum = momentum
        self.convention = convention
        self._handles: list = []
        self._inputs: dict[str, paddle.Tensor] = {}
        self._targets: dict[str, tuple[paddle.Tensor, paddle.Tensor]] = {}
        self._order: list[str] = []

    @property
    def requires(self) -> tuple[str, ...]:  # type: ignore[override]
        return {
            "exact": ("has_bn_batch_stats",),
            "running": ("has_global_state",),
            "recovered": ("has_bn_running_delta", "has_global_state"),
        }[self.source]

    def _target_stats(self, update: ClientUpdate, model: nn.Layer) -> dict[str, np.ndarray]:
        if self.source == "exact":
            if not update.bn_batch_stats:
                raise MissingCapabilityError(
                    "bn source 'exact' needs the update's bn_batch_stats (capture with share_bn_stats=True); "
                    "privbox never falls back to running statistics silently — choose source='running' or 'recovered'"
                )
            return update.bn_batch_stats
        if self.source == "recovered":
            return recover_bn_statistics(
                update.global_state, update.buffer_delta, self.momentum, self.convention, steps=max(update.meta.local_steps, 1)
            )
        stats = {}
        for name, layer in model.named_sublayers():
            if isinstance(layer, BN_TYPES):
                stats[f"{name}.mean"] = layer._mean.numpy()
                stats[f"{name}.var"] = layer._variance.numpy()
        return stats

    def attach(self, model: nn.Layer, update: ClientUpdate, context: dict) -> None:
        stats = self._target_stats(update, model)
        for name, layer in model.named_sublayers():
            if not isinstance(layer, BN_TYPES):
                continue
            if f"{name}.mean" not in stats:
                raise MissingCapabilityError(f"no BN target statistics for layer {name!r} (source {self.source!r})")
            self._targets[name] = (
                paddle.to_tensor(stats[f"{name}.mean"], dtype="float32"),
                paddle.to_tensor(stats[f"{name}.var"], dtype="float32"),
            )
            self._order.append(name)

            def hook(lay, inputs, output, _name=name):
                self._inputs[_name] = inputs[0]

            self._handles.append(layer.register_forward_post_hook(hook))
        if not self._order:
            raise MissingCapabilityError("the bn regularizer needs a model with BatchNorm layers")

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __call__(self, x: paddle.Tensor) -> paddle.Tensor:
        terms = []
        batch_mean = active_collective().batch_mean
        for i, name in enumerate(self._order):
            a = self._inputs[name]
            mean, var = batch_moments(a, batch_mean)
            target_mean, target_var = self._targets[name]
            term = paddle.sqrt(((mean - target_mean) ** 2).sum() + _EPS) + paddle.sqrt(((var - target_var) ** 2).sum() + _EPS)
            terms.append(term * (self.first_bn_multiplier if i == 0 else 1.0))
        return paddle.add_n(terms)


@REGULARIZERS.register("group", description="group consistency towards the orchestrator's seed consensus (Yin et al. 2021)",
                       tunable={"weight": Range(1e-4, 1.0, log=True)})
class GroupConsistency(Regularizer):
    """Group consistency R = mean((x̂_s − x̄)²) towards a consensus x̄ (Yin et al., CVPR 2021).

    The consensus lives in ``context["group_consensus"]`` (a NumPy array in model space) and is
    refreshed by the orchestrator (MLCO, or the GradInversion seed loop); with none set the term
    is zero.
    """

    def attach(self, model: nn.Layer, update: ClientUpdate, context: dict) -> None:
        self._context = context

    def __call__(self, x: paddle.Tensor) -> paddle.Tensor:
        consensus = self._context.get("group_consensus")
        if consensus is None:
            return paddle.zeros([])
        collective = active_collective()  # the consensus is a global batch; x a shard of it
        return collective.batch_mean((x - paddle.to_tensor(collective.shard(consensus), dtype=x.dtype)) ** 2)


def build_regularizers(spec: dict[str, Any]) -> list[Regularizer]:
    """Build regularizers from ``{name: weight}`` or ``{name: {"weight": w, **options}}``.

    Bad names, a missing weight or unknown options raise a :class:`ConfigError` naming the
    ``regularizers.<name>`` key and listing the valid options.
    """
    built = []
    for name, value in spec.items():
        options = dict(value) if isinstance(value, dict) else {"weight": value}
        if "weight" not in options:
            raise ConfigError(f"regularizer {name!r} needs a 'weight'", where=f"regularizers.{name}",
                              fix=f"write {{{name}: {{weight: w, ...}}}} or {{{name}: w}}")
        if float(options["weight"]) == 0.0:
            continue
        cls = REGULARIZERS.get(name)
        try:
            built.append(cls(**options))
        except TypeError as exc:
            valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "options")]
            raise ConfigError(f"invalid options {sorted(options)} ({exc})", where=f"regularizers.{name}",
                              fix=f"valid options are {valid}") from None
    return built
