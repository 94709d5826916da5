"""FedAvg weight-update inversion, differentiable mode (Geiping et al., NeurIPS 2020;
Hatamizadeh et al., IEEE TMI 2023): the client's local training is simulated on the dummy data by
the twin :func:`~privbox.attacks.fedavg.simulate.simulate_local_sgd` and differentiated through,
L = w·D(θ_K − θ_0, ΔW) + α_BN·R_BN(recovered) [+ α_Δr·Σ‖Δr̂ − Δr‖] + priors, on the shared
engine (:class:`~privbox.attacks.engine.GradientInversion`) through its ``matching_loss`` hook."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import paddle
import paddle.nn as nn

from ...core.errors import ConfigError
from ...core.update import ClientUpdate, MissingCapabilityError
from ...nn.convert import trainable_parameters
from ...nn.functional_model import substitute_parameters
from ..config import AttackConfig
from ..engine import GradientInversion, SnapshotCallback
from ..objectives import OBJECTIVES
from ..presets import nvidia_fl
from ..reconstruction import Reconstruction
from .options import FedAvgOptions
from .prior import prior_batch
from .reference import pixels, run_reference
from .simulate import simulate_local_sgd

__all__ = ["FedAvgInversion"]

_EPS = 1e-12


@dataclass
class _RunContext:
    """What the matching hook needs from the update (set per run)."""

    names: list[str]
    lr: float
    batch_size: int
    epochs: int
    steps: int
    momentum: float
    convention: str
    start_running: dict[str, paddle.Tensor]
    observed_running: dict[str, paddle.Tensor]
    bn_params: Optional[dict[str, paddle.Tensor]]
    bn_running: dict[str, paddle.Tensor]


class FedAvgInversion(GradientInversion):
    """Invert a FedAvg weight update (Geiping et al., NeurIPS 2020; Hatamizadeh et al., IEEE TMI 2023).

    Args:
        config: an :class:`AttackConfig`; default :func:`privbox.attacks.presets.nvidia_fl`.
            FedAvg options: the typed section ``config.fedavg`` (:class:`FedAvgOptions`), or the
            legacy keys of ``config.extra``.
        overrides: fields to change on ``config``.

    ``attack.run(model, update, prior=...)`` needs a ``kind="weight_delta"`` update with the local
    lr, b, E (``privbox.fl.capture.compute_fedavg_update`` records them) and θ0. It reconstructs
    ``meta.num_samples`` images (reference mode: NVIDIA's ⌈n/b⌉·b).
    """

    def __init__(self, config: Optional[AttackConfig] = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.options = FedAvgOptions.from_config(self.config)
        self._ctx: Optional[_RunContext] = None

    @classmethod
    def default_config(cls) -> AttackConfig:
        return nvidia_fl()

    # ------------------------------------------------------------- threat model
    def check_update(self, update: ClientUpdate) -> None:
        """Raise a clear error unless ``update`` is a FedAvg delta this attack can use."""
        if update.kind != "weight_delta":
            raise MissingCapabilityError(
                f"{type(self).__name__} inverts FedAvg weight deltas (kind 'weight_delta'), got a "
                f"{update.kind!r} update; invert FedSGD gradients with GradientInversion, or capture "
                "the update with privbox.fl.capture.compute_fedavg_update"
            )
        meta = update.meta
        if not meta.lr or meta.lr <= 0:
            raise MissingCapabilityError("the update's metadata has no local lr; FedAvg inversion needs the lr the client used")
        if meta.batch_size < 1 or meta.num_samples < 1 or meta.local_epochs < 1:
            raise MissingCapabilityError(
                f"the update's metadata needs batch_size, num_samples and local_epochs >= 1, got "
                f"{meta.batch_size}, {meta.num_samples}, {meta.local_epochs}"
            )
        if meta.optimizer != "sgd":
            raise MissingCapabilityError(
                f"the client trained with {meta.optimizer!r}; the FedAvg twin simulates plain SGD local steps "
                "(privbox.fl.step.sgd_rule without momentum or weight decay)"
            )
        expected = meta.local_epochs * math.ceil(meta.num_samples / meta.batch_size)
        if meta.local_steps != expected:
            raise MissingCapabilityError(
                f"the update says K = {meta.local_steps} local steps, but E·ceil(n/b) = {expected} "
                f"(E {meta.local_epochs}, n {meta.num_samples}, b {meta.batch_size}); only plain "
                "FedAvg local SGD is simulated"
            )

    def required_capabilities(self, update: ClientUpdate) -> list[str]:
        required = super().required_capabilities(update)
        extra = ["has_global_state"] + (["has_bn_running_delta"] if self.options.bn_delta_weight > 0 else [])
        return required + [r for r in extra if r not in required]

    def num_images(self, update: ClientUpdate) -> int:
        meta = update.meta
        if self.options.reference:
            return math.ceil(meta.num_samples / meta.batch_size) * meta.batch_size
        return meta.num_samples

    def observed_tensors(self, update: ClientUpdate, named: list[tuple[str, paddle.Tensor]]) -> list[paddle.Tensor]:
        """The weight delta ΔW itself (matched in delta space, as NVIDIA's Σ‖ΔŴ − ΔW‖)."""
        return [paddle.to_tensor(update.tensors[name], dtype="float32") for name, _ in named]

    # ------------------------------------------------------------------- runs
    def run(
        self,
        model: nn.Layer,
        update: ClientUpdate,
        callback: Optional[SnapshotCallback] = None,
        init_images: Optional[np.ndarray] = None,
        labels: Optional[np.ndarray] = None,
        context: Optional[dict] = None,
        checkpoint_dir: Optional[str] = None,
        checkpoint_every: int = 0,
        resume: bool = False,
        prior: Optional[np.ndarray] = None,
    ) -> Reconstruction:
        """Reconstruct the client's local data from its FedAvg update.

        Args:
            model: the victim architecture; loaded with the update's θ0.
            update: a ``weight_delta`` update.
            prior: optional prior image (:func:`prior_batch`) every dummy image starts from
                (NVIDIA: a blurred population-average image); otherwise ``config.init``.
            callback, init_images, labels, context, checkpoint_dir, checkpoint_every, resume:
                as :meth:`GradientInversion.run` (reference mode: ``callback`` only).
        """
        self.check_update(update)
        runner = self._resolved(model)
        opts = self.options
        count = runner.num_images(update)
        grey = opts.resolved_grey()
        if init_images is None and prior is not None:
            init_images = prior_batch(
                prior, count, update.meta.input_shape, update.meta.mean, update.meta.std,
                normalize=opts.resolved_normalize_prior(), channels=1 if grey else None,
            )
        if opts.reference:
            if labels is not None or runner.config.label_strategy != "joint":
                raise ConfigError("reference mode optimises label logits t like the NVIDIA code; use label_strategy='joint'")
            if checkpoint_dir or resume or context:
                raise ConfigError("reference mode has no checkpoints or regularizer context; use the differentiable mode")
            return runner._run_reference(model, update, init_images, callback)
        return GradientInversion.run(
            runner, model, update, callback=callback, init_images=init_images, labels=labels, context=context,
            checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume,
        )

    def gradient_distance(
        self, model: nn.Layer, update: ClientUpdate, labels: Optional[np.ndarray] = None
    ) -> Callable[[np.ndarray], float]:
        """A function ``images -> D(θ_K − θ_0, ΔW)``: the matching distance alone, from a
        first-order simulation of the local training (for orchestrators that score candidate
        batches, e.g. E2EGI's greedy combination). Needs fixed labels."""
        self.check_update(update)
        if self.options.reference:
            raise ConfigError("reference mode has no differentiable matching distance")
        return GradientInversion.gradient_distance(self._resolved(model), model, update, labels)

    def predicted_tensors(
        self, model: nn.Layer, x: paddle.Tensor, y: paddle.Tensor, params: list[paddle.Tensor]
    ) -> list[paddle.Tensor]:
        """ΔŴ = θ_K − θ_0 of a first-order simulation of the client's local training on ``x``."""
        ctx = self._ctx
        sim = simulate_local_sgd(model, x, y, ctx.lr, ctx.batch_size, ctx.epochs, create_graph=False, running=ctx.start_running)
        return [sim.delta[name] for name in ctx.names]

    def _resolved(self, model: nn.Layer) -> "FedAvgInversion":
        """A copy whose BN regulariser uses the resolved EMA momentum/convention."""
        momentum, convention = self.options.resolved_bn(model)
        regularizers = copy.deepcopy(self.config.regularizers)
        spec = regularizers.get("bn")
        if spec is not None:
            spec = dict(spec) if isinstance(spec, dict) else {"weight": spec}
            if spec.get("source", "exact") == "recovered":
                spec.setdefault("momentum", momentum)
                spec.setdefault("convention", convention)
            regularizers["bn"] = spec
        runner = copy.copy(self)
        runner.config = self.config.replace(regularizers=regularizers)
        return runner

    def prepare_model(self, model: nn.Layer, update: ClientUpdate) -> nn.Layer:
        model = super().prepare_model(model, update)
        self._ctx = self._context(model, update)
        return model

    def _context(self, model: nn.Layer, update: ClientUpdate) -> _RunContext:
        meta = update.meta
        momentum, convention = self.options.resolved_bn(model)
        named = trainable_parameters(model)
        names = [name for name, _ in named]
        trainable = set(names)
        global_state = update.global_state or {}
        start_running = {
            name: paddle.to_tensor(global_state[name], dtype="float32")
            for name, _ in model.named_parameters() if name not in trainable
        }
        observed_running = {
            k: paddle.to_tensor(v, dtype="float32") for k, v in (update.buffer_delta or {}).items() if k in start_running
        }
        bn_params, bn_running = None, start_running
        if self.options.resolved_bn_model() == "updated":  # NVIDIA's model_bn = W_t + ΔW (all entries)
            bn_params = {name: paddle.to_tensor(global_state[name] + update.tensors[name], dtype="float32") for name in names}
            bn_running = {k: v + observed_running[k] if k in observed_running else v for k, v in start_running.items()}
        return _RunContext(
            names=names, lr=float(meta.lr), batch_size=int(meta.batch_size), epochs=int(meta.local_epochs),
            steps=int(meta.local_steps), momentum=momentum, convention=convention,
            start_running=start_running, observed_running=observed_running, bn_params=bn_params, bn_running=bn_running,
        )

    def _bn_forward(self, model: nn.Layer, x: paddle.Tensor) -> None:
        """Forward the whole dummy batch at the BN model's weights so BN hooks see it."""
        ctx = self._ctx
        values = dict(ctx.bn_params or {})
        values.update({k: v.clone() for k, v in ctx.bn_running.items()})  # train-mode BN updates them in place
        with substitute_parameters(model, values):
            model(x)

    def _uses_bn_regularizer(self) -> bool:
        spec = self.config.regularizers.get("bn")
        if spec is None:
            return False
        weight = spec.get("weight", 0.0) if isinstance(spec, dict) else spec
        return float(weight) != 0.0

    # ---------------------------------------------------- differentiable mode
    def matching_loss(
        self,
        model: nn.Layer,
        x: paddle.Tensor,
        soft_labels: Optional[paddle.Tensor],
        hard_labels: Optional[paddle.Tensor],
        params: list[paddle.Tensor],
        target: list[paddle.Tensor],
    ) -> tuple[paddle.Tensor, Optional[paddle.Tensor]]:
        """D(θ_K − θ_0, ΔW) through the unrolled local SGD, plus the optional Δr term."""
        ctx = self._ctx
        cfg = self.config
        soft = soft_labels is not None
        sim = simulate_local_sgd(
            model, x, soft_labels if soft else hard_labels, ctx.lr, ctx.batch_size, ctx.epochs,
            soft_labels=soft, create_graph=True, running=ctx.start_running,
            bn_momentum=ctx.momentum, bn_convention=ctx.convention,
            track_bn=self.options.bn_delta_weight > 0,
        )
        delta = [sim.delta[name] for name in ctx.names]
        distance = OBJECTIVES.get(cfg.objective)(delta, target, cfg.layer_weights)
        extra = None
        if self.options.bn_delta_weight > 0:
            terms = [
                paddle.sqrt(((sim.running_delta[k] - observed) ** 2).sum() + _EPS)
                for k, observed in ctx.observed_running.items() if k in sim.running_delta
            ]
            if terms:
                extra = self.options.bn_delta_weight * paddle.add_n(terms)
        single_full_step = ctx.steps == 1 and ctx.batch_size >= x.shape[0]
        if self._uses_bn_regularizer() and not (ctx.bn_params is None and single_full_step):
            # With one full-batch step at W_t the simulation's forward already fed the hooks.
            self._bn_forward(model, x)
        return distance, extra

    # --------------------------------------------------------- reference mode
    def _run_reference(self, model: nn.Layer, update: ClientUpdate, init_images: Optional[np.ndarray],
                       callback: Optional[SnapshotCallback]) -> Reconstruction:
        """The NVIDIA loop (:func:`privbox.attacks.fedavg.reference.run_reference`)."""
        return run_reference(self, model, update, init_images, callback)

    def _pixels(self, images: np.ndarray, meta) -> np.ndarray:
        return pixels(self.options, images, meta)
