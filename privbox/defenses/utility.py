"""Utility of a defense: a short, seeded training run at a fixed learning rate (ALGORITHMS.md §6).

A defense is only worth its privacy if the model still learns, and the comparison is only fair
at matched hyper-parameters: the old PaddleSleeve DGC demo compared DGC at lr 0.001 with
Momentum at lr 0.01 (ALGORITHMS.md §6.1, D2). :func:`measure_utility` trains the same model
from the same initialisation, on the same batches, with the same learning rate, once per
defense, and reports the test accuracy (and ε for DP-SGD).

**The default data is a utility proxy, not a benchmark dataset.** Without a user dataset,
:func:`sample_task` builds a 21-class task from the 21 embedded sample photographs
(:func:`privbox.data.load_samples`; class = photograph, or photograph index mod C): training and
test images are seeded random views of the photographs (random crop of 60-100 % of the side,
resized to 32×32, horizontal flip, brightness ×U(0.7, 1.3), Gaussian pixel noise σ = 0.1), with
different seeds for the two splits. It measures how well a model learns to recognise augmented
views of a few images — enough to rank defenses by how much they hurt learning, not to predict
accuracy on a real dataset. Pass any ``paddle.io.Dataset`` of ``(CHW image in [0, 1], label)``
for real numbers.

How each defense trains (FedSGD with one client: the defended update *is* the step):

* ``None``: SGD (``momentum=0``) or heavy-ball Momentum, θ ← θ − lr·v, v ← m·v + g;
* an :class:`~privbox.defenses.UpdateDefense` (``TopKPruning``, ``GaussianPrivacy``,
  ``BatchClipNoise``, ``Compose``): g' = defense(g), θ ← θ − lr·g' (+ momentum if given);
* :class:`~privbox.defenses.DGCCompressor`: θ ← θ − lr·ĝ with ĝ the DGC output (Lin et al., ICLR
  2018: the momentum is inside ĝ, so ``momentum`` must be 0 — its fair baseline is ``None`` with
  ``momentum=dgc.momentum`` at the same lr);
* a :class:`~privbox.defenses.schemes.DefenseScheme`: g = what the client under the scheme sends
  (shards, label order, local iterations, whole-batch clip + noise, dropout), θ ← θ − lr·g;
* a scheme with ``dp_noise_multiplier`` (:func:`~privbox.defenses.schemes.real_dp_sgd`):
  DP-SGD (Abadi et al., CCS 2016) with Poisson sampling (q = batch_size/N) and
  :class:`~privbox.defenses.DPSGD`; ε at ``delta`` from the RDP accountant.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn

from .dgc import DGCCompressor
from ..core.errors import InputError
from ..nn.convert import trainable_parameters
from .schemes.scheme import DefenseScheme
from .transforms import GaussianPrivacy, UpdateDefense

__all__ = ["ArrayDataset", "UtilityCNN", "sample_task", "measure_utility"]

DefenseLike = Union[None, UpdateDefense, DefenseScheme]


class ArrayDataset(paddle.io.Dataset):
    """A map-style dataset over ``images`` [N, C, H, W] float32 in [0, 1] and ``labels`` [N]."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, description: str = "") -> None:
        super().__init__()
        images = np.asarray(images, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if images.ndim != 4 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"ArrayDataset needs images [N, C, H, W] and labels [N], got {images.shape} and {labels.shape}")
        self.images, self.labels, self.description = images, labels, description

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> Tuple[np.ndarray, np.int64]:
        return self.images[index], self.labels[index]


