"""Collectives over ``paddle.distributed`` (gloo on CPU, NCCL on GPU) with a watchdog.

:class:`ShardCollective` implements :class:`~privbox.distributed.collective.Collective` for K
processes that each own a contiguous shard of the batch (ALGORITHMS.md §4.9, PADDLE.md §9).
Every collective runs under a :class:`Watchdog`: a rank that waits longer than ``timeout``
seconds for its peers (one of them died, hangs or diverged) prints which collective it was
waiting in and exits the process with :data:`EXIT_TIMEOUT`, so ``paddle.distributed.launch``
stops the job instead of hanging. A peer whose connection drops makes gloo raise at once; that
becomes a :class:`DistributedError` naming the collective.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sys
import tempfile
import threading
import time
from typing import Iterator, Optional, Sequence

import numpy as np
import paddle
from paddle.autograd import PyLayer

from ..core.errors import InputError, PrivboxError
from .collective import ArrayLike, Collective

#: Exit status of a rank stopped by the watchdog.
EXIT_TIMEOUT = 75
#: Default seconds a rank waits in one collective before giving up.
DEFAULT_TIMEOUT = 300.0


class DistributedError(PrivboxError):
    """A multi-process run cannot go on: a peer failed, the ranks disagree, or the batch does not split."""


class Watchdog:
    """Ends the process when a guarded block (a collective) runs longer than ``timeout`` seconds.

    One daemon thread checks the current deadline twice a second. ``os._exit`` is used on
    purpose: the main thread is blocked inside a C++ collective and cannot be interrupted.
    """

    def __init__(self, timeout: float, rank: int) -> None:
        if not timeout > 0:
            raise InputError(f"the distributed timeout must be > 0 seconds, got {timeout}", where="--dist-timeout")
        self.timeout, self.rank = float(timeout), rank
        self._deadline: Optional[float] = None
        self._what = ""
        self._depth = 0
        self._thread = threading.Thread(target=self._watch, name="privbox-dist-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while True:
            time.sleep(0.5)
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline:
                sys.stderr.write(
                    f"privbox distributed: rank {self.rank} waited more than {self.timeout:g} s in {self._what}; "
                    "a peer rank died, hangs or runs a different program. Stopping this rank (exit "
                    f"{EXIT_TIMEOUT}); see the other ranks' logs (workerlog.N) for the cause.\n"
                )
                sys.stderr.flush()
                os._exit(EXIT_TIMEOUT)

    @contextlib.contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Arm the deadline for the duration of the block (nested guards keep the outer one)."""
        self._depth += 1
        if self._depth == 1:
            self._what = what
            self._deadline = time.monotonic() + self.timeout
        try:
            yield
        except RuntimeError as exc:
            raise DistributedError(
                f"collective {what} failed on rank {self.rank}: a peer rank stopped or became unreachable ({exc})",
                where="privbox distributed",
                fix="see the other ranks' logs (workerlog.N) for the first error",
            ) from exc
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._deadline = None


class ProcessGroup:
    """The raw collectives of this process's ``paddle.distributed`` group, each under the watchdog.

    Args:
        timeout: seconds a collective may wait for the peers (:class:`Watchdog`).
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        import paddle.distributed as dist

        self._dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.watchdog = Watchdog(timeout, self.rank)

    def all_reduce_(self, tensor: paddle.Tensor, what: str) -> paddle.Tensor:
        """In-place SUM all-reduce of a detached tensor."""
        with self.watchdog.guard(what):
            self._dist.all_reduce(tensor)
        return tensor

    def all_gather_np(self, array: np.ndarray, what: str) -> list[np.ndarray]:
        """Every rank's ``array`` (same shape and dtype on every rank), in rank order."""
        parts: list[paddle.Tensor] = []
        with self.watchdog.guard(what):
            self._dist.all_gather(parts, paddle.to_tensor(np.ascontiguousarray(array)))
        return [p.numpy() for p in parts]

    def np_sum(self, value: ArrayLike, what: str) -> np.ndarray:
        """Σ over ranks of a NumPy value, in float64."""
        array = np.asarray(value, dtype=np.float64)
        tensor = paddle.to_tensor(array.reshape(-1) if array.ndim else array.reshape(1))
        self.all_reduce_(tensor, what)
        return tensor.numpy().reshape(array.shape)

    def broadcast_bytes(self, data: Optional[bytes], source: int, what: str) -> bytes:
        """``data`` of rank ``source`` on every rank (length first, then the bytes)."""
        size = self.np_sum(len(data) if self.rank == source else 0, f"{what} (size)")
        buffer = np.zeros(int(size), dtype=np.uint8)
        if self.rank == source:
            buffer[:] = np.frombuffer(data, dtype=np.uint8)
        tensor = paddle.to_tensor(buffer)
        with self.watchdog.guard(what):
            self._dist.broadcast(tensor, src=source)
        return tensor.numpy().tobytes()

    def agree(self, items: dict[str, str], where: str) -> None:
        """Check that every rank holds the same ``items`` (name -> text, e.g. a file hash).

        Raises:
            DistributedError: naming each item on which ranks differ, with each rank's value.
        """
        names = sorted(items)
        digests = np.asarray([int.from_bytes(hashlib.sha256(items[n].encode()).digest()[:7], "big") for n in names],
                             dtype=np.int64)
        everyone = self.all_gather_np(digests, f"all_gather of the {where} digests")
        differing = [n for i, n in enumerate(names) if len({int(d[i]) for d in everyone}) > 1]
        if differing:
            raise DistributedError(
                f"the ranks do not run the same job: {', '.join(differing)} differ between ranks (this is rank "
                f"{self.rank}: " + "; ".join(f"{n} = {items[n][:80]}" for n in differing) + ")",
                where=where,
                fix="give every rank the same files and options (on several machines, copy the same update file "
                "and config to each)",
            )

    def check_setup(self, error: Optional[BaseException], where: str) -> None:
        """After each rank's own setup: if any rank failed, every rank stops (the failed one with
        its own error, the others with a :class:`DistributedError` naming the failed ranks)."""
        flags = self.all_gather_np(np.asarray([0 if error is None else 1], dtype=np.int64), f"{where} status")
        failed = [r for r, f in enumerate(flags) if int(f[0])]
        if error is not None:
            raise error
        if failed:
            raise DistributedError(
                f"rank(s) {failed} failed while setting up; this rank stops too",
                where=where,
                fix="see the failed ranks' messages (workerlog.N of paddle.distributed.launch)",
            )


