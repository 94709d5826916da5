"""Checkpoints of a running attack, so an interrupted run resumes to the same result.

A checkpoint holds everything the loop's future depends on: the iterate, the optimiser's state,
the noise generator's state, the (NaN-decayed) lr, the best iterate so far and the loss trace.
It is one safetensors file written atomically; a checkpoint made with a different
configuration is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..core.update import UpdateFileError, _read_safetensors, _write_safetensors

FORMAT_STATE = "privbox.AttackState"


def config_fingerprint(config: dict[str, Any]) -> str:
    """A hash of the settings that change the optimisation path (progress/snapshot excluded)."""
    relevant = {k: v for k, v in config.items() if k not in ("progress", "snapshot_every", "iterations")}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class TrialState:
    """The resumable state of one trial (one seed) of the optimisation loop."""

    iteration: int
    x: np.ndarray
    y: Optional[np.ndarray]
    best_x: np.ndarray
    best_y: Optional[np.ndarray]
    best_loss: float
    best_iteration: int
    trace: list[float]
    lr_scale: float
    nan_restores: int
    events: list[str]
    rng_state: dict[str, Any]
    optimizer: dict[str, Any] = field(default_factory=dict)
    finished: bool = False

    def save(self, path, fingerprint: str, seed: int) -> Path:
        arrays = {"x": self.x, "best_x": self.best_x, "trace": np.asarray(self.trace, dtype=np.float64)}
        if self.y is not None:
            arrays["y"] = self.y
            arrays["best_y"] = self.best_y
        scalars = {}
        for key, value in self.optimizer.items():
            if isinstance(value, np.ndarray):
                arrays[f"opt/{key}"] = value
            elif isinstance(value, list) and value and isinstance(value[0], np.ndarray):
                for i, item in enumerate(value):
                    arrays[f"opt/{key}/{i:05d}"] = item
                scalars[f"{key}#len"] = len(value)
            else:
                scalars[key] = value
        header = {
            "iteration": self.iteration,
            "best_loss": self.best_loss,
            "best_iteration": self.best_iteration,
            "lr_scale": self.lr_scale,
            "nan_restores": self.nan_restores,
            "events": self.events,
            "rng_state": self.rng_state,
            "optimizer_scalars": scalars,
            "finished": self.finished,
            "fingerprint": fingerprint,
            "seed": seed,
        }
        return _write_safetensors(path, arrays, FORMAT_STATE, json.loads(json.dumps(header, default=_jsonable)))

    @classmethod
    def load(cls, path, fingerprint: str, seed: int) -> "TrialState":
        arrays, header = _read_safetensors(path, FORMAT_STATE)
        if header.get("fingerprint") != fingerprint or header.get("seed") != seed:
            raise UpdateFileError(
                f"{path} was written by a run with a different configuration or seed; "
                "resume with the same config, or start afresh in a new output folder"
            )
        optimizer: dict[str, Any] = {}
        for key, value in header["optimizer_scalars"].items():
            if key.endswith("#len"):
                name = key[: -len("#len")]
                optimizer[name] = [arrays[f"opt/{name}/{i:05d}"] for i in range(int(value))]
            else:
                optimizer[key] = value
        for key, value in arrays.items():
            if key.startswith("opt/") and key.count("/") == 1:
                optimizer[key[4:]] = value
        return cls(
            iteration=int(header["iteration"]),
            x=arrays["x"],
            y=arrays.get("y"),
            best_x=arrays["best_x"],
            best_y=arrays.get("best_y"),
            best_loss=float(header["best_loss"]),
            best_iteration=int(header["best_iteration"]),
            trace=arrays["trace"].tolist(),
            lr_scale=float(header["lr_scale"]),
            nan_restores=int(header["nan_restores"]),
            events=list(header["events"]),
            rng_state=header["rng_state"],
            optimizer=optimizer,
            finished=bool(header["finished"]),
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return str(value)
