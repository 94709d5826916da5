"""Hyper-parameter search on a *simulation* update (ALGORITHMS.md §4.8, after E2EGI).

The attacker cannot score a reconstruction of the client's batch: it has no ground truth. What it
has is the global model θ0, the client's batch size, BN mode, normalisation and label policy, and
data of its own. So it builds a **simulation update** from a surrogate batch of its own (same θ0,
same B and label repetition, same BN mode, same normalisation, the same things shared), where the
ground truth is known, and tunes the attack there:

* each trial runs the attack (one group, the same update rule) for ``budget`` iterations;
* its objective is the MSE, in the normalised model space, between the **best iterate** and the
  surrogate images (index order when the attack's labels follow the sample order, else the
  one-to-one Hungarian matching), compared from ``record_from`` on; the trial with the lowest
  last value wins;
* the space is lr, the TV / BN / image-norm weights, the gradient weight and the iteration count,
  each enabled separately, with the paper's ranges (:data:`DEFAULT_RANGES`);
* the built-in sampler is a seeded random search with **successive halving**: every trial runs
  to the first rung, the best ``1/reduction_factor`` continue to the next one, and so on. Trials
  pause and continue through the engine's checkpoints, so a trial that runs to the end gives
  exactly the result of an uninterrupted run, and an interrupted search resumes;
* with the optional extra (``pip install "privbox[tune]"``), ``sampler="optuna"`` uses Optuna's
  TPE sampler and median pruning at the same rungs.

Then the real attack runs on the target with the best values (:meth:`TuningResult.best_config`).

**Never tune on the target itself** (E2EGI's README "demo" does): that uses the ground truth the
attacker does not have, and numbers obtained so are not attack results.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..core.update import ClientUpdate, Secret
from .config import AttackConfig

__all__ = [
    "DEFAULT_RANGES",
    "TUNABLE_PARAMETERS",
    "SearchDimension",
    "TrialRecord",
    "TuningResult",
    "HyperparameterSearch",
    "build_model_for_update",
    "default_parameters",
    "search_space",
    "apply_params",
    "estimate_distinct_labels",
    "surrogate_batch",
    "simulation_update",
    "reconstruction_mse",
    "successive_halving_rungs",
]

TUNABLE_PARAMETERS = ("lr", "tv", "bn", "image_norm", "gradient_weight", "iterations")

#: §4.8 search ranges: (low, high, log scale).
DEFAULT_RANGES: dict[str, tuple[float, float, bool]] = {
    "lr": (0.1, 1.0, False),
    "tv": (1e-6, 0.1, True),
    "bn": (1e-6, 0.1, True),
    "image_norm": (-1e-6, 0.0, False),
    "gradient_weight": (0.01, 1.0, False),
    "iterations": (5000, 20000, False),
}

_REGULARIZER_PARAMS = ("tv", "bn", "image_norm")


class _Pause(Exception):
    """Raised from the engine callback to pause a trial at a rung (its checkpoint is written)."""


# ------------------------------------------------------------------------------ the space
@dataclass(frozen=True)
class SearchDimension:
    """One tuned hyper-parameter: uniform (or log-uniform) on [low, high]; integers for ``iterations``."""

    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        if self.name not in TUNABLE_PARAMETERS:
            raise ValueError(f"unknown tunable parameter {self.name!r}; choose from {list(TUNABLE_PARAMETERS)}")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ValueError(f"range of {self.name!r} must be finite with low <= high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0; {self.name!r} has [{self.low}, {self.high}]")
        if self.name == "lr" and self.low <= 0:
            raise ValueError(f"the lr range must be positive, got [{self.low}, {self.high}]")
        if self.name == "iterations" and self.low < 1:
            raise ValueError(f"the iterations range must start at >= 1, got [{self.low}, {self.high}]")

    def sample(self, rng: np.random.Generator) -> float:
        """Draw one value with ``rng``."""
        if self.integer:
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))


def default_parameters(config: AttackConfig) -> list[str]:
    """lr plus the weights of the ``tv``, ``bn`` and ``image_norm`` regularizers ``config`` uses."""
    used = [name for name in _REGULARIZER_PARAMS if _regularizer_weight(config, name)]
    return ["lr", *used]


def search_space(
    config: AttackConfig,
    params: Optional[Sequence[str]] = None,
    ranges: Optional[Mapping[str, Sequence[Any]]] = None,
) -> list[SearchDimension]:
    """The dimensions to search.

    Args:
        config: the attack to tune.
        params: names from :data:`TUNABLE_PARAMETERS`; ``None``: :func:`default_parameters`.
        ranges: per name ``[low, high]`` or ``[low, high, "log"]`` (or a bool third item),
            replacing :data:`DEFAULT_RANGES`.
    """
    names = list(default_parameters(config) if params is None else params)
    if not names:
        raise ValueError(f"nothing to tune: give params from {list(TUNABLE_PARAMETERS)}")
    unknown = [n for n in list(names) + list(ranges or {}) if n not in TUNABLE_PARAMETERS]
    if unknown:
        raise ValueError(f"unknown tunable parameter(s) {unknown}; choose from {list(TUNABLE_PARAMETERS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"tune params list a parameter twice: {names}")
    dims = []
    for name in names:
        low, high, log = DEFAULT_RANGES[name]
        if ranges and name in ranges:
            spec = list(ranges[name])
            if len(spec) not in (2, 3):
                raise ValueError(f"the range of {name!r} is [low, high] or [low, high, log], got {spec}")
            low, high = float(spec[0]), float(spec[1])
            log = bool(spec[2] in (True, "log")) if len(spec) == 3 else False
        if name in _REGULARIZER_PARAMS and name == "bn" and not _regularizer_weight(config, "bn"):
            raise ValueError(
                "tuning 'bn' needs a bn regularizer in the attack config (e.g. attack.regularizers.bn="
                "{weight: 0.01, source: running}); the preset has none"
            )
        dims.append(SearchDimension(name, low, high, log=log, integer=name == "iterations"))
    return dims


def _regularizer_weight(config: AttackConfig, name: str) -> float:
    spec = config.regularizers.get(name)
    if spec is None:
        return 0.0
    return float(spec["weight"] if isinstance(spec, dict) else spec)


def apply_params(config: AttackConfig, values: Mapping[str, float]) -> AttackConfig:
    """``config`` with tuned values: lr, gradient_weight, iterations, or regularizer weights
    (``tv``, ``bn``, ``image_norm``; a regularizer's other options are kept)."""
    changes: dict[str, Any] = {}
    regs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.regularizers.items()}
    for name, value in values.items():
        if name in ("lr", "gradient_weight"):
            changes[name] = float(value)
        elif name == "iterations":
            changes[name] = int(value)
        elif name in _REGULARIZER_PARAMS:
            if isinstance(regs.get(name), dict):
                regs[name]["weight"] = float(value)
            else:
                regs[name] = float(value)
        else:
            raise ValueError(f"unknown tunable parameter {name!r}; choose from {list(TUNABLE_PARAMETERS)}")
    if regs != config.regularizers:
        changes["regularizers"] = regs
    return config.replace(**changes)


