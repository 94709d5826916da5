"""Defenses that transform a client update before it is sent (ALGORITHMS.md §6).

An *update* is what an FL client sends: ``dict[str, paddle.Tensor]`` keyed by parameter name
(a gradient or a weight delta; NumPy arrays are accepted too and come back as NumPy arrays).
A defense is a small class with ``apply(update, step=0, ctx=None) -> dict``; it may keep state
(keyed by parameter name) that :meth:`UpdateDefense.state_dict` exposes. Example::

    class SignOnly(UpdateDefense):
        def apply(self, update, step=0, ctx=None):
            return {k: paddle.sign(v) for k, v in update.items()}

Built-ins: :class:`GaussianPrivacy` (NVIDIA FLARE's heuristic, Hatamizadeh et al., IEEE TMI
2023), :class:`TopKPruning` (gradient pruning, Zhu et al. 2019 / GradAttack), :class:`Compose`,
and :class:`BatchClipNoise` (the Label-based-Defense repository's "DP-SGD" variant, which is
**not** differentially private).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

import numpy as np
import paddle

from ._common import TensorLike, check_update, from_paddle, is_floating, keep_count, to_paddle, topk_mask

__all__ = [
    "UpdateDefense",
    "GaussianPrivacy",
    "TopKPruning",
    "Compose",
    "BatchClipNoise",
    "batch_clip_noise",
]

Update = Dict[str, TensorLike]

logger = logging.getLogger(__name__)


class UpdateDefense:
    """Base class of update transforms.

    Subclasses implement :meth:`apply`; ``defense(update)`` is the same as
    ``defense.apply(update)``. Stateful defenses override :meth:`state_dict` and
    :meth:`set_state_dict` and key their state by parameter name.
    """

    def apply(self, update: Mapping[str, TensorLike], step: int = 0, ctx: Optional[Mapping[str, Any]] = None) -> Update:
        """Return the defended update.

        Args:
            update: tensors keyed by parameter name (what the client would send).
            step: the FL round or local step this update belongs to (for schedules and logs).
            ctx: optional extra information (e.g. the global model state); unused by built-ins.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement apply(update, step=0, ctx=None)")

    def __call__(self, update: Mapping[str, TensorLike], step: int = 0, ctx: Optional[Mapping[str, Any]] = None) -> Update:
        check_update(update, type(self).__name__)
        return self.apply(update, step, ctx)

    def state_dict(self) -> Dict[str, Any]:
        """State needed to resume (tensors or plain values); empty for stateless defenses."""
        return {}

    def set_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state returned by :meth:`state_dict`."""
        if state:
            raise ValueError(f"{type(self).__name__} is stateless but got state keys {sorted(state)}")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


def _make_rng(seed: Union[None, int, np.random.Generator]) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _host_float64(value: TensorLike) -> np.ndarray:
    arr = value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)
    return arr.astype(np.float64, copy=False)


def _is_float_array(value: TensorLike) -> bool:
    if isinstance(value, paddle.Tensor):
        return is_floating(value)
    return np.issubdtype(np.asarray(value).dtype, np.floating)


def _add_host_noise(value: TensorLike, noise: np.ndarray) -> TensorLike:
    """value + noise, with the noise cast to the entry's dtype first (never float64 leakage)."""
    if isinstance(value, paddle.Tensor):
        dtype = str(value.dtype).replace("paddle.", "")
        noise_t = paddle.to_tensor(noise.astype(dtype if dtype != "bfloat16" else "float32"), place=value.place)
        return value + noise_t.astype(value.dtype)
    arr = np.asarray(value)
    return arr + noise.astype(arr.dtype)


