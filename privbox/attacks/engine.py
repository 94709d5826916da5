"""One optimisation loop for every gradient-inversion attack (ALGORITHMS.md §4.1).

DLG, iDLG and later presets (Inverting Gradients, GradInversion, E2EGI) are configurations of
:class:`GradientInversion`: an objective from the registry, an optimiser (L-BFGS or Adam, with
the signed-gradient and box options), a label strategy, best-iterate tracking by gradient loss,
a NaN guard that restores the best iterate and lowers the lr, restarts, a tqdm bar and a
snapshot callback. The attacker only ever sees the :class:`~privbox.update.ClientUpdate`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import paddle
import paddle.nn as nn
from tqdm.auto import tqdm

from ..client import denormalize
from ..nn import functional as PF
from ..nn.convert import make_twice_differentiable, trainable_parameters
from ..update import ClientUpdate, MissingCapabilityError
from .config import AttackConfig
from .lbfgs import NumpyLBFGS
from .objectives import OBJECTIVES
from .reconstruction import Reconstruction


@dataclass
class IterationInfo:
    """What the snapshot callback receives."""

    iteration: int
    loss: float
    best_loss: float
    images: np.ndarray  # current iterate, model space
    pixels: np.ndarray  # current iterate, [0, 1]


SnapshotCallback = Callable[[IterationInfo], None]


@dataclass
class _Trial:
    images: np.ndarray
    label_logits: Optional[np.ndarray]
    loss_trace: list[float]
    best_iteration: int
    best_loss: float
    iterations: int
    events: list[str]


class GradientInversion:
    """The shared gradient-inversion engine.

    Args:
        config: an :class:`AttackConfig` (see :mod:`privbox.attacks.presets`).

    Use ``attack.run(model, update)``; the model is made twice differentiable in place and
    loaded with the update's θ0 when the update carries it.
    """

    def __init__(self, config: Optional[AttackConfig] = None, **overrides) -> None:
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
        return required

    # ------------------------------------------------------------------------- run
    def run(
        self,
        model: nn.Layer,
        update: ClientUpdate,
        callback: Optional[SnapshotCallback] = None,
    ) -> Reconstruction:
        """Reconstruct the client's batch from ``update`` using ``model`` (the client's architecture)."""
        cfg = self.config
        update.threat_model().require(self.required_capabilities(update), f"attack {cfg.name!r}")
        model = make_twice_differentiable(model)
        update.check_model(model)
        if update.global_state is not None:
            update.load_global_state(model)
        model.train() if update.meta.bn_mode == "train" else model.eval()

        named = trainable_parameters(model)
        params = [p for _, p in named]
        observed = update.gradients()
        target = [paddle.to_tensor(observed[name], dtype="float32") for name, _ in named]
        labels, label_method, label_order = self._labels(update)

        start = time.perf_counter()
        best: Optional[_Trial] = None
        for restart in range(cfg.restarts):
            trial = self._trial(model, params, target, update, labels, cfg.seed + restart, callback)
            if best is None or trial.best_loss < best.best_loss:
                best = trial
        wall = time.perf_counter() - start
        model.clear_gradients()
        assert best is not None

        if labels is None:
            final_labels = best.label_logits.argmax(axis=1).astype(np.int64)
            label_method = "joint (argmax of optimised soft labels)"
        else:
            final_labels = labels
        meta = update.meta
        return Reconstruction(
            images=best.images,
            pixels=denormalize(best.images, meta.mean, meta.std),
            labels=final_labels,
            label_order=label_order,
            loss_trace=best.loss_trace,
            best_iteration=best.best_iteration,
            best_loss=best.best_loss,
            seed=cfg.seed,
            iterations=best.iterations,
            wall_time=wall,
            attack=cfg.name,
            config=cfg.to_dict(),
            label_method=label_method,
            events=best.events,
        )

    # ---------------------------------------------------------------------- labels
    def _labels(self, update: ClientUpdate) -> tuple[Optional[np.ndarray], str, str]:
        """Return (labels or None for joint optimisation, how they were obtained, order)."""
        cfg = self.config
        if cfg.label_strategy == "joint":
            # Dummy sample j is not tied to the client's sample j: the order is the attacker's.
            return None, "joint", "unordered"
        if cfg.label_strategy == "given":
            return np.asarray(update.labels, dtype=np.int64), "given", "sample"
        from ..labels import recover_labels

        method = cfg.label_method
        if method == "auto":
            method = "idlg" if update.batch_size == 1 else "llg"
        try:
            result = recover_labels(method, update.gradients(), update.batch_size, update.num_classes)
        except ValueError as exc:
            raise MissingCapabilityError(f"label recovery with {method!r} failed: {exc}") from exc
        if result.labels.shape[0] != update.batch_size:
            raise MissingCapabilityError(
                f"label method {method!r} returned {result.labels.shape[0]} labels for a batch of "
                f"{update.batch_size}; use a counting method such as 'llg', 'e2egi' or 'ilrg'"
            )
        return result.labels, method, "unordered"

    # ----------------------------------------------------------------------- trial
    def _initial_images(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        init = self.config.init
        if init == "randn":
            return rng.standard_normal(shape).astype(np.float32)
        if init == "rand":
            return rng.random(shape).astype(np.float32)
        return np.zeros(shape, dtype=np.float32)

    def _box(self, update: ClientUpdate) -> tuple[paddle.Tensor, paddle.Tensor]:
        mean = np.asarray(update.meta.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(update.meta.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return paddle.to_tensor((0.0 - mean) / std), paddle.to_tensor((1.0 - mean) / std)

    def _trial(
        self,
        model: nn.Layer,
        params: list[paddle.Tensor],
        target: list[paddle.Tensor],
        update: ClientUpdate,
        labels: Optional[np.ndarray],
        seed: int,
        callback: Optional[SnapshotCallback],
    ) -> _Trial:
        cfg = self.config
        meta = update.meta
        rng = np.random.default_rng(seed)
        paddle.seed(seed)
        shape = (meta.batch_size, *meta.input_shape)
        x = paddle.to_tensor(self._initial_images(rng, shape))
        x.stop_gradient = False
        variables = [x]
        y_var = None
        if labels is None:
            y_var = paddle.to_tensor(rng.standard_normal((meta.batch_size, meta.num_classes)).astype(np.float32))
            y_var.stop_gradient = False
            variables.append(y_var)
        y_fixed = paddle.to_tensor(labels) if labels is not None else None
        objective = OBJECTIVES.get(cfg.objective)
        low, high = self._box(update) if cfg.boxed else (None, None)

        def gradient_loss() -> paddle.Tensor:
            logits = model(x)
            if y_var is not None:
                loss = PF.cross_entropy(logits, y_var, soft_label=True, label_logits=True)
            else:
                loss = PF.cross_entropy(logits, y_fixed)
            dummy = paddle.grad(loss, params, create_graph=True)
            return objective(dummy, target, cfg.layer_weights)

        state = {"best_loss": math.inf, "best_x": x.numpy().copy(), "best_y": None, "best_it": 0}
        if y_var is not None:
            state["best_y"] = y_var.numpy().copy()

        def track(value: float, iteration: int) -> None:
            if value < state["best_loss"]:
                state.update(best_loss=value, best_x=x.numpy().copy(), best_it=iteration)
                if y_var is not None:
                    state["best_y"] = y_var.numpy().copy()

        lr = cfg.lr
        trace: list[float] = []
        events: list[str] = []
        nan_restores = 0
        optimizer = self._make_optimizer(variables, lr)
        adam_state = None
        bar = tqdm(total=cfg.iterations, desc=cfg.name, disable=not cfg.progress, leave=False)
        iteration = 0
        try:
            while iteration < cfg.iterations:
                if cfg.optimizer == "lbfgs" and cfg.lbfgs_line_search is None:
                    step_losses: list[float] = []

                    def closure(flat: np.ndarray) -> tuple[float, np.ndarray]:
                        self._unflatten(flat, variables)
                        loss = gradient_loss()
                        value = float(loss)
                        step_losses.append(value)
                        if not math.isfinite(value):
                            return value, np.zeros_like(flat)
                        track(value, iteration)
                        return value, self._flatten(paddle.grad(loss, variables))

                    optimizer.step(closure)
                    self._unflatten(optimizer.x, variables)
                    value = step_losses[0] if step_losses else math.nan
                    finite = all(math.isfinite(v) for v in step_losses) and bool(np.isfinite(optimizer.x).all())
                elif cfg.optimizer == "lbfgs":
                    step_losses = []

                    def paddle_closure() -> paddle.Tensor:
                        optimizer.clear_grad()
                        loss = gradient_loss()
                        loss.backward()
                        value = float(loss)
                        step_losses.append(value)
                        if math.isfinite(value):
                            track(value, iteration)
                        return loss

                    optimizer.step(paddle_closure)
                    value = step_losses[0] if step_losses else math.nan
                    finite = all(math.isfinite(v) for v in step_losses) and bool(paddle.isfinite(x).all())
                else:
                    loss = gradient_loss()
                    value = float(loss)
                    finite = math.isfinite(value)
                    if finite:
                        track(value, iteration)
                        grads = paddle.grad(loss, variables)
                        adam_state = self._adam_step(variables, grads, lr, adam_state)
                if not finite:
                    nan_restores += 1
                    lr *= cfg.nan_lr_decay
                    events.append(f"iteration {iteration}: non-finite loss, restored best iterate, lr -> {lr:.3g}")
                    x.set_value(state["best_x"])
                    if y_var is not None:
                        y_var.set_value(state["best_y"])
                    optimizer = self._make_optimizer(variables, lr)
                    adam_state = None
                    if nan_restores > cfg.max_nan_restores:
                        events.append("stopped: too many non-finite losses")
                        break
                else:
                    trace.append(value)
                if cfg.boxed:
                    with paddle.no_grad():
                        x.set_value(paddle.maximum(paddle.minimum(x, high), low))
                iteration += 1
                bar.update(1)
                bar.set_postfix(loss=f"{state['best_loss']:.3g}", refresh=False)
                if callback is not None and cfg.snapshot_every and iteration % cfg.snapshot_every == 0:
                    current = x.numpy().copy()
                    callback(IterationInfo(iteration, value, state["best_loss"], current, denormalize(current, meta.mean, meta.std)))
                if cfg.early_stop_loss and state["best_loss"] < cfg.early_stop_loss:
                    events.append(f"iteration {iteration}: early stop, gradient loss {state['best_loss']:.3g} < {cfg.early_stop_loss}")
                    break
        finally:
            bar.close()
        return _Trial(
            images=state["best_x"],
            label_logits=state["best_y"],
            loss_trace=trace,
            best_iteration=int(state["best_it"]),
            best_loss=float(state["best_loss"]),
            iterations=iteration,
            events=events,
        )

    @staticmethod
    def _flatten(tensors) -> np.ndarray:
        return np.concatenate([t.numpy().reshape(-1) for t in tensors]).astype(np.float64)

    @staticmethod
    def _unflatten(flat: np.ndarray, variables: list[paddle.Tensor]) -> None:
        offset = 0
        for var in variables:
            size = int(np.prod(var.shape))
            var.set_value(flat[offset : offset + size].reshape(var.shape).astype(np.float32))
            offset += size

    def _make_optimizer(self, variables: list[paddle.Tensor], lr: float):
        cfg = self.config
        if cfg.optimizer == "lbfgs" and cfg.lbfgs_line_search is None:
            return NumpyLBFGS(
                self._flatten(variables),
                lr=lr,
                max_iter=cfg.lbfgs_max_iter,
                history_size=cfg.lbfgs_history,
            )
        if cfg.optimizer == "lbfgs":
            # Paddle's own L-BFGS provides the strong-Wolfe line search (slower bookkeeping).
            return paddle.optimizer.LBFGS(
                learning_rate=lr,
                max_iter=cfg.lbfgs_max_iter,
                history_size=cfg.lbfgs_history,
                line_search_fn=cfg.lbfgs_line_search,
                parameters=variables,
            )
        return None

    def _adam_step(self, variables, grads, lr, state):
        """Adam (Kingma & Ba 2015) with the sign applied before the moments when ``signed``."""
        b1, b2 = self.config.adam_betas
        if state is None:
            state = {"t": 0, "m": [paddle.zeros_like(v) for v in variables], "v": [paddle.zeros_like(v) for v in variables]}
        state["t"] += 1
        t = state["t"]
        with paddle.no_grad():
            for i, (var, grad) in enumerate(zip(variables, grads)):
                if self.config.signed:
                    grad = paddle.sign(grad)
                state["m"][i] = b1 * state["m"][i] + (1 - b1) * grad
                state["v"][i] = b2 * state["v"][i] + (1 - b2) * grad * grad
                m_hat = state["m"][i] / (1 - b1**t)
                v_hat = state["v"][i] / (1 - b2**t)
                var.set_value(var - lr * m_hat / (paddle.sqrt(v_hat) + 1e-8))
        return state
