"""L-BFGS on a flat NumPy vector, for the small variable sets of gradient inversion.

The dummy batch of an attack has a few thousand to a few hundred thousand entries, while
``paddle.optimizer.LBFGS`` runs its two-loop recursion as hundreds of tiny Paddle ops per
iteration: on the DLG LeNet that bookkeeping took about three quarters of the attack's time.
This implementation keeps the history in NumPy (float64) and calls the objective through a
closure ``f(flat) -> (loss, grad)``. It follows the same fixed-step algorithm and stopping
rules as ``torch.optim.LBFGS`` / ``paddle.optimizer.LBFGS`` without a line search (Nocedal &
Wright, *Numerical Optimization*, Alg. 7.4), with state kept across :meth:`step` calls.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

Closure = Callable[[np.ndarray], tuple[float, np.ndarray]]


class NumpyLBFGS:
    """Limited-memory BFGS with a fixed step (``lr``) and persistent curvature history.

    Args:
        x0: initial point (flattened).
        lr: step length (1.0 in DLG).
        max_iter: inner iterations per :meth:`step`.
        max_eval: objective evaluations per :meth:`step` (default ``1.25 * max_iter``).
        history_size: number of curvature pairs kept.
        tolerance_grad / tolerance_change: stopping thresholds, as in PyTorch and Paddle.
    """

    def __init__(
        self,
        x0: np.ndarray,
        lr: float = 1.0,
        max_iter: int = 20,
        max_eval: Optional[int] = None,
        history_size: int = 100,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
    ) -> None:
        self.x = np.asarray(x0, dtype=np.float64).copy()
        self.lr = float(lr)
        self.max_iter = int(max_iter)
        self.max_eval = int(max_eval) if max_eval is not None else self.max_iter * 5 // 4
        self.history_size = int(history_size)
        self.tolerance_grad = tolerance_grad
        self.tolerance_change = tolerance_change
        self._dirs: list[np.ndarray] = []  # y_k = g_{k+1} - g_k
        self._steps: list[np.ndarray] = []  # s_k = t_k d_k
        self._rho: list[float] = []
        self._h_diag = 1.0
        self._d: Optional[np.ndarray] = None
        self._t = 0.0
        self._prev_grad: Optional[np.ndarray] = None
        self._n_iter = 0

    def _direction(self, grad: np.ndarray) -> np.ndarray:
        q = -grad
        alphas = []
        for s, y, rho in zip(reversed(self._steps), reversed(self._dirs), reversed(self._rho)):
            alpha = rho * float(s @ q)
            q = q - alpha * y
            alphas.append(alpha)
        r = q * self._h_diag
        for (s, y, rho), alpha in zip(zip(self._steps, self._dirs, self._rho), reversed(alphas)):
            beta = rho * float(y @ r)
            r = r + s * (alpha - beta)
        return r

    def step(self, closure: Closure) -> float:
        """Run up to ``max_iter`` iterations; returns the loss at the starting point."""
        loss, grad = closure(self.x)
        orig_loss = loss
        grad = np.asarray(grad, dtype=np.float64)
        if not np.isfinite(loss) or np.abs(grad).max() <= self.tolerance_grad:
            return orig_loss
        evals = 1
        for inner in range(1, self.max_iter + 1):
            self._n_iter += 1
            if self._n_iter == 1:
                self._d = -grad
                self._dirs, self._steps, self._rho, self._h_diag = [], [], [], 1.0
            else:
                y = grad - self._prev_grad
                s = self._d * self._t
                ys = float(y @ s)
                if ys > 1e-10:
                    if len(self._dirs) == self.history_size:
                        self._dirs.pop(0), self._steps.pop(0), self._rho.pop(0)
                    self._dirs.append(y)
                    self._steps.append(s)
                    self._rho.append(1.0 / ys)
                    self._h_diag = ys / float(y @ y)
                self._d = self._direction(grad)
            self._prev_grad = grad.copy()
            prev_loss = loss
            self._t = min(1.0, 1.0 / np.abs(grad).sum()) * self.lr if self._n_iter == 1 else self.lr
            if float(grad @ self._d) > -self.tolerance_change:
                break
            self.x = self.x + self._t * self._d
            if inner == self.max_iter:
                break
            loss, grad = closure(self.x)
            grad = np.asarray(grad, dtype=np.float64)
            evals += 1
            if not np.isfinite(loss) or evals >= self.max_eval:
                break
            if np.abs(grad).max() <= self.tolerance_grad:
                break
            if np.abs(self._d * self._t).max() <= self.tolerance_change:
                break
            if abs(loss - prev_loss) < self.tolerance_change:
                break
        return orig_loss

    def state_dict(self) -> dict:
        """Everything :meth:`step` depends on, as arrays and scalars (for checkpoints)."""
        state = {
            "kind": "lbfgs",
            "x": self.x.copy(),
            "lr": self.lr,
            "h_diag": self._h_diag,
            "t": self._t,
            "n_iter": self._n_iter,
            "dirs": [d.copy() for d in self._dirs],
            "steps": [s.copy() for s in self._steps],
            "rho": np.asarray(self._rho, dtype=np.float64),
        }
        if self._d is not None:
            state["d"] = self._d.copy()
            state["prev_grad"] = self._prev_grad.copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a state from :meth:`state_dict`."""
        self.x = np.asarray(state["x"], dtype=np.float64).copy()
        self.lr = float(state["lr"])
        self._h_diag = float(state["h_diag"])
        self._t = float(state["t"])
        self._n_iter = int(state["n_iter"])
        self._dirs = [np.asarray(d, dtype=np.float64) for d in state.get("dirs", [])]
        self._steps = [np.asarray(s, dtype=np.float64) for s in state.get("steps", [])]
        self._rho = [float(r) for r in np.asarray(state.get("rho", []), dtype=np.float64).reshape(-1)]
        self._d = np.asarray(state["d"], dtype=np.float64) if "d" in state else None
        self._prev_grad = np.asarray(state["prev_grad"], dtype=np.float64) if "prev_grad" in state else None
