"""Seed groups: greedy per-sample seed combination and GradInversion-style group consistency.

Two attacks optimise several random initialisations ("seeds") of the same dummy batch and fuse
them:

* :func:`combine` — E2EGI's greedy per-sample combination (Li et al., E2EGI repository; used by
  MLCO, :mod:`privbox.attacks.mlco`): start from the seed with the lowest gradient loss and, per
  sample position, keep the seed whose sample lowers the gradient loss of the *mixed* batch
  (ALGORITHMS.md §4.6.3).
* :func:`run_group_consistency` — the group-consistency prior of Yin et al., "See Through
  Gradients: Image Batch Recovery via GradInversion" (CVPR 2021): S seeds are pulled towards a
  consensus image that is refreshed every ``refresh_every`` iterations (ALGORITHMS.md §3.5,
  §4.5). The paper registers the seeds with RANSAC-flow before averaging; that code was never
  released (breaching leaves the term unimplemented), so privbox averages without registration
  and calls the attack "GradInversion-style".

Both reuse :class:`~privbox.attacks.engine.GradientInversion` for every optimisation segment;
nothing here re-implements the optimisation loop.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
from pathlib import Path
import paddle.nn as nn

from ...core.images import denormalize
from ...core.fields import described
from ...core.registry import Range
from ...core.update import ClientUpdate
from ..config import AttackConfig, ConfigError
from ..engine import GradientInversion, IterationInfo
from ..presets import gradinversion
from ..reconstruction import Reconstruction
from ..registries import ORCHESTRATORS
from .base import Orchestrator, SnapshotCallback

DistanceFn = Callable[[np.ndarray], float]
#: Called with (phase or round name, seed index, the engine's snapshot) every
#: ``config.snapshot_every`` iterations of every segment.
SeedCallback = Callable[[str, int, IterationInfo], None]
CONSENSUS_KINDS = ("mean", "min_loss_combination")


# --------------------------------------------------------------------------- combine
@dataclass
class Combination:
    """The result of :func:`combine`.

    Attributes:
        images: the combined batch (model space), ``[B, C, H, W]``.
        choice: per sample position, the index of the seed its sample comes from.
        start_seed: argmin_s D(x_s), the seed the combination starts from.
        seed_losses: D(x_s) of each whole seed batch.
        loss: D of the combined batch (≤ ``min(seed_losses)``).
        evaluations: number of gradient-distance evaluations.
    """

    images: np.ndarray
    choice: list[int]
    start_seed: int
    seed_losses: list[float]
    loss: float
    evaluations: int

    def summary(self) -> dict[str, Any]:
        return {"choice": list(self.choice), "start_seed": self.start_seed, "seed_losses": list(self.seed_losses),
                "loss": self.loss, "evaluations": self.evaluations}


def combine(seeds: Sequence[np.ndarray] | np.ndarray, distance: DistanceFn) -> Combination:
    """Greedy per-sample seed combination (E2EGI's MLCO ``combine``; ALGORITHMS.md §4.6.3).

    ``x ← x_{s0}`` with ``s0 = argmin_s D(x_s)``; then for each position ``i`` and seed ``s``,
    sample ``i`` is replaced by ``x_s[i]`` when that lowers D of the mixed batch. D is the
    gradient distance alone (no regularizers), evaluated on the whole batch because train-mode
    BatchNorm couples the samples. Costs S + B·(S − 1) evaluations (≈ B·S + 1 in the paper's
    count, which reuses the seed losses).

    Args:
        seeds: S candidate batches, ``[S, B, C, H, W]`` (model space).
        distance: ``images -> D`` (e.g. :meth:`GradientInversion.gradient_distance`).
    """
    stack = np.asarray(seeds, dtype=np.float32)
    if stack.ndim < 2 or stack.shape[0] < 1:
        raise ValueError(f"combine needs seeds shaped [S, B, ...], got {stack.shape}")
    seed_losses = [float(distance(stack[s])) for s in range(stack.shape[0])]
    evaluations = len(seed_losses)
    finite = [v if math.isfinite(v) else math.inf for v in seed_losses]
    start = int(np.argmin(finite))
    x = stack[start].copy()
    best = finite[start]
    choice = []
    for i in range(x.shape[0]):
        chosen = start
        for s in range(stack.shape[0]):
            if s == start:  # x[i] is still x_start[i]: the batch is unchanged
                continue
            candidate = x.copy()
            candidate[i] = stack[s, i]
            d = float(distance(candidate))
            evaluations += 1
            if d < best:
                best, chosen = d, s
        x[i] = stack[chosen, i]
        choice.append(chosen)
    return Combination(images=x, choice=choice, start_seed=start, seed_losses=seed_losses, loss=best, evaluations=evaluations)


# ------------------------------------------------------------------ shared helpers
def _check_seed_config(config: AttackConfig, num_seeds: int, who: str) -> None:
    if num_seeds < 1:
        raise ConfigError(f"{who}: num_seeds must be >= 1, got {num_seeds}")
    if config.restarts != 1:
        raise ConfigError(f"{who} runs num_seeds seeds instead of restarts; set restarts=1 (got {config.restarts})")
    if config.label_strategy == "joint":
        raise ConfigError(f"{who} needs fixed labels ('given' or 'recover'); the 'joint' strategy optimises them per seed")


def _without_group(regularizers: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in regularizers.items() if k != "group"}


def _segment_seed(base: int, segment: int, seed_index: int, num_seeds: int) -> int:
    """A distinct engine seed per (segment, seed index): segment 0 initialises seed s from ``base + s``."""
    return base + segment * num_seeds + seed_index


class _SeedRunner:
    """Runs engine segments for a fixed model, update and label set (shared by MLCO and groups)."""

    def __init__(self, model: nn.Layer, update: ClientUpdate, config: AttackConfig, callback: Optional[SeedCallback],
                 checkpoint_dir: Optional[str] = None, checkpoint_every: int = 0, resume: bool = False) -> None:
        if resume and not checkpoint_dir:
            raise ConfigError("resume=True needs the checkpoint_dir of the interrupted run")
        self.checkpoint_dir, self.checkpoint_every, self.resume = checkpoint_dir, checkpoint_every, resume
        attack = GradientInversion(config)
        attack.prepare_model(model, update)  # names every missing capability before any work
        self.labels, self.label_method, self.label_order = attack.resolve_labels(update)
        self.model, self.update, self.callback = model, update, callback
        self.distance = attack.gradient_distance(model, update, self.labels)

    def run(self, config: AttackConfig, name: str, seed_index: int, init: Optional[np.ndarray],
            context: Optional[dict] = None, offset: int = 0) -> Reconstruction:
        """One engine segment; with a checkpoint folder, segment ``name`` of seed ``seed_index``
        checkpoints into its own subfolder and, on resume, continues (or returns) from it."""
        hook = None
        if self.callback is not None:
            user = self.callback

            def hook(info: IterationInfo) -> None:
                user(name, seed_index, dataclasses.replace(info, iteration=info.iteration + offset))

        folder = None
        if self.checkpoint_dir is not None:
            folder = str(Path(self.checkpoint_dir) / name.replace(" ", "_") / f"seed{seed_index}")
        return GradientInversion(config).run(
            self.model, self.update, callback=hook, init_images=init, labels=self.labels, context=context,
            checkpoint_dir=folder, checkpoint_every=self.checkpoint_every if folder else 0, resume=self.resume,
        )

    def finish(self, recon: Reconstruction, **changes: Any) -> Reconstruction:
        """Give an orchestrated result the label provenance of the configured strategy."""
        return dataclasses.replace(recon, label_method=self.label_method, label_order=self.label_order, **changes)


# ------------------------------------------------------------- group consistency
@dataclass
class GroupResult:
    """The result of :func:`run_group_consistency`.

    Attributes:
        reconstruction: the best seed's reconstruction (lowest gradient loss over all rounds);
            ``loss_trace`` spans all rounds of that seed.
        consensus: the last consensus image batch (model space); ``consensus_pixels`` in [0, 1].
        best_seed: index of the returned seed.
        seed_images: every seed's batch after the last round, ``[S, B, C, H, W]`` (model space).
        seed_losses: per round, the best gradient loss of each seed.
        combinations: per refresh, the :class:`Combination` (``min_loss_combination`` only).
        consensus_kind, refresh_every, group_weight, num_seeds: the settings used.
    """

    reconstruction: Reconstruction
    consensus: np.ndarray
    consensus_pixels: np.ndarray
    best_seed: int
    seed_images: np.ndarray
    seed_losses: list[list[float]]
    combinations: list[Combination] = field(default_factory=list)
    consensus_kind: str = "mean"
    refresh_every: int = 1000
    group_weight: float = 0.01
    num_seeds: int = 4

    def summary(self) -> dict[str, Any]:
        return {
            **self.reconstruction.summary(),
            "best_seed": self.best_seed,
            "num_seeds": self.num_seeds,
            "consensus": self.consensus_kind,
            "refresh_every": self.refresh_every,
            "group_weight": self.group_weight,
            "seed_losses": self.seed_losses,
            "combinations": [c.summary() for c in self.combinations],
        }


def run_group_consistency(
    model: nn.Layer,
    update: ClientUpdate,
    config: Optional[AttackConfig] = None,
    num_seeds: int = 4,
    group_weight: float = 0.01,
    refresh_every: int = 1000,
    consensus: str = "mean",
    callback: Optional[SeedCallback] = None,
    checkpoint_dir: Optional[str] = None,
    checkpoint_every: int = 0,
    resume: bool = False,
) -> GroupResult:
    """GradInversion-style batch recovery with group consistency (Yin et al., CVPR 2021).

    ``num_seeds`` seeds (engine seeds ``config.seed + s``) are optimised with ``config``
    (default :func:`~privbox.attacks.presets.gradinversion`) in rounds of ``refresh_every``
    iterations. After each round the consensus x̄ is refreshed — ``"mean"``: the pixel mean of
    the seeds (no RANSAC-flow registration, which was never released); ``"min_loss_combination"``:
    E2EGI's greedy :func:`combine` — and the next round adds α_G·mean((x̂_s − x̄)²) with
    α_G = ``group_weight`` (ALGORITHMS.md §3.5). Round 0 runs without the term (there is no
    consensus of random images worth pulling towards). The lr follows ``config``'s schedule over
    the whole budget; Adam's moments restart each round, and each seed continues from its best
    iterate of the previous round.

    Returns:
        :class:`GroupResult` with the lowest-loss seed's reconstruction and the consensus.
    """
    config = config if config is not None else gradinversion()
    _check_seed_config(config, num_seeds, "group consistency")
    if consensus not in CONSENSUS_KINDS:
        raise ConfigError(f"consensus must be one of {list(CONSENSUS_KINDS)}, got {consensus!r}")
    if refresh_every < 1:
        raise ConfigError(f"refresh_every must be >= 1, got {refresh_every}")
    runner = _SeedRunner(model, update, config, callback, checkpoint_dir, checkpoint_every, resume)
    total = config.iterations
    rounds = math.ceil(total / refresh_every)
    base_regs = _without_group(config.regularizers)
    start = time.perf_counter()
    current: list[Optional[np.ndarray]] = [None] * num_seeds
    history: list[list[Reconstruction]] = [[] for _ in range(num_seeds)]
    seed_losses: list[list[float]] = []
    combinations: list[Combination] = []
    context: dict[str, Any] = {}
    for r in range(rounds):
        offset = r * refresh_every
        length = min(refresh_every, total - offset)
        regs = dict(base_regs, group=group_weight) if r > 0 and group_weight else base_regs
        losses = []
        for s in range(num_seeds):
            segment = config.replace(
                iterations=length,
                regularizers=regs,
                schedule="window",
                schedule_params={"base": config.schedule, "offset": offset, "length": total,
                                 "base_params": dict(config.schedule_params)},
                seed=_segment_seed(config.seed, r, s, num_seeds),
            )
            recon = runner.run(segment, f"round {r}", s, current[s], context, offset)
            current[s] = recon.images
            history[s].append(recon)
            losses.append(recon.best_loss)
        seed_losses.append(losses)
        stack = np.stack(current)
        if consensus == "mean":
            context["group_consensus"] = stack.mean(axis=0)
        else:
            combination = combine(stack, runner.distance)
            combinations.append(combination)
            context["group_consensus"] = combination.images
    wall = time.perf_counter() - start

    def best_of(runs: list[Reconstruction]) -> Reconstruction:
        return min(runs, key=lambda rec: rec.best_loss) if config.return_best else runs[-1]

    finals = [best_of(runs) for runs in history]
    best_seed = int(np.argmin([rec.best_loss for rec in finals]))
    chosen = finals[best_seed]
    runs = history[best_seed]
    trace = [v for rec in runs for v in rec.loss_trace]
    best_round = next(i for i, rec in enumerate(runs) if rec is chosen)
    recon = runner.finish(
        chosen,
        loss_trace=trace,
        best_iteration=sum(len(rec.loss_trace) for rec in runs[:best_round]) + chosen.best_iteration,
        iterations=sum(rec.iterations for rec in runs),
        wall_time=wall,
        attack="gradinversion_group",
        seed=config.seed + best_seed,
        config={**config.to_dict(), "group": {"num_seeds": num_seeds, "group_weight": group_weight,
                                              "refresh_every": refresh_every, "consensus": consensus}},
        events=[e for rec in runs for e in rec.events] + [f"group consistency: seed {best_seed} of {num_seeds} returned"],
    )
    final_consensus = np.asarray(context["group_consensus"], dtype=np.float32)
    meta = update.meta
    return GroupResult(
        reconstruction=recon,
        consensus=final_consensus,
        consensus_pixels=denormalize(final_consensus, meta.mean, meta.std),
        best_seed=best_seed,
        seed_images=np.stack(current).astype(np.float32),
        seed_losses=seed_losses,
        combinations=combinations,
        consensus_kind=consensus,
        refresh_every=refresh_every,
        group_weight=group_weight,
        num_seeds=num_seeds,
    )


@dataclass
class GroupOptions:
    """Options of the ``group`` orchestrator (``attack.orchestrator_params``)."""

    num_seeds: int = described(4, "S, the number of seeds (breaching's See-Through-Gradients: 4)")
    group_weight: float = described(0.01, "alpha_G, weight of the group-consistency term")
    refresh_every: int = described(1000, "iterations between consensus refreshes")
    consensus: str = described("mean", "'mean' (pixel mean of the seeds) or 'min_loss_combination' "
                                       "(E2EGI's greedy combination)", CONSENSUS_KINDS)

    def __post_init__(self) -> None:
        if self.num_seeds < 1 or self.refresh_every < 1:
            raise ConfigError(f"orchestrator_params.num_seeds and refresh_every must be >= 1, got "
                              f"{self.num_seeds} and {self.refresh_every}")
        if self.consensus not in CONSENSUS_KINDS:
            raise ConfigError(f"orchestrator_params.consensus must be one of {list(CONSENSUS_KINDS)}, got {self.consensus!r}")
        if self.group_weight < 0:
            raise ConfigError(f"orchestrator_params.group_weight must be >= 0, got {self.group_weight}")


@ORCHESTRATORS.register(
    "group",
    description="GradInversion-style group consistency: S seeds pulled towards a refreshed consensus (Yin et al.)",
    tunable={"group_weight": Range(1e-4, 1.0, log=True), "num_seeds": Range(1, 16, integer=True)},
)
class Group(Orchestrator):
    """The ``group`` orchestrator: :func:`run_group_consistency` with the attack config.

    The returned :class:`Reconstruction` is the best seed's; ``config["group"]`` records the
    options and the per-round seed losses.
    """

    Options = GroupOptions
    engines = ("gradient",)
    name = "group"

    def run(self, model: nn.Layer, update: ClientUpdate, callback: Optional[SnapshotCallback] = None,
            checkpoint_dir: Optional[str] = None, checkpoint_every: int = 0, resume: bool = False,
            **engine_kwargs: Any) -> Reconstruction:
        self._no_engine_kwargs(engine_kwargs)
        result = run_group_consistency(model, update, self.config, callback=self.seed_callback(callback),
                                       checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                                       resume=resume, **self.options_dict())
        recon = result.reconstruction
        record = dict(recon.config.get("group", {}), seed_losses=result.seed_losses, best_seed=result.best_seed)
        return dataclasses.replace(recon, config={**recon.config, "group": record})
