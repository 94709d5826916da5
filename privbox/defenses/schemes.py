"""Label-based-Defense client schemes as named, composable settings (ALGORITHMS.md §6.5-6.6).

"Label is the culprit: Defending Gradient Attack on Privacy" (the Label-based-Defense
repository, github.com/zhaohuali/Label-based-Defense) argues that the labels of a batch decide
whether a gradient attack (GA) succeeds: the gradient equations of a fully connected layer have
the coefficient matrix A = Δ ⊗ I, and same-label samples give near-identical columns of Δ, so
rank(A) drops with label repetition (§7.2). The paper's client settings are:

* ``pure``: global batch 128, synchronised BN (the baseline);
* ``RA``: ResNet-18 stem max-pool kernel 19 (stride 2, padding 1 kept) → RA-i > 0 (§7.1); the
  attacker must use the same kernel;
* ``DP-SGD``: that repository's "DP-SGD": clip the *whole-batch* gradient to C = 1 and add
  N(0, (σC)²), σ = 0.01 — **no per-sample clipping, no accountant, no DP guarantee**;
* ``GH``: gradient heterogeneity: global batch 384 over 4 devices with asynchronous per-device
  BN (each shard normalised with its own statistics, gradients averaged);

plus the label order (``"grouped"``: the batch is stably sorted by label so that contiguous
shards or local steps become label-homogeneous; labels are permuted, never overwritten — the
repository's ``--duplicate-label`` overwrote them), label repetition (few-class batch
selection), local iterations (E contiguous chunks, SGD lr 0.1 without momentum, shared
pseudo-gradient (θ0 − θ_E)/(lr·E)) and dropout on/off (the victim's mask is unknown to the
attacker). Real DP-SGD (per-sample clipping, Abadi et al., CCS 2016) is available as
:func:`real_dp_sgd`.

A :class:`DefenseScheme` is a frozen dataclass; schemes compose with ``+``
(``SCHEMES["RA"] + SCHEMES["GH"]``, or ``get_scheme("RA+GH")``). :func:`capture_with_scheme`
computes what a client under a scheme sends, as a :class:`~privbox.core.update.ClientUpdate` whose
``meta.defenses`` names the scheme and whose ``meta.model_kwargs`` carries the architecture
change (``maxpool_kernel``), so ``privbox.nn.build_model(meta.model_id, **meta.model_kwargs)``
rebuilds the victim's model; attacking with a model whose max-pool kernel differs raises
:class:`~privbox.core.update.ModelMismatchError` (see :func:`check_attack_model`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from ..core.update import ClientUpdate, ModelMismatchError, Secret
from .transforms import batch_clip_noise

__all__ = [
    "DefenseScheme",
    "SchemePlan",
    "SchemeGradient",
    "SchemeUpdate",
    "SCHEMES",
    "get_scheme",
    "real_dp_sgd",
    "scheme_gradient",
    "capture_with_scheme",
    "build_attack_model",
    "check_attack_model",
    "stem_maxpool_kernel",
]

LABEL_ORDERS = ("as_is", "grouped")


# ------------------------------------------------------------------------------------ helpers
def _maxpools(model: nn.Layer) -> List[Tuple[str, nn.Layer]]:
    from ..analysis.rank import _is_maxpool2d

    return [(name, layer) for name, layer in model.named_sublayers() if _is_maxpool2d(layer)]


def stem_maxpool_kernel(model: nn.Layer) -> Optional[int]:
    """Kernel size of the first 2-D max-pool of ``model`` (the ResNet stem), None if it has none."""
    pools = _maxpools(model)
    if not pools:
        return None
    layer = pools[0][1]
    k = getattr(layer, "kernel_size", None)
    if k is None:
        k = getattr(layer, "ksize", None)
    if isinstance(k, (list, tuple)):
        if len(set(int(v) for v in k)) != 1:
            return None
        k = k[0]
    return int(k)


def _dropout_layers(model: nn.Layer) -> List[nn.Layer]:
    from ..nn.layers import Dropout as PrivboxDropout

    kinds = (PrivboxDropout, nn.Dropout, nn.Dropout2D, nn.Dropout3D, nn.AlphaDropout)
    return [layer for _, layer in model.named_sublayers(include_self=True) if isinstance(layer, kinds)]


@contextlib.contextmanager
def _dropout_setting(model: nn.Layer, dropout: Optional[bool], bn_mode: str, scheme: str) -> Iterator[None]:
    """Dropout as the scheme says: None leaves it, False switches it off (p = 0), True needs train mode."""
    layers = _dropout_layers(model)
    if dropout is None:
        yield
        return
    if dropout and not layers:
        warnings.warn(
            f"scheme {scheme!r}: dropout=True but the model has no Dropout layer; the setting has no effect",
            stacklevel=3,
        )
    if dropout and layers and bn_mode != "train":
        raise ValueError(
            f"scheme {scheme!r}: dropout=True needs bn_mode='train' (in eval mode Paddle switches dropout off, as "
            "the Label-based-Defense --model-eval flag does); use bn_mode='train' or dropout=False"
        )
    saved = [(layer, layer.p) for layer in layers]
    try:
        if not dropout:
            for layer in layers:
                layer.p = 0.0
        yield
    finally:
        for layer, p in saved:
            layer.p = p


@contextlib.contextmanager
def _paddle_seeded(seed: Optional[int]) -> Iterator[None]:
    """Seed Paddle's generator (dropout masks) for a block, restoring the caller's state after."""
    if seed is None:
        yield
        return
    state = paddle.get_rng_state()
    paddle.seed(int(seed))
    try:
        yield
    finally:
        paddle.set_rng_state(state)


# ------------------------------------------------------------------------------------ scheme
@dataclass(frozen=True)
class SchemePlan:
    """How a scheme processes a batch: the label reordering and the samples of each step/shard.

    Attributes:
        order: ``new[i] = old[order[i]]`` (identity for ``label_order="as_is"``).
        steps: ``steps[e][s]`` = indices (into the reordered batch) of shard ``s`` in local
            iteration ``e``.
    """

    order: np.ndarray
    steps: List[List[np.ndarray]]

    def shard_labels(self, labels: Sequence[int]) -> List[List[List[int]]]:
        """The labels (in the *original* order's values) seen by every step and shard."""
        lab = np.asarray(labels, dtype=np.int64)[self.order]
        return [[lab[idx].tolist() for idx in step] for step in self.steps]


@dataclass(frozen=True)
class DefenseScheme:
    """A client setting of the Label-based-Defense paper ("Label is the culprit").

    Attributes:
        name: the scheme's name (``"pure"``, ``"RA"``, ``"DP-SGD"``, ``"GH"``, or a composition
            such as ``"RA+GH"``).
        batch_size: the global batch size of the paper's training setup (pure/RA/DP-SGD 128,
            GH 384). Informational: :func:`capture_with_scheme` uses the batch it is given; it is
            used by :meth:`select_batch`.
        shards: S, the number of devices with asynchronous BN: the batch (or each local chunk)
            is split into S contiguous shards, each forwarded separately in train mode so BN
            normalises with per-shard statistics; the shard gradients are averaged (as a
            data-parallel all-reduce does). 1 = one forward over the whole batch.
        label_order: ``"as_is"`` or ``"grouped"`` (stable sort by label, see
            :func:`privbox.data.group_by_label`), which makes contiguous shards and local chunks
            label-homogeneous when the batch has few classes.
        local_iterations: E; the batch is split into E contiguous chunks and the client runs E
            plain SGD steps (lr ``local_lr``, no momentum), sharing the pseudo-gradient
            (θ0 − θ_E)/(lr·E) (= the mean of the E step gradients).
        local_lr: the lr of the local steps (0.1 in the repository).
        maxpool_kernel: the stem max-pool kernel of the ``RA`` scheme (19); the attacker's model
            must use it too (recorded in ``meta.model_kwargs``).
        clip_noise_sigma: the repository's "DP-SGD": clip each step's whole-batch gradient to
            ``clip_norm`` and add N(0, (σ·C)²) once to the shared gradient (σ = 0.01). **No DP
            guarantee** (no per-sample clipping, no accountant).
        clip_norm: C for ``clip_noise_sigma`` and ``dp_noise_multiplier``.
        dp_noise_multiplier: real DP-SGD (Abadi et al., CCS 2016): per-sample clipping to C and
            N(0, σ²C²) on the sum at every local step (:class:`privbox.defenses.DPSGD`); the ε
            of a training run comes from the accountant (see
            :func:`privbox.defenses.utility.measure_utility`).
        dropout: None leaves the model's dropout as it is (active in train mode); True requires it
            active (the victim's mask, drawn from ``seed``, is unknown to the attacker); False
            switches every Dropout layer off (the repository's ``--model-eval`` for VGG-11).
        classes_per_batch: label repetition: :meth:`select_batch` draws batches with this many
            classes (e.g. 4 classes × 8 for B = 32), never overwriting labels.
        note: free text shown by :meth:`describe`.
    """

    name: str = "pure"
    batch_size: Optional[int] = None
    shards: int = 1
    label_order: str = "as_is"
    local_iterations: int = 1
    local_lr: float = 0.1
    maxpool_kernel: Optional[int] = None
    clip_noise_sigma: Optional[float] = None
    clip_norm: float = 1.0
    dp_noise_multiplier: Optional[float] = None
    dropout: Optional[bool] = None
    classes_per_batch: Optional[int] = None
    note: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        def positive_int(value: Any, what: str) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"scheme {self.name!r}: {what} must be a positive integer, got {value!r}")

        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a DefenseScheme needs a non-empty name")
        positive_int(self.shards, "shards")
        positive_int(self.local_iterations, "local_iterations")
        for what in ("batch_size", "maxpool_kernel", "classes_per_batch"):
            if getattr(self, what) is not None:
                positive_int(getattr(self, what), what)
        if self.label_order not in LABEL_ORDERS:
            raise ValueError(f"scheme {self.name!r}: label_order must be one of {LABEL_ORDERS}, got {self.label_order!r}")
        if not (np.isfinite(self.local_lr) and self.local_lr > 0):
            raise ValueError(f"scheme {self.name!r}: local_lr must be a positive number, got {self.local_lr!r}")
        if not (np.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise ValueError(f"scheme {self.name!r}: clip_norm must be a positive number, got {self.clip_norm!r}")
        for what in ("clip_noise_sigma", "dp_noise_multiplier"):
            value = getattr(self, what)
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise ValueError(f"scheme {self.name!r}: {what} must be a finite number >= 0, got {value!r}")
        if self.clip_noise_sigma is not None and self.dp_noise_multiplier is not None:
            raise ValueError(
                f"scheme {self.name!r}: choose either the repository's whole-batch clip + noise (clip_noise_sigma) "
                "or real DP-SGD (dp_noise_multiplier), not both"
            )
        if self.dp_noise_multiplier is not None and self.shards > 1:
            raise ValueError(
                f"scheme {self.name!r}: real DP-SGD needs per-sample gradients, which asynchronous per-shard BN "
                "(shards > 1) does not have; use shards=1 with a model without train-mode BatchNorm"
            )

    # ----------------------------------------------------------------------------- composition
    def replace(self, **changes: Any) -> "DefenseScheme":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def __add__(self, other: "DefenseScheme") -> "DefenseScheme":
        """Compose two schemes: every setting that differs from ``pure`` in either is kept.

        Raises ValueError when both set the same field to different values. The name is
        ``"A+B"`` (``pure`` is the neutral element); the larger reference batch size wins.
        """
        if not isinstance(other, DefenseScheme):
            return NotImplemented
        base = DefenseScheme()
        merged: Dict[str, Any] = {}
        for f in dataclasses.fields(DefenseScheme):
            if f.name in ("name", "note", "batch_size"):
                continue
            a, b, neutral = getattr(self, f.name), getattr(other, f.name), getattr(base, f.name)
            if a != neutral and b != neutral and a != b:
                raise ValueError(f"cannot compose schemes {self.name!r} and {other.name!r}: {f.name} is {a!r} vs {b!r}")
            merged[f.name] = b if b != neutral else a
        names = [n for n in (self.name, other.name) if n != "pure"] or ["pure"]
        sizes = [s for s in (self.batch_size, other.batch_size) if s is not None]
        notes = "; ".join(n for n in (self.note, other.note) if n)
        return DefenseScheme(name="+".join(names), batch_size=max(sizes) if sizes else None, note=notes, **merged)

    # -------------------------------------------------------------------------------- model side
    def model_kwargs(self, base: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """``base`` model kwargs plus the scheme's architecture change (``maxpool_kernel``)."""
        kwargs = dict(base or {})
        if self.maxpool_kernel is not None:
            given = kwargs.get("maxpool_kernel")
            if given is not None and int(given) != self.maxpool_kernel:
                raise ValueError(
                    f"scheme {self.name!r} needs maxpool_kernel={self.maxpool_kernel}, but the model kwargs say {given}"
                )
            kwargs["maxpool_kernel"] = self.maxpool_kernel
        return kwargs

    def build_model(self, model_id: str, num_classes: int = 10, **kwargs: Any) -> nn.Layer:
        """``privbox.nn.build_model`` with the scheme's architecture change applied.

        The victim and the attacker must both build their model this way (or from the update's
        ``meta.model_kwargs``, see :func:`build_attack_model`).
        """
        from ..nn.models import build_model

        return build_model(model_id, num_classes=num_classes, **self.model_kwargs(kwargs))

    def apply_to_model(self, model: nn.Layer) -> nn.Layer:
        """Apply the architecture change to an existing model in place (RA: stem max-pool kernel)."""
        if self.maxpool_kernel is not None:
            from ..analysis.rank import set_maxpool_kernel

            if not _maxpools(model):
                raise ValueError(
                    f"scheme {self.name!r} changes the stem max-pool kernel, but the model has no MaxPool2D "
                    "(use e.g. privbox.nn.resnet18(stem='imagenet'))"
                )
            set_maxpool_kernel(model, self.maxpool_kernel)
        return model

    def check_model(self, model: nn.Layer) -> None:
        """Raise ValueError if ``model`` lacks the scheme's architecture change."""
        if self.maxpool_kernel is None:
            return
        actual = stem_maxpool_kernel(model)
        if actual is None:
            raise ValueError(
                f"scheme {self.name!r} needs a stem max-pool of kernel {self.maxpool_kernel}, but the model has no "
                "MaxPool2D (use e.g. privbox.nn.resnet18(stem='imagenet'))"
            )
        if actual != self.maxpool_kernel:
            raise ValueError(
                f"scheme {self.name!r} needs a stem max-pool kernel {self.maxpool_kernel}, the model has {actual}; "
                f"build it with scheme.build_model(...) or call scheme.apply_to_model(model) first"
            )

    # --------------------------------------------------------------------------------- data side
    def partition(self, labels: Sequence[int]) -> SchemePlan:
        """The label order and the step/shard split of a batch with these labels."""
        from ..data.label_transforms import _labels_to_numpy, group_by_label

        lab = _labels_to_numpy(labels)
        b = int(lab.shape[0])
        parts = self.local_iterations * self.shards
        if b == 0 or b % parts:
            raise ValueError(
                f"scheme {self.name!r}: a batch of {b} cannot be split into {self.local_iterations} local "
                f"iteration(s) x {self.shards} shard(s) of equal size; use a batch size divisible by {parts}"
            )
        if self.label_order == "grouped":
            order = group_by_label(np.zeros(b), lab)[2]
        else:
            order = np.arange(b, dtype=np.int64)
        chunk = b // self.local_iterations
        per = chunk // self.shards
        steps = [
            [np.arange(e * chunk + s * per, e * chunk + (s + 1) * per, dtype=np.int64) for s in range(self.shards)]
            for e in range(self.local_iterations)
        ]
        return SchemePlan(order=order, steps=steps)

    def select_batch(self, labels_of_dataset: Sequence[int], seed: int = 0) -> np.ndarray:
        """Indices of a batch of ``batch_size`` samples from ``classes_per_batch`` classes.

        Uses :func:`privbox.data.few_class_batch_indices` (grouped by label when
        ``label_order="grouped"``); the labels are the dataset's own.
        """
        from ..data.label_transforms import few_class_batch_indices

        if self.batch_size is None or self.classes_per_batch is None:
            raise ValueError(f"scheme {self.name!r}: select_batch needs batch_size and classes_per_batch")
        return few_class_batch_indices(
            labels_of_dataset, self.batch_size, self.classes_per_batch, seed=seed, grouped=self.label_order == "grouped"
        )

    # ------------------------------------------------------------------------------ description
    def describe(self) -> str:
        """One line naming the scheme and every setting that differs from ``pure``."""
        base = DefenseScheme()
        parts = []
        for f in dataclasses.fields(DefenseScheme):
            if f.name in ("name", "note", "batch_size"):
                continue
            value = getattr(self, f.name)
            if value == getattr(base, f.name) or (f.name == "local_lr" and self.local_iterations == 1):
                continue
            parts.append(f"{f.name}={value:g}" if isinstance(value, float) else f"{f.name}={value}")
        if (self.clip_noise_sigma is not None or self.dp_noise_multiplier is not None) and self.clip_norm == 1.0:
            parts.append("clip_norm=1")
        if self.clip_noise_sigma is not None:
            parts.append("whole-batch clip + noise: no DP guarantee")
        if self.dp_noise_multiplier is not None:
            parts.append("per-sample DP-SGD")
        if self.maxpool_kernel is not None:
            parts.append("attacker must use the same max-pool kernel")
        origin = "Label-based-Defense scheme" if all(n in SCHEMES for n in self.name.split("+")) else "client scheme"
        return f"{origin} {self.name}(" + ", ".join(parts) + ")"


#: The four schemes of the Label-based-Defense repository (``--scheme pure|RA|DP-SGD|GH``).
SCHEMES: Dict[str, DefenseScheme] = {
    "pure": DefenseScheme("pure", batch_size=128, note="global batch 128, synchronised BN"),
    "RA": DefenseScheme("RA", batch_size=128, maxpool_kernel=19, note="ResNet-18 stem max-pool kernel 19: RA-i > 0"),
    "DP-SGD": DefenseScheme(
        "DP-SGD", batch_size=128, clip_noise_sigma=0.01, clip_norm=1.0,
        note="the repository's whole-batch clip (C = 1) + N(0, (0.01 C)^2); no DP guarantee",
    ),
    "GH": DefenseScheme("GH", batch_size=384, shards=4, note="global batch 384 on 4 devices, asynchronous per-device BN"),
}


def get_scheme(name: str) -> DefenseScheme:
    """A scheme of :data:`SCHEMES` by name; ``"RA+GH"`` composes several."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"scheme name must be a non-empty string, got {name!r}")
    out: Optional[DefenseScheme] = None
    for part in name.split("+"):
        part = part.strip()
        if part not in SCHEMES:
            raise ValueError(f"unknown scheme {part!r}; choose from {sorted(SCHEMES)} (compose with '+', e.g. 'RA+GH')")
        out = SCHEMES[part] if out is None else out + SCHEMES[part]
    assert out is not None
    return out


def real_dp_sgd(noise_multiplier: float, max_grad_norm: float = 1.0, name: Optional[str] = None) -> DefenseScheme:
    """Real DP-SGD (Abadi et al., CCS 2016) as a scheme: per-sample clipping to C, N(0, σ²C²) on the sum.

    Unlike the repository's ``DP-SGD`` scheme this has a formal (ε, δ) guarantee once the
    sampling rate and the number of steps are known (RDP accountant). At B = 1 per-sample and
    whole-batch clipping coincide, so the *one* shared gradient equals
    ``batch_clip_noise(g, C, σ)``; the difference is the accounting and, for B > 1, the clipping.
    """
    return DefenseScheme(
        name or "DP-SGD-per-sample", dp_noise_multiplier=float(noise_multiplier),
        clip_norm=float(max_grad_norm), note="per-sample clipping, Gaussian noise (Abadi et al. 2016)",
    )


# ---------------------------------------------------------------------------- the client side
@dataclass
class SchemeGradient:
    """What :func:`scheme_gradient` computed for one batch.

    Attributes:
        gradients: the shared (pseudo-)gradient, float32 NumPy arrays keyed by parameter name.
        buffer_delta: change of the BN running statistics (device 0's, as a data-parallel
            trainer that broadcasts buffers keeps them), keyed by state name; may be empty.
        images, labels: the batch in the order the client processed it (after ``label_order``).
        order: ``images[i] = original_images[order[i]]``.
        num_classes: width of the model's output.
        global_state: θ0 (parameters and BN statistics) before the computation.
    """

    gradients: Dict[str, np.ndarray]
    buffer_delta: Dict[str, np.ndarray]
    images: np.ndarray
    labels: np.ndarray
    order: np.ndarray
    num_classes: int
    global_state: Dict[str, np.ndarray]


def _set_state(model: nn.Layer, values: Dict[str, np.ndarray]) -> None:
    live = model.state_dict()
    for k, v in values.items():
        live[k].set_value(paddle.to_tensor(v, dtype=live[k].dtype))


def _dp_step_gradient(engine, model: nn.Layer, x: paddle.Tensor, y: np.ndarray) -> Tuple[Dict[str, np.ndarray], int]:
    """One DP-SGD gradient (per-sample clip, noise, mean) and the model's output width."""
    from ..nn import functional as PF

    logits = model(x)
    PF.cross_entropy(logits, paddle.to_tensor(y)).backward()
    grads = engine.privatize()
    out = {k: v.numpy().astype(np.float32) for k, v in grads.items()}
    engine.clear_grad()
    return out, int(logits.shape[1])


def scheme_gradient(
    scheme: DefenseScheme,
    model: nn.Layer,
    images: np.ndarray,
    labels: np.ndarray,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    bn_mode: str = "train",
    seed: Optional[int] = 0,
) -> SchemeGradient:
    """The (pseudo-)gradient a client under ``scheme`` shares for one batch, at θ0 = ``model``.

    Algorithm (each piece reuses privbox: :func:`privbox.client.compute_update` for every
    forward/backward, :func:`privbox.data.group_by_label` for the order,
    :func:`privbox.defenses.batch_clip_noise` and :class:`privbox.defenses.DPSGD` for the noise):

    1. reorder the batch by label if ``label_order="grouped"``;
    2. split it into E = ``local_iterations`` contiguous chunks and every chunk into S =
       ``shards`` contiguous shards (:meth:`DefenseScheme.partition`);
    3. per chunk e: the gradient of each shard at the current θ_e in ``bn_mode`` (train: BN with
       per-shard statistics; every shard starts from the same running statistics and device
       0's continue), averaged over shards; with ``clip_noise_sigma`` clipped to C (whole batch);
       with ``dp_noise_multiplier`` a DP-SGD step instead (per-sample clip, noise σC, mean);
       then, if E > 1, θ_{e+1} = θ_e − local_lr·g_e (plain SGD);
    4. the shared gradient is the mean of the g_e, i.e. (θ0 − θ_E)/(local_lr·E); with
       ``clip_noise_sigma`` N(0, (σC)²) is added once (the repository's generator).

    The model is restored to θ0 (parameters, BN statistics, train/eval flags, dropout rates)
    afterwards. Dropout masks are drawn from Paddle's generator seeded with ``seed`` (the
    caller's generator state is restored); the noise of ``clip_noise_sigma`` and
    ``dp_noise_multiplier`` comes from ``numpy.random.default_rng(seed)``.
    """
    from ..client import _check_batch, compute_update, normalize, state_snapshot
    from ..nn.convert import trainable_parameters

    images, labels = _check_batch(images, labels)
    if bn_mode not in ("train", "eval"):
        raise ValueError(f"bn_mode must be 'train' or 'eval', got {bn_mode!r}")
    scheme.check_model(model)
    plan = scheme.partition(labels)
    images, labels = images[plan.order], labels[plan.order]
    channels = images.shape[1]
    mean = list(mean) if mean is not None else [0.0] * channels
    std = list(std) if std is not None else [1.0] * channels

    named = trainable_parameters(model)
    param_names = [n for n, _ in named]
    before = state_snapshot(model)
    buffer_keys = [k for k in before if k not in set(param_names)]
    modes = [(layer, layer.training) for layer in model.sublayers(include_self=True)]
    rng = np.random.default_rng(seed)
    engine = None
    step_grads: List[Dict[str, np.ndarray]] = []
    num_classes = 0
    try:
        with _dropout_setting(model, scheme.dropout, bn_mode, scheme.name), _paddle_seeded(seed):
            if scheme.dp_noise_multiplier is not None:
                from .dpsgd import DPSGD

                engine = DPSGD(
                    model, [p for _, p in named], learning_rate=scheme.local_lr,
                    noise_multiplier=scheme.dp_noise_multiplier, max_grad_norm=scheme.clip_norm,
                    seed=int(rng.integers(2**31)),
                )
            for e, shards in enumerate(plan.steps):
                if engine is not None:
                    idx = shards[0]
                    model.train() if bn_mode == "train" else model.eval()
                    g, num_classes = _dp_step_gradient(engine, model, normalize(images[idx], mean, std), labels[idx])
                else:
                    start = {k: np.array(model.state_dict()[k].numpy(), copy=True) for k in buffer_keys}
                    sums: Dict[str, np.ndarray] = {}
                    after_first: Optional[Dict[str, np.ndarray]] = None
                    for s, idx in enumerate(shards):
                        if s:
                            _set_state(model, start)
                        upd, _ = compute_update(
                            model, images[idx], labels[idx], mean, std, bn_mode=bn_mode, include_global_state=False,
                        )
                        num_classes = upd.meta.num_classes
                        for k, v in upd.tensors.items():
                            sums[k] = sums[k] + v.astype(np.float64) if k in sums else v.astype(np.float64)
                        if s == 0 and len(shards) > 1:
                            after_first = {k: np.array(model.state_dict()[k].numpy(), copy=True) for k in buffer_keys}
                    if after_first is not None:
                        _set_state(model, after_first)
                    g = {k: (v / len(shards)).astype(np.float32) for k, v in sums.items()}
                    if scheme.clip_noise_sigma is not None and scheme.local_iterations > 1:
                        g = batch_clip_noise(g, scheme.clip_norm, 0.0)
                step_grads.append(g)
                if scheme.local_iterations > 1:
                    with paddle.no_grad():
                        for name, param in named:
                            param.set_value(param - scheme.local_lr * paddle.to_tensor(g[name], dtype=param.dtype))
            after = state_snapshot(model)
    finally:
        if engine is not None:
            engine.detach()
        model.set_state_dict({k: paddle.to_tensor(v) for k, v in before.items()})
        for layer, training in modes:
            layer.training = training

    if len(step_grads) == 1:
        shared = step_grads[0]
    else:
        shared = {k: np.mean([g[k].astype(np.float64) for g in step_grads], axis=0).astype(np.float32) for k in param_names}
    if scheme.clip_noise_sigma is not None:
        shared = batch_clip_noise(shared, scheme.clip_norm, scheme.clip_noise_sigma, seed=rng)
        shared = {k: np.asarray(v, dtype=np.float32) for k, v in shared.items()}
    shared = {k: shared[k] for k in param_names}
    buffer_delta = {k: after[k] - before[k] for k in buffer_keys if not np.array_equal(after[k], before[k])}
    return SchemeGradient(
        gradients=shared, buffer_delta=buffer_delta, images=images, labels=labels, order=plan.order,
        num_classes=num_classes, global_state=before,
    )


class SchemeUpdate(ClientUpdate):
    """The :class:`ClientUpdate` of a client under a :class:`DefenseScheme`.

    ``meta.defenses`` names the scheme and ``meta.model_kwargs`` carries its architecture change;
    :meth:`ClientUpdate.check_model` (called by every attack) verifies the stem max-pool kernel
    of the ``RA`` scheme from there, before and after a save/load round trip.
    """


def capture_with_scheme(
    scheme: DefenseScheme,
    model: nn.Layer,
    images: np.ndarray,
    labels: np.ndarray,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    bn_mode: str = "train",
    model_id: str = "custom",
    model_kwargs: Optional[Dict[str, Any]] = None,
    share_labels: bool = False,
    include_global_state: bool = True,
    names: Optional[Sequence[str]] = None,
    seed: Optional[int] = 0,
) -> Tuple[SchemeUpdate, Secret]:
    """What a client under ``scheme`` sends for one batch, and the ground truth.

    See :func:`scheme_gradient` for the computation. The update is ``kind="gradient"`` (the
    shared (pseudo-)gradient, which the Label-based-Defense attacker matches as one full-batch
    gradient at θ0); ``meta.defenses`` holds :meth:`DefenseScheme.describe`;
    ``meta.model_kwargs`` holds ``model_kwargs`` plus the scheme's architecture change, so
    ``privbox.nn.build_model(meta.model_id, num_classes=meta.num_classes, **meta.model_kwargs)``
    (or :func:`build_attack_model`) rebuilds the victim's model. The secret and the shared labels
    are in the order the client processed the batch.

    Args:
        scheme: a :class:`DefenseScheme` (e.g. ``SCHEMES["GH"]``, ``get_scheme("RA+GH")``).
        model: θ0, already carrying the scheme's architecture change (``scheme.build_model`` or
            ``scheme.apply_to_model``); checked, never modified.
        images, labels, mean, std, bn_mode, model_id, share_labels, include_global_state, names:
            as in :func:`privbox.client.compute_update`.
        model_kwargs: how to rebuild the architecture (the scheme's ``maxpool_kernel`` is added).
        seed: dropout masks and noise; recorded in the metadata.

    Returns:
        ``(update, secret)``; ``update`` is a :class:`SchemeUpdate`.

    Raises:
        ValueError: if the model lacks the scheme's architecture change, the batch does not split
            into the scheme's shards and local iterations, or the settings conflict (dropout on in
            eval mode, real DP-SGD with train-mode BatchNorm).
    """
    from ..client import package_update

    result = scheme_gradient(scheme, model, images, labels, mean, std, bn_mode=bn_mode, seed=seed)
    channels = result.images.shape[1]
    ordered_names = [list(names)[i] for i in result.order] if names else []
    return package_update(
        result.images, result.labels, result.gradients, result.global_state, result.buffer_delta or None,
        bn_batch_stats=None, include_global_state=include_global_state, share_labels=share_labels,
        names=ordered_names, model_kwargs=scheme.model_kwargs(model_kwargs),
        mean=mean if mean is not None else [0.0] * channels, std=std if std is not None else [1.0] * channels,
        update_class=SchemeUpdate, kind="gradient", model_id=model_id, num_classes=int(result.num_classes),
        batch_size=int(result.images.shape[0]), num_samples=int(result.images.shape[0]), bn_mode=bn_mode,
        defenses=[scheme.describe()], seed=seed,
    )


# ------------------------------------------------------------------------------ attacker side
def build_attack_model(update: ClientUpdate, **overrides: Any) -> nn.Layer:
    """The victim's architecture rebuilt from ``update.meta`` (model id and kwargs, scheme included).

    Equivalent to ``privbox.nn.build_model(meta.model_id, num_classes=meta.num_classes,
    **meta.model_kwargs, **overrides)``; the attack loads θ0 from the update itself.
    """
    from ..nn.models import build_model

    meta = update.meta
    if meta.model_id == "custom":
        raise ValueError(
            "the update was captured with model_id='custom'; build the victim's architecture yourself (with the "
            f"scheme's changes: model kwargs {meta.model_kwargs}) and check it with check_attack_model(model, update)"
        )
    return build_model(meta.model_id, num_classes=meta.num_classes, **{**meta.model_kwargs, **overrides})


def check_attack_model(model: nn.Layer, update: ClientUpdate) -> None:
    """Raise :class:`ModelMismatchError` if ``model`` lacks the architecture change recorded in the update.

    Parameter names and shapes do not reveal a max-pool kernel, so
    :meth:`ClientUpdate.check_model` alone accepts a stock ResNet for an ``RA`` update and the
    attack then silently matches the wrong function (the original Label-based-Defense attack
    loader made exactly this mistake).
    """
    expected = update.meta.model_kwargs.get("maxpool_kernel")
    if expected is None:
        return
    actual = stem_maxpool_kernel(model)
    if actual != int(expected):
        raise ModelMismatchError(
            f"the update's model has a stem max-pool kernel {expected} (meta.model_kwargs "
            f"{update.meta.model_kwargs}; defenses {update.meta.defenses}), the attack model has {actual}. "
            "Rebuild it with privbox.defenses.build_attack_model(update), i.e. privbox.nn.build_model("
            "update.meta.model_id, num_classes=update.meta.num_classes, **update.meta.model_kwargs)"
        )