class GaussianPrivacy(UpdateDefense):
    """NVIDIA FLARE's ``GaussianPrivacy`` filter (ALGORITHMS.md §6.4), a heuristic, **not** DP.

    σ = ``sigma0`` × the ``percentile``-th percentile (NumPy linear interpolation, float64, on the
    host) of all non-zero |values| over **all** floating keys of the update (BN running-stat
    deltas included); i.i.d. N(0, σ²) noise is added to every floating entry and cast back to
    the entry's dtype. No clipping and no accountant. Integer entries pass through unchanged.
    Used by Hatamizadeh et al. (IEEE TMI 2023) with σ0 ∈ {0, 5, ..., 50}.

    Attributes:
        last_sigma: σ of the most recent call (0.0 for a no-op).
        last_percentile_value: the percentile value p of the most recent call.
        history: one ``{"step", "sigma0", "percentile_value", "sigma"}`` record per call.
    """

    def __init__(self, sigma0: float, percentile: float = 95.0, seed: Union[None, int, np.random.Generator] = None) -> None:
        if not np.isfinite(sigma0) or sigma0 < 0:
            raise ValueError(f"GaussianPrivacy: sigma0 must be a finite number >= 0, got {sigma0}")
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"GaussianPrivacy: percentile must be in [0, 100], got {percentile}")
        self.sigma0 = float(sigma0)
        self.percentile = float(percentile)
        self.seed = seed if not isinstance(seed, np.random.Generator) else None
        self._rng = _make_rng(seed)
        self.last_sigma: Optional[float] = None
        self.last_percentile_value: Optional[float] = None
        self.history: List[Dict[str, float]] = []

    def apply(self, update: Mapping[str, TensorLike], step: int = 0, ctx: Optional[Mapping[str, Any]] = None) -> Update:
        check_update(update, "GaussianPrivacy")
        if self.sigma0 == 0.0:
            warnings.warn("GaussianPrivacy: sigma0 = 0, the update is passed through without noise", stacklevel=2)
            self.last_sigma, self.last_percentile_value = 0.0, None
            self.history.append({"step": step, "sigma0": 0.0, "percentile_value": float("nan"), "sigma": 0.0})
            return dict(update)
        hosts = {k: _host_float64(v) for k, v in update.items() if _is_float_array(v)}
        for k, arr in hosts.items():
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"GaussianPrivacy: update entry {k!r} contains NaN or Inf; fix the client update first")
        magnitudes = np.concatenate([np.abs(a).ravel() for a in hosts.values()]) if hosts else np.zeros(0)
        magnitudes = magnitudes[magnitudes > 0]
        if magnitudes.size == 0:
            warnings.warn("GaussianPrivacy: the update has no non-zero value; nothing to scale the noise by, passed through", stacklevel=2)
            self.last_sigma, self.last_percentile_value = 0.0, 0.0
            self.history.append({"step": step, "sigma0": self.sigma0, "percentile_value": 0.0, "sigma": 0.0})
            return dict(update)
        p = float(np.percentile(magnitudes, self.percentile))
        sigma = self.sigma0 * p
        out: Update = {}
        for k, v in update.items():
            if k in hosts:
                noise = self._rng.normal(0.0, sigma, size=hosts[k].shape)
                out[k] = _add_host_noise(v, noise)
            else:
                out[k] = v
        self.last_sigma, self.last_percentile_value = sigma, p
        logger.info("GaussianPrivacy step %s: sigma0=%g, p%g=%g, sigma=%g", step, self.sigma0, self.percentile, p, sigma)
        self.history.append({"step": step, "sigma0": self.sigma0, "percentile_value": p, "sigma": sigma})
        return out

    def state_dict(self) -> Dict[str, Any]:
        return {
            "sigma0": self.sigma0,
            "percentile": self.percentile,
            "last_sigma": self.last_sigma,
            "rng_state": self._rng.bit_generator.state,
        }

    def set_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sigma0 = float(state.get("sigma0", self.sigma0))
        self.percentile = float(state.get("percentile", self.percentile))
        self.last_sigma = state.get("last_sigma", self.last_sigma)
        if "rng_state" in state:
            self._rng.bit_generator.state = state["rng_state"]


class TopKPruning(UpdateDefense):
    """Gradient pruning: keep the k = ⌈(1−p)·n⌉ largest |values|, zero the rest (§6.2).

    Args:
        prune_ratio: fraction p ∈ [0, 1] of entries to zero (p = 1 zeros everything).
        scope: ``"tensor"`` (default; k per tensor) or ``"global"`` (one k over all floating
            entries, ranked across tensors in float64).

    Selection is exact and index based: ties at the threshold go to the lowest index (in the
    update's key order for ``"global"``). With scope ``"tensor"`` this equals DGC at step 0
    with sparsity p (Lin et al., ICLR 2018); the DLG paper (Zhu et al., NeurIPS 2019) and
    GradAttack use it as a defense.
    """

    def __init__(self, prune_ratio: float, scope: str = "tensor") -> None:
        if not 0.0 <= prune_ratio <= 1.0:
            raise ValueError(f"TopKPruning: prune_ratio must be in [0, 1] (fraction of entries zeroed), got {prune_ratio}")
        if scope not in ("tensor", "global"):
            raise ValueError(f"TopKPruning: scope must be 'tensor' or 'global', got {scope!r}")
        self.prune_ratio = float(prune_ratio)
        self.scope = scope

    def apply(self, update: Mapping[str, TensorLike], step: int = 0, ctx: Optional[Mapping[str, Any]] = None) -> Update:
        check_update(update, "TopKPruning")
        tensors = {}
        for k, v in update.items():
            tensors[k] = to_paddle(v, k)
        floats = [k for k, (t, _) in tensors.items() if is_floating(t)]
        out: Update = {}
        if self.scope == "tensor":
            for k, (t, was_np) in tensors.items():
                if k not in floats:
                    out[k] = update[k]
                    continue
                flat = t.reshape([-1])
                mask = topk_mask(flat.abs(), keep_count(1.0 - self.prune_ratio, flat.shape[0]))
                pruned = paddle.where(mask, flat, paddle.zeros_like(flat)).reshape(t.shape)
                out[k] = from_paddle(pruned, was_np)
            return out
        sizes = [int(np.prod(tensors[k][0].shape)) for k in floats]
        total = sum(sizes)
        if total:
            magnitude = paddle.concat([tensors[k][0].reshape([-1]).astype("float64").abs() for k in floats])
            mask = topk_mask(magnitude, keep_count(1.0 - self.prune_ratio, total))
            pieces = paddle.split(mask, sizes) if len(sizes) > 1 else [mask]
        else:
            pieces = []
        masks = dict(zip(floats, pieces))
        for k, (t, was_np) in tensors.items():
            if k not in masks:
                out[k] = update[k]
                continue
            flat = t.reshape([-1])
            pruned = paddle.where(masks[k], flat, paddle.zeros_like(flat)).reshape(t.shape)
            out[k] = from_paddle(pruned, was_np)
        return out


