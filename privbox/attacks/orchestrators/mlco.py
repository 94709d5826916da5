"""E2EGI's multi-seed MLCO optimisation (Li et al., "E2EGI: End-to-End Gradient Inversion in
Federated Learning"; E2EGI repository), ALGORITHMS.md §4.6.2-4.6.4.

MLCO runs ``S`` seeds of the E2EGI update rule in three phases and fuses them with the greedy
per-sample :func:`~privbox.attacks.group.combine`:

1. *init*: each seed runs ⌈0.3T⌉ iterations with the preset's regularizers (TV, BN, image norm);
   x_grp ← combine(seeds).
2. *inner* rounds, ⌈0.3T/T_in⌉ of them: each seed continues from its own best iterate for T_in
   iterations with the group term α_G·mean((x̂_s − x_grp)²) added; x_grp ← combine(seeds).
3. *final*: one run of ⌈0.4T⌉ iterations from x_grp, without the group term and with κ := 0.

The lr range [lr0, floor] is split linearly over the phases by their length (:func:`mlco_plan`)
and each phase runs its own cosine between its endpoints. Every phase is a run of the shared
:class:`~privbox.attacks.engine.GradientInversion` engine.

**Deviation (documented):** the E2EGI code starts phase 3 from the group that was current
*during* the last inner round, i.e. one combination stale. privbox starts from the fresh group by
default (``final_start="fresh"``); ``final_start="stale"`` reproduces the code, and the choice is
recorded in the result.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import paddle.nn as nn

from ...core.fields import described
from ...core.registry import Range
from ...core.update import ClientUpdate
from ..config import AttackConfig, ConfigError
from .group import Combination, SeedCallback, _check_seed_config, _SeedRunner, _segment_seed, _without_group, combine
from ..presets import e2egi
from ..reconstruction import Reconstruction
from ..registries import ORCHESTRATORS
from .base import Orchestrator, SnapshotCallback

FINAL_STARTS = ("fresh", "stale")


@dataclass(frozen=True)
class MLCOPhase:
    """One phase of the MLCO plan: ``iterations`` per seed, lr cosine from ``lr_start`` to ``lr_end``."""

    name: str
    iterations: int
    lr_start: float
    lr_end: float


def mlco_plan(iterations: int, lr0: float, inner_iterations: int = 1000, floor: float = 1e-3) -> list[MLCOPhase]:
    """The MLCO phase lengths and lr endpoints for a budget T (ALGORITHMS.md §4.6.2).

    T_init = ⌈0.3T⌉, n_in = ⌈0.3T/T_in⌉ rounds of T_in, T_end = ⌈0.4T⌉ (integer arithmetic, no
    float rounding); T_total = T_init + n_in·T_in + T_end. The lr falls linearly from ``lr0`` to
    ``floor`` over T_total, and a phase covering iterations [a, b) goes from lr(a) to lr(b).
    For T = 24 000 and lr0 = 0.1046: 7200 + 8×1000 + 9600 = 24 800; init 0.1046 → 0.07452, each
    inner round −0.0041774, 0.04110 after 8 rounds, final 0.04110 → 0.001.
    """
    if iterations < 1 or inner_iterations < 1:
        raise ConfigError(f"iterations and inner_iterations must be >= 1, got {iterations} and {inner_iterations}")
    t_init = (3 * iterations + 9) // 10
    n_inner = (3 * iterations + 10 * inner_iterations - 1) // (10 * inner_iterations)
    t_end = (4 * iterations + 9) // 10
    lengths = [("init", t_init)] + [(f"inner {k + 1}", inner_iterations) for k in range(n_inner)] + [("final", t_end)]
    total = sum(n for _, n in lengths)
    phases, done = [], 0
    for name, n in lengths:
        start = lr0 - (lr0 - floor) * done / total
        done += n
        end = floor if done == total else lr0 - (lr0 - floor) * done / total
        phases.append(MLCOPhase(name, n, start, end))
    return phases


@dataclass
class MLCOPhaseRecord:
    """What happened in one MLCO phase.

    Attributes:
        name: ``"init"``, ``"inner k"`` or ``"final"``.
        iterations, lr_start, lr_end: the plan of the phase (per seed).
        seed_losses: the best gradient loss each seed reached (one entry in the final phase).
        combination: the seed combination after the phase (``None`` for the final phase).
        wall_time: seconds.
    """

    name: str
    iterations: int
    lr_start: float
    lr_end: float
    seed_losses: list[float]
    combination: Optional[Combination] = None
    wall_time: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "iterations": self.iterations,
            "lr": [self.lr_start, self.lr_end],
            "seed_losses": list(self.seed_losses),
            "combination": self.combination.summary() if self.combination else None,
            "wall_time_s": round(self.wall_time, 3),
        }


@dataclass
class MLCOResult:
    """The result of :func:`run_mlco`.

    Attributes:
        reconstruction: the final phase's reconstruction (its ``loss_trace`` and
            ``best_iteration`` refer to the final phase; ``iterations`` counts every
            double-backprop iteration of all seeds and phases).
        phases: one :class:`MLCOPhaseRecord` per phase, in order.
        group: x_grp, the batch the final phase started from (model space).
        final_start: ``"fresh"`` or ``"stale"``.
        num_seeds, group_weight, inner_iterations: the settings used.
    """

    reconstruction: Reconstruction
    phases: list[MLCOPhaseRecord]
    group: np.ndarray
    final_start: str
    num_seeds: int
    group_weight: float
    inner_iterations: int
    total_iterations: int = 0
    events: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            **self.reconstruction.summary(),
            "final_start": self.final_start,
            "num_seeds": self.num_seeds,
            "group_weight": self.group_weight,
            "inner_iterations": self.inner_iterations,
            "total_iterations": self.total_iterations,
            "phases": [p.summary() for p in self.phases],
        }


def run_mlco(
    model: nn.Layer,
    update: ClientUpdate,
    config: Optional[AttackConfig] = None,
    num_seeds: int = 8,
    inner_iterations: int = 1000,
    group_weight: float = 0.01,
    final_start: str = "fresh",
    callback: Optional[SeedCallback] = None,
    checkpoint_dir: Optional[str] = None,
    checkpoint_every: int = 0,
    resume: bool = False,
) -> MLCOResult:
    """E2EGI's MLCO multi-seed optimisation (Li et al., E2EGI; ALGORITHMS.md §4.6.2).

    Args:
        model: the victim architecture.
        update: the observed client update.
        config: the per-seed update rule, default :func:`~privbox.attacks.presets.e2egi`;
            ``config.iterations`` is T, ``config.lr`` is lr0, the floor is
            ``schedule_params["floor"]`` (1e-3). Its ``schedule`` is replaced by each phase's
            cosine; its labels must be fixed (``given`` or ``recover``); ``restarts`` must be 1.
        num_seeds: S; seed s is initialised by the engine with seed ``config.seed + s`` and every
            later segment gets its own noise seed.
        inner_iterations: T_in.
        group_weight: α_G of the group term in the inner rounds.
        final_start: ``"fresh"`` (privbox default: the group after the last combination) or
            ``"stale"`` (the E2EGI code: the group used during the last inner round).
        callback: ``(phase, seed, IterationInfo)`` every ``config.snapshot_every`` iterations.
        checkpoint_dir / checkpoint_every / resume: every (phase, seed) segment checkpoints into
            ``checkpoint_dir/<phase>/seed<s>``; with ``resume`` finished segments are read back and
            the interrupted one continues, so the result equals an uninterrupted run's.

    Returns:
        :class:`MLCOResult`: the final reconstruction and per-phase records.
    """
    config = config if config is not None else e2egi()
    _check_seed_config(config, num_seeds, "MLCO")
    if final_start not in FINAL_STARTS:
        raise ConfigError(f"final_start must be one of {list(FINAL_STARTS)}, got {final_start!r}")
    floor = float(config.schedule_params.get("floor", 1e-3))
    plan = mlco_plan(config.iterations, config.lr, inner_iterations, floor)
    runner = _SeedRunner(model, update, config, callback, checkpoint_dir, checkpoint_every, resume)
    base_regs = _without_group(config.regularizers)
    start = time.perf_counter()
    seeds: list[Optional[np.ndarray]] = [None] * num_seeds
    records: list[MLCOPhaseRecord] = []
    group: Optional[np.ndarray] = None
    previous_group: Optional[np.ndarray] = None
    spent = 0

    def phase_config(index: int, phase: MLCOPhase, seed: int, **changes: Any) -> AttackConfig:
        return config.replace(
            name=f"{config.name}_mlco",
            iterations=phase.iterations,
            lr=phase.lr_start,
            schedule="cosine",
            schedule_params={"end": phase.lr_end},
            seed=_segment_seed(config.seed, index, seed, num_seeds),
            **changes,
        )

    for index, phase in enumerate(plan[:-1]):
        tic = time.perf_counter()
        inner = index > 0
        regs = dict(base_regs, group=group_weight) if inner and group_weight else base_regs
        context = {"group_consensus": group} if inner else {}
        losses = []
        for s in range(num_seeds):
            recon = runner.run(phase_config(index, phase, s, regularizers=regs), phase.name, s, seeds[s], context)
            seeds[s] = recon.images
            losses.append(recon.best_loss)
            spent += recon.iterations
        combination = combine(np.stack(seeds), runner.distance)
        previous_group, group = group, combination.images
        records.append(MLCOPhaseRecord(phase.name, phase.iterations, phase.lr_start, phase.lr_end, losses,
                                       combination, time.perf_counter() - tic))

    assert group is not None
    stale = final_start == "stale" and previous_group is not None
    x_start = previous_group if stale else group
    final = plan[-1]
    tic = time.perf_counter()
    last = runner.run(phase_config(len(plan) - 1, final, 0, regularizers=base_regs, noise=0.0), final.name, 0, x_start)
    spent += last.iterations
    records.append(MLCOPhaseRecord(final.name, final.iterations, final.lr_start, final.lr_end, [last.best_loss],
                                   None, time.perf_counter() - tic))
    events = [f"MLCO: {num_seeds} seeds, {len(plan) - 2} inner rounds of {inner_iterations}, "
              f"final phase from the {'stale' if stale else 'fresh'} group"]
    if final_start == "stale" and not stale:
        events.append("final_start='stale' has no earlier group (no inner round); started from the fresh group")
    recon = runner.finish(
        last,
        iterations=spent,
        wall_time=time.perf_counter() - start,
        attack="e2egi_mlco",
        seed=config.seed,
        config={**config.to_dict(), "mlco": {"num_seeds": num_seeds, "inner_iterations": inner_iterations,
                                             "group_weight": group_weight, "final_start": final_start,
                                             "plan": [dataclasses.asdict(p) for p in plan]}},
        events=last.events + events,
    )
    return MLCOResult(
        reconstruction=recon,
        phases=records,
        group=np.asarray(x_start, dtype=np.float32),
        final_start="stale" if stale else "fresh",
        num_seeds=num_seeds,
        group_weight=group_weight,
        inner_iterations=inner_iterations,
        total_iterations=spent,
        events=events,
    )


@dataclass
class MLCOOptions:
    """Options of the ``mlco`` orchestrator (``attack.orchestrator_params``)."""

    num_seeds: int = described(8, "S, the number of seeds (E2EGI's MLCO: 8)")
    inner_iterations: int = described(1000, "T_in, iterations of each inner round (E2EGI: 1000)")
    group_weight: float = described(0.01, "alpha_G, weight of the group term in the inner rounds")
    final_start: str = described("fresh", "'fresh' (the group after the last combination) or 'stale' "
                                          "(the E2EGI code's group)", FINAL_STARTS)

    def __post_init__(self) -> None:
        if self.num_seeds < 1 or self.inner_iterations < 1:
            raise ConfigError(f"orchestrator_params.num_seeds and inner_iterations must be >= 1, got "
                              f"{self.num_seeds} and {self.inner_iterations}")
        if self.final_start not in FINAL_STARTS:
            raise ConfigError(f"orchestrator_params.final_start must be one of {list(FINAL_STARTS)}, got {self.final_start!r}")
        if self.group_weight < 0:
            raise ConfigError(f"orchestrator_params.group_weight must be >= 0, got {self.group_weight}")


@ORCHESTRATORS.register(
    "mlco",
    description="E2EGI's multi-seed MLCO: init phase, inner rounds with the group term, final phase (Li et al.)",
    tunable={"group_weight": Range(1e-4, 1.0, log=True), "num_seeds": Range(1, 16, integer=True)},
)
class MLCO(Orchestrator):
    """The ``mlco`` orchestrator: :func:`run_mlco` with the attack config as the per-seed rule.

    The returned :class:`Reconstruction` is the final phase's; its ``config["mlco"]`` records
    the plan, the options and one summary per phase.
    """

    Options = MLCOOptions
    engines = ("gradient",)
    name = "mlco"

    def run(self, model: nn.Layer, update: ClientUpdate, callback: Optional[SnapshotCallback] = None,
            checkpoint_dir: Optional[str] = None, checkpoint_every: int = 0, resume: bool = False,
            **engine_kwargs: Any) -> Reconstruction:
        self._no_engine_kwargs(engine_kwargs)
        result = run_mlco(model, update, self.config, callback=self.seed_callback(callback),
                          checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume,
                          **self.options_dict())
        recon = result.reconstruction
        record = dict(recon.config.get("mlco", {}), phases=[p.summary() for p in result.phases])
        return dataclasses.replace(recon, config={**recon.config, "mlco": record}, events=recon.events + result.events)
