"""Deep Gradient Compression (Lin, Han, Mao, Wang and Dally, ICLR 2018), ALGORITHMS.md §6.1.

Two entry points share one implementation:

* :class:`DGCCompressor` transforms an update ``dict[str, Tensor]`` (the local mean gradient a
  worker would send) into the sparse update it actually sends, keeping the momentum ``u`` and the
  residual ``v`` per parameter name;
* :class:`DGCMomentum` is a ``paddle.optimizer.Optimizer`` that runs the compressor on the
  parameters' ``.grad`` and applies **plain SGD** to the sparse result (the momentum is already
  inside ``v``). It works with ``loss.backward(); opt.step(); opt.clear_grad()``, with
  ``opt.minimize(loss)`` and with ``paddle.Model``.

Per worker, step t, tensor j (m = momentum, N = num_workers)::

    g ← local gradient [+ weight decay]                    (optimizer only)
    if clip C: g ← g·min(1, C·N^-1/2/‖g‖)                  (before accumulation)
    u ← m·u + g ; v ← v + u                                (Nesterov: u ← m(u+g); v ← v+u+g)
    k ← max(1, ceil((1−s_t)·numel)); M ← top-k of |v|      (exact, ties by index)
    ĝ ← v⊙M ; v ← v⊙¬M ; u ← u⊙¬M                          (momentum-factor masking)
    w ← w − lr·aggregate(ĝ)

The defects of the old PaddleSleeve ``DGCMomentum`` listed in §6.1 are avoided: no second
momentum step, momentum-factor masking, warm-up schedules, exactly k elements, clipping before
accumulation with N^-1/2, state keyed by name in ``state_dict()``, thresholds in the tensor's own
dtype, ``step()`` compresses, and no legacy fluid imports / ``float * bool``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import paddle

from ._common import check_update, from_paddle, is_floating, keep_count, to_paddle, topk_mask
from .transforms import UpdateDefense

__all__ = ["DGCCompressor", "DGCMomentum", "dgc_warmup_schedule", "SparsitySchedule"]

SparsitySchedule = Union[float, Sequence[float], Callable[[int], float]]

_STATE_U = "dgc.u."
_STATE_V = "dgc.v."


def dgc_warmup_schedule(final_sparsity: float = 0.999, warmup_epochs: int = 4) -> List[float]:
    """The exponential sparsity warm-up of Lin et al. (ICLR 2018).

    Epoch e < ``warmup_epochs`` uses s_e = min(1 − 4^−(e+1), final); later epochs use
    ``final_sparsity``: 75 % → 93.75 % → 98.4375 % → 99.6 % → 99.9 %. Returns a list for the
    ``sparsity`` argument of :class:`DGCCompressor` / :class:`DGCMomentum` (its last value is
    used for every later epoch).
    """
    _check_sparsity(final_sparsity)
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    return [min(1.0 - 4.0 ** (-(e + 1)), final_sparsity) for e in range(warmup_epochs)] + [float(final_sparsity)]


def _check_sparsity(s: float) -> float:
    s = float(s)
    if not 0.0 <= s < 1.0:
        raise ValueError(f"DGC sparsity must be in [0, 1) (fraction of entries withheld), got {s}")
    return s


class DGCCompressor(UpdateDefense):
    """Stateful DGC transform of an update ``dict[str, Tensor]`` (Lin et al., ICLR 2018).

    Args:
        sparsity: fraction s of entries withheld per tensor: a float, a list indexed by epoch
            (or step, see ``warmup_unit``; the last value repeats), or a callable index → s.
            See :func:`dgc_warmup_schedule`.
        momentum: momentum m of the momentum correction (0.9 in the paper).
        nesterov: use the Nesterov variant u ← m(u+g); v ← v+u+g.
        clip_norm: local clipping threshold C (None = no clipping). Applied to the incoming
            gradient *before* accumulation, scaled by ``num_workers``^-1/2.
        num_workers: N, the number of workers whose updates are summed.
        clip_mode: ``"global"`` (one norm over all tensors) or ``"tensor"`` (per tensor).
        dense_below: tensors with fewer elements are sent dense (ordinary momentum: the
            emitted value is u, or u + g for Nesterov; no residual). 0 compresses everything.
        sampled_threshold: estimate the threshold from a strided sample instead of the exact
            top-k (faster on huge tensors, selects about k entries; §6.1).
        sample_ratio: fraction of entries in that sample (default 1 %).
        warmup_unit: ``"epoch"`` (index = :attr:`epoch`, set with :meth:`set_epoch`) or
            ``"step"`` (index = number of :meth:`compress` calls so far).

    ``compress`` emits k = max(1, ceil((1 − s)·numel)) entries per compressed tensor, chosen
    exactly by |v| with ties broken by index. State (``u`` and ``v``) is keyed by the update's
    names, so parameters may come and go between steps.
    """

    def __init__(
        self,
        sparsity: SparsitySchedule = 0.8,
        momentum: float = 0.9,
        nesterov: bool = False,
        clip_norm: Optional[float] = None,
        num_workers: int = 1,
        clip_mode: str = "global",
        dense_below: int = 0,
        sampled_threshold: bool = False,
        sample_ratio: float = 0.01,
        warmup_unit: str = "epoch",
    ) -> None:
        if callable(sparsity):
            self.sparsity: SparsitySchedule = sparsity
        elif isinstance(sparsity, (list, tuple)):
            if not sparsity:
                raise ValueError("DGC sparsity schedule list is empty; give at least one value, e.g. [0.75, 0.9375, 0.999]")
            self.sparsity = [_check_sparsity(s) for s in sparsity]
        else:
            self.sparsity = _check_sparsity(sparsity)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"DGC momentum must be in [0, 1), got {momentum}")
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"DGC clip_norm must be > 0 or None, got {clip_norm}")
        if int(num_workers) != num_workers or num_workers < 1:
            raise ValueError(f"DGC num_workers must be a positive integer, got {num_workers}")
        if clip_mode not in ("global", "tensor"):
            raise ValueError(f"DGC clip_mode must be 'global' or 'tensor', got {clip_mode!r}")
        if int(dense_below) != dense_below or dense_below < 0:
            raise ValueError(f"DGC dense_below must be a non-negative integer, got {dense_below}")
        if not 0.0 < sample_ratio <= 1.0:
            raise ValueError(f"DGC sample_ratio must be in (0, 1], got {sample_ratio}")
        if warmup_unit not in ("epoch", "step"):
            raise ValueError(f"DGC warmup_unit must be 'epoch' or 'step', got {warmup_unit!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self.num_workers = int(num_workers)
        self.clip_mode = clip_mode
        self.dense_below = int(dense_below)
        self.sampled_threshold = bool(sampled_threshold)
        self.sample_ratio = float(sample_ratio)
        self.warmup_unit = warmup_unit
        self.step_count = 0
        self.epoch = 0
        self._u: Dict[str, paddle.Tensor] = {}
        self._v: Dict[str, paddle.Tensor] = {}

    # ----------------------------------------------------------------------------------- schedule
    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that indexes an epoch-based sparsity schedule."""
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch}")
        self.epoch = int(epoch)

    def current_sparsity(self) -> float:
        """Sparsity s used by the next :meth:`compress` call."""
        index = self.epoch if self.warmup_unit == "epoch" else self.step_count
        if callable(self.sparsity):
            return _check_sparsity(self.sparsity(index))
        if isinstance(self.sparsity, list):
            return self.sparsity[min(index, len(self.sparsity) - 1)]
        return float(self.sparsity)

    # -------------------------------------------------------------------------------- selection
    def _select(self, magnitude: paddle.Tensor, k: int) -> paddle.Tensor:
        """Mask of the entries to emit from a flat |v| (exact top-k or sampled threshold)."""
        n = int(magnitude.shape[0])
        if not self.sampled_threshold or k >= n:
            return topk_mask(magnitude, k)
        stride = max(1, int(round(1.0 / self.sample_ratio)))
        sample = magnitude[::stride]
        k_sample = max(1, int(math.ceil(sample.shape[0] * k / n)))
        threshold = paddle.topk(sample, k_sample)[0][k_sample - 1]
        selected = magnitude >= threshold
        for _ in range(10):
            count = int(selected.astype("int64").sum().item())
            if count > 1.3 * k:
                return topk_mask(magnitude, k)
            if count >= 0.8 * k:
                return selected
            threshold = threshold * 0.8
            selected = magnitude >= threshold
        return selected

    # ------------------------------------------------------------------------------ compression
    def _clip_factors(self, grads: Mapping[str, paddle.Tensor]) -> Dict[str, float]:
        if self.clip_norm is None:
            return {k: 1.0 for k in grads}
        bound = self.clip_norm / math.sqrt(self.num_workers)

        def factor(norm: float) -> float:
            return 1.0 if norm <= bound or norm == 0.0 else bound / norm

        sq = {k: float((g.astype("float64") ** 2).sum().item()) for k, g in grads.items()}
        if self.clip_mode == "global":
            f = factor(math.sqrt(sum(sq.values())))
            return {k: f for k in grads}
        return {k: factor(math.sqrt(s)) for k, s in sq.items()}

    def compress(self, grads: Mapping[str, paddle.Tensor]) -> Dict[str, paddle.Tensor]:
        """Compress one step's local gradients; returns the sparse update to send.

        Args:
            grads: local mean gradients keyed by parameter name (floating tensors; NumPy arrays
                are accepted and returned as NumPy arrays).

        Returns:
            dict with the same keys: dense tensors of the same shape and dtype whose non-zero
            entries are the ones emitted this step (k per tensor, or all for dense tensors).
        """
        check_update(grads, "DGCCompressor.compress")
        tensors: Dict[str, Tuple[paddle.Tensor, bool]] = {}
        for name, value in grads.items():
            t, was_np = to_paddle(value, name)
            if not is_floating(t):
                raise TypeError(f"DGC: gradient {name!r} has dtype {t.dtype}; only floating tensors can be compressed")
            if not bool(paddle.isfinite(t).all().item()):
                raise ValueError(f"DGC: gradient {name!r} contains NaN or Inf; lower the learning rate or enable clip_norm")
            tensors[name] = (t.detach(), was_np)
        sparsity = self.current_sparsity()
        factors = self._clip_factors({k: t for k, (t, _) in tensors.items()})
        m = self.momentum
        out: Dict[str, Any] = {}
        with paddle.no_grad():
            for name, (g, was_np) in tensors.items():
                if factors[name] != 1.0:
                    g = g * factors[name]
                u = self._state(self._u, name, g)
                n = int(math.prod(g.shape)) if g.shape else 1
                if n < self.dense_below:
                    u = m * (u + g) if self.nesterov else m * u + g
                    self._u[name] = u
                    self._v.pop(name, None)
                    out[name] = from_paddle(u + g if self.nesterov else u, was_np)
                    continue
                v = self._state(self._v, name, g)
                if self.nesterov:
                    u = m * (u + g)
                    v = v + u + g
                else:
                    u = m * u + g
                    v = v + u
                k = keep_count(1.0 - sparsity, n, at_least_one=True)
                flat_v = v.reshape([-1])
                mask = self._select(flat_v.abs(), k).reshape(v.shape)
                zeros = paddle.zeros_like(v)
                out[name] = from_paddle(paddle.where(mask, v, zeros), was_np)
                self._v[name] = paddle.where(mask, zeros, v)
                self._u[name] = paddle.where(mask, zeros, u)
        self.step_count += 1
        return out

    def apply(self, update: Mapping[str, Any], step: int = 0, ctx: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """:meth:`compress` as an :class:`UpdateDefense` (``step`` is only informative here)."""
        return self.compress(update)

    @staticmethod
    def _state(store: Dict[str, paddle.Tensor], name: str, like: paddle.Tensor) -> paddle.Tensor:
        current = store.get(name)
        if current is None:
            return paddle.zeros_like(like)
        if list(current.shape) != list(like.shape):
            raise ValueError(
                f"DGC: gradient {name!r} has shape {list(like.shape)} but the stored DGC state has "
                f"{list(current.shape)}; call reset() (or reset([{name!r}])) after changing the model"
            )
        return current.astype(like.dtype) if current.dtype != like.dtype else current

    def reset(self, names: Optional[Iterable[str]] = None) -> None:
        """Drop the momentum and residual of ``names`` (all parameters if None)."""
        if names is None:
            self._u.clear()
            self._v.clear()
            return
        for n in names:
            self._u.pop(n, None)
            self._v.pop(n, None)

    @property
    def residuals(self) -> Dict[str, paddle.Tensor]:
        """The locally accumulated, not yet sent values v, keyed by name (read-only view)."""
        return dict(self._v)

    @property
    def momenta(self) -> Dict[str, paddle.Tensor]:
        """The momentum buffers u, keyed by name (read-only view)."""
        return dict(self._u)

    # ------------------------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, paddle.Tensor]:
        """Flat ``{"dgc.u.<name>", "dgc.v.<name>", "dgc.step_count", "dgc.epoch"}`` tensors."""
        state: Dict[str, paddle.Tensor] = {}
        for name, t in self._u.items():
            state[_STATE_U + name] = t
        for name, t in self._v.items():
            state[_STATE_V + name] = t
        state["dgc.step_count"] = paddle.to_tensor(self.step_count, dtype="int64")
        state["dgc.epoch"] = paddle.to_tensor(self.epoch, dtype="int64")
        return state

    def set_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a state from :meth:`state_dict` (tensors are copied)."""
        u, v = {}, {}
        for key, value in state.items():
            if key.startswith(_STATE_U):
                u[key[len(_STATE_U):]] = to_paddle(value, key)[0].clone()
            elif key.startswith(_STATE_V):
                v[key[len(_STATE_V):]] = to_paddle(value, key)[0].clone()
        self._u, self._v = u, v
        if "dgc.step_count" in state:
            self.step_count = int(to_paddle(state["dgc.step_count"], "dgc.step_count")[0].item())
        if "dgc.epoch" in state:
            self.epoch = int(to_paddle(state["dgc.epoch"], "dgc.epoch")[0].item())


def _split_named(parameters: Any) -> Tuple[List[paddle.Tensor], Dict[int, str]]:
    """Accept a list of parameters, a dict name→param or (name, param) pairs."""
    if parameters is None:
        raise ValueError("DGCMomentum needs parameters, e.g. parameters=model.parameters() or model.named_parameters()")
    if isinstance(parameters, paddle.Tensor):
        raise TypeError("DGCMomentum: parameters must be an iterable of tensors, not a single tensor")
    items = list(parameters.items()) if isinstance(parameters, Mapping) else list(parameters)
    params: List[paddle.Tensor] = []
    names: Dict[int, str] = {}
    for item in items:
        if isinstance(item, dict):
            raise TypeError("DGCMomentum does not support parameter groups; pass a flat list of parameters")
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            names[id(item[1])] = item[0]
            params.append(item[1])
        else:
            params.append(item)
    if not params:
        raise ValueError("DGCMomentum got an empty parameter list")
    return params, names


class DGCMomentum(paddle.optimizer.Optimizer):
    """Deep Gradient Compression optimiser for dygraph Paddle (Lin et al., ICLR 2018).

    Each :meth:`step` reads the parameters' ``.grad``, adds ``weight_decay``·w if configured,
    compresses with a :class:`DGCCompressor` (momentum correction, local accumulation,
    momentum-factor masking, clipping, warm-up sparsity, exact top-k) and applies
    **plain SGD** ``w ← w − lr·ĝ``. ``minimize(loss)`` (after ``loss.backward()``),
    ``apply_gradients`` and ``paddle.Model`` all go through the same path.

    Args:
        learning_rate: float or ``paddle.optimizer.lr.LRScheduler``.
        momentum, sparsity, nesterov, clip_norm, num_workers, clip_mode, dense_below,
        sampled_threshold, sample_ratio, warmup_unit: see :class:`DGCCompressor`.
        parameters: ``model.parameters()`` (state keyed by ``param.name``) or
            ``model.named_parameters()`` / a dict (state keyed by the structured names).
            Parameters with ``stop_gradient=True`` (e.g. BN running statistics) are skipped.
        weight_decay: L2 coefficient λ added to the gradient before compression (g + λw).
        apply_decay_param_fun: optional ``name -> bool`` selecting which parameters decay.
        aggregate: optional ``dict -> dict`` applied to the sparse update before the SGD step,
            e.g. an all-reduce mean across workers. Default: identity (one worker).

    Attributes:
        compressor: the :class:`DGCCompressor`.
        last_update: the sparse update emitted by the latest step (what a worker sends).
    """

    def __init__(
        self,
        learning_rate: Union[float, paddle.optimizer.lr.LRScheduler] = 0.001,
        momentum: float = 0.9,
        parameters: Any = None,
        sparsity: SparsitySchedule = 0.8,
        nesterov: bool = False,
        clip_norm: Optional[float] = None,
        num_workers: int = 1,
        clip_mode: str = "global",
        dense_below: int = 0,
        sampled_threshold: bool = False,
        sample_ratio: float = 0.01,
        warmup_unit: str = "epoch",
        weight_decay: float = 0.0,
        apply_decay_param_fun: Optional[Callable[[str], bool]] = None,
        aggregate: Optional[Callable[[Dict[str, paddle.Tensor]], Dict[str, paddle.Tensor]]] = None,
        name: Optional[str] = None,
    ) -> None:
        if isinstance(learning_rate, int) and not isinstance(learning_rate, bool):
            learning_rate = float(learning_rate)
        if isinstance(learning_rate, float) and learning_rate < 0:
            raise ValueError(f"DGCMomentum: learning_rate must be >= 0, got {learning_rate}")
        if weight_decay < 0:
            raise ValueError(f"DGCMomentum: weight_decay must be >= 0, got {weight_decay}")
        params, names = _split_named(parameters)
        super().__init__(learning_rate=learning_rate, parameters=params, weight_decay=None, grad_clip=None, name=name)
        self._names = names
        self.weight_decay = float(weight_decay)
        self.apply_decay_param_fun = apply_decay_param_fun
        self.aggregate = aggregate
        self.compressor = DGCCompressor(
            sparsity=sparsity,
            momentum=momentum,
            nesterov=nesterov,
            clip_norm=clip_norm,
            num_workers=num_workers,
            clip_mode=clip_mode,
            dense_below=dense_below,
            sampled_threshold=sampled_threshold,
            sample_ratio=sample_ratio,
            warmup_unit=warmup_unit,
        )
        self.last_update: Dict[str, paddle.Tensor] = {}

    def _key(self, param: paddle.Tensor) -> str:
        return self._names.get(id(param), param.name)

    def set_epoch(self, epoch: int) -> None:
        """Advance the epoch of an epoch-indexed sparsity warm-up."""
        self.compressor.set_epoch(epoch)

    def _collect(self) -> List[Tuple[paddle.Tensor, paddle.Tensor]]:
        pairs = []
        for p in self._parameter_list:
            if p.stop_gradient:
                continue
            g = p.grad
            if g is not None:
                pairs.append((p, g))
        return pairs

    @paddle.no_grad()
    def _dgc_update(self, params_grads: Sequence[Tuple[paddle.Tensor, Optional[paddle.Tensor]]]) -> None:
        pairs = [(p, g) for p, g in params_grads if g is not None and not p.stop_gradient]
        if not pairs:
            return
        grads: Dict[str, paddle.Tensor] = {}
        by_key: Dict[str, paddle.Tensor] = {}
        for p, g in pairs:
            key = self._key(p)
            if key in by_key:
                raise ValueError(f"DGCMomentum: two parameters share the name {key!r}; pass unique names")
            g = g.detach()
            if self.weight_decay and (self.apply_decay_param_fun is None or self.apply_decay_param_fun(key)):
                g = g + self.weight_decay * p.detach().astype(g.dtype)
            grads[key] = g
            by_key[key] = p
        sparse = self.compressor.compress(grads)
        if self.aggregate is not None:
            sparse = self.aggregate(sparse)
        self.last_update = sparse
        lr = float(self.get_lr())
        for key, p in by_key.items():
            scale = lr * float(getattr(p, "optimize_attr", {}).get("learning_rate", 1.0))
            p.set_value(p - scale * sparse[key].astype(p.dtype))

    @paddle.no_grad()
    def step(self) -> None:
        """Compress the current ``.grad`` of every parameter and apply the SGD step."""
        self._dgc_update(self._collect())

    @paddle.no_grad()
    def minimize(self, loss: paddle.Tensor, startup_program: Any = None, parameters: Any = None, no_grad_set: Any = None):
        """Dygraph ``minimize``: call ``loss.backward()`` first, as for any Paddle optimiser."""
        pairs = self._collect()
        if parameters is not None:
            wanted = {id(p) if isinstance(p, paddle.Tensor) else p for p in parameters}
            pairs = [(p, g) for p, g in pairs if id(p) in wanted or p.name in wanted]
        if no_grad_set:
            skip = {id(p) if isinstance(p, paddle.Tensor) else p for p in no_grad_set}
            pairs = [(p, g) for p, g in pairs if id(p) not in skip and p.name not in skip]
        self._dgc_update(pairs)
        return None, pairs

    def apply_gradients(self, params_grads):  # type: ignore[override]
        """Apply DGC to explicit ``(param, grad)`` pairs."""
        self._dgc_update(params_grads)
        return []

    def _apply_optimize(self, loss, startup_program, params_grads, param_group_idx=0):  # type: ignore[override]
        if isinstance(params_grads, dict):
            params_grads = params_grads.get("params", [])
        self._dgc_update(params_grads)
        return []

    def state_dict(self) -> Dict[str, Any]:
        """DGC buffers keyed by parameter name (see :meth:`DGCCompressor.state_dict`) plus the
        LR scheduler state (a plain dict under ``"LR_Scheduler"``) when one is used. Without a
        scheduler every value is a tensor, so ``safetensors.paddle.save_file`` can store it."""
        state: Dict[str, Any] = dict(self.compressor.state_dict())
        if isinstance(self._learning_rate, paddle.optimizer.lr.LRScheduler):
            state["LR_Scheduler"] = self._learning_rate.state_dict()
        return state

    def set_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a state saved with :meth:`state_dict`."""
        if "LR_Scheduler" in state_dict and isinstance(self._learning_rate, paddle.optimizer.lr.LRScheduler):
            self._learning_rate.set_state_dict(state_dict["LR_Scheduler"])
        self.compressor.set_state_dict({k: v for k, v in state_dict.items() if k != "LR_Scheduler"})
