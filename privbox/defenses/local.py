"""Optimizer defenses: defenses that act *inside* a client's local training, on every step.

:class:`privbox.fl.client.Client` calls, for each local step, :meth:`LocalStepDefense.gradient`
(a defense may compute the step gradient itself, as DP-SGD does from clipped per-sample
gradients) and then :meth:`LocalStepDefense.transform` (a defense may replace the gradient the
SGD rule applies, as DGC does with its sparse, momentum-corrected values). The update transforms
of :mod:`privbox.defenses.transforms` act afterwards on what the client sends.

* :class:`DPSGDStep`: DP-SGD (Abadi et al., CCS 2016) through :class:`~privbox.defenses.DPSGD`:
  per-sample clipping to C, N(0, σ²C²) on the sum, divided by the (expected) batch size; the RDP
  accountant counts the steps when the sampling rate is known.
* :class:`DGCStep`: Deep Gradient Compression (Lin et al., ICLR 2018) as the local optimiser:
  each step applies the output of a :class:`~privbox.defenses.DGCCompressor` (the momentum is
  inside it, the step itself is plain SGD, like :class:`~privbox.defenses.DGCMomentum`).
* :class:`BatchClipStep`: clip every local step's whole-batch gradient to C (the
  Label-based-Defense "DP-SGD" with local iterations; no DP guarantee).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from .accountant import RDPAccountant
from .dgc import DGCCompressor
from .transforms import batch_clip_noise

__all__ = ["LocalStepDefense", "DPSGDStep", "DGCStep", "BatchClipStep"]

Named = List[Tuple[str, paddle.Tensor]]


class LocalStepDefense:
    """Base class of an optimizer defense (see the module docstring). Stateless by default."""

    #: whether :meth:`gradient` computes the step gradient (then shards are not supported)
    computes_gradient = False

    def begin(self, model: nn.Layer, named: Named) -> None:
        """Called once before the client's local steps of a round."""

    def gradient(self, model: nn.Layer, x: paddle.Tensor, y: paddle.Tensor, loss_fn) -> Optional[Dict[str, paddle.Tensor]]:
        """The step gradient, or None to let the client compute the plain one."""
        return None

    def transform(self, grads: Dict[str, paddle.Tensor], step: int) -> Dict[str, paddle.Tensor]:
        """The gradient the SGD rule applies at this step (default: unchanged)."""
        return grads

    def end(self) -> None:
        """Called once after the local steps (also on error)."""

    def describe(self) -> str:
        return type(self).__name__


class DPSGDStep(LocalStepDefense):
    """DP-SGD local steps: clipped per-sample gradients plus Gaussian noise (Abadi et al., CCS 2016).

    Args:
        noise_multiplier: σ (noise std σ·C).
        max_grad_norm: C.
        expected_batch_size: divide the noisy sum by this (q·N for Poisson sampling); None: the
            actual batch size.
        sample_rate: q, for the accountant (None: no accounting, :meth:`get_epsilon` refuses).
        seed: seed of the noise generator (kept across rounds).
    """

    computes_gradient = True

    def __init__(self, noise_multiplier: float, max_grad_norm: float = 1.0, expected_batch_size: Optional[float] = None,
                 sample_rate: Optional[float] = None, seed: Optional[int] = None) -> None:
        if not (np.isfinite(noise_multiplier) and noise_multiplier >= 0):
            raise ValueError(f"DPSGDStep: noise_multiplier must be a finite number >= 0, got {noise_multiplier}")
        if not (np.isfinite(max_grad_norm) and max_grad_norm > 0):
            raise ValueError(f"DPSGDStep: max_grad_norm must be a positive number, got {max_grad_norm}")
        self.noise_multiplier = float(noise_multiplier)
        self.max_grad_norm = float(max_grad_norm)
        self.expected_batch_size = expected_batch_size
        self.sample_rate = sample_rate
        self.seed = seed
        self.accountant = RDPAccountant()
        self.steps_taken = 0
        self._rng_state: Optional[dict] = None
        self._engine = None

    def begin(self, model: nn.Layer, named: Named) -> None:
        from .dpsgd import DPSGD

        self._engine = DPSGD(
            model, [p for _, p in named], learning_rate=1.0, noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.max_grad_norm, expected_batch_size=self.expected_batch_size,
            sample_rate=self.sample_rate, seed=self.seed, accountant=self.accountant,
        )
        if self._rng_state is not None:  # the noise stream continues across rounds
            self._engine._rng.bit_generator.state = self._rng_state

    def gradient(self, model, x, y, loss_fn):
        engine = self._engine
        loss_fn(model(x), y).backward()
        grads = {k: v.detach().clone() for k, v in engine.privatize().items()}
        engine.clear_grad()
        if self.sample_rate is not None:
            self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        self.steps_taken += 1
        return grads

    def end(self) -> None:
        if self._engine is not None:
            self._rng_state = self._engine._rng.bit_generator.state
            self._engine.detach()
            self._engine = None

    def get_epsilon(self, delta: float) -> float:
        """ε spent over every step so far at δ (RDP accountant)."""
        if self.sample_rate is None:
            raise ValueError("DPSGDStep: no privacy accounting without sample_rate (expected batch / dataset size)")
        return float(self.accountant.get_epsilon(delta))

    def describe(self) -> str:
        return f"DP-SGD(noise_multiplier={self.noise_multiplier:g}, max_grad_norm={self.max_grad_norm:g}; per-sample clipping)"


class DGCStep(LocalStepDefense):
    """Local steps with Deep Gradient Compression (Lin et al., ICLR 2018); arguments of :class:`DGCCompressor`."""

    def __init__(self, **kwargs: Any) -> None:
        self.compressor = DGCCompressor(**kwargs)

    def transform(self, grads, step):
        return self.compressor.compress(grads)

    def describe(self) -> str:
        c = self.compressor
        return f"DGC local optimiser(sparsity={c.current_sparsity():g}, momentum={c.momentum:g})"


class BatchClipStep(LocalStepDefense):
    """Clip each local step's whole-batch gradient to ``max_norm`` (global L2 norm); no noise, no DP guarantee."""

    def __init__(self, max_norm: float = 1.0) -> None:
        if not (np.isfinite(max_norm) and max_norm > 0):
            raise ValueError(f"BatchClipStep: max_norm must be a positive number, got {max_norm}")
        self.max_norm = float(max_norm)

    def transform(self, grads, step):
        return batch_clip_noise(grads, self.max_norm, 0.0)

    def describe(self) -> str:
        return f"BatchClipStep(C={self.max_norm:g}; whole-batch clip of every local step)"