# ---------------------------------------------------------------------- the simulation
def build_model_for_update(update: ClientUpdate):
    """Rebuild the client's architecture from the update's metadata and load θ0 into it."""
    import paddle

    from ..nn.models import MODEL_REGISTRY, build_model

    meta = update.meta
    if meta.model_id not in MODEL_REGISTRY:
        from ..core.errors import ModelMismatchError

        raise ModelMismatchError(
            f"the update was made with model_id {meta.model_id!r}, which privbox cannot rebuild by name "
            f"(known: {sorted(MODEL_REGISTRY)}); attack it from Python with your model: "
            "GradientInversion(config).run(model, update)"
        )
    paddle.seed(0)
    model = build_model(meta.model_id, num_classes=meta.num_classes, **meta.model_kwargs)
    if update.global_state is not None:
        update.load_global_state(model)
    return model


def estimate_distinct_labels(target: ClientUpdate) -> int:
    """The number of distinct labels of the target batch: from shared labels, else counted by LLG."""
    if target.labels is not None:
        return int(np.unique(np.asarray(target.labels)).size)
    from ..labels import recover_labels

    try:
        result = recover_labels("llg", target.gradients(), target.batch_size, target.num_classes)
        return max(1, int(np.unique(result.labels).size))
    except ValueError:
        return min(target.batch_size, target.num_classes)


