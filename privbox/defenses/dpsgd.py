"""DP-SGD for Paddle dygraph (Abadi et al., CCS 2016), ALGORITHMS.md §6.3.

One DP step: (1) Poisson-sample a batch (:class:`PoissonBatchSampler`); (2) per-sample
gradients g_i (hooks or micro-batches, :mod:`privbox.defenses.per_sample`); (3) clip
ḡ_i = g_i·min(1, C/(‖g_i‖ + 1e-6)) with the flat norm over all parameters; (4) add noise,
G = Σ_i ḡ_i + N(0, σ²C²·I); (5) divide by the expected batch size q·N (or the actual B) and let
the wrapped optimiser step. An :class:`~privbox.defenses.accountant.RDPAccountant` records every
step (Mironov et al. 2019; Balle et al. 2020 conversion).

Training loop (hook-supported layers: Linear, Conv2D, GroupNorm, LayerNorm)::

    engine = DPSGD(model, model.parameters(), learning_rate=0.1, noise_multiplier=1.1,
                   max_grad_norm=1.0, expected_batch_size=64, sample_rate=64 / len(train_set))
    for x, y in loader:                        # loader with a PoissonBatchSampler
        loss = F.cross_entropy(model(x), y)    # reduction='mean'
        loss.backward()
        engine.step()
        engine.clear_grad()
    print(engine.get_epsilon(delta=1e-5))

For other layers use ``loss = engine.backward(loss_fn, x, y)`` instead of ``loss.backward()``
(the micro-batch fallback).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import paddle
import paddle.nn as nn

from .accountant import RDPAccountant
from .per_sample import (
    LossFn,
    PerSampleGradients,
    check_no_batchnorm,
    per_sample_gradients_microbatch,
    supports_hooks,
)

__all__ = ["DPOptimizer", "DPSGD", "PoissonBatchSampler", "UniformBatchSampler"]


class DPOptimizer:
    """Wrap any Paddle optimiser so that each ``step()`` is a DP-SGD step.

    Args:
        optimizer: a ``paddle.optimizer.Optimizer`` over (a subset of) ``model``'s parameters;
            it receives the privatised gradient in ``.grad`` and applies its own update rule.
        model: the network whose per-sample gradients are needed (hooks are attached to it).
        noise_multiplier: σ; the noise std is σ·C (σ·‖(C_l)‖ for per-layer clipping).
        max_grad_norm: clipping bound C (a float; per-layer: a float for every parameter or
            a list with one bound per trainable parameter).
        expected_batch_size: divide the noisy sum by this (q·N, Opacus's choice for Poisson
            sampling). None: divide by the actual batch size B.
        sample_rate: q, used for privacy accounting (None: no accounting).
        loss_reduction: how the training loss reduces over the batch, ``"mean"`` or ``"sum"``.
        clipping: ``"flat"`` (one norm over all parameters) or ``"per_layer"``.
        per_sample: ``"auto"``, ``"hooks"`` or ``"microbatch"``.
        seed: seed of the NumPy generator that draws the noise (None: fresh entropy).
        accountant: an :class:`RDPAccountant` to update (default: a new one).

    Raises:
        ValueError: on BatchNorm in training mode (use GroupNorm or :func:`freeze_batchnorm`),
            on invalid arguments, or when ``step()`` finds no per-sample gradients.
    """

    def __init__(
        self,
        optimizer: paddle.optimizer.Optimizer,
        model: nn.Layer,
        noise_multiplier: float,
        max_grad_norm: Union[float, Sequence[float]],
        expected_batch_size: Optional[float] = None,
        sample_rate: Optional[float] = None,
        loss_reduction: str = "mean",
        clipping: str = "flat",
        per_sample: str = "auto",
        seed: Optional[int] = None,
        accountant: Optional[RDPAccountant] = None,
    ) -> None:
        if not isinstance(model, nn.Layer):
            raise TypeError(f"DPOptimizer: model must be a paddle.nn.Layer, got {type(model).__name__}")
        if noise_multiplier < 0 or not math.isfinite(noise_multiplier):
            raise ValueError(f"DPOptimizer: noise_multiplier must be a finite number >= 0, got {noise_multiplier}")
        if expected_batch_size is not None and not expected_batch_size > 0:
            raise ValueError(f"DPOptimizer: expected_batch_size must be > 0 (q * dataset size), got {expected_batch_size}")
        if sample_rate is not None and not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"DPOptimizer: sample_rate must be in (0, 1] (expected batch / dataset size), got {sample_rate}")
        if loss_reduction not in ("mean", "sum"):
            raise ValueError(f"DPOptimizer: loss_reduction must be 'mean' or 'sum', got {loss_reduction!r}")
        if clipping not in ("flat", "per_layer"):
            raise ValueError(f"DPOptimizer: clipping must be 'flat' or 'per_layer', got {clipping!r}")
        if per_sample not in ("auto", "hooks", "microbatch"):
            raise ValueError(f"DPOptimizer: per_sample must be 'auto', 'hooks' or 'microbatch', got {per_sample!r}")
        check_no_batchnorm(model)
        self.optimizer = optimizer
        self.model = model
        self.noise_multiplier = float(noise_multiplier)
        self.expected_batch_size = None if expected_batch_size is None else float(expected_batch_size)
        self.sample_rate = None if sample_rate is None else float(sample_rate)
        self.loss_reduction = loss_reduction
        self.clipping = clipping
        self.accountant = accountant if accountant is not None else RDPAccountant()
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.steps_taken = 0

        names = {id(p): n for n, p in model.named_parameters()}
        plist = optimizer._parameter_list or []
        if plist and isinstance(plist[0], dict):
            plist = [p for group in plist for p in group["params"]]
        self.params: List[paddle.Tensor] = [p for p in plist if not p.stop_gradient]
        missing = [p.name for p in self.params if id(p) not in names]
        if missing:
            raise ValueError(f"DPOptimizer: the optimizer has parameters that are not in the model: {missing}")
        if not self.params:
            raise ValueError("DPOptimizer: the optimizer has no trainable parameters")
        self.param_names = [names[id(p)] for p in self.params]

        if clipping == "flat":
            if isinstance(max_grad_norm, (list, tuple)):
                raise ValueError("DPOptimizer: flat clipping takes one max_grad_norm (a float); use clipping='per_layer' for a list")
            bounds = [float(max_grad_norm)]
        else:
            if isinstance(max_grad_norm, (list, tuple)):
                if len(max_grad_norm) != len(self.params):
                    raise ValueError(
                        f"DPOptimizer: per-layer clipping needs one bound per trainable parameter "
                        f"({len(self.params)}: {self.param_names}), got {len(max_grad_norm)}"
                    )
                bounds = [float(c) for c in max_grad_norm]
            else:
                bounds = [float(max_grad_norm)] * len(self.params)
        if any(not (c > 0 and math.isfinite(c)) for c in bounds):
            raise ValueError(f"DPOptimizer: max_grad_norm must be finite and > 0, got {max_grad_norm}")
        self.max_grad_norm = bounds[0] if clipping == "flat" else bounds
        self._bounds = bounds
        #: L2 sensitivity of the summed clipped gradient: C (flat) or sqrt(Σ C_l²) (per layer).
        self.sensitivity = bounds[0] if clipping == "flat" else float(math.sqrt(sum(c * c for c in bounds)))

        hooks_ok, unsupported = supports_hooks(model)
        if per_sample == "hooks" and not hooks_ok:
            raise ValueError(
                f"DPOptimizer: per_sample='hooks' but these layers have no per-sample hook rule: {unsupported}; "
                "use per_sample='microbatch' (and engine.backward(loss_fn, x, y)) or 'auto'"
            )
        self.mode = "hooks" if (per_sample == "hooks" or (per_sample == "auto" and hooks_ok)) else "microbatch"
        self._psg: Optional[PerSampleGradients] = (
            PerSampleGradients(model, loss_reduction=loss_reduction) if self.mode == "hooks" else None
        )
        self._micro: Optional[Dict[int, paddle.Tensor]] = None
        self._micro_batch_size: Optional[int] = None

    # ------------------------------------------------------------------------------- backward
    def backward(self, loss_fn: LossFn, inputs: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
        """Forward + per-sample backward in either mode; returns the (detached) mean batch loss.

        Use this instead of ``loss.backward()`` when the model has layers without a hook rule
        (micro-batch mode). ``loss_fn(outputs, labels)`` must reduce over the batch as declared by
        ``loss_reduction`` (mean by default).
        """
        check_no_batchnorm(self.model)
        if self.mode == "hooks":
            loss = loss_fn(self.model(inputs), labels)
            loss.backward()
            return loss.detach()
        if self._micro is not None:
            raise ValueError("per-sample gradients are already stored; call step() or clear_grad() after every backward")
        per = per_sample_gradients_microbatch(self.model, loss_fn, inputs, labels, self.params)
        by_name = dict(zip(self.param_names, self.params))
        self._micro = {id(by_name[n]): g for n, g in per.items()}
        self._micro_batch_size = int(inputs.shape[0])
        with paddle.no_grad():
            loss = loss_fn(self.model(inputs), labels)
        return loss.detach()

    def _per_sample(self) -> Dict[int, paddle.Tensor]:
        if self.mode == "hooks":
            assert self._psg is not None
            return self._psg.gradients_by_param()
        return dict(self._micro or {})

    # ----------------------------------------------------------------------------------- step
    @paddle.no_grad()
    def privatize(self, empty_batch: bool = False) -> Dict[str, paddle.Tensor]:
        """Clip, sum, noise and normalise the stored per-sample gradients.

        Returns the noisy gradient keyed by parameter name and writes it to each ``.grad``.
        ``empty_batch=True`` is for a Poisson batch with no sample: the result is pure noise
        divided by ``expected_batch_size`` (required then).
        """
        check_no_batchnorm(self.model)
        per = self._per_sample()
        if empty_batch:
            if per:
                raise ValueError("step(empty_batch=True) but per-sample gradients are stored; clear_grad() first")
            if self.expected_batch_size is None:
                raise ValueError("an empty Poisson batch needs expected_batch_size to normalise the noise-only step")
            batch = 0
        else:
            if not per:
                raise ValueError(
                    "DP step without per-sample gradients: run loss.backward() (hooks mode) or "
                    "engine.backward(loss_fn, x, y) before step(); for an empty Poisson batch call "
                    "step(empty_batch=True)"
                )
            batch = int(next(iter(per.values())).shape[0])
        for p, n in zip(self.params, self.param_names):
            if (
                self.mode == "hooks"
                and not empty_batch
                and id(p) not in per
                and p.grad is not None
                and bool((p.grad != 0).any().item())  # zero grads left by clear_grad() are fine
            ):
                raise ValueError(
                    f"parameter {n!r} received a gradient but no per-sample gradient; its layer was "
                    "called outside the hooked forward. Use per_sample='microbatch'."
                )
        # (3) clip
        factors: List[paddle.Tensor] = []
        if batch:
            if self.clipping == "flat":
                sq = paddle.zeros([batch], dtype="float64")
                for p in self.params:
                    if id(p) in per:
                        sq = sq + (per[id(p)].reshape([batch, -1]).astype("float64") ** 2).sum(axis=1)
                norm = paddle.sqrt(sq)
                f = paddle.clip(self._bounds[0] / (norm + 1e-6), max=1.0)
                factors = [f] * len(self.params)
            else:
                for p, c in zip(self.params, self._bounds):
                    g = per.get(id(p))
                    if g is None:
                        factors.append(paddle.ones([batch], dtype="float64"))
                        continue
                    norm = paddle.sqrt((g.reshape([batch, -1]).astype("float64") ** 2).sum(axis=1))
                    factors.append(paddle.clip(c / (norm + 1e-6), max=1.0))
        # (4) noise, (5) normalise
        normaliser = self.expected_batch_size if self.expected_batch_size is not None else float(batch)
        std = self.noise_multiplier * self.sensitivity
        out: Dict[str, paddle.Tensor] = {}
        for p, n, f in zip(self.params, self.param_names, factors or [None] * len(self.params)):
            g = per.get(id(p))
            if g is None or f is None:
                summed = paddle.zeros_like(p)
            else:
                fb = f.astype(g.dtype).reshape([batch] + [1] * (g.ndim - 1))
                summed = (g * fb).sum(axis=0)
            if std > 0:
                draw_dtype = np.float64 if p.dtype == paddle.float64 else np.float32
                noise = self._rng.standard_normal(tuple(p.shape), dtype=draw_dtype) * draw_dtype(std)
                summed = summed + paddle.to_tensor(noise, place=p.place).astype(summed.dtype)
            grad = (summed / normaliser).astype(p.dtype)
            p.grad = grad
            out[n] = grad
        return out

    def step(self, empty_batch: bool = False) -> None:
        """Privatise the gradients (:meth:`privatize`), step the wrapped optimiser, account, clear."""
        self.privatize(empty_batch=empty_batch)
        self.optimizer.step()
        if self.sample_rate is not None:
            self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        self.steps_taken += 1
        self._clear_per_sample()

    def _clear_per_sample(self) -> None:
        if self._psg is not None:
            self._psg.clear()
        self._micro = None
        self._micro_batch_size = None

    def clear_grad(self, set_to_zero: bool = True) -> None:
        """Clear parameter gradients and stored per-sample gradients."""
        self.optimizer.clear_grad(set_to_zero)
        self._clear_per_sample()

    zero_grad = clear_grad

    # ----------------------------------------------------------------------------- accounting
    def get_epsilon(self, delta: float) -> float:
        """ε spent so far at δ (RDP accountant, Balle et al. 2020 conversion)."""
        if self.sample_rate is None:
            raise ValueError("no privacy accounting: build the DP optimizer with sample_rate=batch/dataset size")
        return self.accountant.get_epsilon(delta)

    def get_privacy_spent(self, delta: float):
        """``(epsilon, optimal_alpha)`` spent so far at δ."""
        if self.sample_rate is None:
            raise ValueError("no privacy accounting: build the DP optimizer with sample_rate=batch/dataset size")
        return self.accountant.get_privacy_spent(delta)

    # ----------------------------------------------------------------------- delegation/state
    def get_lr(self) -> float:
        return self.optimizer.get_lr()

    def set_lr(self, value: float) -> None:
        self.optimizer.set_lr(value)

    def state_dict(self) -> Dict[str, Any]:
        """Wrapped optimiser state, accountant history, noise generator state and step count."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "accountant": self.accountant.state_dict(),
            "rng_state": self._rng.bit_generator.state,
            "steps_taken": self.steps_taken,
        }

    def set_state_dict(self, state: Dict[str, Any]) -> None:
        if state.get("optimizer"):
            self.optimizer.set_state_dict(state["optimizer"])
        if "accountant" in state:
            self.accountant.set_state_dict(state["accountant"])
        if "rng_state" in state:
            self._rng.bit_generator.state = state["rng_state"]
        self.steps_taken = int(state.get("steps_taken", self.steps_taken))

    def detach(self) -> None:
        """Remove the per-sample hooks from the model."""
        if self._psg is not None:
            self._psg.detach()


