"""Step rules of the optimisation engine: Adam on a list of tensors (with Inverting Gradients'
signed variant) and the flat-vector bridge to the NumPy L-BFGS (:mod:`privbox.attacks.lbfgs`)."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import paddle

from ..distributed.collective import active as active_collective

__all__ = ["Adam", "flatten", "unflatten", "take_step", "initial_images"]


class Adam:
    """Adam (Kingma & Ba, 2015) on a list of tensors; the sign is taken before the moments when
    ``signed`` (Inverting Gradients' "signed Adam")."""

    def __init__(self, variables: list[paddle.Tensor], betas: tuple[float, float], signed: bool) -> None:
        self.variables, self.betas, self.signed = variables, betas, signed
        self.t = 0
        self._m = [paddle.zeros(v.shape, dtype=v.dtype) for v in variables]
        self._v = [paddle.zeros(v.shape, dtype=v.dtype) for v in variables]

    def step(self, grads: list[paddle.Tensor], lr: float) -> None:
        b1, b2 = self.betas
        self.t += 1
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        with paddle.no_grad():
            for i, (var, grad) in enumerate(zip(self.variables, grads)):
                if self.signed:
                    grad = paddle.sign(grad)
                self._m[i] = b1 * self._m[i] + (1 - b1) * grad
                self._v[i] = b2 * self._v[i] + (1 - b2) * grad * grad
                var.set_value(var - lr * (self._m[i] / c1) / (paddle.sqrt(self._v[i] / c2) + 1e-8))

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "adam", "t": self.t, "m": [m.numpy() for m in self._m], "v": [v.numpy() for v in self._v]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        self._m = [paddle.to_tensor(np.asarray(a, dtype=np.float32)) for a in state["m"]]
        self._v = [paddle.to_tensor(np.asarray(a, dtype=np.float32)) for a in state["v"]]


def flatten(tensors) -> np.ndarray:
    return np.concatenate([np.asarray(t.numpy() if hasattr(t, "numpy") else t).reshape(-1) for t in tensors]).astype(np.float64)


def unflatten(flat: np.ndarray, variables: list[paddle.Tensor]) -> None:
    offset = 0
    for var in variables:
        size = int(np.prod(var.shape))
        var.set_value(flat[offset : offset + size].reshape(var.shape).astype(np.float32))
        offset += size


def take_step(optimizer: Any, losses: Callable, track: Callable, variables: list[paddle.Tensor], lr: float, t: int) -> tuple[float, bool]:
    """One iteration of ``optimizer``'s step rule; returns (gradient loss, all finite).

    ``losses()`` gives (total, distance) at the current variables; ``track(distance, t)`` records
    the best iterate. Adam takes one step on the total's gradient; L-BFGS runs its inner
    iterations through a closure on the flattened variables.
    """
    if isinstance(optimizer, Adam):
        total, distance = losses()
        value = float(distance)
        if not (math.isfinite(value) and math.isfinite(float(total))):
            return value, False
        track(value, t)
        optimizer.step(paddle.grad(total, variables), lr)
        return value, True
    seen: list[float] = []
    optimizer.lr = lr

    def closure(flat: np.ndarray) -> tuple[float, np.ndarray]:
        unflatten(flat, variables)
        total, distance = losses()
        value = float(distance)
        seen.append(value)
        if not math.isfinite(float(total)):
            return math.nan, np.zeros_like(flat)
        track(value, t)
        return float(total), flatten(paddle.grad(total, variables))

    optimizer.step(closure)
    unflatten(optimizer.x, variables)
    finite = bool(np.isfinite(optimizer.x).all())
    value = seen[0] if seen else math.nan
    return value, finite and all(math.isfinite(v) for v in seen)


def initial_images(init: str, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """The first iterate: ``"randn"`` N(0, I), ``"rand"`` U(0, 1) or ``"zeros"`` (float32)."""
    if init == "randn":
        return rng.standard_normal(shape).astype(np.float32)
    if init == "rand":
        return rng.random(shape).astype(np.float32)
    return np.zeros(shape, dtype=np.float32)
