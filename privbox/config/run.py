"""The ``run`` section: how a long run (``privbox attack``, ``privbox tune``) is shown and saved."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from ..core.errors import ConfigError
from ..core.fields import described
from .checks import choose, positive

__all__ = ["RunSection"]


@dataclass
class RunSection:
    """How a long run is shown and saved (``privbox attack``, ``privbox tune``); the CLI sets
    ``attack.snapshot_every`` and ``attack.progress`` from here."""

    snapshot_every: int = described(0, "write a PNG snapshot of the current iterate every N iterations; "
                                "0: about 20 per run (iterations // 20)")
    checkpoint_every: Optional[int] = described(None, "write a resumable checkpoint every N iterations; "
                                               "null: with every snapshot")
    progress: bool = described(True, "show a progress bar")
    device: str = described("auto", "paddle device: 'auto' (GPU when Paddle has CUDA), 'cpu', 'gpu' or 'gpu:N'")

    def __post_init__(self) -> None:
        if self.snapshot_every < 0:
            raise ConfigError(f"run.snapshot_every must be >= 0, got {self.snapshot_every}")
        positive("run", checkpoint_every=self.checkpoint_every)
        if not re.fullmatch(r"auto|cpu|gpu(:\d+)?", self.device):
            raise ConfigError(f"run.device must be 'auto', 'cpu', 'gpu' or 'gpu:N', got {self.device!r}")

    def intervals(self, iterations: int) -> tuple[int, int]:
        """(snapshot_every, checkpoint_every) for a run of ``iterations``."""
        snapshot = self.snapshot_every or max(1, iterations // 20)
        return snapshot, self.checkpoint_every or snapshot
