"""The victim's FedSGD update of a large batch computed across K processes.

E2EGI computes the victim gradient of a batch of up to 256 ImageNet images on several GPUs
(ALGORITHMS.md §4.9; Label-based-Defense trains its GH scheme on 4 devices). Every rank builds
the same batch from the same seed and keeps its contiguous shard. In train mode the BatchNorm
layers are

* **synchronised** (``collective.sync_bn``): statistics over the global batch, whose backward
  is again an all-reduce (:mod:`privbox.distributed.sync_bn`), so the summed shard gradients are
  the one-process gradient of the whole batch, and the BN running statistics move as in one
  process; or
* **per shard** ("asynchronous" per-device BN, the GH scheme): each shard normalised with its
  own statistics; the update is the mean of the shard gradients, and the BN running-statistic
  delta the mean of the ranks' deltas.

Each rank's contribution is its share (b/B) of the batch-mean cross-entropy; the shard
gradients are summed over the ranks in float64. The exact BN statistics (``share_bn_stats``)
are those of each BN layer's input over the global batch, from all-reduced Σa, Σa² and counts.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import paddle
import paddle.nn as nn

from ..core.bn import bn_layers, state_snapshot
from ..core.images import normalize
from ..fl.packaging import check_logits as _check_logits
from ..fl.packaging import package_update
from ..fl.packaging import prepare_batch as _prepare_batch
from ..fl.packaging import running_delta as _running_delta
from ..core.update import ClientUpdate, Secret
from ..nn import functional as PF
from ..nn.convert import trainable_parameters
from .collective import Collective, use
from .sync_bn import convert_sync_batchnorm


class _GlobalBNStatistics:
    """Records Σa, Σa² and the count of every BN layer's input; :meth:`result` adds them over
    the ranks and returns ``{"<layer>.mean", "<layer>.var"}`` (biased variance) of the global batch."""

    def __init__(self, model: nn.Layer) -> None:
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, int] = {}
        self._handles = []
        for name, layer in bn_layers(model):
            def hook(lay, inputs, output, _name=name):
                a = inputs[0].detach().astype("float64")
                axes = [0] + list(range(2, a.ndim))
                self.sums[_name] = np.concatenate([a.sum(axis=axes).numpy(), (a * a).sum(axis=axes).numpy()])
                self.counts[_name] = int(np.prod(a.shape)) // int(a.shape[1])

            self._handles.append(layer.register_forward_post_hook(hook))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def result(self, collective: Collective) -> dict[str, np.ndarray]:
        stats = {}
        for name in sorted(self.sums):
            sums = collective.np_sum(self.sums[name])
            count = float(collective.np_sum(self.counts[name]))
            channels = sums.shape[0] // 2
            mean = sums[:channels] / count
            stats[f"{name}.mean"] = mean.astype(np.float32)
            stats[f"{name}.var"] = (sums[channels:] / count - mean * mean).astype(np.float32)
        return stats


def distributed_update(
    model: nn.Layer,
    images: np.ndarray,
    labels: np.ndarray,
    collective: Collective,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    num_classes: Optional[int] = None,
    bn_mode: str = "train",
    model_id: str = "custom",
    model_kwargs: Optional[dict] = None,
    share_labels: bool = False,
    share_bn_stats: bool = False,
    include_global_state: bool = True,
    names: Optional[Sequence[str]] = None,
    seed: Optional[int] = None,
) -> tuple[ClientUpdate, Secret]:
    """The client's FedSGD update of the *global* batch ``images`` computed by all ranks together.

    Call it on every rank with the same model θ0 and the same global batch; each rank forwards
    its contiguous shard (``collective.shard``). With a one-process collective it is
    :func:`privbox.fl.capture.compute_update`. Arguments as there; ``collective`` is a
    :class:`~privbox.distributed.comm.ShardCollective` (``sync_bn`` chooses synchronised or
    per-shard BN). Every rank returns the same update.

    Raises:
        DistributedError: the batch does not split into equal shards.
    """
    images, labels, mean, std = _prepare_batch(images, labels, mean, std, bn_mode)
    before = state_snapshot(model)
    convert_sync_batchnorm(model)
    model.train() if bn_mode == "train" else model.eval()
    recorder = _GlobalBNStatistics(model) if share_bn_stats else None
    named = trainable_parameters(model)
    try:
        with use(collective):
            x = normalize(collective.shard(images), mean, std)
            logits = model(x)
            classes = _check_logits(logits, labels, num_classes)
            loss = collective.batch_loss(PF.cross_entropy(logits, paddle.to_tensor(collective.shard(labels))))
            grads = paddle.grad(loss, [p for _, p in named])
    finally:
        if recorder is not None:
            recorder.remove()
    tensors = {name: collective.np_sum(g.numpy()).astype(np.float32) for (name, _), g in zip(named, grads)}
    for name, value in tensors.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"the gradient of {name} is not finite; check the model and inputs")
    after = state_snapshot(model)
    # per-shard BN: the ranks' running statistics differ; report their mean (identical when synchronised)
    after = {k: (collective.np_sum(v) / collective.world_size).astype(v.dtype) if k not in tensors else v
             for k, v in after.items()}
    return package_update(
        images, labels, tensors, before, _running_delta(before, after, tensors),
        bn_batch_stats=recorder.result(collective) if recorder is not None else None,
        include_global_state=include_global_state, share_labels=share_labels, names=names,
        kind="gradient", model_id=model_id, model_kwargs=model_kwargs, mean=mean, std=std,
        num_classes=classes, batch_size=int(images.shape[0]), num_samples=int(images.shape[0]),
        bn_mode=bn_mode, seed=seed,
    )
