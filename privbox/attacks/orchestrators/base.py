"""What every orchestrator shares: typed options read from ``AttackConfig.orchestrator_params``,
the engines it can drive, and ``run(model, update, ...) -> Reconstruction``.

An orchestrator combines runs of one engine into one result: independent restarts, the seed
group of GradInversion's group consistency, or E2EGI's MLCO phases (DESIGN.md "One optimisation
engine ... MLCO and restarts orchestrate runs of that loop"). It is registered in
:data:`privbox.attacks.ORCHESTRATORS` and chosen by ``AttackConfig.orchestrator``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Optional

import paddle.nn as nn

from ...core.errors import ConfigError
from ...core.fields import from_mapping
from ...core.update import ClientUpdate
from ..config import AttackConfig
from ..engine import IterationInfo
from ..reconstruction import Reconstruction

__all__ = ["Orchestrator", "NoOptions", "SnapshotCallback"]

SnapshotCallback = Callable[[IterationInfo], None]


@dataclass
class NoOptions:
    """An orchestrator without options."""


class Orchestrator:
    """Base class. Subclasses set :attr:`Options` (a dataclass) and :attr:`engines`, and
    implement :meth:`run`.

    Args:
        engine: the engine instance built from the attack config (``engine.config`` is it).
        options: an :attr:`Options` instance (see :meth:`parse_options`).
    """

    Options: type = NoOptions
    #: engine names (``privbox.attacks.ENGINES``) this orchestrator can drive; empty: any.
    engines: tuple[str, ...] = ()
    #: the registered name, set by :meth:`parse_options`' callers for messages.
    name: str = "orchestrator"

    def __init__(self, engine: Any, options: Any = None) -> None:
        self.engine = engine
        self.config: AttackConfig = engine.config
        self.options = options if options is not None else self.parse_options(self.config.orchestrator_params)

    @classmethod
    def parse_options(cls, params: Optional[dict[str, Any]]) -> Any:
        """The typed options from plain data; unknown keys and wrong types raise a
        :class:`ConfigError` naming ``orchestrator_params.<key>``."""
        return from_mapping(cls.Options, params or {}, "orchestrator_params")

    def options_dict(self) -> dict[str, Any]:
        """The options as plain data (recorded in results)."""
        return dataclasses.asdict(self.options)

    def check(self, engine_name: str) -> None:
        """Refuse an engine or config this orchestrator cannot run (before any work)."""
        if self.engines and engine_name not in self.engines:
            raise ConfigError(
                f"orchestrator {self.name!r} drives the {' or '.join(repr(e) for e in self.engines)} engine, "
                f"not {engine_name!r}",
                fix=f"set attack.orchestrator to 'restarts', or attack.engine to {self.engines[0]!r}",
            )

    def run(
        self,
        model: nn.Layer,
        update: ClientUpdate,
        callback: Optional[SnapshotCallback] = None,
        checkpoint_dir: Optional[str] = None,
        checkpoint_every: int = 0,
        resume: bool = False,
        **engine_kwargs: Any,
    ) -> Reconstruction:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def seed_callback(callback: Optional[SnapshotCallback]):
        """Adapt an :class:`IterationInfo` callback to the ``(phase, seed, info)`` form the seed
        loops call: the info carries the phase name and the seed index (as ``restart``)."""
        if callback is None:
            return None

        def adapted(phase: str, seed: int, info: IterationInfo) -> None:
            callback(dataclasses.replace(info, restart=seed, phase=phase))

        return adapted

    def _no_engine_kwargs(self, engine_kwargs: dict[str, Any]) -> None:
        if engine_kwargs:
            raise ConfigError(f"orchestrator {self.name!r} does not take {sorted(engine_kwargs)}",
                              fix="run the engine directly, or use the 'restarts' orchestrator")
