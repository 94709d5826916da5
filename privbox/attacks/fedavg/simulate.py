"""The differentiable twin of a FedAvg client's local training (Geiping et al., NeurIPS 2020).

:func:`simulate_local_sgd` runs the *same* local steps as :class:`privbox.fl.client.Client`
(minibatch order :func:`privbox.fl.step.local_minibatches`, loss :func:`privbox.fl.step.step_loss`,
update :func:`privbox.fl.step.sgd_rule`, BN statistics and EMA from :mod:`privbox.core.bn`) as one
graph over explicit weights, so FedAvg inversion can differentiate θ_K − θ_0 with respect to the
dummy images. A test checks that it reproduces the client's delta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np
import paddle
import paddle.nn as nn

from ...core.bn import EMA_CONVENTIONS, batch_moments, bn_layers, ema, unbiased_variance
from ...fl.step import local_minibatches, sgd_rule, step_loss
from ...nn.convert import trainable_parameters
from ...nn.functional_model import parameter_gradients, substitute_parameters

__all__ = ["LocalTraining", "simulate_local_sgd"]


@dataclass
class LocalTraining:
    """The result of :func:`simulate_local_sgd`.

    Attributes:
        delta: θ_K − θ_0 per trainable parameter name (differentiable w.r.t. the images and
            labels when simulated with ``create_graph=True``).
        running_delta: r_K − r_0 per BN running-statistic name (``<layer>._mean`` /
            ``<layer>._variance``); differentiable when ``track_bn`` was set, otherwise the
            detached values Paddle's own in-place EMA produced. Empty in eval mode.
        steps: K.
    """

    delta: dict[str, paddle.Tensor]
    running_delta: dict[str, paddle.Tensor]
    steps: int


def _take(values: paddle.Tensor, index: np.ndarray) -> paddle.Tensor:
    """Rows ``index`` of ``values``: a slice when contiguous (cheaper graph), else a gather."""
    start, stop = int(index[0]), int(index[-1]) + 1
    if stop - start == len(index) and np.array_equal(index, np.arange(start, stop)):
        return values[start:stop]
    return paddle.gather(values, paddle.to_tensor(index))


def simulate_local_sgd(
    model: nn.Layer,
    images: paddle.Tensor,
    labels: paddle.Tensor,
    lr: float,
    batch_size: int,
    epochs: int = 1,
    soft_labels: bool = False,
    create_graph: bool = True,
    start: Optional[Mapping[str, paddle.Tensor]] = None,
    running: Optional[Mapping[str, paddle.Tensor]] = None,
    bn_momentum: float = 0.9,
    bn_convention: str = "paddle",
    track_bn: bool = False,
    shuffle: bool = False,
    seed: int = 0,
) -> LocalTraining:
    """Simulate a FedAvg client's local SGD on ``images`` as one differentiable graph.

    K = E·⌈n/b⌉ plain SGD steps (momentum 0) on the batch-mean cross-entropy of the client's
    minibatches (:func:`privbox.fl.step.local_minibatches`: contiguous, or a seeded permutation
    per epoch with ``shuffle`` — an attacker does not know the victim's seed, so it assumes the
    contiguous order), evaluated with :func:`~privbox.nn.functional_model.substitute_parameters`,
    so the model's own parameters and running statistics are never modified. In train mode BN
    normalises with batch statistics; its running statistics evolve on clones.

    Args:
        model: the victim architecture, already in the victim's train/eval mode.
        images: ``[n, C, H, W]`` model-space images (the dummy batch, ``stop_gradient=False``
            to differentiate through the simulation).
        labels: hard labels ``[n]`` or, with ``soft_labels``, label logits ``[n, C]`` (soft
            targets softmax(logits), as DLG).
        lr, batch_size, epochs: the client's η, b and E.
        create_graph: keep the graph of every step (needed to differentiate θ_K w.r.t. the
            images: the unrolled simulation); ``False`` gives a plain first-order simulation.
        start: θ_0 per trainable parameter name (default: the model's current parameters).
        running: r_0 per BN running-statistic name (default: the model's current values).
        bn_momentum, bn_convention: the EMA rule for ``track_bn`` (:func:`privbox.core.bn.ema`).
        track_bn: also compute the running-statistic change as a differentiable function of
            the images from each step's batch statistics (biased variance for ``"paddle"``,
            unbiased for ``"torch"``), instead of reading Paddle's detached in-place update.
        shuffle, seed: the client's minibatch order.

    Returns:
        :class:`LocalTraining`.
    """
    if bn_convention not in EMA_CONVENTIONS:
        raise ValueError(f"bn_convention must be 'paddle' or 'torch', got {bn_convention!r}")
    n = int(images.shape[0])
    if int(labels.shape[0]) != n:
        raise ValueError(f"{n} images but {labels.shape[0]} labels")
    named = trainable_parameters(model)
    names = [name for name, _ in named]
    theta0 = {}
    for name, param in named:
        value = start[name] if start is not None else param
        if value.stop_gradient:  # paddle.grad needs tensors that take part in the graph
            value = value.detach()
            value.stop_gradient = False
        theta0[name] = value
    trainable = set(names)
    buffers = {name: p for name, p in model.named_parameters() if name not in trainable}
    r0 = {name: (running[name] if running is not None else p).detach() for name, p in buffers.items()}
    clones = {name: value.clone() for name, value in r0.items()}
    theta = dict(theta0)
    steps = local_minibatches(n, batch_size, epochs, shuffle, seed)
    layers = bn_layers(model)
    tracked: dict[str, paddle.Tensor] = dict(r0) if track_bn else {}
    for index in steps:
        x_s, y_s = _take(images, index), _take(labels, index)
        inputs: dict[str, paddle.Tensor] = {}
        handles = []
        if track_bn and model.training:
            for lname, layer in layers:
                def hook(lay, args, output, _name=lname):
                    inputs[_name] = args[0]

                handles.append(layer.register_forward_post_hook(hook))
        try:
            with substitute_parameters(model, {**theta, **clones}):
                logits = model(x_s)
        finally:
            for handle in handles:
                handle.remove()
        loss = step_loss(logits, y_s, soft_labels)
        params = [theta[name] for name in names]
        grads = parameter_gradients(loss, params, inputs=[x_s] if create_graph else None, create_graph=create_graph)
        if create_graph:
            theta = {name: sgd_rule(theta[name], g, lr)[0] for name, g in zip(names, grads)}
        else:
            theta = {}
            for name, p, g in zip(names, params, grads):
                new = sgd_rule(p, g, lr)[0].detach()
                new.stop_gradient = False
                theta[name] = new
        for lname, a in inputs.items():
            mean, var = batch_moments(a)
            if bn_convention == "torch":
                var = unbiased_variance(var, a)
            for key, stat in ((f"{lname}._mean", mean), (f"{lname}._variance", var)):
                if key in tracked:
                    tracked[key] = ema(tracked[key], stat, bn_momentum, bn_convention)
    delta = {name: theta[name] - theta0[name] for name in names}
    if track_bn:
        running_delta = {k: tracked[k] - r0[k] for k in tracked if k.endswith(("._mean", "._variance"))} if model.training else {}
    else:
        running_delta = {k: clones[k] - r0[k] for k in clones} if model.training else {}
    return LocalTraining(delta=delta, running_delta=running_delta, steps=len(steps))
