"""FedAvg weight-update inversion (ALGORITHMS.md §4.7).

A FedAvg client sends ΔW = θ_K − θ_0 after K = E·⌈n/b⌉ local SGD steps, and, when the whole
state dict is shared, the change Δr of its BN running statistics. Two attacks invert it:

- ``mode="differentiable"`` (default): the method of Geiping et al. ("Inverting Gradients",
  NeurIPS 2020; inversefed's FedAvg reconstructor) with the weights of Hatamizadeh et al.
  ("Do Gradient Inversion Attacks Make Federated Learning Unsafe?", IEEE TMI 2023). The client's
  local training is *simulated* on the dummy data x̂ and differentiated through:
  θ_0 ← W_t; θ_s ← θ_{s−1} − η·∇_θ CE(f_{θ_{s−1}}(x̂_(s)), ŷ_(s)) with ``create_graph=True``,
  minibatch s the contiguous chunk s of x̂ (the unknown shuffle order is *assumed fixed*: a
  documented approximation), train-mode BN from batch statistics; then
  L = w·D(θ_K − θ_0, ΔW) + α_BN·R_BN(recovered) [+ α_Δr·Σ‖Δr̂ − Δr‖] + priors (TV, image norm).
  It runs on the shared engine (:class:`~privbox.attacks.engine.GradientInversion`) through its
  ``matching_loss`` hook, so objectives, regularizers, schedules, box, noise, best-iterate
  tracking, NaN guard and checkpoints are the engine's.
- ``mode="reference"``: what the NVIDIA FLGradientInversion code *effectively* computes
  (ALGORITHMS.md §4.7 points 1–6): the update-matching term is only logged (no gradient); a
  simulated network, started at W_t and never reset, trains E full-batch BCE steps on
  (x, sigmoid(t)) every iteration and that BCE is back-propagated *unscaled* into the images z
  and label logits t; BN statistics recovered from Δr are matched on ``model_bn`` (W_t + ΔW, or
  W_t with ``bn_model="global"``); TV and image-norm priors; Adam; the last iteration's pre-step
  iterate is returned; the prior is not normalised. With α_grad = 0 the simulation is skipped
  (the original crashes there).

The functional forward at explicit (graph-carrying) weights is
:func:`privbox.nn.functional_model.substitute_parameters`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from tqdm.auto import tqdm

from ..core.bn import bn_layers
from ..core.images import denormalize
from ..fl.step import local_minibatches
from ..nn import functional as PF
from ..nn.convert import trainable_parameters
from ..nn.functional_model import parameter_gradients, substitute_parameters
from ..core.update import ClientUpdate, MissingCapabilityError
from .config import AttackConfig, ConfigError
from .engine import GradientInversion, IterationInfo, SnapshotCallback, _Adam
from .objectives import OBJECTIVES
from .presets import nvidia_fl
from .reconstruction import Reconstruction
from .regularizers import BNStatistics, build_regularizers
from .schedules import SCHEDULES

MODES = ("differentiable", "reference")
BN_MODELS = ("auto", "global", "updated")
BN_CONVENTIONS = ("auto", "paddle", "torch")
LABEL_INITS = ("uniform", "zeros")
_EPS = 1e-12


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class FedAvgOptions:
    """FedAvg-specific settings, read from ``AttackConfig.extra``.

    Attributes:
        mode: ``"differentiable"`` (unrolled local SGD, default) or ``"reference"`` (the
            NVIDIA code's effective behaviour).
        bn_model: the weights at which the BN regulariser sees the dummy batch: ``"global"``
            (W_t, where the client computed its first batch statistics: exact for K = 1) or
            ``"updated"`` (W_t + ΔW, NVIDIA's ``model_bn``); ``"auto"`` = ``"updated"`` in
            reference mode (parity), ``"global"`` in differentiable mode.
        bn_convention: EMA convention for recovering batch statistics from Δr (ALGORITHMS.md
            §3.4): ``"paddle"`` (r ← m·r + (1−m)·b), ``"torch"`` (r ← (1−m)·r + m·b) or
            ``"auto"``: the update's, i.e. ``"paddle"`` (privbox clients are Paddle models).
        bn_momentum: the EMA momentum in that convention; ``None`` reads the victim model's BN
            momentum (Paddle ``_momentum``, 0.9 by default) for ``"paddle"`` and uses 0.1 (the
            NVIDIA setting) for ``"torch"``.
        bn_delta_weight: differentiable mode: weight of Σ_l‖Δr̂_l − Δr_l‖ (not squared) between
            the running-statistic change of the simulated local training (EMA simulated
            explicitly from the dummy batch statistics) and the observed Δr; 0 disables.
        grey: reference mode: optimise one grey channel replicated to the model's input
            channels (NVIDIA's chest X-rays); ``None`` = on in reference mode, off otherwise.
        normalize_prior: normalise the prior image with the data mean/std (model input
            space, ALGORITHMS.md §3.6); ``None`` = off in reference mode (parity), on otherwise.
        label_init: reference mode: label logits t ~ U(0, 1) (``"uniform"``, NVIDIA's
            ``init_target_rand``) or zeros.
    """

    mode: str = "differentiable"
    bn_model: str = "auto"
    bn_convention: str = "auto"
    bn_momentum: Optional[float] = None
    bn_delta_weight: float = 0.0
    grey: Optional[bool] = None
    normalize_prior: Optional[bool] = None
    label_init: str = "uniform"

    def __post_init__(self) -> None:
        for key, choices in (("mode", MODES), ("bn_model", BN_MODELS), ("bn_convention", BN_CONVENTIONS), ("label_init", LABEL_INITS)):
            if getattr(self, key) not in choices:
                raise ConfigError(f"FedAvg option {key} must be one of {list(choices)}, got {getattr(self, key)!r}")
        if self.bn_momentum is not None and not 0.0 < float(self.bn_momentum) < 1.0:
            raise ConfigError(f"bn_momentum must lie in (0, 1), got {self.bn_momentum}")
        if self.bn_delta_weight < 0:
            raise ConfigError(f"bn_delta_weight must be >= 0, got {self.bn_delta_weight}")
        if self.mode == "differentiable" and self.grey:
            raise ConfigError("grey=True is a reference-mode option; the differentiable mode optimises every input channel")

    @classmethod
    def from_config(cls, config: AttackConfig) -> "FedAvgOptions":
        """Parse ``config.extra``; unknown keys raise :class:`ConfigError` listing the valid ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(config.extra) - set(names))
        if unknown:
            raise ConfigError(f"unknown FedAvg options in config.extra: {unknown}; valid ones are {names}")
        return cls(**config.extra)

    @property
    def reference(self) -> bool:
        return self.mode == "reference"

    def resolved_bn_model(self) -> str:
        if self.bn_model != "auto":
            return self.bn_model
        return "updated" if self.reference else "global"

    def resolved_grey(self) -> bool:
        return self.reference if self.grey is None else bool(self.grey)

    def resolved_normalize_prior(self) -> bool:
        return (not self.reference) if self.normalize_prior is None else bool(self.normalize_prior)

    def resolved_bn(self, model: nn.Layer) -> tuple[float, str]:
        """(momentum, convention) for EMA inversion and simulation, resolved against ``model``."""
        convention = "paddle" if self.bn_convention == "auto" else self.bn_convention
        if self.bn_momentum is not None:
            return float(self.bn_momentum), convention
        if convention == "torch":
            return 0.1, convention
        momenta = sorted({float(layer._momentum) for _, layer in bn_layers(model)})
        if len(momenta) > 1:
            raise ConfigError(f"the model's BN layers use different momenta {momenta}; set bn_momentum explicitly")
        return (momenta[0] if momenta else 0.9), convention


# --------------------------------------------------------------------- simulation
@dataclass
class LocalTraining:
    """The result of :func:`simulate_local_sgd`.

    Attributes:
        delta: θ_K − θ_0 per trainable parameter name (differentiable w.r.t. the images and
            labels when simulated with ``create_graph=True``).
        running_delta: r_K − r_0 per BN running-statistic name (``<layer>._mean`` /
            ``<layer>._variance``); differentiable when ``track_bn`` was set, otherwise the
            detached values Paddle's own in-place EMA produced. Empty in eval mode.
        steps: K.
    """

    delta: dict[str, paddle.Tensor]
    running_delta: dict[str, paddle.Tensor]
    steps: int


def _ema(old: paddle.Tensor, batch: paddle.Tensor, momentum: float, convention: str) -> paddle.Tensor:
    if convention == "paddle":
        return momentum * old + (1.0 - momentum) * batch
    return (1.0 - momentum) * old + momentum * batch


def simulate_local_sgd(
    model: nn.Layer,
    images: paddle.Tensor,
    labels: paddle.Tensor,
    lr: float,
    batch_size: int,
    epochs: int = 1,
    soft_labels: bool = False,
    create_graph: bool = True,
    start: Optional[Mapping[str, paddle.Tensor]] = None,
    running: Optional[Mapping[str, paddle.Tensor]] = None,
    bn_momentum: float = 0.9,
    bn_convention: str = "paddle",
    track_bn: bool = False,
) -> LocalTraining:
    """Simulate a FedAvg client's local SGD on ``images`` as one differentiable graph.

    K = E·⌈n/b⌉ plain SGD steps (momentum 0) on the batch-mean cross-entropy of contiguous
    minibatches (the order of :func:`privbox.client.local_minibatches` without shuffling),
    evaluated with :func:`~privbox.nn.functional_model.substitute_parameters`, so the model's own
    parameters and running statistics are never modified. In train mode BN normalises with
    batch statistics; its running statistics evolve on clones.

    Args:
        model: the victim architecture, already in the victim's train/eval mode.
        images: ``[n, C, H, W]`` model-space images (the dummy batch, ``stop_gradient=False``
            to differentiate through the simulation).
        labels: hard labels ``[n]`` or, with ``soft_labels``, label logits ``[n, C]`` (soft
            targets softmax(logits), as DLG).
        lr, batch_size, epochs: the client's η, b and E.
        create_graph: keep the graph of every step (needed to differentiate θ_K w.r.t. the
            images: the unrolled simulation); ``False`` gives a plain first-order simulation.
        start: θ_0 per trainable parameter name (default: the model's current parameters).
        running: r_0 per BN running-statistic name (default: the model's current values).
        bn_momentum, bn_convention: the EMA rule for ``track_bn``.
        track_bn: also compute the running-statistic change as a differentiable function of
            the images from each step's batch statistics (biased variance for ``"paddle"``,
            unbiased for ``"torch"``), instead of reading Paddle's detached in-place update.

    Returns:
        :class:`LocalTraining`.
    """
    if bn_convention not in ("paddle", "torch"):
        raise ValueError(f"bn_convention must be 'paddle' or 'torch', got {bn_convention!r}")
    n = int(images.shape[0])
    if int(labels.shape[0]) != n:
        raise ValueError(f"{n} images but {labels.shape[0]} labels")
    named = trainable_parameters(model)
    names = [name for name, _ in named]
    theta0 = {}
    for name, param in named:
        value = start[name] if start is not None else param
        if value.stop_gradient:  # paddle.grad needs tensors that take part in the graph
            value = value.detach()
            value.stop_gradient = False
        theta0[name] = value
    trainable = set(names)
    buffers = {name: p for name, p in model.named_parameters() if name not in trainable}
    r0 = {name: (running[name] if running is not None else p).detach() for name, p in buffers.items()}
    clones = {name: value.clone() for name, value in r0.items()}
    theta = dict(theta0)
    steps = local_minibatches(n, batch_size, epochs)
    layers = bn_layers(model)
    tracked: dict[str, paddle.Tensor] = {}
    if track_bn:
        tracked = {name: value for name, value in r0.items()}
    for index in steps:
        start_i, stop_i = int(index[0]), int(index[-1]) + 1
        x_s = images[start_i:stop_i]
        y_s = labels[start_i:stop_i]
        inputs: dict[str, paddle.Tensor] = {}
        handles = []
        if track_bn and model.training:
            for lname, layer in layers:
                def hook(lay, args, output, _name=lname):
                    inputs[_name] = args[0]

                handles.append(layer.register_forward_post_hook(hook))
        try:
            with substitute_parameters(model, {**theta, **clones}):
                logits = model(x_s)
        finally:
            for handle in handles:
                handle.remove()
        loss = PF.cross_entropy(logits, y_s, soft_label=soft_labels, label_logits=soft_labels)
        params = [theta[name] for name in names]
        grads = parameter_gradients(loss, params, inputs=[x_s] if create_graph else None, create_graph=create_graph)
        if create_graph:
            theta = {name: theta[name] - lr * g for name, g in zip(names, grads)}
        else:
            theta = {}
            for name, p, g in zip(names, params, grads):
                new = (p - lr * g).detach()
                new.stop_gradient = False
                theta[name] = new
        for lname, a in inputs.items():
            axes = [0] + list(range(2, a.ndim))
            mean = a.mean(axis=axes)
            var = (a * a).mean(axis=axes) - mean * mean
            if bn_convention == "torch":
                count = a.size // a.shape[1]
                var = var * (count / max(count - 1, 1))
            for key, stat in ((f"{lname}._mean", mean), (f"{lname}._variance", var)):
                if key in tracked:
                    tracked[key] = _ema(tracked[key], stat, bn_momentum, bn_convention)
    delta = {name: theta[name] - theta0[name] for name in names}
    if track_bn:
        running_delta = {k: tracked[k] - r0[k] for k in tracked if k.endswith(("._mean", "._variance"))} if model.training else {}
    else:
        running_delta = {k: clones[k] - r0[k] for k in clones} if model.training else {}
    return LocalTraining(delta=delta, running_delta=running_delta, steps=len(steps))


# ------------------------------------------------------------------------ priors
def prior_batch(
    prior: np.ndarray,
    count: int,
    input_shape: Sequence[int],
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    normalize: bool = True,
    channels: Optional[int] = None,
) -> np.ndarray:
    """A batch of ``count`` copies of a prior image (ALGORITHMS.md §3.6).

    ``prior`` is ``[H, W]``, ``[c, H, W]`` or ``[H, W, c]`` (c ∈ {1, 3}), uint8 0–255 (divided by
    255) or float in [0, 1]. It is resized to the input size (area averaging when shrinking,
    bilinear otherwise), converted to ``channels`` (default: the input's; grey is replicated,
    colour averaged to grey for one channel) and, with ``normalize``, mapped to model space with
    ``mean``/``std``. Returns ``[count, channels, H, W]`` float32.
    """
    arr = np.asarray(prior)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3 and arr.shape[-1] in (1, 3) and arr.shape[0] not in (1, 3):
        arr = arr.transpose(2, 0, 1)
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ValueError(f"a prior image must be [H, W], [c, H, W] or [H, W, c] with c 1 or 3, got shape {np.shape(prior)}")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError("a float prior image must be in [0, 1] (or give uint8 0-255)")
    in_c, height, width = (int(s) for s in input_shape)
    channels = in_c if channels is None else int(channels)
    x = paddle.to_tensor(arr[None])
    if tuple(arr.shape[1:]) != (height, width):
        shrink = arr.shape[1] >= height and arr.shape[2] >= width
        x = F.interpolate(x, size=[height, width], mode="area" if shrink else "bilinear", align_corners=False)
    out = x.numpy()[0]
    if out.shape[0] != channels:
        out = np.repeat(out.mean(axis=0, keepdims=True), channels, axis=0)
    if normalize:
        m = np.asarray(mean if mean is not None else [0.0] * in_c, dtype=np.float32)
        s = np.asarray(std if std is not None else [1.0] * in_c, dtype=np.float32)
        if channels != in_c:
            # One grey channel replicated to the input's channels: only a channel-independent
            # normalisation keeps the replicas identical.
            if np.ptp(m) > 0 or np.ptp(s) > 0:
                raise ValueError(
                    f"a grey prior replicated to {in_c} channels can only be normalised with equal per-channel "
                    f"mean/std, got mean {m.tolist()} and std {s.tolist()}; use normalize_prior=False or grey=False"
                )
            m, s = m[:1], s[:1]
        out = (out - m.reshape(-1, 1, 1)) / s.reshape(-1, 1, 1)
    return np.repeat(out[None], count, axis=0).astype(np.float32)


# ------------------------------------------------------------------------ attack
@dataclass
class _RunContext:
    """What the matching hook needs from the update (set per run)."""

    names: list[str]
    lr: float
    batch_size: int
    epochs: int
    steps: int
    momentum: float
    convention: str
    start_running: dict[str, paddle.Tensor]
    observed_running: dict[str, paddle.Tensor]
    bn_params: Optional[dict[str, paddle.Tensor]]
    bn_running: dict[str, paddle.Tensor]


class FedAvgInversion(GradientInversion):
    """Invert a FedAvg weight update (Geiping et al., NeurIPS 2020; Hatamizadeh et al., IEEE TMI 2023).

    Args:
        config: an :class:`AttackConfig`; default :func:`privbox.attacks.presets.nvidia_fl`.
            FedAvg options (:class:`FedAvgOptions`) live in ``config.extra``.
        overrides: fields to change on ``config``.

    ``attack.run(model, update, prior=...)`` needs a ``kind="weight_delta"`` update with the local
    lr, b, E (``privbox.client.compute_fedavg_update`` records them) and θ0. It reconstructs
    ``meta.num_samples`` images (reference mode: NVIDIA's ⌈n/b⌉·b).
    """

    def __init__(self, config: Optional[AttackConfig] = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.options = FedAvgOptions.from_config(self.config)
        self._ctx: Optional[_RunContext] = None

    @classmethod
    def default_config(cls) -> AttackConfig:
        return nvidia_fl()

    # ------------------------------------------------------------- threat model
    def check_update(self, update: ClientUpdate) -> None:
        """Raise a clear error unless ``update`` is a FedAvg delta this attack can use."""
        if update.kind != "weight_delta":
            raise MissingCapabilityError(
                f"{type(self).__name__} inverts FedAvg weight deltas (kind 'weight_delta'), got a "
                f"{update.kind!r} update; invert FedSGD gradients with GradientInversion, or capture "
                "the update with privbox.client.compute_fedavg_update"
            )
        meta = update.meta
        if not meta.lr or meta.lr <= 0:
            raise MissingCapabilityError("the update's metadata has no local lr; FedAvg inversion needs the lr the client used")
        if meta.batch_size < 1 or meta.num_samples < 1 or meta.local_epochs < 1:
            raise MissingCapabilityError(
                f"the update's metadata needs batch_size, num_samples and local_epochs >= 1, got "
                f"{meta.batch_size}, {meta.num_samples}, {meta.local_epochs}"
            )
        expected = meta.local_epochs * math.ceil(meta.num_samples / meta.batch_size)
        if meta.local_steps != expected:
            raise MissingCapabilityError(
                f"the update says K = {meta.local_steps} local steps, but E·ceil(n/b) = {expected} "
                f"(E {meta.local_epochs}, n {meta.num_samples}, b {meta.batch_size}); only plain "
                "FedAvg local SGD is simulated"
            )

    def required_capabilities(self, update: ClientUpdate) -> list[str]:
        required = super().required_capabilities(update)
        extra = ["has_global_state"] + (["has_bn_running_delta"] if self.options.bn_delta_weight > 0 else [])
        return required + [r for r in extra if r not in required]

    def num_images(self, update: ClientUpdate) -> int:
        meta = update.meta
        if self.options.reference:
            return math.ceil(meta.num_samples / meta.batch_size) * meta.batch_size
        return meta.num_samples

    def observed_tensors(self, update: ClientUpdate, named: list[tuple[str, paddle.Tensor]]) -> list[paddle.Tensor]:
        """The weight delta ΔW itself (matched in delta space, as NVIDIA's Σ‖ΔŴ − ΔW‖)."""
        return [paddle.to_tensor(update.tensors[name], dtype="float32") for name, _ in named]

    # ------------------------------------------------------------------- runs
    def run(
        self,
        model: nn.Layer,
        update: ClientUpdate,
        callback: Optional[SnapshotCallback] = None,
        init_images: Optional[np.ndarray] = None,
        labels: Optional[np.ndarray] = None,
        context: Optional[dict] = None,
        checkpoint_dir: Optional[str] = None,
        checkpoint_every: int = 0,
        resume: bool = False,
        prior: Optional[np.ndarray] = None,
    ) -> Reconstruction:
        """Reconstruct the client's local data from its FedAvg update.

        Args:
            model: the victim architecture; loaded with the update's θ0.
            update: a ``weight_delta`` update.
            prior: optional prior image (:func:`prior_batch`) every dummy image starts from
                (NVIDIA: a blurred population-average image); otherwise ``config.init``.
            callback, init_images, labels, context, checkpoint_dir, checkpoint_every, resume:
                as :meth:`GradientInversion.run` (reference mode: ``callback`` only).
        """
        self.check_update(update)
        runner = self._resolved(model)
        opts = self.options
        count = runner.num_images(update)
        grey = opts.resolved_grey()
        if init_images is None and prior is not None:
            init_images = prior_batch(
                prior, count, update.meta.input_shape, update.meta.mean, update.meta.std,
                normalize=opts.resolved_normalize_prior(), channels=1 if grey else None,
            )
        if opts.reference:
            if labels is not None or runner.config.label_strategy != "joint":
                raise ConfigError("reference mode optimises label logits t like the NVIDIA code; use label_strategy='joint'")
            if checkpoint_dir or resume or context:
                raise ConfigError("reference mode has no checkpoints or regularizer context; use the differentiable mode")
            return runner._run_reference(model, update, init_images, callback)
        return GradientInversion.run(
            runner, model, update, callback=callback, init_images=init_images, labels=labels, context=context,
            checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume,
        )

    def gradient_distance(
        self, model: nn.Layer, update: ClientUpdate, labels: Optional[np.ndarray] = None
    ) -> Callable[[np.ndarray], float]:
        """A function ``images -> D(θ_K − θ_0, ΔW)``: the matching distance alone, from a
        first-order simulation of the local training (for orchestrators that score candidate
        batches, e.g. E2EGI's greedy combination). Needs fixed labels."""
        self.check_update(update)
        if self.options.reference:
            raise ConfigError("reference mode has no differentiable matching distance")
        return GradientInversion.gradient_distance(self._resolved(model), model, update, labels)

    def predicted_tensors(
        self, model: nn.Layer, x: paddle.Tensor, y: paddle.Tensor, params: list[paddle.Tensor]
    ) -> list[paddle.Tensor]:
        """ΔŴ = θ_K − θ_0 of a first-order simulation of the client's local training on ``x``."""
        ctx = self._ctx
        sim = simulate_local_sgd(model, x, y, ctx.lr, ctx.batch_size, ctx.epochs, create_graph=False, running=ctx.start_running)
        return [sim.delta[name] for name in ctx.names]

    def _resolved(self, model: nn.Layer) -> "FedAvgInversion":
        """A copy whose BN regulariser uses the resolved EMA momentum/convention."""
        momentum, convention = self.options.resolved_bn(model)
        regularizers = copy.deepcopy(self.config.regularizers)
        spec = regularizers.get("bn")
        if spec is not None:
            spec = dict(spec) if isinstance(spec, dict) else {"weight": spec}
            if spec.get("source", "exact") == "recovered":
                spec.setdefault("momentum", momentum)
                spec.setdefault("convention", convention)
            regularizers["bn"] = spec
        runner = copy.copy(self)
        runner.config = self.config.replace(regularizers=regularizers)
        return runner

    def prepare_model(self, model: nn.Layer, update: ClientUpdate) -> nn.Layer:
        model = super().prepare_model(model, update)
        self._ctx = self._context(model, update)
        return model

    def _context(self, model: nn.Layer, update: ClientUpdate) -> _RunContext:
        meta = update.meta
        momentum, convention = self.options.resolved_bn(model)
        named = trainable_parameters(model)
        names = [name for name, _ in named]
        trainable = set(names)
        global_state = update.global_state or {}
        start_running = {
            name: paddle.to_tensor(global_state[name], dtype="float32")
            for name, _ in model.named_parameters() if name not in trainable
        }
        observed_running = {
            k: paddle.to_tensor(v, dtype="float32") for k, v in (update.buffer_delta or {}).items() if k in start_running
        }
        bn_params, bn_running = None, start_running
        if self.options.resolved_bn_model() == "updated":  # NVIDIA's model_bn = W_t + ΔW (all entries)
            bn_params = {name: paddle.to_tensor(global_state[name] + update.tensors[name], dtype="float32") for name in names}
            bn_running = {k: v + observed_running[k] if k in observed_running else v for k, v in start_running.items()}
        return _RunContext(
            names=names, lr=float(meta.lr), batch_size=int(meta.batch_size), epochs=int(meta.local_epochs),
            steps=int(meta.local_steps), momentum=momentum, convention=convention,
            start_running=start_running, observed_running=observed_running, bn_params=bn_params, bn_running=bn_running,
        )

    def _bn_forward(self, model: nn.Layer, x: paddle.Tensor) -> None:
        """Forward the whole dummy batch at the BN model's weights so BN hooks see it."""
        ctx = self._ctx
        values = dict(ctx.bn_params or {})
        values.update({k: v.clone() for k, v in ctx.bn_running.items()})  # train-mode BN updates them in place
        with substitute_parameters(model, values):
            model(x)

    def _uses_bn_regularizer(self) -> bool:
        spec = self.config.regularizers.get("bn")
        if spec is None:
            return False
        weight = spec.get("weight", 0.0) if isinstance(spec, dict) else spec
        return float(weight) != 0.0

    # ---------------------------------------------------- differentiable mode
    def matching_loss(
        self,
        model: nn.Layer,
        x: paddle.Tensor,
        soft_labels: Optional[paddle.Tensor],
        hard_labels: Optional[paddle.Tensor],
        params: list[paddle.Tensor],
        target: list[paddle.Tensor],
    ) -> tuple[paddle.Tensor, Optional[paddle.Tensor]]:
        """D(θ_K − θ_0, ΔW) through the unrolled local SGD, plus the optional Δr term."""
        ctx = self._ctx
        cfg = self.config
        soft = soft_labels is not None
        sim = simulate_local_sgd(
            model, x, soft_labels if soft else hard_labels, ctx.lr, ctx.batch_size, ctx.epochs,
            soft_labels=soft, create_graph=True, running=ctx.start_running,
            bn_momentum=ctx.momentum, bn_convention=ctx.convention,
            track_bn=self.options.bn_delta_weight > 0,
        )
        delta = [sim.delta[name] for name in ctx.names]
        distance = OBJECTIVES.get(cfg.objective)(delta, target, cfg.layer_weights)
        extra = None
        if self.options.bn_delta_weight > 0:
            terms = [
                paddle.sqrt(((sim.running_delta[k] - observed) ** 2).sum() + _EPS)
                for k, observed in ctx.observed_running.items() if k in sim.running_delta
            ]
            if terms:
                extra = self.options.bn_delta_weight * paddle.add_n(terms)
        single_full_step = ctx.steps == 1 and ctx.batch_size >= x.shape[0]
        if self._uses_bn_regularizer() and not (ctx.bn_params is None and single_full_step):
            # With one full-batch step at W_t the simulation's forward already fed the hooks.
            self._bn_forward(model, x)
        return distance, extra

    # --------------------------------------------------------- reference mode
    def _run_reference(
        self,
        model: nn.Layer,
        update: ClientUpdate,
        init_images: Optional[np.ndarray],
        callback: Optional[SnapshotCallback],
    ) -> Reconstruction:
        """The NVIDIA FLGradientInversion loop's effective behaviour (ALGORITHMS.md §4.7 (1)-(6))."""
        cfg, opts = self.config, self.options
        model = self.prepare_model(model, update)
        ctx = self._ctx
        meta = update.meta
        count = self.num_images(update)
        channels = int(meta.input_shape[0])
        grey = opts.resolved_grey()
        shape = (count, 1 if grey else channels, *meta.input_shape[1:])
        rng = np.random.default_rng(cfg.seed)
        paddle.seed(cfg.seed)
        z0 = np.asarray(init_images, dtype=np.float32).reshape(shape) if init_images is not None else self._initial_images(rng, shape)
        t0 = rng.random((count, meta.num_classes)).astype(np.float32) if opts.label_init == "uniform" else np.zeros((count, meta.num_classes), np.float32)
        z = paddle.to_tensor(z0)
        z.stop_gradient = False
        t = paddle.to_tensor(t0)
        t.stop_gradient = False
        expand = paddle.ones([1, channels, 1, 1], dtype="float32")

        # The simulated client network: starts at W_t, never reset (point 3).
        names = ctx.names
        sim = {name: param.detach().clone() for name, param in trainable_parameters(model)}
        for value in sim.values():
            value.stop_gradient = False
        sim_running = {k: v.clone() for k, v in ctx.start_running.items()}
        target = self.observed_tensors(update, trainable_parameters(model))
        objective = OBJECTIVES.get(cfg.objective)
        schedule = SCHEDULES.get(cfg.schedule)
        # NVIDIA inverts one EMA step (no equal-statistics generalisation over K).
        one_step = dataclasses.replace(update, meta=dataclasses.replace(meta, local_steps=1))
        regs = build_regularizers(cfg.regularizers)
        for reg in regs:
            reg.attach(model, one_step, {})
        bn_regs = [reg for reg in regs if isinstance(reg, BNStatistics)]
        image_regs = [reg for reg in regs if not isinstance(reg, BNStatistics)]
        optimizer = _Adam([z, t], cfg.adam_betas, cfg.signed)
        simulate = cfg.gradient_weight > 0
        trace: list[float] = []
        events = [
            "reference mode: update matching logged only (no gradient); simulated BCE back-propagated "
            "unscaled; simulated network never reset; last pre-step iterate returned"
        ]
        if not simulate:
            events.append("gradient_weight = 0: local-training simulation skipped (label logits stay at their init)")
        start_time = time.perf_counter()
        x_last = z0
        bar = tqdm(total=cfg.iterations, desc=cfg.name, disable=not cfg.progress, leave=False)
        try:
            for it in range(cfg.iterations):
                lr = schedule(it, cfg.iterations, cfg.lr, **cfg.schedule_params)
                x = z * expand if grey else z
                grad_z = paddle.zeros_like(z)
                grad_t = paddle.zeros_like(t)
                logged = None
                if simulate:
                    before = {name: value.detach() for name, value in sim.items()}
                    for _ in range(ctx.epochs):
                        with substitute_parameters(model, {**sim, **sim_running}):
                            out = model(x)
                        bce = PF.binary_cross_entropy_with_logits(out, F.sigmoid(t))
                        grads = paddle.grad(bce, [sim[name] for name in names] + [z, t])
                        grad_z, grad_t = grad_z + grads[-2], grad_t + grads[-1]
                        with paddle.no_grad():
                            for name, g in zip(names, grads[:-2]):
                                new = (sim[name] - ctx.lr * g).detach()
                                new.stop_gradient = False
                                sim[name] = new
                    with paddle.no_grad():
                        logged = float(objective([sim[n] - before[n] for n in names], target, cfg.layer_weights)) * cfg.gradient_weight
                aux = [reg.weight * reg(x) for reg in image_regs]
                if bn_regs:
                    self._bn_forward(model, x)
                    aux += [reg.weight * reg(x) for reg in bn_regs]
                total = paddle.add_n(aux) if aux else None
                if total is not None:
                    grad_z = grad_z + paddle.grad(total, [z])[0]
                value = float(total) if total is not None else 0.0
                if not (math.isfinite(value) and bool(paddle.isfinite(grad_z).all())):
                    events.append(f"iteration {it}: non-finite loss or gradient, stopped")
                    break
                trace.append(logged if logged is not None else value)
                x_last = x.numpy().copy()  # the pre-step iterate (point 5)
                optimizer.step([grad_z, grad_t], lr)
                bar.update(1)
                if callback is not None and cfg.snapshot_every and (it + 1) % cfg.snapshot_every == 0:
                    callback(IterationInfo(it + 1, trace[-1], trace[-1], x_last, self._pixels(x_last, meta), 0))
        finally:
            bar.close()
            for reg in regs:
                reg.detach()
            model.clear_gradients()
        logits = t.numpy()
        return Reconstruction(
            images=x_last,
            pixels=self._pixels(x_last, meta),
            labels=logits.argmax(axis=1).astype(np.int64),
            label_order="unordered",
            loss_trace=trace,
            best_iteration=max(len(trace) - 1, 0),
            best_loss=trace[-1] if trace else math.nan,
            seed=cfg.seed,
            iterations=len(trace),
            wall_time=time.perf_counter() - start_time,
            attack=cfg.name,
            config=cfg.to_dict(),
            label_method="joint (argmax of the optimised logits t)",
            events=events,
        )

    def _pixels(self, images: np.ndarray, meta) -> np.ndarray:
        """[0, 1] pixels of an iterate: de-normalised, or clamped when the prior was not normalised."""
        if self.options.resolved_normalize_prior():
            return denormalize(images, meta.mean, meta.std)
        return np.clip(images, 0.0, 1.0).astype(np.float32)


__all__ = [
    "FedAvgInversion",
    "FedAvgOptions",
    "LocalTraining",
    "prior_batch",
    "simulate_local_sgd",
]
