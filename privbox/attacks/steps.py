"""Step rules of the optimisation engine: Adam on a list of tensors (with Inverting Gradients'
signed variant) and the flat-vector bridge to the NumPy L-BFGS (:mod:`privbox.attacks.lbfgs`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import paddle

__all__ = ["Adam", "flatten", "unflatten"]


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
