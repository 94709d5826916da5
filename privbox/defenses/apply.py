"""Apply update defenses to a :class:`~privbox.core.update.ClientUpdate` (ALGORITHMS.md §6).

:func:`defend_update` is the bridge between the update transforms of
:mod:`privbox.defenses.transforms` (and :class:`~privbox.defenses.DGCCompressor`) and the attack
side: it returns a *new* ``ClientUpdate`` whose tensors are what a defended client sends and whose
``meta.defenses`` records each defense with its parameters, e.g.
``"GaussianPrivacy(sigma0=10, p95, sigma=0.0421; heuristic, no DP guarantee)"``. An attack
result can therefore always be traced back to the defense that produced the update.

The client (:class:`privbox.fl.client.Client`) applies its update transforms through
:func:`defend_update`; :func:`privbox.defenses.rounds.run_defended_rounds` runs a stateful
defense such as DGC over several FedSGD rounds.

What each built-in covers:

* :class:`~privbox.defenses.GaussianPrivacy` (NVIDIA FLARE, Hatamizadeh et al., IEEE TMI 2023)
  acts on **all** entries of the update, BN running-statistic deltas (``buffer_delta``)
  included, as the FLARE filter does on the whole state-dict delta;
* :class:`~privbox.defenses.TopKPruning`, :class:`~privbox.defenses.DGCCompressor` and
  :class:`~privbox.defenses.BatchClipNoise` act on the trainable-parameter tensors only;
* ``bn_batch_stats`` (the "exact BN" threat model, an attacker who knows the batch statistics
  by other means) are never changed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, List, Optional

import numpy as np
import paddle

from ..core.update import ClientUpdate
from .dgc import DGCCompressor
from .transforms import BatchClipNoise, Compose, GaussianPrivacy, TopKPruning, UpdateDefense

__all__ = ["describe_defense", "defend_update"]

_BUFFER_PREFIX = "buffer_delta/"


def _leaves(defense: UpdateDefense) -> List[UpdateDefense]:
    """The defenses of a (possibly nested) :class:`Compose`, in application order."""
    if isinstance(defense, Compose):
        out: List[UpdateDefense] = []
        for d in defense.defenses:
            out += _leaves(d)
        return out
    return [defense]


def _covers_buffers(defense: UpdateDefense) -> bool:
    """Whether ``defense`` acts on BN running-statistic deltas too (GaussianPrivacy does)."""
    explicit = getattr(defense, "applies_to_buffers", None)
    if explicit is not None:
        return bool(explicit)
    return isinstance(defense, GaussianPrivacy)


def describe_defense(defense: UpdateDefense, sparsity: Optional[float] = None) -> str:
    """A readable one-line description of one defense with its parameters.

    For :class:`GaussianPrivacy` the σ of the most recent call is included (call it after the
    defense was applied); for :class:`DGCCompressor` pass the sparsity used by the call
    (``current_sparsity()`` before compressing), else the current one is shown.
    """
    if isinstance(defense, GaussianPrivacy):
        sigma = "n/a" if defense.last_sigma is None else f"{defense.last_sigma:.4g}"
        return (
            f"GaussianPrivacy(sigma0={defense.sigma0:g}, p{defense.percentile:g}, sigma={sigma}; "
            "heuristic, no DP guarantee)"
        )
    if isinstance(defense, TopKPruning):
        return f"TopKPruning(prune_ratio={defense.prune_ratio:g}, scope={defense.scope})"
    if isinstance(defense, DGCCompressor):
        s = defense.current_sparsity() if sparsity is None else sparsity
        extra = ", nesterov" if defense.nesterov else ""
        if defense.clip_norm is not None:
            extra += f", clip_norm={defense.clip_norm:g}"
        return f"DGC(sparsity={s:g}, momentum={defense.momentum:g}{extra}, step={defense.step_count - 1})"
    if isinstance(defense, BatchClipNoise):
        return (
            f"BatchClipNoise(C={defense.max_norm:g}, sigma={defense.noise_multiplier:g}; whole-update clip + "
            "Gaussian noise, no per-sample clipping, no accountant: no DP guarantee)"
        )
    describe = getattr(defense, "describe", None)
    if callable(describe):
        return str(describe())
    return repr(defense)


def _as_numpy_dict(tensors: Any, what: str) -> dict:
    out = {}
    for k, v in tensors.items():
        if isinstance(v, paddle.Tensor):
            v = v.numpy()
        arr = np.asarray(v)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(f"defend_update: the defended {what} entry {k!r} contains NaN or Inf")
        out[k] = arr
    return out


def defend_update(
    update: ClientUpdate,
    defense: UpdateDefense,
    step: int = 0,
    buffers: Optional[bool] = None,
) -> ClientUpdate:
    """Return a copy of ``update`` as a client that applies ``defense`` would send it.

    Args:
        update: the undefended update (not modified).
        defense: an :class:`~privbox.defenses.UpdateDefense` (``GaussianPrivacy``,
            ``TopKPruning``, ``BatchClipNoise``, ``DGCCompressor``, a custom subclass) or a
            :class:`~privbox.defenses.Compose` of them, applied in order. Stateful defenses (DGC)
            keep their state in the object: pass the same object every round.
        step: the FL round (or local step) of this update, passed to ``defense.apply``.
        buffers: whether the defense also transforms ``update.buffer_delta`` (the BN
            running-statistic deltas sent with a whole state dict). ``None`` (default) decides per
            defense: ``GaussianPrivacy`` covers them (NVIDIA FLARE filters the whole state-dict
            delta, Hatamizadeh et al. 2023), the others act on parameter tensors only. A custom
            defense can set an ``applies_to_buffers`` attribute.

    Returns:
        A new :class:`ClientUpdate` (same class as ``update``) with the defended ``tensors`` (and
        ``buffer_delta`` where covered) and ``meta.defenses`` extended by one description per
        applied defense (see :func:`describe_defense`). θ0, labels and ``bn_batch_stats`` are
        carried over unchanged.

    Raises:
        TypeError: if ``defense`` has no ``apply`` method or ``update`` is not a ClientUpdate.
        ValueError: if a defense produces NaN/Inf or changes the set of keys or a shape.
    """
    if not isinstance(update, ClientUpdate):
        raise TypeError(f"defend_update expects a privbox ClientUpdate, got {type(update).__name__}")
    if not callable(getattr(defense, "apply", None)):
        raise TypeError(f"defend_update: {defense!r} is not an UpdateDefense (it has no apply(update, step, ctx))")
    tensors = {k: np.array(v, copy=True) for k, v in update.tensors.items()}
    buffer_delta = None if update.buffer_delta is None else {k: np.array(v, copy=True) for k, v in update.buffer_delta.items()}
    descriptions: List[str] = []
    ctx = {"meta": update.meta, "global_state": update.global_state}
    for leaf in _leaves(defense):
        with_buffers = _covers_buffers(leaf) if buffers is None else bool(buffers)
        payload = dict(tensors)
        if with_buffers and buffer_delta:
            payload.update({_BUFFER_PREFIX + k: v for k, v in buffer_delta.items()})
        sparsity = leaf.current_sparsity() if isinstance(leaf, DGCCompressor) else None
        out = leaf.apply(payload, step, ctx)
        if set(out) != set(payload):
            raise ValueError(
                f"defend_update: {type(leaf).__name__} changed the update's keys "
                f"(missing {sorted(set(payload) - set(out))[:5]}, new {sorted(set(out) - set(payload))[:5]})"
            )
        out = _as_numpy_dict(out, "update")
        for k, v in out.items():
            if tuple(v.shape) != tuple(np.shape(payload[k])):
                raise ValueError(f"defend_update: {type(leaf).__name__} changed the shape of {k!r}")
        tensors = {k: out[k].astype(update.tensors[k].dtype, copy=False) for k in tensors}
        if with_buffers and buffer_delta:
            buffer_delta = {
                k: out[_BUFFER_PREFIX + k].astype(update.buffer_delta[k].dtype, copy=False) for k in buffer_delta
            }
        descriptions.append(describe_defense(leaf, sparsity))
    meta = dataclasses.replace(update.meta, defenses=list(update.meta.defenses) + descriptions)
    return dataclasses.replace(update, tensors=tensors, meta=meta, buffer_delta=buffer_delta)
