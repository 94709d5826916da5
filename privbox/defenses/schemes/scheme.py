"""A client scheme of the Label-based-Defense paper as a frozen, composable setting (ALGORITHMS.md §6.5-6.6).

"Label is the culprit: Defending Gradient Attack on Privacy" (the Label-based-Defense
repository, github.com/zhaohuali/Label-based-Defense) argues that the labels of a batch decide
whether a gradient attack (GA) succeeds: the gradient equations of a fully connected layer have
the coefficient matrix A = Δ ⊗ I, and same-label samples give near-identical columns of Δ, so
rank(A) drops with label repetition (§7.2). A :class:`DefenseScheme` is *not* a second client: it
is a named modification of a :class:`~privbox.fl.spec.ClientSpec` (:meth:`DefenseScheme.apply`),
run by the one :class:`~privbox.fl.client.Client`:

* ``shards`` → asynchronous per-device BN (``ClientSpec.shards``);
* ``label_order="grouped"`` → the batch is stably sorted by label (``ClientSpec.label_order``);
* ``local_iterations`` E → E local steps on contiguous chunks at ``local_lr``, shared as the
  pseudo-gradient (θ0 − θ_E)/(lr·E) (``ClientSpec.local_steps``, ``share="gradient"``);
* ``maxpool_kernel`` → ``ClientSpec.model_kwargs`` (the attacker must use it too);
* ``clip_noise_sigma`` → the defenses ``batch_clip_step`` (every local step, E > 1) and
  ``batch_clip_noise`` (once on the shared gradient): the repository's "DP-SGD", **no DP
  guarantee**;
* ``dp_noise_multiplier`` → the optimizer defense ``dp_sgd`` (real DP-SGD, Abadi et al. 2016);
* ``dropout`` → ``ClientSpec.dropout``.

Schemes compose with ``+`` (``SCHEMES["RA"] + SCHEMES["GH"]``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import paddle.nn as nn

from ...core.model_checks import maxpools, stem_maxpool_kernel
from ...core.update import ClientUpdate
from ...fl.spec import LABEL_ORDERS, ClientSpec, DefenseSpec

__all__ = ["DefenseScheme", "SchemePlan", "SchemeUpdate"]


class SchemeUpdate(ClientUpdate):
    """The :class:`ClientUpdate` of a client under a :class:`DefenseScheme`.

    ``meta.defenses`` names the scheme and ``meta.model_kwargs`` carries its architecture change;
    :meth:`ClientUpdate.check_model` (called by every attack) verifies the stem max-pool kernel
    of the ``RA`` scheme from there, before and after a save/load round trip.
    """


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
    origin: str = field(default="client scheme", compare=False)

    #: the update class a client under this scheme sends
    update_class = SchemeUpdate

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
            if f.name in ("name", "note", "batch_size", "origin"):
                continue
            a, b, neutral = getattr(self, f.name), getattr(other, f.name), getattr(base, f.name)
            if a != neutral and b != neutral and a != b:
                raise ValueError(f"cannot compose schemes {self.name!r} and {other.name!r}: {f.name} is {a!r} vs {b!r}")
            merged[f.name] = b if b != neutral else a
        names = [n for n in (self.name, other.name) if n != "pure"] or ["pure"]
        sizes = [s for s in (self.batch_size, other.batch_size) if s is not None]
        notes = "; ".join(n for n in (self.note, other.note) if n)
        origin = self.origin if self.origin == other.origin else "client scheme"
        return DefenseScheme(name="+".join(names), batch_size=max(sizes) if sizes else None, note=notes, origin=origin, **merged)

    # ------------------------------------------------------------------------------ client spec
    def defenses(self) -> List[DefenseSpec]:
        """The defenses this scheme adds to a client, in the order it applies them."""
        out: List[DefenseSpec] = []
        if self.dp_noise_multiplier is not None:
            out.append(DefenseSpec("dp_sgd", {"noise_multiplier": float(self.dp_noise_multiplier), "max_grad_norm": float(self.clip_norm)}))
        if self.clip_noise_sigma is not None:
            if self.local_iterations > 1:
                out.append(DefenseSpec("batch_clip_step", {"max_norm": float(self.clip_norm)}))
            out.append(DefenseSpec("batch_clip_noise", {"max_norm": float(self.clip_norm), "noise_multiplier": float(self.clip_noise_sigma)}))
        return out

    def apply(self, spec: ClientSpec) -> ClientSpec:
        """``spec`` as a client under this scheme runs it (the scheme's defenses come first)."""
        changes: Dict[str, Any] = {"model_kwargs": self.model_kwargs(spec.model_kwargs), "defenses": self.defenses() + list(spec.defenses)}
        if self.shards != 1:
            changes["shards"] = self.shards
        if self.label_order != "as_is":
            changes["label_order"] = self.label_order
        if self.local_iterations > 1:
            changes.update(local_steps=self.local_iterations, batch_size=None, lr=float(self.local_lr), share="gradient")
        if self.dropout is not None:
            changes["dropout"] = self.dropout
        return dataclasses.replace(spec, **changes)

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
        from ...nn.models import build_model

        return build_model(model_id, num_classes=num_classes, **self.model_kwargs(kwargs))

    def apply_to_model(self, model: nn.Layer) -> nn.Layer:
        """Apply the architecture change to an existing model in place (RA: stem max-pool kernel)."""
        if self.maxpool_kernel is not None:
            from ...analysis.rank import set_maxpool_kernel

            if not maxpools(model):
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
        from ...data.label_transforms import _labels_to_numpy, group_by_label

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
        from ...data.label_transforms import few_class_batch_indices

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
            if f.name in ("name", "note", "batch_size", "origin"):
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
        return f"{self.origin} {self.name}(" + ", ".join(parts) + ")"


