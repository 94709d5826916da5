"""The registries an attack is assembled from (DESIGN.md "attacks/").

* :data:`ATTACKS`: named presets. The item is a function returning the preset's
  :class:`~privbox.attacks.config.AttackConfig`; the entry declares, beside its description, which
  engine and orchestrator run it (``engine``, ``orchestrator`` extras) and what it requires from
  the update (capability names of :class:`~privbox.core.update.ThreatModel`).
* :data:`ENGINES`: the optimisation engines (observation models): ``gradient`` (FedSGD gradient
  matching, :class:`~privbox.attacks.engine.GradientInversion`) and ``fedavg`` (unrolled local
  SGD, :class:`~privbox.attacks.fedavg.FedAvgInversion`). An entry's ``default_for`` extra names
  the update kind it is chosen for when a config says ``engine: auto``.
* :data:`ORCHESTRATORS`: how runs of an engine are combined into one result: ``restarts``,
  ``group`` (GradInversion's group consistency), ``mlco`` (E2EGI's multi-seed MLCO).

This module imports nothing but the registry machinery, so a config can validate names against
it without an import cycle; the entries are added by the modules that define them.
"""

from __future__ import annotations

from typing import Any

from ..core.registry import Registry

__all__ = ["ATTACKS", "ENGINES", "ORCHESTRATORS"]

ATTACKS: Registry[Any] = Registry("attack preset")
ENGINES: Registry[Any] = Registry("attack engine")
ORCHESTRATORS: Registry[Any] = Registry("attack orchestrator")