def surrogate_batch(
    target: ClientUpdate,
    images: str = "samples",
    seed: int = 1,
    distinct_labels: Optional[int] = None,
) -> tuple[Any, list[str]]:
    """The attacker's own batch, shaped like the target's (B, C, size, channels, label repetition).

    With ``images="samples"`` the embedded images after the first B are preferred (a default
    ``privbox capture`` uses the first B), drawn with ``seed``; otherwise ``images`` is a dataset
    as :func:`privbox.data.make_target_batch` accepts.

    Returns:
        ``(TargetBatch, notes)``; notes say how the batch was chosen.
    """
    from ..data import SAMPLE_NAMES, TargetBatch, load_samples, make_target_batch

    meta = target.meta
    channels, size = int(meta.input_shape[0]), int(meta.input_shape[1])
    batch_size, classes = target.batch_size, target.num_classes
    distinct = distinct_labels or estimate_distinct_labels(target)
    distinct = min(distinct, batch_size, classes)
    notes = [f"surrogate batch: B={batch_size}, {distinct} distinct labels, seed {seed}, images {images!r}"]
    if images != "samples":
        batch = make_target_batch(batch_size, num_classes=classes, distinct_labels=distinct, size=size,
                                  channels=channels, seed=seed, images=images)
        return batch, notes
    labelled = make_target_batch(batch_size, num_classes=classes, distinct_labels=distinct, size=size,
                                 channels=channels, seed=seed)
    rng = np.random.default_rng([seed, 2])
    pool = list(SAMPLE_NAMES[batch_size:])
    if len(pool) < batch_size:
        pool = list(SAMPLE_NAMES)
        notes.append(
            f"B={batch_size} is more than half of the {len(SAMPLE_NAMES)} embedded samples, so the surrogate "
            "batch may share images with a client that also used them; set tune.surrogate_images to your own data"
        )
    names = [pool[i] for i in rng.choice(len(pool), batch_size, replace=False)]
    return TargetBatch(load_samples(size=size, channels=channels, names=names), labelled.labels, names), notes


def simulation_update(
    target: ClientUpdate,
    images: str = "samples",
    seed: int = 1,
    distinct_labels: Optional[int] = None,
) -> tuple[ClientUpdate, Secret, list[str]]:
    """Build the simulation update: the attacker's own batch through the target's θ0 and settings.

    Same model and θ0 (the target's ``global_state``), B, label repetition, BN mode, normalisation,
    number of classes, and the same things shared (labels, exact BN statistics).

    Returns:
        ``(simulation update, its ground truth, notes)``.
    """
    from ..fl.capture import compute_update

    if target.kind != "gradient":
        raise ValueError(
            "tuning builds a FedSGD simulation (one gradient); this update is a FedAvg weight delta, "
            "which privbox tune does not simulate yet"
        )
    if target.global_state is None:
        raise ValueError("the target update carries no global_state (θ0); the simulation needs the same model weights")
    batch, notes = surrogate_batch(target, images, seed, distinct_labels)
    model = build_model_for_update(target)
    meta = target.meta
    update, secret = compute_update(
        model, batch.images, batch.labels, meta.mean, meta.std, num_classes=meta.num_classes,
        bn_mode=meta.bn_mode, model_id=meta.model_id, model_kwargs=meta.model_kwargs,
        share_labels=target.labels is not None, share_bn_stats=target.bn_batch_stats is not None,
        names=batch.names, seed=seed,
    )
    return update, secret, notes


