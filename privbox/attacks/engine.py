"""One optimisation loop for every gradient-inversion attack (ALGORITHMS.md §4.1).

DLG, iDLG, Inverting Gradients, GradInversion, E2EGI and the GA attack are configurations of
:class:`GradientInversion`: an objective, regularizers, a step rule (L-BFGS, or Adam with the
signed-gradient option), an lr schedule, Langevin noise, a box constraint, a label strategy,
best-iterate tracking by gradient loss, a NaN guard that restores the best iterate and lowers
the lr, restarts, a tqdm bar, a snapshot callback and checkpoints from which an interrupted run
resumes to the same result. The attacker only ever sees the
:class:`~privbox.core.update.ClientUpdate`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import paddle
import paddle.nn as nn
from tqdm.auto import tqdm

from ..core.images import denormalize
from ..nn import functional as PF
from ..nn.convert import make_twice_differentiable, trainable_parameters
from ..nn.functional_model import parameter_gradients
from ..core.update import ClientUpdate
from ..distributed.collective import active as active_collective
from .config import AttackConfig
from .label_strategy import strategy_labels
from .lbfgs import NumpyLBFGS
from .objectives import OBJECTIVES
from .reconstruction import Reconstruction
from .regularizers import Regularizer, build_regularizers
from .schedules import SCHEDULES
from .state import TrialState, config_fingerprint
from ..core.registry import Range
from .registries import ENGINES
from .steps import Adam, flatten, initial_images, take_step
from .steps import Adam as _Adam  # noqa: F401 - the name privbox.attacks.fedavg imports


@dataclass
class IterationInfo:
    """What the snapshot callback receives."""

    iteration: int
    loss: float
    best_loss: float
    images: np.ndarray  # current iterate, model space
    pixels: np.ndarray  # current iterate, [0, 1]
    restart: int = 0  # restart index, or the seed index inside an orchestrator's phase
    phase: str = ""  # the orchestrator's phase or round ("" for a plain run)


SnapshotCallback = Callable[[IterationInfo], None]


class GradientInversion:
    """The shared gradient-inversion engine.

    Args:
        config: an :class:`AttackConfig` (see :mod:`privbox.attacks.presets`).
        overrides: fields to change on ``config`` (or on the class's default preset).

    Use ``attack.run(model, update)``; the model is made twice differentiable in place and
    loaded with the update's θ0 when the update carries it.
    """

    def __init__(self, config: Optional[AttackConfig] = None, **overrides: Any) -> None:
        base = config if config is not None else self.default_config()
        self.config = base.replace(**overrides) if overrides else base

    @classmethod
    def default_config(cls) -> AttackConfig:
        return AttackConfig()

    # ------------------------------------------------------------------ threat model
    def required_capabilities(self, update: ClientUpdate) -> list[str]:
        """Capabilities this configuration needs from ``update`` (ALGORITHMS.md §1.5)."""
        required = []
        if update.kind == "weight_delta":
            required += ["has_weight_delta", "has_local_hparams"]
        else:
            required.append("has_gradients")
        if self.config.label_strategy == "given":
            required.append("has_labels")
        for reg in build_regularizers(self.config.regularizers):
            required += [r for r in reg.requires if r not in required]
        return required

    # ------------------------------------------------------------------------- run
    def prepare_model(self, model: nn.Layer, update: ClientUpdate) -> nn.Layer:
        """Make ``model`` twice differentiable, check it against ``update``, load θ0, set the mode."""
        update.threat_model().require(self.required_capabilities(update), f"attack {self.config.name!r}")
        model = active_collective().adapt_model(make_twice_differentiable(model))
        update.check_model(model)
        if update.global_state is not None:
            update.load_global_state(model)
        model.train() if update.meta.bn_mode == "train" else model.eval()
        return model

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
    ) -> Reconstruction:
        """Reconstruct the client's batch from ``update`` using ``model`` (the client's architecture).

        Args:
            model: the victim architecture (any ``paddle.nn.Layer``).
            update: the observed client update.
            callback: called every ``config.snapshot_every`` iterations with an
                :class:`IterationInfo`.
            init_images: start from these model-space images (prior image, MLCO seeds)
                instead of ``config.init``.
            labels: use these labels (overrides the label strategy; orchestrators use it).
            context: shared dict for regularizers (e.g. ``group_consensus``).
            checkpoint_dir: write resumable checkpoints here every ``checkpoint_every``
                iterations and at the end of each restart.
            resume: continue from the checkpoints in ``checkpoint_dir``.
        """
        cfg = self.config
        model = self.prepare_model(model, update)
        named = trainable_parameters(model)
        params = [p for _, p in named]
        target = self.observed_tensors(update, named)
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int64)
            label_method, label_order = "given by caller", "sample"
        else:
            labels, label_method, label_order = self._labels(update)
        context = context if context is not None else {}
        regs = build_regularizers(cfg.regularizers)
        for reg in regs:
            reg.attach(model, update, context)
        if resume and not checkpoint_dir:
            raise ValueError("resume=True needs the checkpoint_dir of the interrupted run")
        start = time.perf_counter()
        best: Optional[TrialState] = None
        try:
            # Distributed seeds mode: each rank runs its block of restarts, the best is chosen globally.
            for restart in active_collective().restarts(cfg.restarts):
                ckpt = Path(checkpoint_dir) / f"state_restart{restart}{active_collective().file_suffix}.safetensors" if checkpoint_dir else None
                trial = self._trial(
                    model, params, target, update, labels, regs, cfg.seed + restart, restart,
                    callback, init_images, ckpt, checkpoint_every, resume,
                )
                if best is None or trial.best_loss < best.best_loss:
                    best = trial
        finally:
            for reg in regs:
                reg.detach()
            model.clear_gradients()
        best = active_collective().best_trial(best)
        wall = time.perf_counter() - start
        assert best is not None
        # Under --distributed each rank holds a shard of the batch: gather the global batch.
        gather = active_collective().gather
        images = gather(best.best_x if cfg.return_best else best.x)
        if labels is None:
            logits = gather(best.best_y if cfg.return_best else best.y)
            labels = logits.argmax(axis=1).astype(np.int64)
            label_method = "joint (argmax of optimised soft labels)"
        meta = update.meta
        return Reconstruction(
            images=images,
            pixels=denormalize(images, meta.mean, meta.std),
            labels=labels,
            label_order=label_order,
            loss_trace=best.trace,
            best_iteration=best.best_iteration,
            best_loss=best.best_loss,
            seed=cfg.seed,
            iterations=best.iteration,
            wall_time=wall,
            attack=cfg.name,
            config=cfg.to_dict(),
            label_method=label_method,
            events=best.events,
        )

    def gradient_distance(
        self, model: nn.Layer, update: ClientUpdate, labels: Optional[np.ndarray] = None
    ) -> Callable[[np.ndarray], float]:
        """A function ``images -> D(ĝ(images), g)``: the configured gradient distance alone.

        One forward in the victim's mode and one first-order ``paddle.grad`` per call (no
        regularizers, no double back-propagation), for orchestrators that only need to score
        candidate batches (E2EGI's greedy seed combination, ALGORITHMS.md §4.6.3). ``labels``
        default to the configured label strategy; joint (soft) labels are not supported. The
        client's side of the comparison is :meth:`predicted_tensors`, which a subclass with
        another observation model overrides together with :meth:`matching_loss`.
        """
        cfg = self.config
        model = self.prepare_model(model, update)
        named = trainable_parameters(model)
        params = [p for _, p in named]
        target = self.observed_tensors(update, named)
        if labels is None:
            labels = self.resolve_labels(update)[0]
        if labels is None:
            raise ValueError("gradient_distance needs fixed labels; the 'joint' label strategy optimises them")
        y = paddle.to_tensor(np.asarray(labels, dtype=np.int64))
        objective = OBJECTIVES.get(cfg.objective)

        def distance(images: np.ndarray) -> float:
            x = paddle.to_tensor(np.asarray(images, dtype=np.float32))
            return float(objective(self.predicted_tensors(model, x, y, params), target, cfg.layer_weights))

        return distance

    def predicted_tensors(
        self, model: nn.Layer, x: paddle.Tensor, y: paddle.Tensor, params: list[paddle.Tensor]
    ) -> list[paddle.Tensor]:
        """What the client would send for images ``x`` and labels ``y``, first order only (no
        graph kept): the FedSGD gradient ∇_θ CE(f_θ(x), y), paired with ``params``."""
        collective = active_collective()
        x, y = _shard_tensor(collective, x), _shard_tensor(collective, y)
        return collective.sum_list(paddle.grad(collective.batch_loss(PF.cross_entropy(model(x), y)), params))

    # ------------------------------------------------------- hooks for subclasses
    def num_images(self, update: ClientUpdate) -> int:
        """How many images the attack reconstructs: the FedSGD batch size B."""
        return update.batch_size

    def observed_tensors(self, update: ClientUpdate, named: list[tuple[str, paddle.Tensor]]) -> list[paddle.Tensor]:
        """The observed tensors :meth:`matching_loss` compares with, paired by name with
        ``named``: the update as a gradient (a FedAvg delta becomes −ΔW/(lr·K))."""
        return _observed_targets(named, update)

    def matching_loss(
        self,
        model: nn.Layer,
        x: paddle.Tensor,
        soft_labels: Optional[paddle.Tensor],
        hard_labels: Optional[paddle.Tensor],
        params: list[paddle.Tensor],
        target: list[paddle.Tensor],
    ) -> tuple[paddle.Tensor, Optional[paddle.Tensor]]:
        """Return (D, extra): the matching distance, which ``gradient_weight`` scales and the
        best iterate is chosen by, and an optional extra loss term (``None`` for none).

        Default: the FedSGD gradient match of ALGORITHMS.md §4.1, ĝ = ∇_θ CE(f_θ(x̂), ŷ) with
        soft labels softmax(``soft_labels``) or ``hard_labels``, D = the configured objective.
        x̂ is part of the first-order ``paddle.grad`` call: without it Paddle 3.3's conv2d
        double backward drops a term and ∂D/∂x̂ is wrong (``privbox.nn.functional_model``).
        Subclasses override this hook (the unrolled FedAvg simulation, ``attacks.fedavg``).
        """
        logits = model(x)
        if soft_labels is not None:
            loss = PF.cross_entropy(logits, soft_labels, soft_label=True, label_logits=True)
        else:
            loss = PF.cross_entropy(logits, hard_labels)
        # Distributed: this rank's share of the batch loss; ĝ = Σ_r ĝ_r, straight-through (§4.9).
        collective = active_collective()
        dummy = collective.sum_list(parameter_gradients(collective.batch_loss(loss), params, inputs=[x]))
        return OBJECTIVES.get(self.config.objective)(dummy, target, self.config.layer_weights), None

    # ---------------------------------------------------------------------- labels
    def resolve_labels(self, update: ClientUpdate) -> tuple[Optional[np.ndarray], str, str]:
        """The labels the configured strategy yields for ``update``: (labels or ``None`` for joint
        optimisation, how they were obtained, ``"sample"`` or ``"unordered"``)."""
        return self._labels(update)

    def _labels(self, update: ClientUpdate) -> tuple[Optional[np.ndarray], str, str]:
        return strategy_labels(self.config, update, self.num_images(update))

    # ----------------------------------------------------------------------- trial
    def _initial_images(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return initial_images(self.config.init, rng, shape)

    @staticmethod
    def box_bounds(update: ClientUpdate) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel model-space bounds of valid pixels [(0−μ)/σ, (1−μ)/σ]."""
        mean = np.asarray(update.meta.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(update.meta.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return (0.0 - mean) / std, (1.0 - mean) / std

    def _new_optimizer(self, variables: list[paddle.Tensor], lr: float):
        cfg = self.config
        if cfg.optimizer == "adam":
            return Adam(variables, cfg.adam_betas, cfg.signed)
        return NumpyLBFGS(
            flatten(variables),
            lr=lr,
            # Distributed: dot products and norms over the global vector (the collective's).
            reductions=active_collective() if active_collective().distributed else None,
            max_iter=cfg.lbfgs_max_iter,
            history_size=cfg.lbfgs_history,
            line_search=cfg.lbfgs_line_search,
        )

    def _trial(
        self,
        model: nn.Layer,
        params: list[paddle.Tensor],
        target: list[paddle.Tensor],
        update: ClientUpdate,
        labels: Optional[np.ndarray],
        regs: list[Regularizer],
        seed: int,
        restart: int,
        callback: Optional[SnapshotCallback],
        init_images: Optional[np.ndarray],
        checkpoint: Optional[Path],
        checkpoint_every: int,
        resume: bool,
    ) -> TrialState:
        cfg = self.config
        meta = update.meta
        fingerprint = config_fingerprint(cfg.to_dict())
        rng = np.random.default_rng(seed)
        paddle.seed(seed)
        shape = (self.num_images(update), *meta.input_shape)
        if init_images is not None:
            x0 = np.asarray(init_images, dtype=np.float32).reshape(shape)
        else:
            x0 = initial_images(self.config.init, rng, shape)
        y0 = None if labels is not None else rng.standard_normal((shape[0], meta.num_classes)).astype(np.float32)
        # Every rank draws the global batch from the same seed and keeps its own shard.
        collective = active_collective()
        x0, y0 = collective.shard(x0), collective.shard(y0)
        state = TrialState(
            iteration=0, x=x0, y=y0, best_x=x0.copy(), best_y=None if y0 is None else y0.copy(),
            best_loss=math.inf, best_iteration=0, trace=[], lr_scale=1.0, nan_restores=0, events=[],
            rng_state=rng.bit_generator.state,
        )
        if resume and checkpoint is not None and checkpoint.exists():
            state = TrialState.load(checkpoint, fingerprint, seed)
            state.check(shape, None if y0 is None else y0.shape, cfg.iterations, str(checkpoint))
            rng.bit_generator.state = state.rng_state
            if state.finished and (state.iteration >= cfg.iterations or self._stopped(state)):
                # Finished, by the budget or by a stopping rule: continuing would change the result.
                return state
            state.events.append(f"resumed at iteration {state.iteration}")

        x = paddle.to_tensor(state.x)
        x.stop_gradient = False
        variables = [x]
        y_var = None
        if labels is None:
            y_var = paddle.to_tensor(state.y)
            y_var.stop_gradient = False
            variables.append(y_var)
        y_fixed = paddle.to_tensor(collective.shard(labels)) if labels is not None else None
        schedule = SCHEDULES.get(cfg.schedule)
        low, high = self.box_bounds(update)
        low_t, high_t = paddle.to_tensor(low), paddle.to_tensor(high)

        def losses() -> tuple[paddle.Tensor, paddle.Tensor]:
            distance, extra = self.matching_loss(model, x, y_var, y_fixed, params, target)
            total = distance * cfg.gradient_weight if cfg.gradient_weight != 1.0 else distance
            if extra is not None:
                total = total + extra
            for reg in regs:
                total = total + reg.weight * reg(x)
            return total, distance

        def track(distance: float, iteration: int) -> None:
            if distance < state.best_loss:
                state.best_loss = distance
                state.best_x = x.numpy().copy()
                state.best_iteration = iteration
                if y_var is not None:
                    state.best_y = y_var.numpy().copy()

        def lr_at(t: int) -> float:
            return schedule(t, cfg.iterations, cfg.lr, **cfg.schedule_params) * state.lr_scale

        optimizer = self._new_optimizer(variables, lr_at(state.iteration))
        if state.optimizer:
            optimizer.load_state_dict(state.optimizer)
        bar = tqdm(total=cfg.iterations, initial=state.iteration, desc=cfg.name, disable=not cfg.progress, leave=False)

        def save_checkpoint(finished: bool = False) -> None:
            if checkpoint is None:
                return
            state.x = x.numpy().copy()
            state.y = None if y_var is None else y_var.numpy().copy()
            state.rng_state = rng.bit_generator.state
            state.optimizer = optimizer.state_dict()
            state.finished = finished
            state.save(checkpoint, fingerprint, seed)

        try:
            while state.iteration < cfg.iterations:
                t = state.iteration
                lr = lr_at(t)
                value, finite = take_step(optimizer, losses, track, variables, lr, t)
                if not finite:
                    state.nan_restores += 1
                    state.lr_scale *= cfg.nan_lr_decay
                    state.events.append(
                        f"iteration {t}: non-finite loss, restored best iterate, lr -> {lr_at(t):.3g}"
                    )
                    x.set_value(state.best_x)
                    if y_var is not None:
                        y_var.set_value(state.best_y)
                    optimizer = self._new_optimizer(variables, lr_at(t))
                    if state.nan_restores > cfg.max_nan_restores:
                        state.events.append("stopped: too many non-finite losses")
                        break
                else:
                    state.trace.append(value)
                with paddle.no_grad():
                    if cfg.noise:
                        noise = collective.shard(rng.standard_normal(shape).astype(np.float32))
                        x.set_value(x + cfg.noise * lr_at(t + 1) * paddle.to_tensor(noise))
                    if cfg.boxed:
                        x.set_value(paddle.maximum(paddle.minimum(x, high_t), low_t))
                if isinstance(optimizer, NumpyLBFGS) and (cfg.noise or cfg.boxed):
                    optimizer.x = flatten(variables)
                state.iteration = t + 1
                bar.update(1)
                bar.set_postfix(loss=f"{state.best_loss:.3g}", refresh=False)
                # Checkpoint before the callback: a callback that stops the run (an interrupt, a
                # tuning pause) at this iteration then loses nothing.
                if checkpoint_every and state.iteration % checkpoint_every == 0 and state.iteration < cfg.iterations:
                    save_checkpoint()
                if callback is not None and cfg.snapshot_every and state.iteration % cfg.snapshot_every == 0:
                    current = collective.gather(x.numpy().copy())
                    callback(IterationInfo(state.iteration, value, state.best_loss, current,
                                           denormalize(current, meta.mean, meta.std), restart))
                if cfg.early_stop_loss and state.best_loss < cfg.early_stop_loss:
                    state.events.append(
                        f"iteration {state.iteration}: early stop, gradient loss {state.best_loss:.3g} < {cfg.early_stop_loss}"
                    )
                    break
                if self._best_tv_below_threshold(state):
                    state.events.append(f"iteration {state.iteration}: early stop, TV of the best iterate < {cfg.early_stop_tv}")
                    break
        finally:
            bar.close()
        state.x = x.numpy().copy()
        state.y = None if y_var is None else y_var.numpy().copy()
        save_checkpoint(finished=True)
        return state

    def _stopped(self, state: TrialState) -> bool:
        """Whether a stopping rule (early stop, too many NaN recoveries) ended ``state``'s trial."""
        cfg = self.config
        if state.nan_restores > cfg.max_nan_restores:
            return True
        if cfg.early_stop_loss and state.best_loss < cfg.early_stop_loss:
            return True
        return self._best_tv_below_threshold(state)

    def _best_tv_below_threshold(self, state: TrialState) -> bool:
        """The GA stopping rule: TV of the best iterate < ``early_stop_tv``.

        The TV (same anisotropic mean-L1 as the ``tv`` regulariser) is recomputed only when the
        best iterate has changed since the last check.
        """
        threshold = self.config.early_stop_tv
        if not threshold:
            return False
        key = (id(state), state.best_iteration, state.best_loss)
        if getattr(self, "_tv_key", None) != key:
            best = state.best_x
            mean = active_collective().np_batch_mean
            tv = mean(np.abs(np.diff(best, axis=3))) + mean(np.abs(np.diff(best, axis=2)))
            self._tv_key, self._tv_value = key, float(tv)
        return self._tv_value < threshold


def _observed_targets(named: list[tuple[str, paddle.Tensor]], update: ClientUpdate) -> list[paddle.Tensor]:
    """The observed gradient as tensors, paired with the model's trainable parameters by name."""
    observed = update.gradients()
    return [paddle.to_tensor(observed[name], dtype="float32") for name, _ in named]


ENGINES.add(
    "gradient",
    GradientInversion,
    description="FedSGD gradient matching; a FedAvg delta is read as the pseudo-gradient -dW/(lr*K) (ALGORITHMS.md 4.1)",
    requires=("has_gradients",),
    tunable={
        "lr": Range(0.1, 1.0),
        "gradient_weight": Range(0.01, 1.0),
        "iterations": Range(5000, 20000, integer=True),
    },
    default_for="gradient",
)


def _shard_tensor(collective, tensor: paddle.Tensor) -> paddle.Tensor:
    """This rank's shard of a global-batch tensor (the tensor itself in one process)."""
    if not collective.distributed:
        return tensor
    return paddle.to_tensor(collective.shard(tensor.numpy()))
