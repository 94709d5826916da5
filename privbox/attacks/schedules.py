"""Learning-rate schedules, closed form in the iteration index (ALGORITHMS.md §4.4-4.7).

Each schedule is ``f(t, T, lr0, **params) -> lr_t`` for ``t = 0 .. T-1``; the engine calls it every
iteration, so there is no recursive scheduler state to save when a run is resumed.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

from ..core.registry import Range, Registry

Schedule = Callable[..., float]
SCHEDULES: Registry[Schedule] = Registry("lr schedule")


@SCHEDULES.register("constant")
def constant(t: int, total: int, lr0: float) -> float:
    """lr_t = lr0."""
    return lr0


@SCHEDULES.register("cosine_e2egi", tunable={"floor": Range(1e-5, 1e-2, log=True)})
def cosine_e2egi(t: int, total: int, lr0: float, floor: float = 1e-3) -> float:
    """E2EGI cosine: 1e-3 + (lr0 − 1e-3)(1 + cos(π t/(T+10)))/2 (period T+10, never restarts)."""
    return floor + (lr0 - floor) * (1.0 + math.cos(math.pi * t / (total + 10))) / 2.0


@SCHEDULES.register("cosine", tunable={"end": Range(0.0, 1e-2)})
def cosine(t: int, total: int, lr0: float, end: float = 0.0) -> float:
    """Cosine from lr0 at t = 0 to ``end`` at t = T (used for the MLCO phases)."""
    return end + (lr0 - end) * (1.0 + math.cos(math.pi * t / max(total, 1))) / 2.0


@SCHEDULES.register("step_ig")
def step_ig(t: int, total: int, lr0: float) -> float:
    """Inverting Gradients: ×0.1 at 3/8, 5/8 and 7/8 of T (Geiping et al., NeurIPS 2020)."""
    milestones = (total * 3 / 8, total * 5 / 8, total * 7 / 8)
    return lr0 * 0.1 ** sum(t >= m for m in milestones)


@SCHEDULES.register("warmup_cosine", tunable={"warmup": Range(0, 1000, integer=True)})
def warmup_cosine(t: int, total: int, lr0: float, warmup: int = 100) -> float:
    """NVIDIA FL inversion: lr·(t+1)/warmup during warm-up, then a cosine to 0."""
    if t < warmup:
        return lr0 * (t + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (t - warmup) / max(total - warmup, 1))) * lr0


@SCHEDULES.register("window")
def window(t: int, total: int, lr0: float, base: str = "constant", offset: int = 0, length: int = 0,
           base_params: Optional[dict[str, Any]] = None) -> float:
    """The lr of schedule ``base`` at iteration ``t + offset`` of a ``length``-iteration run.

    Lets a run split into segments (group-consistency rounds) follow one global schedule.
    """
    return SCHEDULES.get(base)(t + offset, length or total, lr0, **(base_params or {}))