class Compose(UpdateDefense):
    """Apply several update defenses in order (e.g. pruning, then Gaussian noise)."""

    def __init__(self, defenses: Iterable[UpdateDefense]) -> None:
        self.defenses = list(defenses)
        for d in self.defenses:
            if not callable(getattr(d, "apply", None)):
                raise TypeError(f"Compose: {d!r} has no apply(update, step, ctx) method")

    def apply(self, update: Mapping[str, TensorLike], step: int = 0, ctx: Optional[Mapping[str, Any]] = None) -> Update:
        out = dict(update)
        for d in self.defenses:
            out = d.apply(out, step, ctx)
        return out

    def state_dict(self) -> Dict[str, Any]:
        state: Dict[str, Any] = {}
        for i, d in enumerate(self.defenses):
            for k, v in d.state_dict().items():
                state[f"{i}.{k}"] = v
        return state

    def set_state_dict(self, state: Mapping[str, Any]) -> None:
        for i, d in enumerate(self.defenses):
            prefix = f"{i}."
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            d.set_state_dict(sub)

    def __repr__(self) -> str:
        return f"Compose({self.defenses!r})"


def batch_clip_noise(
    grads: Mapping[str, TensorLike],
    max_norm: float = 1.0,
    noise_multiplier: float = 0.01,
    seed: Union[None, int, np.random.Generator] = None,
) -> Update:
    """The Label-based-Defense repository's "DP-SGD": clip the whole batch, add tiny noise.

    g ← g · min(1, C/(‖g‖ + 1e-6)) with ‖g‖ the global L2 norm over all floating entries, then
    g ← g + N(0, (σC)²) per element (defaults C = 1, σ = 0.01, as in that repository's
    ``--scheme DP-SGD``). **This has NO formal privacy guarantee**: there is no per-sample
    clipping and no accountant, and σ = 0.01 is far below any useful DP noise level. Use
    :class:`privbox.defenses.DPSGD` for real differential privacy (Abadi et al., CCS 2016).
    """
    if max_norm <= 0:
        raise ValueError(f"batch_clip_noise: max_norm must be > 0, got {max_norm}")
    if noise_multiplier < 0:
        raise ValueError(f"batch_clip_noise: noise_multiplier must be >= 0, got {noise_multiplier}")
    check_update(grads, "batch_clip_noise")
    rng = _make_rng(seed)
    hosts = {k: _host_float64(v) for k, v in grads.items() if _is_float_array(v)}
    norm = float(np.sqrt(sum(float(np.sum(a * a)) for a in hosts.values())))
    factor = min(1.0, max_norm / (norm + 1e-6))
    out: Update = {}
    for k, v in grads.items():
        if k not in hosts:
            out[k] = v
            continue
        noise = rng.normal(0.0, noise_multiplier * max_norm, size=hosts[k].shape) if noise_multiplier > 0 else np.zeros(hosts[k].shape)
        if isinstance(v, paddle.Tensor):
            out[k] = _add_host_noise(v * factor, noise)
        else:
            arr = np.asarray(v)
            out[k] = (arr * arr.dtype.type(factor)) + noise.astype(arr.dtype)
    return out


class BatchClipNoise(UpdateDefense):
    """:func:`batch_clip_noise` as a stateful update defense with its own seeded generator.

    **No formal privacy guarantee** (see :func:`batch_clip_noise`).
    """

    def __init__(self, max_norm: float = 1.0, noise_multiplier: float = 0.01, seed: Union[None, int] = None) -> None:
        if max_norm <= 0:
            raise ValueError(f"BatchClipNoise: max_norm must be > 0, got {max_norm}")
        if noise_multiplier < 0:
            raise ValueError(f"BatchClipNoise: noise_multiplier must be >= 0, got {noise_multiplier}")
        self.max_norm = float(max_norm)
        self.noise_multiplier = float(noise_multiplier)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def apply(self, update: Mapping[str, TensorLike], step: int = 0, ctx: Optional[Mapping[str, Any]] = None) -> Update:
        return batch_clip_noise(update, self.max_norm, self.noise_multiplier, self._rng)

    def state_dict(self) -> Dict[str, Any]:
        return {"rng_state": self._rng.bit_generator.state}

    def set_state_dict(self, state: Mapping[str, Any]) -> None:
        if "rng_state" in state:
            self._rng.bit_generator.state = state["rng_state"]