class _GroupCollective(Collective):
    """A :class:`Collective` backed by a :class:`ProcessGroup`."""

    def __init__(self, group: ProcessGroup, sync_bn: bool = True) -> None:
        self.group = group
        self.rank, self.world_size = group.rank, group.world_size
        self.sync_bn = bool(sync_bn)

    def check_attack(self, attack, update) -> None:
        """Raise a :class:`~privbox.core.errors.PrivboxError` if ``attack`` (from
        :func:`privbox.attacks.build_attack`) cannot run ``update`` in this mode."""

    def np_sum(self, value: ArrayLike) -> np.ndarray:
        return self.group.np_sum(value, "all_reduce of a statistic")

    def all_true(self, flag: bool) -> bool:
        return float(self.group.np_sum(0.0 if flag else 1.0, "all_reduce of a finiteness flag")) == 0.0


class ShardCollective(_GroupCollective):
    """K ranks, each owning a contiguous equal shard of the batch (ALGORITHMS.md §4.9).

    Args:
        group: the :class:`ProcessGroup`.
        sync_bn: synchronised BatchNorm statistics (the one-process result) or per-shard
            ("asynchronous") statistics, as a victim with per-device BN had.
    """

    def check_attack(self, attack, update) -> None:
        from ..attacks.engine import GradientInversion

        engine = attack.engine(update)
        own = type(engine)
        if not isinstance(engine, GradientInversion) or any(
            getattr(own, hook) is not getattr(GradientInversion, hook) for hook in ("matching_loss", "predicted_tensors")
        ):
            raise DistributedError(
                f"{own.__name__} has its own observation model (e.g. unrolled FedAvg local steps over the whole "
                "batch), which shard mode cannot split",
                where="--distributed shard",
                fix="use --distributed seeds, or run this attack in one process",
            )
        self._local_range(engine.num_images(update))

    def adapt_model(self, model):
        from .sync_bn import convert_sync_batchnorm

        convert_sync_batchnorm(model)
        return model

    # ----------------------------------------------------------------- batch layout
    def _local_range(self, size: int) -> tuple[int, int]:
        if size % self.world_size:
            raise DistributedError(
                f"a batch of {size} does not split into {self.world_size} equal shards",
                where="privbox distributed",
                fix=f"use a batch size divisible by {self.world_size}, or a number of processes that divides {size}",
            )
        per = size // self.world_size
        return self.rank * per, (self.rank + 1) * per

    def shard(self, array: Optional[np.ndarray]) -> Optional[np.ndarray]:
        if array is None:
            return None
        array = np.asarray(array)
        start, stop = self._local_range(array.shape[0])
        return np.ascontiguousarray(array[start:stop])

    def gather(self, array: Optional[np.ndarray]) -> Optional[np.ndarray]:
        if array is None:
            return None
        return np.concatenate(self.group.all_gather_np(np.asarray(array), "all_gather of the batch shards"), axis=0)

    # ------------------------------------------------------------------ tensor sums
    def sum(self, tensor: paddle.Tensor) -> paddle.Tensor:
        total = self.group.all_reduce_(tensor.detach().clone(), "all_reduce (straight-through sum)")
        return tensor + (total - tensor.detach())

    def sync_sum(self, tensor: paddle.Tensor) -> paddle.Tensor:
        return _SyncSum.apply(tensor, self.group)

    def sum_list(self, tensors: Sequence[paddle.Tensor]) -> list[paddle.Tensor]:
        tensors = list(tensors)
        flat = paddle.concat([t.detach().reshape([-1]) for t in tensors])
        self.group.all_reduce_(flat, "all_reduce of the shard gradients")
        out, offset = [], 0
        for t in tensors:
            size = int(np.prod(t.shape))
            out.append(t + (flat[offset : offset + size].reshape(t.shape) - t.detach()))
            offset += size
        return out

    def batch_mean(self, tensor: paddle.Tensor, axis: Optional[Sequence[int]] = None) -> paddle.Tensor:
        if axis is None:
            return self.sum(tensor.sum()) / (int(np.prod(tensor.shape)) * self.world_size)
        axis = list(axis)
        if 0 not in axis:
            raise ValueError("batch_mean reduces over the batch axis 0")
        count = int(np.prod([tensor.shape[a] for a in axis])) * self.world_size
        return self.sum(tensor.sum(axis=axis)) / count

    def batch_loss(self, shard_mean: paddle.Tensor) -> paddle.Tensor:
        return shard_mean * self.fraction

    def np_batch_mean(self, array: np.ndarray) -> float:
        array = np.asarray(array, dtype=np.float64)
        return float(self.np_sum(array.sum())) / (array.size * self.world_size)

    # L-BFGS reductions over the global vector (privbox.attacks.lbfgs.Reductions)
    def dot(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(self.group.np_sum(float(a @ b), "all_reduce of an L-BFGS dot product"))

    def max_abs(self, a: np.ndarray) -> float:
        local = float(np.abs(a).max()) if a.size else 0.0
        return float(np.max(self.group.all_gather_np(np.asarray([local]), "all_gather of an L-BFGS maximum")))

    def sum_abs(self, a: np.ndarray) -> float:
        return float(self.group.np_sum(float(np.abs(a).sum()), "all_reduce of an L-BFGS sum"))


class SeedCollective(_GroupCollective):
    """Restarts spread over ranks, for batches small enough for one process.

    Every rank owns the whole batch; the ``T = max(restarts, K)`` trials (engine seeds
    ``seed + t``) are split into contiguous blocks, one per rank, and the trial with the lowest
    best gradient loss over all ranks is the result (ties: the lowest trial index), exactly as
    one process running ``T`` restarts would choose.
    """

    def check_attack(self, attack, update) -> None:
        if attack.config.orchestrator != "restarts":
            raise DistributedError(
                f"seeds mode spreads the restarts of the 'restarts' orchestrator, not {attack.config.orchestrator!r} "
                "(whose seeds are combined during the run)",
                where="--distributed seeds",
                fix="use --distributed shard (the batch split over the ranks) for this orchestrator",
            )

    def restarts(self, total: int) -> range:
        trials = max(int(total), self.world_size)
        base, extra = divmod(trials, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (1 if self.rank < extra else 0))

    def best_trial(self, best):
        from ..attacks.state import TrialState

        # Every rank runs at least one trial (T >= K), so every rank has a best trial.
        loss = float(best.best_loss) if math.isfinite(best.best_loss) else math.inf
        losses = [float(v[0]) for v in self.group.all_gather_np(np.asarray([loss]), "all_gather of the trial losses")]
        owner = int(np.argmin(losses))  # the first minimum: the lowest trial index, as in one process
        payload = None
        with tempfile.TemporaryDirectory(prefix="privbox-seeds-") as tmp:
            path = os.path.join(tmp, "trial.safetensors")
            if self.rank == owner:
                best.save(path, "seed-transfer", 0)
                with open(path, "rb") as fh:
                    payload = fh.read()
            data = self.group.broadcast_bytes(payload, owner, "broadcast of the best trial")
            with open(path, "wb") as fh:
                fh.write(data)
            chosen = TrialState.load(path, "seed-transfer", 0)
        chosen.events.append(f"seeds spread over {self.world_size} ranks: best trial from rank {owner}")
        return chosen


class _SyncSum(PyLayer):
    """Σ over ranks whose gradient is again Σ over ranks (differentiable to any order)."""

    @staticmethod
    def forward(ctx, tensor: paddle.Tensor, group: ProcessGroup) -> paddle.Tensor:
        ctx.group = group
        return group.all_reduce_(tensor.detach().clone(), "all_reduce of synchronised BN statistics")

    @staticmethod
    def backward(ctx, grad: paddle.Tensor) -> paddle.Tensor:
        return _SyncSum.apply(grad, ctx.group)


def init_process_group(timeout: float = DEFAULT_TIMEOUT) -> ProcessGroup:
    """Initialise ``paddle.distributed`` in a process started by ``python -m
    paddle.distributed.launch`` and return its :class:`ProcessGroup`.

    Raises:
        DistributedError: not started by the launcher.
    """
    import paddle.distributed as dist

    if "PADDLE_TRAINERS_NUM" not in os.environ and "PADDLE_TRAINER_ENDPOINTS" not in os.environ:
        raise DistributedError(
            "--distributed needs processes started by paddle.distributed.launch",
            where="privbox distributed",
            fix="run: python -m paddle.distributed.launch --nproc_per_node N privbox ... --distributed",
        )
    if not dist.is_initialized():
        dist.init_parallel_env()
    return ProcessGroup(timeout)
