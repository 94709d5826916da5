"""The result of an attack."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..core.update import _read_safetensors, _write_safetensors
from ..core.validate import check_reconstruction_parts

FORMAT_RECONSTRUCTION = "privbox.Reconstruction"


@dataclass
class Reconstruction:
    """What an attack returns.

    Attributes:
        images: reconstructed batch in model input space (normalised), ``[B, C, H, W]``.
        pixels: the same de-normalised and clamped to [0, 1] (what metrics compare).
        labels: recovered labels ``[B]`` (for ``label_order == "unordered"`` a multiset).
        label_order: ``"sample"`` when labels/images follow the client's sample order (labels
            given in order), ``"unordered"`` otherwise (joint or recovered labels); it decides
            the honest matching for metrics.
        loss_trace: gradient loss per iteration.
        best_iteration / best_loss: the iterate returned, chosen by gradient loss.
        seed, iterations, wall_time: reproducibility and cost.
        attack: preset name; config: the full config used.
        label_method: how labels were obtained.
        events: notable events (NaN recoveries, early stop).
    """

    images: np.ndarray
    pixels: np.ndarray
    labels: np.ndarray
    label_order: str
    loss_trace: list[float]
    best_iteration: int
    best_loss: float
    seed: int
    iterations: int
    wall_time: float
    attack: str
    config: dict[str, Any] = field(default_factory=dict)
    label_method: str = ""
    events: list[str] = field(default_factory=list)

    @property
    def default_matching(self) -> str:
        """``index`` when the sample order is known, else ``hungarian``."""
        return "index" if self.label_order == "sample" else "hungarian"

    def summary(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "iterations": self.iterations,
            "best_iteration": self.best_iteration,
            "best_loss": self.best_loss,
            "wall_time_s": round(self.wall_time, 3),
            "seed": self.seed,
            "labels": self.labels.tolist(),
            "label_method": self.label_method,
            "label_order": self.label_order,
            "events": list(self.events),
        }

    def save(self, path) -> Path:
        """Write images, pixels, labels and the loss trace to one safetensors file."""
        header = {k: v for k, v in self.__dict__.items() if k not in ("images", "pixels", "labels", "loss_trace")}
        return _write_safetensors(
            path,
            {
                "images": self.images.astype(np.float32),
                "pixels": self.pixels.astype(np.float32),
                "labels": self.labels.astype(np.int64),
                "loss_trace": np.asarray(self.loss_trace, dtype=np.float64),
            },
            FORMAT_RECONSTRUCTION,
            json.loads(json.dumps(header, default=str)),
        )

    @classmethod
    def load(cls, path) -> "Reconstruction":
        tensors, header = _read_safetensors(path, FORMAT_RECONSTRUCTION)
        check_reconstruction_parts(tensors, header, {f.name: f.type for f in fields(cls)}, str(path))
        return cls(
            images=tensors["images"],
            pixels=tensors["pixels"],
            labels=tensors["labels"],
            loss_trace=tensors["loss_trace"].tolist(),
            **header,
        )
