"""L-BFGS on a flat NumPy vector, for the small variable sets of gradient inversion.

The dummy batch of an attack has a few thousand to a few hundred thousand entries, while
``paddle.optimizer.LBFGS`` runs its two-loop recursion as hundreds of tiny Paddle ops per
iteration: on the DLG LeNet that bookkeeping took about three quarters of the attack's time.
This implementation keeps the history in NumPy (float64) and calls the objective through a
closure ``f(flat) -> (loss, grad)``. It follows the algorithm and stopping rules of
``torch.optim.LBFGS`` / ``paddle.optimizer.LBFGS`` (Nocedal & Wright, *Numerical Optimization*,
Alg. 7.4), with state kept across :meth:`step` calls, either with a fixed step or with a
strong-Wolfe line search (Alg. 3.5 bracketing + Alg. 3.6 zoom, cubic interpolation).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

Closure = Callable[[np.ndarray], tuple[float, np.ndarray]]


class Reductions:
    """The vector reductions L-BFGS takes over the whole variable vector. Under ``--distributed``
    each rank holds a shard of the vector and the engine passes the active collective
    (:class:`privbox.distributed.collective.Collective`), whose methods add over the ranks, so
    every rank takes the same steps as one process would."""

    @staticmethod
    def dot(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b)

    @staticmethod
    def max_abs(a: np.ndarray) -> float:
        return float(np.abs(a).max()) if a.size else 0.0

    @staticmethod
    def sum_abs(a: np.ndarray) -> float:
        return float(np.abs(a).sum())


def _cubic_minimum(x1: float, f1: float, g1: float, x2: float, f2: float, g2: float, bounds=None) -> float:
    """Minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clipped to ``bounds``."""
    lo, hi = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2)
    disc = d1 * d1 - g1 * g2
    if disc < 0:
        return (lo + hi) / 2.0
    d2 = float(np.sqrt(disc))
    if x1 <= x2:
        point = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
    else:
        point = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
    return float(min(max(point, lo), hi))


def strong_wolfe_search(
    evaluate: Callable[[float], tuple[float, np.ndarray]],
    direction: np.ndarray,
    step: float,
    loss: float,
    grad: np.ndarray,
    slope: float,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_evals: int = 25,
    reductions: Reductions = Reductions(),
) -> tuple[float, np.ndarray, float, int]:
    """Find a step satisfying the strong Wolfe conditions along ``direction``.

    ``evaluate(t)`` returns the loss and gradient at ``x + t·direction``; ``slope`` is the
    directional derivative at t = 0 (negative). Returns (loss, grad, t, evaluations).
    """
    scale = reductions.max_abs(direction)
    f_new, g_new = evaluate(step)
    evals = 1
    slope_new = reductions.dot(g_new, direction)
    t_prev, f_prev, g_prev, slope_prev = 0.0, loss, grad, slope
    done = False
    # Bracketing phase: grow the step until an interval holding a Wolfe point is found.
    bracket, b_f, b_g, b_slope = [0.0, step], [loss, f_new], [grad, g_new], [slope, slope_new]
    while evals < max_evals:
        if not np.isfinite(f_new):
            break
        if f_new > loss + c1 * step * slope or (evals > 1 and f_new >= f_prev):
            bracket, b_f, b_g, b_slope = [t_prev, step], [f_prev, f_new], [g_prev, g_new], [slope_prev, slope_new]
            break
        if abs(slope_new) <= -c2 * slope:
            bracket, b_f, b_g, b_slope = [step], [f_new], [g_new], [slope_new]
            done = True
            break
        if slope_new >= 0:
            bracket, b_f, b_g, b_slope = [t_prev, step], [f_prev, f_new], [g_prev, g_new], [slope_prev, slope_new]
            break
        new_step = _cubic_minimum(t_prev, f_prev, slope_prev, step, f_new, slope_new,
                                  bounds=(step + 0.01 * (step - t_prev), step * 10.0))
        t_prev, f_prev, g_prev, slope_prev = step, f_new, g_new, slope_new
        step = new_step
        f_new, g_new = evaluate(step)
        evals += 1
        slope_new = reductions.dot(g_new, direction)
        bracket, b_f, b_g, b_slope = [0.0, step], [loss, f_new], [grad, g_new], [slope, slope_new]
    if not np.isfinite(f_new):
        return f_new, g_new, step, evals
    # Zoom phase: shrink the bracket until the strong Wolfe conditions hold.
    stalled = False
    if len(bracket) == 2:
        low, high = (0, 1) if b_f[0] <= b_f[1] else (1, 0)
    else:
        low, high = 0, 0
    while not done and evals < max_evals and len(bracket) == 2:
        if abs(bracket[1] - bracket[0]) * scale < tolerance_change:
            break
        step = _cubic_minimum(bracket[0], b_f[0], b_slope[0], bracket[1], b_f[1], b_slope[1])
        margin = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - step, step - min(bracket)) < margin:
            if stalled or step >= max(bracket) or step <= min(bracket):
                step = max(bracket) - margin if abs(step - max(bracket)) < abs(step - min(bracket)) else min(bracket) + margin
                stalled = False
            else:
                stalled = True
        else:
            stalled = False
        f_new, g_new = evaluate(step)
        evals += 1
        slope_new = reductions.dot(g_new, direction)
        if not np.isfinite(f_new):
            return f_new, g_new, step, evals
        if f_new > loss + c1 * step * slope or f_new >= b_f[low]:
            bracket[high], b_f[high], b_g[high], b_slope[high] = step, f_new, g_new, slope_new
            low, high = (0, 1) if b_f[0] <= b_f[1] else (1, 0)
        else:
            if abs(slope_new) <= -c2 * slope:
                done = True
            elif slope_new * (bracket[high] - bracket[low]) >= 0:
                bracket[high], b_f[high], b_g[high], b_slope[high] = bracket[low], b_f[low], b_g[low], b_slope[low]
            bracket[low], b_f[low], b_g[low], b_slope[low] = step, f_new, g_new, slope_new
    return b_f[low], b_g[low], bracket[low], evals


class NumpyLBFGS:
    """Limited-memory BFGS with a fixed step (``lr``) and persistent curvature history.

    Args:
        x0: initial point (flattened).
        lr: step length (1.0 in DLG).
        max_iter: inner iterations per :meth:`step`.
        max_eval: objective evaluations per :meth:`step` (default ``1.25 * max_iter``).
        history_size: number of curvature pairs kept.
        tolerance_grad / tolerance_change: stopping thresholds, as in PyTorch and Paddle.
        line_search: ``None`` (fixed step ``lr``) or ``"strong_wolfe"``.
        reductions: dot product, max |·| and Σ|·| over the variable vector (:class:`Reductions`).
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
        line_search: Optional[str] = None,
        reductions: Optional[Reductions] = None,
    ) -> None:
        self.reductions = reductions if reductions is not None else Reductions()
        if line_search not in (None, "strong_wolfe"):
            raise ValueError(f"line_search must be None or 'strong_wolfe', got {line_search!r}")
        self.line_search = line_search
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
            alpha = rho * self.reductions.dot(s, q)
            q = q - alpha * y
            alphas.append(alpha)
        r = q * self._h_diag
        for (s, y, rho), alpha in zip(zip(self._steps, self._dirs, self._rho), reversed(alphas)):
            beta = rho * self.reductions.dot(y, r)
            r = r + s * (alpha - beta)
        return r

    def step(self, closure: Closure) -> float:
        """Run up to ``max_iter`` iterations; returns the loss at the starting point."""
        loss, grad = closure(self.x)
        orig_loss = loss
        grad = np.asarray(grad, dtype=np.float64)
        red = self.reductions
        if not np.isfinite(loss) or red.max_abs(grad) <= self.tolerance_grad:
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
                ys = red.dot(y, s)
                if ys > 1e-10:
                    if len(self._dirs) == self.history_size:
                        self._dirs.pop(0), self._steps.pop(0), self._rho.pop(0)
                    self._dirs.append(y)
                    self._steps.append(s)
                    self._rho.append(1.0 / ys)
                    self._h_diag = ys / red.dot(y, y)
                self._d = self._direction(grad)
            self._prev_grad = grad.copy()
            prev_loss = loss
            self._t = min(1.0, 1.0 / red.sum_abs(grad)) * self.lr if self._n_iter == 1 else self.lr
            if red.dot(grad, self._d) > -self.tolerance_change:
                break
            if self.line_search == "strong_wolfe":
                start = self.x.copy()
                direction = self._d

                def along(t: float) -> tuple[float, np.ndarray]:
                    value, g = closure(start + t * direction)
                    return value, np.asarray(g, dtype=np.float64)

                loss, grad, self._t, used = strong_wolfe_search(
                    along, direction, self._t, loss, grad, red.dot(grad, direction),
                    tolerance_change=self.tolerance_change, reductions=red,
                )
                self.x = start + self._t * direction
                evals += used
                if inner == self.max_iter:
                    break
            else:
                self.x = self.x + self._t * self._d
                if inner == self.max_iter:
                    break
                loss, grad = closure(self.x)
                grad = np.asarray(grad, dtype=np.float64)
                evals += 1
            if not np.isfinite(loss) or evals >= self.max_eval:
                break
            if red.max_abs(grad) <= self.tolerance_grad:
                break
            if red.max_abs(self._d * self._t) <= self.tolerance_change:
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