def reconstruction_mse(images: np.ndarray, truth: np.ndarray, ordered: bool) -> float:
    """Mean squared error in model space; one-to-one Hungarian matching unless ``ordered``."""
    images = np.asarray(images, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if images.shape != truth.shape:
        raise ValueError(f"reconstruction {images.shape} and ground truth {truth.shape} differ in shape")
    if ordered or images.shape[0] == 1:
        return float(np.mean((images - truth) ** 2))
    from scipy.optimize import linear_sum_assignment

    b = images.shape[0]
    cost = ((truth.reshape(b, 1, -1) - images.reshape(1, b, -1)) ** 2).mean(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def successive_halving_rungs(trials: int, budget: int, record_from: int, reduction_factor: int) -> list[int]:
    """Iterations at which trials are compared: r0·η^k below ``budget`` (r0 >= ``record_from``), then ``budget``.

    r0 = max(record_from, ⌈budget/η^s⌉) with s = ⌊log_η(trials)⌋, so with enough trials the
    rungs form the usual geometric ladder ending at the full budget.
    """
    eta = int(reduction_factor)
    halvings = int(math.floor(math.log(max(trials, 1)) / math.log(eta) + 1e-9))
    first = max(int(record_from), math.ceil(budget / eta**halvings), 1)
    rungs = []
    rung = first
    while rung < budget and len(rungs) < halvings:
        rungs.append(rung)
        rung *= eta
    return rungs + [int(budget)]


# -------------------------------------------------------------------------- the search
@dataclass
class TrialRecord:
    """One sampled configuration and what it reached.

    Attributes:
        number: trial index (0-based, in sampling order).
        params: the sampled values.
        values: objective (model-space MSE of the best iterate) per rung iteration.
        status: ``"running"``, ``"pruned"`` or ``"complete"``; ``pruned_at`` the rung where it stopped.
        objective: the last value of a complete trial.
        iterations: iterations the trial ran.
        finished: the trial's attack ended (budget or a stopping rule) and cannot continue.
        wall_time: seconds spent in the trial.
    """

    number: int
    params: dict[str, float]
    values: dict[int, float] = field(default_factory=dict)
    status: str = "running"
    objective: Optional[float] = None
    iterations: int = 0
    finished: bool = False
    pruned_at: Optional[int] = None
    wall_time: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["values"] = {str(k): v for k, v in self.values.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrialRecord":
        data = dict(data)
        data["values"] = {int(k): float(v) for k, v in data.get("values", {}).items()}
        return cls(**data)


@dataclass
class TuningResult:
    """The outcome of a search.

    Attributes:
        best: the complete trial with the lowest objective.
        trials: every trial, in sampling order.
        best_params: the best values.
        sampler: ``"random"`` (successive halving) or ``"optuna"``.
        rungs: the iterations at which trials were compared.
        space: the searched dimensions.
        notes: how the surrogate batch was built, warnings.
        wall_time: seconds.
    """

    best: TrialRecord
    trials: list[TrialRecord]
    best_params: dict[str, float]
    sampler: str
    rungs: list[int]
    space: list[SearchDimension]
    notes: list[str] = field(default_factory=list)
    wall_time: float = 0.0

    def best_config(self, config: AttackConfig) -> AttackConfig:
        """``config`` with the best values applied (for the real attack on the target)."""
        return apply_params(config, self.best_params)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sampler": self.sampler,
            "rungs": self.rungs,
            "space": [asdict(d) for d in self.space],
            "best": self.best.to_dict(),
            "best_params": self.best_params,
            "trials": [t.to_dict() for t in self.trials],
            "notes": self.notes,
            "wall_time_s": round(self.wall_time, 3),
        }

    def to_markdown(self, digits: int = 4) -> str:
        """A table of the trials, best first among the complete ones."""
        names = [d.name for d in self.space]
        header = ["trial", "status", *names, *[f"MSE@{r}" for r in self.rungs]]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        order = sorted(self.trials, key=lambda t: (t.status != "complete", _sort_value(t.objective), t.number))
        for t in order:
            cells = [str(t.number) + (" ★" if t.number == self.best.number else ""), t.status]
            cells += [f"{t.params[n]:.{digits}g}" for n in names]
            cells += [f"{t.values[r]:.{digits}g}" if r in t.values else "—" for r in self.rungs]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _sort_value(value: Optional[float]) -> float:
    return math.inf if value is None or not math.isfinite(value) else float(value)


def _import_optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError(
            'sampler="optuna" needs Optuna, which is an optional extra: pip install "privbox[tune]" '
            '(or use the built-in sampler="random")'
        ) from None
    return optuna


class HyperparameterSearch:
    """Tune an attack on a simulation update whose ground truth is known (§4.8).

    Args:
        config: the attack to tune (its seed is every trial's seed; ``restarts`` is set to 1).
        simulation: the simulation update (:func:`simulation_update`), never the target.
        truth: the simulation's ground truth (a :class:`~privbox.core.update.Secret`, pixels in [0, 1]).
        trials: number of sampled configurations.
        budget: attack iterations per trial.
        record_from: first iteration at which trials are compared.
        sampler: ``"random"`` (seeded, successive halving) or ``"optuna"`` (TPE + median pruning).
        reduction_factor: successive halving keeps ``1/reduction_factor`` of the trials per rung.
        seed: the sampler's seed.
        params / ranges: the space (:func:`search_space`).
        work_dir: where trial checkpoints and the search state go (a temporary folder if None).
        resume: continue a search from ``work_dir``.
        log: progress lines go here.
    """

    STATE_FILE = "search_state.json"

    def __init__(
        self,
        config: AttackConfig,
        simulation: ClientUpdate,
        truth: Secret,
        *,
        trials: int = 16,
        budget: int = 5000,
        record_from: int = 2000,
        sampler: str = "random",
        reduction_factor: int = 4,
        seed: int = 0,
        params: Optional[Sequence[str]] = None,
        ranges: Optional[Mapping[str, Sequence[Any]]] = None,
        work_dir: Optional[str] = None,
        resume: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        if sampler not in ("random", "optuna"):
            raise ValueError(f"sampler must be 'random' or 'optuna', got {sampler!r}")
        if trials < 1 or budget < 1 or record_from < 0 or reduction_factor < 2:
            raise ValueError("need trials >= 1, budget >= 1, record_from >= 0 and reduction_factor >= 2")
        if truth.images.shape[0] != simulation.batch_size:
            raise ValueError(f"the ground truth has {truth.images.shape[0]} images, the simulation B={simulation.batch_size}")
        self.config = config.replace(restarts=1, progress=False)
        self.simulation = simulation
        from ..core.images import normalize

        self.truth = normalize(truth.images, simulation.meta.mean, simulation.meta.std).numpy()
        self.trials, self.budget, self.record_from = int(trials), int(budget), int(record_from)
        self.sampler, self.reduction_factor, self.seed = sampler, int(reduction_factor), int(seed)
        self.space = search_space(config, params, ranges)
        tunes_iterations = any(d.name == "iterations" for d in self.space)
        if tunes_iterations and min(d.low for d in self.space if d.name == "iterations") < budget:
            raise ValueError("the iterations range must start at or above the per-trial budget")
        self.rungs = successive_halving_rungs(self.trials, self.budget, self.record_from, self.reduction_factor)
        self.resume = resume
        self.log = log
        self._tmp = None
        if work_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="privbox-tune-")
            work_dir = self._tmp.name
        self.work_dir = Path(work_dir)
        self.records: dict[int, TrialRecord] = {}
        self._model = None
        self.ordered = self.config.label_strategy == "given"

    # ------------------------------------------------------------------ bookkeeping
    def _settings(self) -> dict[str, Any]:
        digest = hashlib.sha256()
        for key in sorted(self.simulation.tensors):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(self.simulation.tensors[key]).tobytes())
        return {
            "config": self.config.to_dict() | {"progress": None, "snapshot_every": None},
            "simulation_sha256": digest.hexdigest()[:16],
            "trials": self.trials, "budget": self.budget, "record_from": self.record_from,
            "sampler": self.sampler, "reduction_factor": self.reduction_factor, "seed": self.seed,
            "space": [asdict(d) for d in self.space],
        }

    def _load_state(self) -> None:
        path = self.work_dir / self.STATE_FILE
        if not self.resume:
            if path.exists() or any(self.work_dir.glob("trial_*")):
                raise ValueError(f"{self.work_dir} already holds a search; resume it, or use a new folder")
            return
        if not path.exists():
            return
        data = json.loads(path.read_text(encoding="utf-8"))
        if json.loads(json.dumps(self._settings(), default=str)) != data.get("settings"):
            raise ValueError(
                f"{path} was written by a search with different settings (config, simulation, space or "
                "sampler); resume with the same ones, or start afresh in a new folder"
            )
        self.records = {int(r["number"]): TrialRecord.from_dict(r) for r in data.get("trials", [])}
        self.log(f"[tune] resuming: {len(self.records)} trial(s) already recorded")

    def _save_state(self) -> None:
        from ..report import write_json_atomic

        write_json_atomic(
            self.work_dir / self.STATE_FILE,
            {"settings": self._settings(), "trials": [r.to_dict() for r in sorted(self.records.values(), key=lambda r: r.number)]},
        )

    # ------------------------------------------------------------------ one trial
    def _trial_config(self, record: TrialRecord) -> AttackConfig:
        config = apply_params(self.config, record.params)
        iterations = int(record.params.get("iterations", self.budget))
        pauses = [r for r in self.rungs if r < iterations]
        interval = math.gcd(*pauses) if pauses else iterations
        return config.replace(iterations=iterations, snapshot_every=interval)

    def _model_instance(self):
        if self._model is None:
            self._model = build_model_for_update(self.simulation)
        return self._model

    def _advance(self, record: TrialRecord, stop_at: int) -> float:
        """Run (or continue) ``record``'s attack up to iteration ``stop_at``; return its objective there."""
        from .engine import GradientInversion
        from .state import TrialState, config_fingerprint

        if record.finished:
            value = record.values[max(record.values)]
            record.values[stop_at] = value
            return value
        config = self._trial_config(record)
        folder = self.work_dir / f"trial_{record.number:03d}"
        pause_at = stop_at if stop_at < config.iterations else None

        def pause(info) -> None:
            if pause_at is not None and info.iteration >= pause_at:
                raise _Pause()

        start = time.perf_counter()
        checkpoint = folder / "state_restart0.safetensors"
        fingerprint = config_fingerprint(config.to_dict())
        try:
            if pause_at is not None and checkpoint.exists():
                # A search interrupted right after a pause: the checkpoint already sits at the rung.
                state = TrialState.load(checkpoint, fingerprint, config.seed)
                if state.iteration >= pause_at and not state.finished:
                    raise _Pause()
            recon = GradientInversion(config).run(
                self._model_instance(), self.simulation, callback=pause, checkpoint_dir=str(folder),
                checkpoint_every=config.snapshot_every, resume=True,
            )
            images, record.iterations, record.finished = recon.images, recon.iterations, True
        except _Pause:
            state = TrialState.load(checkpoint, fingerprint, config.seed)
            images = state.best_x if config.return_best else state.x
            record.iterations = state.iteration
        record.wall_time += time.perf_counter() - start
        value = reconstruction_mse(images, self.truth, self.ordered)
        record.values[stop_at] = value if math.isfinite(value) else math.inf
        return record.values[stop_at]

    def _describe(self, record: TrialRecord) -> str:
        return ", ".join(f"{k}={v:.4g}" for k, v in record.params.items())

    # ------------------------------------------------------------------ samplers
    def _random(self) -> None:
        rng = np.random.default_rng(self.seed)
        for number in range(self.trials):
            params = {d.name: d.sample(rng) for d in self.space}
            record = self.records.get(number)
            if record is None or record.params != params:
                self.records[number] = TrialRecord(number, params)
        alive = [self.records[n] for n in range(self.trials)]
        for i, rung in enumerate(self.rungs):
            for record in alive:
                if rung not in record.values:
                    value = self._advance(record, rung)
                    self.log(f"[tune] trial {record.number} ({self._describe(record)}): MSE {value:.4g} at iteration {rung}")
                    self._save_state()
            if i + 1 < len(self.rungs):
                keep = max(1, math.ceil(len(alive) / self.reduction_factor))
                ranked = sorted(alive, key=lambda r: (_sort_value(r.values[rung]), r.number))
                for record in ranked[keep:]:
                    record.status, record.pruned_at = "pruned", rung
                alive = ranked[:keep]
                self._save_state()
        for record in alive:
            record.status, record.objective = "complete", record.values[self.rungs[-1]]
        self._save_state()

    def _optuna(self) -> None:
        optuna = _import_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=self.seed)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=min(5, max(1, self.trials // 4)), n_warmup_steps=0)
        study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)

        def objective(trial) -> float:
            params: dict[str, float] = {}
            for d in self.space:
                if d.integer:
                    params[d.name] = trial.suggest_int(d.name, int(d.low), int(d.high))
                else:
                    params[d.name] = trial.suggest_float(d.name, d.low, d.high, log=d.log)
            record = self.records.get(trial.number)
            if record is None or record.params != params:
                record = self.records[trial.number] = TrialRecord(trial.number, params)
            for rung in self.rungs[:-1]:
                if rung not in record.values:
                    self._advance(record, rung)
                    self._save_state()
                trial.report(record.values[rung], rung)
                if (record.status == "pruned" and record.pruned_at == rung) or trial.should_prune():
                    record.status, record.pruned_at = "pruned", rung
                    self._save_state()
                    self.log(f"[tune] trial {record.number} ({self._describe(record)}): pruned at iteration {rung}")
                    raise optuna.TrialPruned()
            if self.rungs[-1] not in record.values:
                self._advance(record, self.rungs[-1])
            record.status, record.objective = "complete", record.values[self.rungs[-1]]
            self._save_state()
            self.log(f"[tune] trial {record.number} ({self._describe(record)}): MSE {record.objective:.4g}")
            return record.objective

        study.optimize(objective, n_trials=self.trials, catch=())

    # ------------------------------------------------------------------ run
    def run(self) -> TuningResult:
        """Run the search; returns the :class:`TuningResult`."""
        start = time.perf_counter()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._load_state()
        try:
            if self.sampler == "optuna":
                self._optuna()
            else:
                self._random()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
        trials = [self.records[n] for n in sorted(self.records) if n < self.trials]
        complete = [t for t in trials if t.status == "complete" and t.objective is not None and math.isfinite(t.objective)]
        if not complete:
            raise RuntimeError("no trial completed with a finite objective; widen or lower the ranges (lr) and retry")
        best = min(complete, key=lambda t: (t.objective, t.number))
        return TuningResult(
            best=best, trials=trials, best_params=dict(best.params), sampler=self.sampler, rungs=list(self.rungs),
            space=list(self.space), wall_time=time.perf_counter() - start,
        )
