"""The definition of one local training step, shared by the client and the attacks' twin.

A FedAvg client (McMahan et al., AISTATS 2017) runs K = E·⌈n/b⌉ steps
θ_s = θ_{s−1} − η·∇_θ CE(f_{θ_{s−1}}(x_(s)), y_(s)) on minibatches of its n samples.
:class:`privbox.fl.client.Client` executes these steps on a real model (BN updates its running
statistics in place); the FedAvg inversion (Geiping et al., NeurIPS 2020; Hatamizadeh et al.,
IEEE TMI 2023) unrolls the *same* steps as one differentiable graph
(:func:`privbox.attacks.fedavg.simulate_local_sgd`). Both take from this module:

* :func:`local_minibatches`: which samples each step sees, in which order;
* :func:`step_loss`: the loss of one step (batch-mean cross-entropy, hard or soft targets);
* :func:`sgd_rule`: the parameter update θ ← θ − η·(g + λθ) (+ heavy-ball momentum);
* :func:`privbox.core.bn.ema`: the BN running-statistic update (Paddle's convention).

so that the twin cannot drift from the client.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import paddle

from ..core.errors import ConfigError
from ..nn import functional as PF

__all__ = ["local_minibatches", "num_local_steps", "step_loss", "sgd_rule"]


def local_minibatches(num_samples: int, batch_size: int, epochs: int, shuffle: bool = False, seed: int = 0) -> list[np.ndarray]:
    """Sample indices of each local SGD step: ``epochs`` passes of ``ceil(n/b)`` minibatches.

    Without shuffling every epoch visits the samples in order in contiguous chunks of ``b`` (the
    last one smaller when ``b`` does not divide ``n``, no ``drop_last``); with shuffling each
    epoch uses a fresh permutation from ``numpy.random.default_rng(seed)``. The number of steps
    is K = E·⌈n/b⌉ (ALGORITHMS.md §1.2).
    """
    if num_samples < 1:
        raise ConfigError(f"a client needs at least one sample, got {num_samples}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
    if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
        raise ConfigError(f"local_epochs must be a positive integer, got {epochs}")
    rng = np.random.default_rng(seed)
    steps = []
    for _ in range(int(epochs)):
        order = rng.permutation(num_samples) if shuffle else np.arange(num_samples)
        steps += [order[start : start + int(batch_size)] for start in range(0, num_samples, int(batch_size))]
    return steps


def num_local_steps(num_samples: int, batch_size: int, epochs: int) -> int:
    """K = E·⌈n/b⌉."""
    return int(epochs) * math.ceil(int(num_samples) / int(batch_size))


def step_loss(logits: paddle.Tensor, labels: paddle.Tensor, soft_labels: bool = False) -> paddle.Tensor:
    """The loss of one local step: batch-mean cross-entropy.

    ``labels`` are class indices, or with ``soft_labels`` label logits whose softmax is the
    target (DLG's joint label optimisation, Zhu et al., NeurIPS 2019). Twice differentiable
    (:func:`privbox.nn.functional.cross_entropy`).
    """
    return PF.cross_entropy(logits, labels, soft_label=soft_labels, label_logits=soft_labels)


def sgd_rule(
    theta: paddle.Tensor,
    grad: paddle.Tensor,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    velocity: Optional[paddle.Tensor] = None,
) -> tuple[paddle.Tensor, Optional[paddle.Tensor]]:
    """One SGD update of a parameter: ``(θ_new, velocity_new)``.

    d = g + λ·θ; with momentum m, v ← m·v + d (v starts at d, PyTorch/Paddle heavy ball) and
    d = v; θ_new = θ − η·d. Plain SGD (m = λ = 0, the FedAvg client) is θ − η·g, and then the
    expression is graph-friendly: the twin calls it on tensors that carry a graph.
    """
    d = grad + weight_decay * theta if weight_decay else grad
    new_velocity = None
    if momentum:
        new_velocity = d if velocity is None else momentum * velocity + d
        d = new_velocity
    return theta - lr * d, new_velocity
