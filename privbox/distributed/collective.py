"""The collective hook the engine calls: identity in one process, shard-aware under ``--distributed``.

Distributed inversion (E2EGI's device sharding; ALGORITHMS.md §4.9) splits the dummy batch of
``B`` images into ``K`` contiguous shards, one per process ("rank"). Every place where the engine
forms a *batch* quantity — the matching gradient ĝ, a mean over the batch in a regularizer, BN
batch statistics, the initial point, the noise, the reconstruction — goes through the
:class:`Collective` that :func:`active` returns. The default is :class:`Collective` itself, whose
methods are identities, so a one-process attack is untouched and pays nothing.
:class:`privbox.distributed.comm.ShardCollective` implements the same methods with
``paddle.distributed`` collectives.

Two kinds of cross-rank sum, with different gradients (the whole distributed attack equals the
one-process attack only if both are used where they belong):

* :meth:`Collective.sum` — value Σ_r t_r, gradient to t_r the incoming gradient unchanged (the
  straight-through form t + stopgrad(allreduce(t) − t), PADDLE.md §9). For quantities every rank
  then turns into the *same* replicated loss term (ĝ, BN-regularizer statistics, TV sums): each
  rank's gradient of the replicated term is already the gradient of the global objective.
* :meth:`Collective.sync_sum` — value Σ_r t_r, gradient Σ_r (incoming gradient of rank r), an
  all-reduce again (and so on under double back-propagation). For sums consumed *per shard*, as
  the statistics of synchronised BatchNorm are: the output of rank r's samples depends on every
  rank's inputs through them, and the backward all-reduce carries those cross-rank terms, so the
  shard gradients of a synchronised-BN model add up to the full-batch gradient exactly.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import paddle

ArrayLike = Union[np.ndarray, Sequence[float]]


class Collective:
    """One process owning the whole batch: every method is the identity (or a plain mean).

    Attributes:
        rank: this process's index (0).
        world_size: number of processes (1).
        sync_bn: whether BatchNorm layers converted by
            :func:`privbox.distributed.sync_bn.convert_sync_batchnorm` normalise with statistics
            over the global batch (``True``) or over their own shard ("asynchronous" BN).
    """

    rank: int = 0
    world_size: int = 1
    sync_bn: bool = True

    @property
    def distributed(self) -> bool:
        """True when more than one process shares the batch."""
        return self.world_size > 1

    @property
    def file_suffix(self) -> str:
        """Suffix for per-rank files (checkpoints): empty in one process."""
        return "" if self.world_size == 1 else f"_rank{self.rank}"

    # ----------------------------------------------------------------- batch layout
    def shard(self, array: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """This rank's contiguous slice of a global batch along axis 0 (``None`` passes)."""
        return array

    def gather(self, array: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """The global batch from every rank's slice (inverse of :meth:`shard`)."""
        return array

    @property
    def fraction(self) -> float:
        """b/B: this rank's share of the batch (equal shards)."""
        return 1.0 / self.world_size

    # --------------------------------------------------------------- tensor sums
    def sum(self, tensor: paddle.Tensor) -> paddle.Tensor:
        """Σ over ranks, straight-through gradient (for replicated loss terms)."""
        return tensor

    def sync_sum(self, tensor: paddle.Tensor) -> paddle.Tensor:
        """Σ over ranks with an all-reduce as its gradient (for per-shard consumers)."""
        return tensor

    def sum_list(self, tensors: Sequence[paddle.Tensor]) -> list[paddle.Tensor]:
        """:meth:`sum` of each tensor, as one collective over their concatenation."""
        return list(tensors)

    def batch_mean(self, tensor: paddle.Tensor, axis: Optional[Sequence[int]] = None) -> paddle.Tensor:
        """Mean over the *global* batch of a batch-major tensor: over every element
        (``axis=None``) or over ``axis``, which must include 0 (straight-through)."""
        return tensor.mean() if axis is None else tensor.mean(axis=list(axis))

    def batch_moments(self, a: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        """Per-channel mean and biased variance of a BN input over the global batch (and
        spatial axes), E[a²] − E[a]² as :func:`privbox.core.bn.batch_moments`."""
        from ..core.bn import batch_moments

        return batch_moments(a, self.batch_mean)

    def batch_loss(self, shard_mean: paddle.Tensor) -> paddle.Tensor:
        """This rank's part of a batch-mean loss: (b/B)·(mean over the shard); the parts add up
        to the mean over the global batch (used for the client's cross-entropy)."""
        return shard_mean

    # ---------------------------------------------------------------- NumPy side
    def np_sum(self, value: ArrayLike) -> np.ndarray:
        """Σ over ranks of a NumPy value (float64)."""
        return np.asarray(value, dtype=np.float64)

    def np_batch_mean(self, array: np.ndarray) -> float:
        """Mean over every element of a batch-sharded NumPy array, over the global batch."""
        return float(np.asarray(array, dtype=np.float64).mean())

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank."""
        return bool(flag)

    # ------------------------------------------------------------------ restarts
    def restarts(self, total: int) -> range:
        """The restart indices this rank runs (all of them unless seeds are spread over ranks)."""
        return range(total)

    def best_trial(self, best: Optional[Any]) -> Any:
        """The best trial over all ranks (a :class:`~privbox.attacks.state.TrialState`; ``None``
        on a rank that ran none) — this rank's own in one process."""
        return best

    def adapt_model(self, model: Any) -> Any:
        """Prepare a victim model for this run (synchronised BatchNorm when distributed)."""
        return model


LOCAL = Collective()
_ACTIVE: contextvars.ContextVar[Collective] = contextvars.ContextVar("privbox_collective", default=LOCAL)


def active() -> Collective:
    """The collective of the current run (:data:`LOCAL`, the identity, unless inside :func:`use`)."""
    return _ACTIVE.get()


@contextlib.contextmanager
def use(collective: Collective) -> Iterator[Collective]:
    """Within the block, :func:`active` returns ``collective`` (engines, regularizers, BN layers)."""
    token = _ACTIVE.set(collective)
    try:
        yield collective
    finally:
        _ACTIVE.reset(token)
