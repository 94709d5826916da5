"""The FedAvg server: the full global model state, aggregation and evaluation (ALGORITHMS.md §9.2).

The server keeps **every** state entry of the global model: the trainable parameters and the
BatchNorm running statistics, as NVIDIA FLARE's server does. A round's update of client k is its
weight delta ΔW_k (``update.tensors``) plus its running-statistic change (``update.buffer_delta``;
absent keys did not move). FedAvg (McMahan et al., AISTATS 2017) sets, per key,

    W ← W + Σ_k w_k·ΔW_k / Σ_k w_k

over the clients whose update was not dropped, with w_k the client's number of local samples
n_k (``weighting="samples"``, the paper's rule) or its number of local steps
(``weighting="steps"``, NVIDIA FLARE's ``n_iter`` weights). Noise added by a defense can push an
aggregated running variance below 0; it is clamped at 0 and the count is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import paddle
import paddle.nn as nn

from ..core.errors import InputError
from ..core.update import ClientUpdate

__all__ = ["FedAvgServer", "Evaluation", "client_weight"]


def client_weight(update: ClientUpdate, weighting: str) -> float:
    """FedAvg weight of one update: its number of local samples or of local steps."""
    return float(update.meta.num_samples if weighting == "samples" else update.meta.local_steps)


@dataclass
class Evaluation:
    """Accuracy and mean cross-entropy of the global model on the held-out set."""

    accuracy: float
    loss: float


class FedAvgServer:
    """Holds the global state ``{name: ndarray}`` and applies FedAvg rounds.

    Args:
        model: the global architecture (its state is the initial global model).
        weighting: ``"samples"`` or ``"steps"`` (see the module docstring).
    """

    def __init__(self, model: nn.Layer, weighting: str = "samples") -> None:
        self.model = model
        self.weighting = weighting
        self.state: dict[str, np.ndarray] = {k: np.array(v.numpy(), copy=True) for k, v in model.state_dict().items()}
        self.trainable = {name for name, p in model.named_parameters() if not p.stop_gradient}
        self.last_clamped = 0

    def global_state(self) -> dict[str, np.ndarray]:
        """A copy of the global state (what is broadcast to the clients)."""
        return {k: v.copy() for k, v in self.state.items()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        """Replace the global state (resume)."""
        missing = sorted(set(self.state) - set(state))
        if missing:
            raise InputError(f"the saved global state lacks {missing[:5]}", where="fl state")
        self.state = {k: np.asarray(state[k], dtype=self.state[k].dtype).copy() for k in self.state}

    def aggregate(self, updates: Sequence[ClientUpdate]) -> dict[str, float]:
        """Apply one FedAvg step with the (non-dropped) ``updates``; returns the weights used by position.

        With no update (every client dropped or out of budget) the global model stays as it is.
        """
        if not updates:
            self.last_clamped = 0
            return {}
        weights = np.array([client_weight(u, self.weighting) for u in updates], dtype=np.float64)
        if not np.all(weights > 0):
            raise InputError(f"FedAvg weights must be positive, got {weights.tolist()}", where="fl server")
        norm = weights / weights.sum()
        new_state = {}
        for key, value in self.state.items():
            total = np.zeros(value.shape, dtype=np.float64)
            for w, u in zip(norm, updates):
                delta = u.tensors.get(key) if key in self.trainable else (u.buffer_delta or {}).get(key)
                if delta is not None:
                    if delta.shape != value.shape:
                        raise InputError(f"update entry {key} has shape {delta.shape}, the global model {value.shape}", where="fl server")
                    total += w * delta.astype(np.float64)
            new_state[key] = (value.astype(np.float64) + total).astype(value.dtype)
        self.last_clamped = 0
        for key in new_state:
            if key.endswith("_variance"):
                negative = new_state[key] < 0
                self.last_clamped += int(negative.sum())
                new_state[key] = np.where(negative, 0, new_state[key]).astype(new_state[key].dtype)
        self.state = new_state
        return {str(i): float(w) for i, w in enumerate(weights)}

    def evaluate(self, images: np.ndarray, labels: np.ndarray, mean: Sequence[float], std: Sequence[float],
                 batch_size: int = 256) -> Evaluation:
        """Accuracy and loss of the global model (eval mode: BN uses the running statistics)."""
        from ..core.images import normalize

        self.model.set_state_dict({k: paddle.to_tensor(v) for k, v in self.state.items()})
        self.model.eval()
        correct, loss_sum = 0, 0.0
        with paddle.no_grad():
            for start in range(0, images.shape[0], batch_size):
                x = normalize(images[start:start + batch_size], mean, std)
                y = paddle.to_tensor(labels[start:start + batch_size])
                logits = self.model(x)
                loss_sum += float(paddle.nn.functional.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(axis=1) == y).astype("int64").sum())
        n = max(int(images.shape[0]), 1)
        return Evaluation(accuracy=correct / n, loss=loss_sum / n)


def best_of(history: Sequence[dict], key: str = "accuracy") -> Optional[int]:
    """Index of the best evaluated round (highest accuracy, earliest on ties)."""
    best, index = None, None
    for i, h in enumerate(history):
        value = h.get(key)
        if value is not None and (best is None or value > best):
            best, index = value, i
    return index