class DPSGD(DPOptimizer):
    """DP-SGD (Abadi et al., CCS 2016): :class:`DPOptimizer` around ``paddle.optimizer.SGD``.

    ``momentum > 0`` wraps ``paddle.optimizer.Momentum`` instead (post-processing of DP
    gradients, so the privacy guarantee is unchanged). All other arguments as in
    :class:`DPOptimizer`.
    """

    def __init__(
        self,
        model: nn.Layer,
        parameters: Optional[Sequence[paddle.Tensor]] = None,
        learning_rate: Union[float, paddle.optimizer.lr.LRScheduler] = 0.1,
        noise_multiplier: float = 1.0,
        max_grad_norm: Union[float, Sequence[float]] = 1.0,
        expected_batch_size: Optional[float] = None,
        sample_rate: Optional[float] = None,
        momentum: float = 0.0,
        weight_decay: Optional[float] = None,
        loss_reduction: str = "mean",
        clipping: str = "flat",
        per_sample: str = "auto",
        seed: Optional[int] = None,
        accountant: Optional[RDPAccountant] = None,
    ) -> None:
        if isinstance(learning_rate, int) and not isinstance(learning_rate, bool):
            learning_rate = float(learning_rate)
        params = list(parameters) if parameters is not None else model.parameters()
        if momentum:
            opt = paddle.optimizer.Momentum(learning_rate=learning_rate, momentum=momentum, parameters=params, weight_decay=weight_decay)
        else:
            opt = paddle.optimizer.SGD(learning_rate=learning_rate, parameters=params, weight_decay=weight_decay)
        super().__init__(
            opt,
            model,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=expected_batch_size,
            sample_rate=sample_rate,
            loss_reduction=loss_reduction,
            clipping=clipping,
            per_sample=per_sample,
            seed=seed,
            accountant=accountant,
        )


