"""The search: successive halving (or Optuna) over trials that pause and continue through the
engine's checkpoints (ALGORITHMS.md §4.8, after E2EGI).
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

from ...core.update import ClientUpdate, Secret
from ..config import AttackConfig
from .simulation import build_model_for_update, reconstruction_mse
from .space import SearchDimension, apply_params, search_space

__all__ = ["TrialRecord", "TuningResult", "HyperparameterSearch", "successive_halving_rungs"]


class _Pause(Exception):
    """Raised from the engine callback to pause a trial at a rung (its checkpoint is written)."""


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
        from ...core.images import normalize

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
        from ...report import write_json_atomic

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
        from ..engine import GradientInversion
        from ..state import TrialState, config_fingerprint

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