class UtilityCNN(nn.Layer):
    """The utility-proxy model: two strided 5×5 ReLU convolutions (16, 32 channels) and a Linear.

    The same layout as the DLG LeNet (Zhu et al., NeurIPS 2019) with ReLU and Paddle's default
    initialisation instead of sigmoid and U(−0.5, 0.5) (which conditions the attack well but
    barely trains). No BatchNorm, so DP-SGD's per-sample gradients exist (hooks: Conv2D, Linear).
    """

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        side = math.ceil(math.ceil(image_size / 2) / 2)
        self.body = nn.Sequential(
            nn.Conv2D(in_channels, 16, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2D(16, 32, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.fc = nn.Linear(32 * side * side, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.fc(self.body(x))


def _augment(source: np.ndarray, labels: np.ndarray, per_image: int, size: int, noise: float, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    import paddle.nn.functional as F

    n, _, side, _ = source.shape
    out, ys = [], []
    for i in range(n):
        for _ in range(per_image):
            crop = int(rng.integers(int(0.6 * side), side + 1))
            top, left = (int(v) for v in rng.integers(0, side - crop + 1, size=2))
            patch = paddle.to_tensor(source[i : i + 1, :, top : top + crop, left : left + crop])
            view = F.interpolate(patch, size=[size, size], mode="bilinear", align_corners=False).numpy()[0]
            if rng.random() < 0.5:
                view = view[..., ::-1]
            view = view * rng.uniform(0.7, 1.3) + rng.normal(0.0, noise, view.shape)
            out.append(np.clip(view, 0.0, 1.0))
            ys.append(labels[i])
    return np.stack(out).astype(np.float32), np.asarray(ys, dtype=np.int64)


def sample_task(
    num_classes: Optional[int] = None,
    train_per_image: int = 24,
    test_per_image: int = 16,
    size: int = 32,
    channels: int = 3,
    noise: float = 0.1,
    seed: int = 0,
) -> Tuple[ArrayDataset, ArrayDataset]:
    """The utility-proxy task built from the embedded sample photographs (see the module docstring).

    Args:
        num_classes: None (default) makes each of the 21 photographs a class; C < 21 uses label
            = photograph index mod C (several photographs per class).
        train_per_image / test_per_image: random views per photograph in each split.
        size: side of the views (the source photographs are loaded at 1.5× this size).
        channels: 3 (RGB) or 1.
        noise: σ of the Gaussian pixel noise.
        seed: the training split uses ``seed``, the test split an independent stream.

    Returns:
        ``(train, test)`` :class:`ArrayDataset` objects.
    """
    from ..data import SAMPLE_NAMES, load_samples

    source = load_samples(size=min(224, int(round(size * 1.5))), channels=channels)
    n = len(SAMPLE_NAMES)
    classes = n if num_classes is None else int(num_classes)
    if not 2 <= classes <= n:
        raise ValueError(f"sample_task: num_classes must be between 2 and {n} (the number of sample photographs), got {num_classes}")
    labels = np.arange(n) % classes
    rng_train = np.random.default_rng([seed, 0])
    rng_test = np.random.default_rng([seed, 1])
    what = f"sample-photograph proxy: {n} photographs, {classes} classes, {size}x{size} random views (seed {seed})"
    train = ArrayDataset(*_augment(source, labels, train_per_image, size, noise, rng_train), description=what + ", train")
    test = ArrayDataset(*_augment(source, labels, test_per_image, size, noise, rng_test), description=what + ", test")
    return train, test


def _to_arrays(dataset: Any, what: str) -> Tuple[np.ndarray, np.ndarray]:
    if isinstance(dataset, ArrayDataset):
        return dataset.images, dataset.labels
    from ..data.batch import _as_chw, _as_label, _split_item

    images, labels = [], []
    for i in range(len(dataset)):
        image, label = _split_item(dataset[i], f"{what}[{i}]")
        images.append(_as_chw(image, f"{what}[{i}]"))
        labels.append(_as_label(label, f"{what}[{i}]"))
    if not images:
        raise ValueError(f"measure_utility: the {what} is empty")
    return np.stack(images).astype(np.float32), np.asarray(labels, dtype=np.int64)


def describe_utility_defense(defense: DefenseLike, momentum: float = 0.0) -> str:
    """A short name of what :func:`measure_utility` trains with."""
    from .apply import describe_defense
    from .transforms import Compose

    if defense is None:
        return "none (SGD)" if momentum == 0 else f"none (Momentum {momentum:g})"
    if isinstance(defense, DefenseScheme):
        return defense.describe()
    if isinstance(defense, Compose):
        return " + ".join(describe_defense(d) for d in defense.defenses)
    if isinstance(defense, DGCCompressor):
        extra = f", clip_norm={defense.clip_norm:g}" if defense.clip_norm is not None else ""
        return f"DGC(sparsity={defense.current_sparsity():g}, momentum={defense.momentum:g}{extra})"
    if isinstance(defense, GaussianPrivacy):
        return (
            f"GaussianPrivacy(sigma0={defense.sigma0:g}, p{defense.percentile:g}, sigma = sigma0 x p per step; "
            "heuristic, no DP guarantee)"
        )
    return describe_defense(defense)


def _accuracy(model: nn.Layer, x: paddle.Tensor, y: np.ndarray, batch: int = 256) -> float:
    model.eval()
    correct = 0
    with paddle.no_grad():
        for start in range(0, x.shape[0], batch):
            pred = model(x[start : start + batch]).argmax(axis=1).numpy()
            correct += int((pred == y[start : start + batch]).sum())
    return correct / max(1, int(y.shape[0]))


def measure_utility(
    defense: DefenseLike = None,
    dataset: Optional[paddle.io.Dataset] = None,
    test_dataset: Optional[paddle.io.Dataset] = None,
    epochs: int = 8,
    lr: float = 0.05,
    batch_size: int = 16,
    momentum: float = 0.0,
    seed: int = 0,
    model_fn: Optional[Callable[[int], nn.Layer]] = None,
    num_classes: Optional[int] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    delta: float = 1e-5,
) -> Dict[str, Any]:
    """Train a fresh model with ``defense`` applied to every step and report the test accuracy.

    Every call with the same ``seed`` starts from the same initialisation and visits the same
    batches in the same order, so two calls that differ only in ``defense`` are a matched
    comparison (same lr, epochs, batches). See the module docstring for how each kind of
    defense trains.

    Args:
        defense: None, an :class:`UpdateDefense` (copied, the caller's object keeps its state),
            a :class:`DGCCompressor`, or a :class:`DefenseScheme`.
        dataset: training data, a ``paddle.io.Dataset`` of ``(CHW image in [0, 1], label)``;
            None uses :func:`sample_task` (a utility *proxy*).
        test_dataset: held-out data; None with a user ``dataset`` splits off a seeded 20 %.
        epochs, lr, batch_size: the training run (batches are drawn without replacement each
            epoch, last partial batch dropped; DP-SGD uses Poisson sampling with q =
            batch_size/N and the same expected number of steps).
        momentum: heavy-ball momentum of the step (0 = SGD). Must be 0 with DGC, whose emitted
            values already contain the momentum (adding it again is the double-momentum defect
            of the old PaddleSleeve ``DGCMomentum``).
        seed: initialisation, batch order, defense noise.
        model_fn: ``num_classes -> paddle.nn.Layer`` (default :class:`UtilityCNN`); for a scheme
            with ``maxpool_kernel`` it must build a model with that kernel.
        num_classes: classes (default: max label + 1).
        mean, std: normalisation (default 0.5 per channel).
        delta: δ for the DP-SGD ε.

    Returns:
        ``{"defense", "test_accuracy", "train_accuracy", "final_loss", "epochs", "lr",
        "momentum", "batch_size", "steps", "seed", "diverged", "epsilon", "delta",
        "noise_multiplier", "dataset", "model", "seconds"}`` (``epsilon`` is None unless DP-SGD).
        A run whose loss becomes NaN/Inf stops there with ``diverged=True``; its accuracies are
        those of the diverged model (usually chance level).
    """
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"measure_utility: epochs must be a positive integer, got {epochs}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"measure_utility: batch_size must be a positive integer, got {batch_size}")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"measure_utility: lr must be a positive number, got {lr}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"measure_utility: momentum must be in [0, 1), got {momentum}")
    if isinstance(defense, DGCCompressor) and momentum:
        raise ValueError(
            "measure_utility: DGC already applies momentum correction inside the emitted values; train it with "
            "momentum=0 (plain SGD final step) and compare with defense=None, momentum=dgc.momentum at the same lr"
        )
    if defense is not None and not isinstance(defense, (UpdateDefense, DefenseScheme)) and not callable(getattr(defense, "apply", None)):
        raise TypeError(f"measure_utility: defense must be None, an UpdateDefense or a DefenseScheme, got {type(defense).__name__}")
    dp = isinstance(defense, DefenseScheme) and defense.dp_noise_multiplier is not None
    if dp and momentum:
        raise ValueError("measure_utility: the DP-SGD run uses plain SGD; set momentum=0")

    start_time = time.perf_counter()
    quiet = logging.getLogger(GaussianPrivacy.__module__)  # it logs sigma at INFO on every step
    level = quiet.level
    quiet.setLevel(max(level, logging.WARNING))
    try:
        return _train(
            defense, dataset, test_dataset, epochs, lr, batch_size, momentum, seed, model_fn, num_classes,
            mean, std, delta, dp, start_time,
        )
    finally:
        quiet.setLevel(level)


def _train(defense, dataset, test_dataset, epochs, lr, batch_size, momentum, seed, model_fn, num_classes, mean, std,
           delta, dp, start_time) -> Dict[str, Any]:
    """The body of :func:`measure_utility` (arguments validated there).

    Every step is one round of the one client (:class:`privbox.fl.client.Client`) on the step's
    batch at the current θ, with the defense applied by the client; the server then takes the
    (heavy-ball) SGD step with the defended gradient, and the model's BN running statistics
    follow the client's own forward passes.
    """
    from ..core.images import normalize
    from ..fl.client import Client
    from ..fl.spec import ClientSpec
    from ..fl.step import sgd_rule
    from .local import DPSGDStep

    if dataset is None:
        train_set, test_set = sample_task(seed=seed)
        if test_dataset is not None:
            test_set = test_dataset
    else:
        train_set, test_set = dataset, test_dataset
    x_train, y_train = _to_arrays(train_set, "dataset")
    if test_set is None:
        order = np.random.default_rng([seed, 2]).permutation(len(y_train))
        cut = max(1, len(order) // 5)
        x_test, y_test = x_train[order[:cut]], y_train[order[:cut]]
        x_train, y_train = x_train[order[cut:]], y_train[order[cut:]]
    else:
        x_test, y_test = _to_arrays(test_set, "test_dataset")
    n = int(y_train.shape[0])
    if batch_size > n:
        raise ValueError(f"measure_utility: batch_size {batch_size} exceeds the {n} training samples")
    classes = int(num_classes or max(int(y_train.max()), int(y_test.max())) + 1)
    channels = x_train.shape[1]
    mean = list(mean) if mean is not None else [0.5] * channels
    std = list(std) if std is not None else [0.5] * channels

    rng_state = paddle.get_rng_state()
    paddle.seed(seed)
    try:
        model = model_fn(classes) if model_fn is not None else UtilityCNN(classes, channels, x_train.shape[-1])
    finally:
        paddle.set_rng_state(rng_state)
    named = dict(trainable_parameters(model))
    live_state = model.state_dict()
    spec = ClientSpec.for_batch(
        x_train[:batch_size], num_classes=classes, mean=mean, std=std, bn_mode="train", share="gradient",
        include_global_state=False, seed=int(np.random.default_rng([seed, 4]).integers(2**31)),
    )
    q = batch_size / n
    privacy = None
    if dp:
        privacy = DPSGDStep(defense.dp_noise_multiplier, defense.clip_norm, expected_batch_size=q * n, sample_rate=q, seed=seed)
        client = Client(spec, model=model, defenses=[privacy])
    elif isinstance(defense, DefenseScheme):
        client = Client(spec, model=model, scheme=defense)
    else:
        work = copy.deepcopy(defense) if isinstance(defense, UpdateDefense) else defense
        client = Client(spec, model=model, defenses=[work] if work is not None else [])
    rng = np.random.default_rng([seed, 3])  # batch order: the same for every defense
    sampler = None
    if dp:
        from .dpsgd import PoissonBatchSampler

        sampler = PoissonBatchSampler(n, sample_rate=q, seed=seed)
    velocity: Dict[str, paddle.Tensor] = {}
    steps = 0
    losses = []
    diverged = False
    for epoch in range(int(epochs)):
        if dp:
            batches = list(iter(sampler))
        else:
            perm = rng.permutation(n)
            batches = [perm[s : s + batch_size] for s in range(0, n - batch_size + 1, batch_size)]
        for index in batches:
            index = np.asarray(index, dtype=np.int64)
            if index.size == 0:  # an empty Poisson batch: nothing released, the step is still accounted
                privacy.accountant.step(noise_multiplier=privacy.noise_multiplier, sample_rate=q)
                steps += 1
                continue
            try:
                update, _ = client.run_round(round_index=steps, batch=(x_train[index], y_train[index]))
            except InputError:  # a non-finite gradient: the run diverged
                diverged = True
                break
            result = client.last_result
            losses.append(float(np.mean(result.losses)))
            if not np.isfinite(losses[-1]):
                diverged = True
                break
            with paddle.no_grad():
                for name, param in named.items():
                    g = paddle.to_tensor(update.tensors[name]).astype(param.dtype)
                    new, velocity[name] = sgd_rule(param, g, lr, momentum=momentum, velocity=velocity.get(name))
                    param.set_value(new)
                for k, d in (result.buffer_delta or {}).items():
                    live_state[k].set_value(live_state[k] + paddle.to_tensor(d, dtype=live_state[k].dtype))
            steps += 1
            if not all(bool(paddle.isfinite(p).all()) for p in named.values()):
                diverged = True
                break
        if diverged:
            break
    epsilon = privacy.get_epsilon(delta) if dp else None
    xt_train = normalize(x_train, mean, std)
    xt_test = normalize(x_test, mean, std)
    test_acc = _accuracy(model, xt_test, y_test)
    train_acc = _accuracy(model, xt_train, y_train)
    description = getattr(train_set, "description", "") or type(train_set).__name__
    return {
        "defense": describe_utility_defense(defense, momentum),
        "test_accuracy": test_acc,
        "train_accuracy": train_acc,
        "final_loss": float(np.mean(losses[-10:])) if losses else float("nan"),
        "epochs": int(epochs),
        "lr": float(lr),
        "momentum": float(momentum),
        "batch_size": int(batch_size),
        "steps": steps,
        "seed": seed,
        "diverged": diverged,
        "epsilon": epsilon,
        "delta": float(delta) if dp else None,
        "noise_multiplier": float(defense.dp_noise_multiplier) if dp else None,
        "dataset": description,
        "model": type(model).__name__,
        "seconds": time.perf_counter() - start_time,
    }
