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

from ..core.errors import CheckpointError, PrivboxError
from ..core.update import _read_safetensors, _write_safetensors

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
        """Read a checkpoint; a foreign, tampered or malformed one raises :class:`CheckpointError`."""
        try:
            arrays, header = _read_safetensors(path, FORMAT_STATE)
        except CheckpointError:
            raise
        except PrivboxError as exc:
            raise CheckpointError(exc.what, where=exc.where, fix=_FRESH) from None
        if header.get("fingerprint") != fingerprint or header.get("seed") != seed:
            raise CheckpointError(
                "it was written by a run with a different configuration or seed", where=str(path),
                fix="resume with the same config, or start afresh in a new output folder",
            )
        try:
            return cls._from_parts(arrays, header)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"the checkpoint is malformed ({type(exc).__name__}: {exc})", where=str(path),
                                  fix=_FRESH) from None

    @classmethod
    def _from_parts(cls, arrays: dict[str, np.ndarray], header: dict[str, Any]) -> "TrialState":
        optimizer: dict[str, Any] = {}
        for key, value in header["optimizer_scalars"].items():
            if key.endswith("#len"):
                name = key[: -len("#len")]
                optimizer[name] = [arrays[f"opt/{name}/{i:05d}"] for i in range(_count(value))]
            else:
                optimizer[key] = value
        for key, value in arrays.items():
            if key.startswith("opt/") and key.count("/") == 1:
                optimizer[key[4:]] = value
        if not isinstance(header["events"], list) or not isinstance(header["rng_state"], dict):
            raise TypeError("events must be a list and rng_state an object")
        return cls(
            iteration=_count(header["iteration"]),
            x=arrays["x"],
            y=arrays.get("y"),
            best_x=arrays["best_x"],
            best_y=arrays.get("best_y"),
            best_loss=float(header["best_loss"]),
            best_iteration=_count(header["best_iteration"]),
            trace=arrays["trace"].tolist(),
            lr_scale=float(header["lr_scale"]),
            nan_restores=_count(header["nan_restores"]),
            events=[str(e) for e in header["events"]],
            rng_state=header["rng_state"],
            optimizer=optimizer,
            finished=_flag(header["finished"]),
        )

    def check(self, x_shape: tuple[int, ...], y_shape: Optional[tuple[int, ...]], iterations: int, where: str) -> None:
        """Check the state against the run resuming it: counters within ``[0, iterations]`` and
        consistent with the loss trace, iterates of the run's shapes, optimizer arrays sized like
        the variables. Raises :class:`CheckpointError`."""
        problems = []
        if not 0 <= self.iteration <= iterations:
            problems.append(f"its iteration counter {self.iteration} is outside [0, {iterations}]")
        elif len(self.trace) != self.iteration:
            problems.append(f"its loss trace has {len(self.trace)} entries for {self.iteration} iterations")
        if not 0 <= self.best_iteration <= max(self.iteration, 0):
            problems.append(f"its best iteration {self.best_iteration} is outside [0, {self.iteration}]")
        if not (np.isfinite(self.lr_scale) and self.lr_scale > 0) or np.isnan(self.best_loss):
            problems.append(f"its lr scale {self.lr_scale} or best loss {self.best_loss} is not a valid number")
        for name, value, shape in (("x", self.x, x_shape), ("best_x", self.best_x, x_shape),
                                   ("y", self.y, y_shape), ("best_y", self.best_y, y_shape)):
            found = None if value is None else tuple(value.shape)
            if found != (None if shape is None else tuple(shape)):
                problems.append(f"tensor {name!r} has shape {found}, the run needs {shape}")
        variables = [tuple(x_shape)] + ([tuple(y_shape)] if y_shape is not None else [])
        flat = sum(int(np.prod(s)) for s in variables)
        for key, value in self.optimizer.items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, np.ndarray) and (
                        (item.ndim > 1 and tuple(item.shape) not in variables) or (item.ndim == 1 and item.size > flat)):
                    problems.append(f"optimizer array {key!r} has shape {tuple(item.shape)}, not one of the variables' "
                                    f"{variables} or {flat} values")
                    break
        if problems:
            raise CheckpointError("; ".join(problems), where=where, fix=_FRESH)

_FRESH = "it was damaged or edited; delete it (or its output folder) and start the run afresh"


def _count(value: Any) -> int:
    """A JSON integer (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return str(value)
