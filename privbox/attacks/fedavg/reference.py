"""FedAvg inversion, reference mode: what the NVIDIA FLGradientInversion code *effectively*
computes (ALGORITHMS.md §4.7 points 1-6; Hatamizadeh et al., IEEE TMI 2023).

The update-matching term is only logged (no gradient); a simulated network, started at W_t and
never reset, trains E full-batch BCE steps on (x, sigmoid(t)) every iteration and that BCE is
back-propagated *unscaled* into the images z and label logits t; BN statistics recovered from
Δr are matched on ``model_bn``; TV and image-norm priors; Adam; the last iteration's pre-step
iterate is returned; the prior is not normalised.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Optional

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from tqdm.auto import tqdm

from ...core.images import denormalize
from ...core.update import ClientUpdate
from ...nn import functional as PF
from ...nn.convert import trainable_parameters
from ...nn.functional_model import substitute_parameters
from ..engine import IterationInfo, SnapshotCallback, _Adam
from ..objectives import OBJECTIVES
from ..reconstruction import Reconstruction
from ..regularizers import BNStatistics, build_regularizers
from ..schedules import SCHEDULES
from .options import FedAvgOptions

__all__ = ["run_reference", "pixels"]


def run_reference(
    attack: Any,
    model: nn.Layer,
    update: ClientUpdate,
    init_images: Optional[np.ndarray],
    callback: Optional[SnapshotCallback],
) -> Reconstruction:
    """The NVIDIA FLGradientInversion loop's effective behaviour (ALGORITHMS.md §4.7 (1)-(6))."""
    cfg, opts = attack.config, attack.options
    model = attack.prepare_model(model, update)
    ctx = attack._ctx
    meta = update.meta
    count = attack.num_images(update)
    channels = int(meta.input_shape[0])
    grey = opts.resolved_grey()
    shape = (count, 1 if grey else channels, *meta.input_shape[1:])
    rng = np.random.default_rng(cfg.seed)
    paddle.seed(cfg.seed)
    z0 = np.asarray(init_images, dtype=np.float32).reshape(shape) if init_images is not None else attack._initial_images(rng, shape)
    t0 = rng.random((count, meta.num_classes)).astype(np.float32) if opts.label_init == "uniform" else np.zeros((count, meta.num_classes), np.float32)
    z = paddle.to_tensor(z0)
    z.stop_gradient = False
    t = paddle.to_tensor(t0)
    t.stop_gradient = False
    expand = paddle.ones([1, channels, 1, 1], dtype="float32")

    # The simulated client network: starts at W_t, never reset (point 3).
    names = ctx.names
    sim = {name: param.detach().clone() for name, param in trainable_parameters(model)}
    for value in sim.values():
        value.stop_gradient = False
    sim_running = {k: v.clone() for k, v in ctx.start_running.items()}
    target = attack.observed_tensors(update, trainable_parameters(model))
    objective = OBJECTIVES.get(cfg.objective)
    schedule = SCHEDULES.get(cfg.schedule)
    # NVIDIA inverts one EMA step (no equal-statistics generalisation over K).
    one_step = dataclasses.replace(update, meta=dataclasses.replace(meta, local_steps=1))
    regs = build_regularizers(cfg.regularizers)
    for reg in regs:
        reg.attach(model, one_step, {})
    bn_regs = [reg for reg in regs if isinstance(reg, BNStatistics)]
    image_regs = [reg for reg in regs if not isinstance(reg, BNStatistics)]
    optimizer = _Adam([z, t], cfg.adam_betas, cfg.signed)
    simulate = cfg.gradient_weight > 0
    trace: list[float] = []
    events = [
        "reference mode: update matching logged only (no gradient); simulated BCE back-propagated "
        "unscaled; simulated network never reset; last pre-step iterate returned"
    ]
    if not simulate:
        events.append("gradient_weight = 0: local-training simulation skipped (label logits stay at their init)")
    start_time = time.perf_counter()
    x_last = z0
    bar = tqdm(total=cfg.iterations, desc=cfg.name, disable=not cfg.progress, leave=False)
    try:
        for it in range(cfg.iterations):
            lr = schedule(it, cfg.iterations, cfg.lr, **cfg.schedule_params)
            x = z * expand if grey else z
            grad_z = paddle.zeros_like(z)
            grad_t = paddle.zeros_like(t)
            logged = None
            if simulate:
                before = {name: value.detach() for name, value in sim.items()}
                for _ in range(ctx.epochs):
                    with substitute_parameters(model, {**sim, **sim_running}):
                        out = model(x)
                    bce = PF.binary_cross_entropy_with_logits(out, F.sigmoid(t))
                    grads = paddle.grad(bce, [sim[name] for name in names] + [z, t])
                    grad_z, grad_t = grad_z + grads[-2], grad_t + grads[-1]
                    with paddle.no_grad():
                        for name, g in zip(names, grads[:-2]):
                            new = (sim[name] - ctx.lr * g).detach()
                            new.stop_gradient = False
                            sim[name] = new
                with paddle.no_grad():
                    logged = float(objective([sim[n] - before[n] for n in names], target, cfg.layer_weights)) * cfg.gradient_weight
            aux = [reg.weight * reg(x) for reg in image_regs]
            if bn_regs:
                attack._bn_forward(model, x)
                aux += [reg.weight * reg(x) for reg in bn_regs]
            total = paddle.add_n(aux) if aux else None
            if total is not None:
                grad_z = grad_z + paddle.grad(total, [z])[0]
            value = float(total) if total is not None else 0.0
            if not (math.isfinite(value) and bool(paddle.isfinite(grad_z).all())):
                events.append(f"iteration {it}: non-finite loss or gradient, stopped")
                break
            trace.append(logged if logged is not None else value)
            x_last = x.numpy().copy()  # the pre-step iterate (point 5)
            optimizer.step([grad_z, grad_t], lr)
            bar.update(1)
            if callback is not None and cfg.snapshot_every and (it + 1) % cfg.snapshot_every == 0:
                callback(IterationInfo(it + 1, trace[-1], trace[-1], x_last, pixels(opts, x_last, meta), 0))
    finally:
        bar.close()
        for reg in regs:
            reg.detach()
        model.clear_gradients()
    logits = t.numpy()
    return Reconstruction(
        images=x_last,
        pixels=pixels(opts, x_last, meta),
        labels=logits.argmax(axis=1).astype(np.int64),
        label_order="unordered",
        loss_trace=trace,
        best_iteration=max(len(trace) - 1, 0),
        best_loss=trace[-1] if trace else math.nan,
        seed=cfg.seed,
        iterations=len(trace),
        wall_time=time.perf_counter() - start_time,
        attack=cfg.name,
        config=cfg.to_dict(),
        label_method="joint (argmax of the optimised logits t)",
        events=events,
    )


def pixels(options: FedAvgOptions, images: np.ndarray, meta: Any) -> np.ndarray:
    """[0, 1] pixels of an iterate: de-normalised, or clamped when the prior was not normalised."""
    if options.resolved_normalize_prior():
        return denormalize(images, meta.mean, meta.std)
    return np.clip(images, 0.0, 1.0).astype(np.float32)