def _dataset_size(data: Any) -> int:
    if isinstance(data, (int, np.integer)):
        n = int(data)
    else:
        try:
            n = len(data)
        except TypeError as exc:
            raise TypeError("pass the dataset (with __len__) or its size as an int") from exc
    if n <= 0:
        raise ValueError(f"the dataset is empty (size {n})")
    return n


class PoissonBatchSampler(paddle.io.BatchSampler):
    """Poisson sampling for DP-SGD: every example joins each batch independently with prob. q.

    Batch sizes vary (mean q·N) and can be 0; that is what the RDP accountant assumes.
    Empty batches are skipped unless ``skip_empty=False``, in which case an empty list is
    yielded (use ``engine.step(empty_batch=True)``; ``paddle.io.DataLoader`` cannot collate
    an empty batch, so iterate the sampler yourself then).

    Args:
        data: a dataset (with ``len``) or the number of examples N.
        sample_rate: q in (0, 1].
        num_batches: batches per epoch (default: round(1/q)).
        seed: NumPy seed; each epoch continues the same generator.
        skip_empty: drop empty batches (the default; a step is then skipped with probability
            (1−q)^N, negligible for realistic N·q).
    """

    def __init__(
        self,
        data: Any,
        sample_rate: float,
        num_batches: Optional[int] = None,
        seed: Optional[int] = None,
        skip_empty: bool = True,
    ) -> None:
        self.num_samples = _dataset_size(data)
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.sample_rate = float(sample_rate)
        self.num_batches = int(num_batches) if num_batches is not None else max(1, int(round(1.0 / sample_rate)))
        if self.num_batches <= 0:
            raise ValueError(f"num_batches must be > 0, got {num_batches}")
        self.skip_empty = bool(skip_empty)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.batch_size = None  # variable; DataLoader must not assume a fixed size
        self.drop_last = False

    def __iter__(self) -> Iterator[List[int]]:
        for _ in range(self.num_batches):
            mask = self._rng.random(self.num_samples) < self.sample_rate
            idx = np.flatnonzero(mask).tolist()
            if not idx and self.skip_empty:
                continue
            yield idx

    def __len__(self) -> int:
        return self.num_batches


class UniformBatchSampler(paddle.io.BatchSampler):
    """Fixed-size batches drawn uniformly without replacement, independently at every step.

    The RDP accountant analyses Poisson sampling; with fixed-size batches its ε (q = B/N) is an
    approximation, not a proof. Prefer :class:`PoissonBatchSampler` for formal guarantees.
    """

    def __init__(self, data: Any, batch_size: int, num_batches: Optional[int] = None, seed: Optional[int] = None) -> None:
        self.num_samples = _dataset_size(data)
        if int(batch_size) != batch_size or not 0 < batch_size <= self.num_samples:
            raise ValueError(f"batch_size must be an integer in [1, {self.num_samples}], got {batch_size}")
        self.batch_size = int(batch_size)
        self.sample_rate = self.batch_size / self.num_samples
        self.num_batches = int(num_batches) if num_batches is not None else max(1, self.num_samples // self.batch_size)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.drop_last = False

    def __iter__(self) -> Iterator[List[int]]:
        for _ in range(self.num_batches):
            yield np.sort(self._rng.choice(self.num_samples, size=self.batch_size, replace=False)).tolist()

    def __len__(self) -> int:
        return self.num_batches
