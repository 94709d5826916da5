"""The ``restarts`` orchestrator: ``config.restarts`` independent trials of the engine (seeds
``seed``, ``seed + 1``, ...), the lowest final gradient loss wins; one restart is a plain run.

The trials run inside :meth:`GradientInversion.run <privbox.attacks.engine.GradientInversion.run>`,
which checkpoints each restart separately so an interrupted run resumes to the same result.
"""

from __future__ import annotations

from typing import Any, Optional

import paddle.nn as nn

from ...core.update import ClientUpdate
from ..reconstruction import Reconstruction
from ..registries import ORCHESTRATORS
from .base import Orchestrator, SnapshotCallback

__all__ = ["Restarts"]


@ORCHESTRATORS.register(
    "restarts",
    description="independent trials (attack.restarts of them), the lowest final gradient loss wins",
)
class Restarts(Orchestrator):
    """Run the engine with its own restarts; every engine argument passes through."""

    name = "restarts"

    def run(
        self,
        model: nn.Layer,
        update: ClientUpdate,
        callback: Optional[SnapshotCallback] = None,
        checkpoint_dir: Optional[str] = None,
        checkpoint_every: int = 0,
        resume: bool = False,
        **engine_kwargs: Any,
    ) -> Reconstruction:
        return self.engine.run(model, update, callback=callback, checkpoint_dir=checkpoint_dir,
                               checkpoint_every=checkpoint_every, resume=resume, **engine_kwargs)
