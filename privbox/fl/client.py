"""The one FL client of privbox: a :class:`~privbox.fl.spec.ClientSpec` in, what it sends out.

:meth:`Client.local_train` is the only local-training loop in privbox. One round:

1. the batch (images in [0, 1], labels), reordered by label if ``label_order="grouped"``;
2. K local steps on minibatches (:func:`privbox.fl.step.local_minibatches`); each step's batch
   is split into S shards forwarded separately (asynchronous per-device BN: each shard is
   normalised with its own batch statistics, the gradients are averaged as a data-parallel
   all-reduce does, and device 0's running statistics are kept, as broadcast buffers are); the step gradient comes from the model or from an optimizer
   defense (DP-SGD), then passes the optimizer defenses' transforms (DGC, per-step clipping)
   and :func:`privbox.fl.step.sgd_rule` applies it;
3. what is shared: the gradient (K = 1: FedSGD; K > 1: the mean of the applied step gradients,
   i.e. the pseudo-gradient (θ0 − θ_K)/(lr·K) of plain SGD) or the delta θ_K − θ0 (FedAvg), the
   BN running-statistic change, optionally the BN batch statistics and the labels;
4. the model is restored to θ0 (parameters, running statistics, train/eval flags, dropout
   rates): the server's copy is never modified; the change travels in the update;
5. :meth:`Client.run_round` packages a :class:`~privbox.core.update.ClientUpdate` and applies
   the update transforms in order (:func:`privbox.defenses.apply.defend_update`).
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Optional, Sequence

import numpy as np
import paddle
import paddle.nn as nn

from ..core.bn import BNStatsRecorder, load_state, state_snapshot
from ..core.errors import ConfigError, InputError
from ..core.images import normalize
from ..core.update import ClientUpdate, Secret
from ..defenses.apply import defend_update
from ..defenses.local import LocalStepDefense
from ..defenses.registry import build_defense
from ..distributed.collective import active as active_collective
from ..nn.convert import trainable_parameters
from .packaging import check_batch, check_logits, package_update, running_delta
from .spec import ClientSpec
from .step import local_minibatches, sgd_rule, step_loss

__all__ = ["Client", "LocalResult"]


@dataclass
class LocalResult:
    """What :meth:`Client.local_train` computed (before the update transforms).

    ``images``/``labels``/``names`` are in the order the client processed them (``order`` maps
    them back: ``images[i] = given[order[i]]``); ``tensors`` the gradient or delta per trainable
    parameter; ``buffer_delta`` the running-statistic change (None if none or not shared).
    """

    tensors: dict
    buffer_delta: Optional[dict]
    bn_batch_stats: Optional[dict]
    global_state: dict
    images: np.ndarray
    labels: np.ndarray
    names: list
    order: np.ndarray
    num_classes: int
    steps: int
    batch_size: int
    losses: List[float] = field(default_factory=list)
    finite: bool = True


def _dropout_layers(model: nn.Layer) -> list:
    from ..nn.layers import Dropout as PrivboxDropout

    kinds = (PrivboxDropout, nn.Dropout, nn.Dropout2D, nn.Dropout3D, nn.AlphaDropout)
    return [layer for _, layer in model.named_sublayers(include_self=True) if isinstance(layer, kinds)]


@contextlib.contextmanager
def _dropout_setting(model: nn.Layer, dropout: Optional[bool], bn_mode: str, who: str) -> Iterator[None]:
    """None leaves dropout as built, False switches it off (p = 0), True requires train mode."""
    layers = _dropout_layers(model)
    if dropout is None:
        yield
        return
    if dropout and not layers:
        warnings.warn(f"{who}: dropout=True but the model has no Dropout layer; the setting has no effect", stacklevel=4)
    if dropout and layers and bn_mode != "train":
        raise ConfigError(
            f"{who}: dropout=True needs bn_mode='train' (in eval mode Paddle switches dropout off, as the "
            "Label-based-Defense --model-eval flag does)", fix="use bn_mode='train' or dropout=False",
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
    state = paddle.get_rng_state()
    paddle.seed(int(seed or 0))
    try:
        yield
    finally:
        paddle.set_rng_state(state)


def _model_kwargs(spec: ClientSpec) -> dict:
    """``spec.model_kwargs`` with ``in_channels``/``image_size`` filled in when the builder takes them."""
    from ..nn.models import MODEL_REGISTRY

    if spec.model not in MODEL_REGISTRY:
        raise ConfigError(f"unknown model {spec.model!r}", where="client.model", fix=f"choose one of {sorted(MODEL_REGISTRY)}")
    kwargs = dict(spec.model_kwargs)
    try:
        params = inspect.signature(MODEL_REGISTRY[spec.model]).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        params = {}
    if "in_channels" in params:
        kwargs.setdefault("in_channels", spec.channels)
    if "image_size" in params:
        kwargs.setdefault("image_size", spec.image_size)
    return kwargs


class Client:
    """A federated client built from a :class:`ClientSpec` (see the module docstring).

    Args:
        spec: what the client is; ``spec.scheme`` names a client scheme of
            :data:`privbox.defenses.schemes.SCHEMES` whose settings are applied on top.
        model: θ0 as a live model (default: ``privbox.nn.build_model(spec.model, ...)`` seeded
            with ``spec.seed``); never modified by a round.
        dataset: the client's private data: ``(images, labels)`` or ``(images, labels, names)``
            arrays, a :class:`privbox.data.TargetBatch`, or a ``paddle.io.Dataset`` of
            ``(CHW image in [0, 1], label)``; None builds it from ``spec.data``.
        defenses: already built defense objects to use instead of ``spec.defenses``
            (:class:`~privbox.defenses.local.LocalStepDefense` or update transforms), e.g. a
            stateful DGC compressor shared with the caller.
        scheme: a :class:`~privbox.defenses.schemes.DefenseScheme` object instead of the name in
            ``spec.scheme``.

    Defense objects live as long as the client, so stateful ones (DGC residuals, the DP
    accountant, noise generators) carry over from round to round as on a real device.
    """

    def __init__(self, spec: ClientSpec, model: Optional[nn.Layer] = None, dataset: Any = None,
                 defenses: Optional[Sequence[Any]] = None, scheme: Any = None) -> None:
        if not isinstance(spec, ClientSpec):
            raise InputError(f"Client needs a ClientSpec, got {type(spec).__name__}", fix="build one with ClientSpec(...) or ClientSpec.from_dict(...)")
        self.spec = spec
        if scheme is None and spec.scheme:
            from ..defenses.schemes.registry import get_scheme

            scheme = get_scheme(spec.scheme)
        self.scheme = scheme
        self.plan = scheme.apply(spec) if scheme is not None else spec
        self._built = model is None
        if model is None:
            model = self._build_model()
        if scheme is not None:
            scheme.check_model(model)
        self.model = model
        self.dataset = dataset
        n_scheme = len(self.plan.defenses) - len(spec.defenses) if scheme is not None else 0
        own = [build_defense(d.name, d.params, seed=self.plan.seed) for d in self.plan.defenses[:n_scheme]]
        given = list(defenses) if defenses is not None else [
            build_defense(d.name, d.params, seed=self.plan.seed) for d in self.plan.defenses[n_scheme:]
        ]
        built = own + given
        self._scheme_parts = {id(d) for d in own}
        if self.plan.shards > 1 and any(getattr(d, "computes_gradient", False) for d in built):
            raise ConfigError("DP-SGD needs per-sample gradients, which asynchronous per-shard BN does not have",
                              where="client", fix="use shards=1")
        self.step_defenses = [d for d in built if isinstance(d, LocalStepDefense)]
        self.transforms = [d for d in built if not isinstance(d, LocalStepDefense)]
        for d in self.transforms:
            if not callable(getattr(d, "apply", None)):
                raise InputError(f"defense {d!r} is neither a LocalStepDefense nor an update transform with apply()")
        self.last_result: Optional[LocalResult] = None

    # ------------------------------------------------------------------------------ building
    def _build_model(self) -> nn.Layer:
        from ..nn.models import build_model

        kwargs = _model_kwargs(self.plan)
        if self.plan.num_classes is None:
            raise ConfigError("num_classes is needed to build the model", where="client", fix="set num_classes")
        state = paddle.get_rng_state()
        paddle.seed(self.plan.seed)
        try:
            return build_model(self.plan.model, num_classes=self.plan.num_classes, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"model_kwargs {kwargs} do not fit model {self.plan.model!r}: {exc}", where="client.model_kwargs") from None
        finally:
            paddle.set_rng_state(state)

    def model_kwargs(self) -> dict:
        """How an attacker rebuilds the architecture (recorded in ``meta.model_kwargs``)."""
        return _model_kwargs(self.plan) if self._built else dict(self.plan.model_kwargs)

    def round_batch(self, round_index: int = 0) -> tuple[np.ndarray, np.ndarray, list]:
        """The (images, labels, names) the client trains on in round ``round_index``.

        Built from ``spec.data`` (no ``dataset``): the same ``num_images`` samples every round
        (seed ``data.seed``, or the client's), the client's local dataset. From a ``dataset``: all of
        it when it holds ``num_images`` samples or fewer, otherwise a seeded draw of ``num_images``
        of them per round (seed ``data.seed`` (or the client's) + ``round_index``).
        """
        from ..data import TargetBatch, make_target_batch, make_target_batch_from_dataset

        spec, data = self.plan, self.plan.data
        seed = (data.seed if data.seed is not None else spec.seed) + int(round_index)
        source = self.dataset
        if source is None:
            batch = make_target_batch(
                spec.num_images, num_classes=spec.num_classes, distinct_labels=data.distinct_labels,
                size=spec.image_size, channels=spec.channels, seed=data.seed if data.seed is not None else spec.seed,
                images=data.images_argument(), shuffle_images=data.shuffle_images,
            ) if data.images is None else self._named_samples(data.images)
            return batch.images, batch.labels, list(batch.names)
        if isinstance(source, TargetBatch):
            source = (source.images, source.labels, source.names)
        if isinstance(source, (tuple, list)) and len(source) in (2, 3) and not isinstance(source[0], (int, float)):
            images, labels = check_batch(source[0], source[1])
            names = list(source[2]) if len(source) == 3 and source[2] is not None else [f"sample[{i}]" for i in range(len(labels))]
            if len(labels) <= spec.num_images:
                return images, labels, names
            pick = np.sort(np.random.default_rng(seed).choice(len(labels), spec.num_images, replace=False))
            return images[pick], labels[pick], [names[i] for i in pick]
        batch = make_target_batch_from_dataset(source, spec.num_images, seed=seed, distinct_labels=data.distinct_labels)
        return batch.images, batch.labels, list(batch.names)

    def _named_samples(self, names: Sequence[str]):
        from ..data import TargetBatch, load_samples

        spec = self.plan
        pictures = load_samples(size=spec.image_size, channels=spec.channels, names=list(names))
        rng = np.random.default_rng(spec.data.seed if spec.data.seed is not None else spec.seed)
        labels = rng.integers(0, spec.num_classes, size=len(names))
        return TargetBatch(pictures, labels, list(names))

    # ------------------------------------------------------------------------------ training
    def _steps(self, n: int) -> tuple[list, int]:
        """Minibatch indices of each local step and the minibatch size b."""
        spec = self.plan
        if spec.local_steps is not None and spec.batch_size is None:
            parts = spec.local_steps * spec.shards
            if n % parts:
                raise ConfigError(
                    f"a batch of {n} cannot be split into {spec.local_steps} local step(s) x {spec.shards} shard(s) of "
                    f"equal size", where="client.local_steps", fix=f"use a batch size divisible by {parts}",
                )
            b = n // spec.local_steps
            return local_minibatches(n, b, 1, spec.shuffle, spec.seed), b
        b = spec.batch_size or n
        epochs = spec.local_epochs
        if spec.local_steps is not None:
            per_epoch = -(-n // b)
            epochs = -(-spec.local_steps // per_epoch)
        steps = local_minibatches(n, b, epochs, spec.shuffle, spec.seed)
        if spec.local_steps is not None:
            steps = steps[: spec.local_steps]
        bad = [len(s) for s in steps if len(s) % spec.shards]
        if bad:
            raise ConfigError(f"a minibatch of {bad[0]} cannot be split into {spec.shards} shards of equal size",
                              where="client.shards", fix=f"use a batch size divisible by {spec.shards}")
        return steps, b

    def local_train(self, images: np.ndarray, labels: np.ndarray, names: Optional[Sequence[str]] = None,
                    stop_on_nonfinite: bool = False, round_index: int = 0) -> LocalResult:
        """Run the client's local training on a batch from the model's current state (see the module docstring).

        Dropout masks come from Paddle's generator seeded with ``spec.seed + round_index`` (the
        caller's generator state is restored afterwards).

        Raises :class:`InputError` on a non-finite gradient, or, with ``stop_on_nonfinite``,
        stops there and returns a result with ``finite=False``.
        """
        spec = self.plan
        images, labels = check_batch(images, labels)
        names = list(names) if names else []
        order = np.arange(len(labels), dtype=np.int64)
        if spec.label_order == "grouped":
            from ..data.label_transforms import group_by_label

            order = group_by_label(np.zeros(len(labels)), labels)[2]
            images, labels = images[order], labels[order]
            names = [names[i] for i in order] if names else []
        steps, b = self._steps(int(labels.shape[0]))
        if spec.include_bn_stats and (len(steps) > 1 or spec.shards > 1):
            raise ConfigError("BN batch statistics describe one full-batch forward; this client runs "
                              f"{len(steps)} step(s) with {spec.shards} shard(s)", where="client.include_bn_stats")
        mean, std = spec.normalisation(images.shape[1])
        model = self.model
        named = trainable_parameters(model)
        param_names = [name for name, _ in named]
        before = state_snapshot(model)
        modes = [(layer, layer.training) for layer in model.sublayers(include_self=True)]
        x_all = normalize(images, mean, std)
        y_all = paddle.to_tensor(labels)
        opt = dict(spec.optimizer_kwargs)
        velocity: dict = {}
        applied: list = []
        losses: list = []
        stats: Optional[dict] = None
        classes: Optional[int] = None
        finite = True
        try:
            with _dropout_setting(model, spec.dropout, spec.bn_mode, self._who()), _paddle_seeded(spec.seed + int(round_index)):
                model.train() if spec.bn_mode == "train" else model.eval()
                for d in self.step_defenses:
                    d.begin(model, named)
                for step, index in enumerate(steps):
                    grads, loss, step_stats, classes = self._step_gradient(
                        model, named, x_all, y_all, labels, index, classes, record=spec.include_bn_stats and step == 0,
                    )
                    stats = step_stats if step == 0 else stats
                    losses.append(loss)
                    for d in self.step_defenses:
                        grads = d.transform(grads, step)
                    bad = [n for n in param_names if not bool(paddle.isfinite(grads[n]).all())]
                    if bad:
                        finite = False
                        if stop_on_nonfinite:
                            break
                        where = f"local step {step}: " if len(steps) > 1 else ""
                        raise InputError(f"{where}the gradient of {bad[0]} is not finite", fix="check the model and inputs, or lower the lr")
                    applied.append(grads)
                    if len(steps) > 1 or spec.share == "delta":
                        with paddle.no_grad():
                            for name, param in named:
                                new, velocity[name] = sgd_rule(
                                    param, grads[name].astype(param.dtype), spec.lr, opt.get("momentum", 0.0),
                                    opt.get("weight_decay", 0.0), velocity.get(name),
                                )
                                param.set_value(new)
            after = state_snapshot(model)
        finally:
            for d in self.step_defenses:
                d.end()
            model.set_state_dict({k: paddle.to_tensor(v) for k, v in before.items()})
            for layer, training in modes:
                layer.training = training
        if spec.share == "delta":
            tensors = {n: (after[n] - before[n]).astype(np.float32) for n in param_names}
        elif len(applied) == 1:
            tensors = {n: applied[0][n].numpy().astype(np.float32) for n in param_names}
        else:
            tensors = {n: np.mean([g[n].numpy().astype(np.float64) for g in applied], axis=0).astype(np.float32)
                       if applied else np.zeros_like(before[n]) for n in param_names}
        keep = spec.bn_mode == "train" and spec.update_bn_stats
        result = LocalResult(
            tensors=tensors, buffer_delta=running_delta(before, after, param_names) if keep else None,
            bn_batch_stats=stats, global_state=before, images=images, labels=labels, names=names, order=order,
            num_classes=int(classes or spec.num_classes), steps=len(steps), batch_size=b, losses=losses, finite=finite,
        )
        self.last_result = result
        return result

    def _step_gradient(self, model, named, x_all, y_all, labels, index, classes, record):
        """Gradient of one step (averaged over shards), its loss, BN batch statistics and the class count."""
        spec = self.plan
        # Distributed capture: this rank computes its contiguous part of the step's minibatch.
        collective = active_collective()
        shards = np.split(collective.shard(np.asarray(index)), spec.shards)
        params = [p for _, p in named]
        for d in self.step_defenses:
            if d.computes_gradient:
                idx = paddle.to_tensor(shards[0])
                seen: dict = {}

                def checked_loss(logits, y, _seen=seen):
                    _seen["classes"] = check_logits(logits, labels, spec.num_classes)
                    _seen["loss"] = step_loss(logits, y)
                    return _seen["loss"]

                grads = d.gradient(model, paddle.gather(x_all, idx), paddle.gather(y_all, idx), checked_loss)
                return grads, float(seen["loss"]), None, seen["classes"]
        trainable = {n for n, _ in named}
        total, after_first, loss_sum, stats = None, None, 0.0, None
        for s, idx_np in enumerate(shards):
            idx = paddle.to_tensor(idx_np)
            if record:
                with BNStatsRecorder(model, collective.batch_moments) as recorder:
                    logits = model(paddle.gather(x_all, idx))
                stats = recorder.stats
            else:
                logits = model(paddle.gather(x_all, idx))
            if classes is None:
                classes = check_logits(logits, labels, spec.num_classes)
            # Distributed: this rank's share (b/B) of the loss; the gradient summed over the ranks.
            loss = collective.batch_loss(step_loss(logits, paddle.gather(y_all, idx)))
            loss_sum += float(collective.np_sum(float(loss)))
            grads = collective.sum_list(paddle.grad(loss, params))
            if len(shards) == 1:
                total = {n: g for (n, _), g in zip(named, grads)}
            else:
                total = {n: g.astype("float64") + (total[n] if total else 0.0) for (n, _), g in zip(named, grads)}
                if s == 0:
                    after_first = {k: v for k, v in state_snapshot(model).items() if k not in trainable}
        if len(shards) > 1:
            load_state(model, after_first)
            total = {n: (v / len(shards)).astype("float32") for n, v in total.items()}
        return total, loss_sum / len(shards), stats, classes

    def _optimizer(self) -> str:
        """The local optimiser as recorded in ``meta.optimizer``: ``"sgd"`` for plain SGD."""
        opt = {k: float(v) for k, v in self.plan.optimizer_kwargs.items() if float(v)}
        return self.plan.optimizer + (f"({', '.join(f'{k}={v:g}' for k, v in sorted(opt.items()))})" if opt else "")

    def _who(self) -> str:
        return f"scheme {self.scheme.name!r}" if self.scheme is not None else "client"

    # ------------------------------------------------------------------------------- a round
    def describe_defenses(self) -> list[str]:
        """How ``meta.defenses`` names the scheme and the optimizer defenses (transforms add their own).

        A scheme's own defenses are described once, by the scheme's description.
        """
        out = [self.scheme.describe()] if self.scheme is not None else []
        return out + [d.describe() for d in self.step_defenses if id(d) not in self._scheme_parts]

    def run_round(self, global_state: Optional[dict] = None, round_index: int = 0, batch: Optional[tuple] = None
                  ) -> tuple[ClientUpdate, Secret]:
        """One FL round: load θ0 (if given), train locally, package, apply the update transforms.

        Args:
            global_state: θ0 from the server (parameters and BN running statistics, NumPy
                arrays by state name); None starts from the model as it is.
            round_index: recorded in ``meta.round``, selects the round's batch and is the step
                index passed to the update transforms.
            batch: ``(images, labels)`` or ``(images, labels, names)`` instead of the client's data.

        Returns:
            ``(update, secret)``.
        """
        spec = self.plan
        if global_state is not None:
            live = self.model.state_dict()
            missing = sorted(set(live) - set(global_state))
            if missing:
                raise InputError(f"global_state lacks model entries {missing[:5]}", fix="send the whole state dict")
            self.model.set_state_dict({k: paddle.to_tensor(global_state[k]) for k in live})
        if batch is not None:
            images, labels = batch[0], batch[1]
            names = list(batch[2]) if len(batch) > 2 and batch[2] is not None else None
        else:
            images, labels, names = self.round_batch(round_index)
        result = self.local_train(images, labels, names, round_index=round_index)
        mean, std = spec.normalisation(result.images.shape[1])
        delta = spec.share == "delta"
        update, secret = package_update(
            result.images, result.labels, result.tensors, result.global_state, result.buffer_delta,
            bn_batch_stats=result.bn_batch_stats, include_global_state=spec.include_global_state,
            share_labels=spec.include_labels, names=result.names, model_kwargs=self.model_kwargs(), mean=mean, std=std,
            update_class=getattr(self.scheme, "update_class", ClientUpdate),
            kind="weight_delta" if delta else "gradient", model_id=spec.model, num_classes=result.num_classes,
            batch_size=result.batch_size if delta else int(result.images.shape[0]),
            num_samples=int(result.images.shape[0]), local_steps=result.steps if delta else 1,
            local_epochs=spec.local_epochs if delta else 1, lr=spec.lr if delta else None, bn_mode=spec.bn_mode,
            defenses=self.describe_defenses(), seed=spec.seed, round=int(round_index), optimizer=self._optimizer(),
        )
        for transform in self.transforms:
            described = list(update.meta.defenses)
            update = defend_update(update, transform, step=round_index)
            if id(transform) in self._scheme_parts:
                update.meta.defenses = described
        return update, secret
