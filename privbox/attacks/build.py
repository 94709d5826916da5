"""Attacks from plain descriptions: :func:`build_attack` and the :class:`Attack` it returns.

A spec is a preset name (an entry of :data:`~privbox.attacks.registries.ATTACKS`), a mapping
(``{"preset": "e2egi", "iterations": 2000}``, or every :class:`AttackConfig` key without a
preset) or an :class:`AttackConfig`. The config names its engine (``auto`` picks the engine
registered as the default for the update's kind) and its orchestrator; both are looked up in
their registries, so no code here or in the CLI dispatches on a preset's name.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Union

import paddle.nn as nn

from ..core.errors import ConfigError
from ..core.update import ClientUpdate
from . import orchestrators as _orchestrators  # noqa: F401 - registers restarts, group, mlco
from .config import AttackConfig
from .engine import GradientInversion, SnapshotCallback
from .fedavg import FedAvgInversion
from .presets import get_preset
from .reconstruction import Reconstruction
from .registries import ENGINES, ORCHESTRATORS

__all__ = ["Attack", "AttackSpec", "build_attack", "resolve_config"]

AttackSpec = Union[str, Mapping[str, Any], AttackConfig]

ENGINES.add(
    "fedavg",
    FedAvgInversion,
    description="FedAvg update inversion: the client's local SGD unrolled and differentiated (Hatamizadeh et al. 2023)",
    requires=("has_weight_delta", "has_local_hparams", "has_global_state"),
    tunable=dict(ENGINES.entry("gradient").tunable),
    default_for="weight_delta",
)


def resolve_config(spec: AttackSpec, **overrides: Any) -> AttackConfig:
    """The :class:`AttackConfig` a spec describes, with ``overrides`` applied.

    Raises:
        ConfigError: an unknown preset, unknown keys (listing the valid ones) or invalid values.
    """
    if isinstance(spec, AttackConfig):
        config = spec
    elif isinstance(spec, str):
        config = get_preset(spec)
    elif isinstance(spec, Mapping):
        data = dict(spec)
        preset = data.pop("preset", None)
        if preset is not None:
            base = get_preset(preset)
            AttackConfig._check_keys(data)
            config = base.replace(**data)
        else:
            config = AttackConfig.from_dict(data)
    else:
        raise ConfigError(f"an attack spec is a preset name, a mapping or an AttackConfig, got {type(spec).__name__}")
    return config.replace(**overrides) if overrides else config


class Attack:
    """A runnable attack: an engine, an orchestrator and their config.

    Args:
        config: the :class:`AttackConfig` (see :func:`build_attack` for other spec forms).

    ``attack.run(model, update)`` returns a :class:`Reconstruction` whatever the orchestrator.
    """

    def __init__(self, config: AttackConfig) -> None:
        self.config = config
        self.orchestrator_class = ORCHESTRATORS.get(config.orchestrator)
        self.orchestrator_options = self.orchestrator_class.parse_options(config.orchestrator_params)
        if config.engine != "auto":
            self._orchestrator(ENGINES.get(config.engine)(config), config.engine)  # refuse a bad pair now

    @property
    def name(self) -> str:
        return self.config.name

    def engine_name(self, update: ClientUpdate) -> str:
        """The engine that runs on ``update``: the configured one, or for ``auto`` the engine
        registered as the default for the update's kind."""
        if self.config.engine != "auto":
            return self.config.engine
        for entry in ENGINES.entries():
            if entry.extra.get("default_for") == update.kind:
                return entry.name
        raise ConfigError(f"no engine is registered for {update.kind!r} updates",
                          fix=f"set attack.engine to one of {ENGINES.names()}")

    def engine(self, update: ClientUpdate) -> GradientInversion:
        """The engine instance for ``update``."""
        return ENGINES.get(self.engine_name(update))(self.config)

    def _orchestrator(self, engine: GradientInversion, engine_name: str):
        orchestrator = self.orchestrator_class(engine, self.orchestrator_options)
        orchestrator.check(engine_name)
        return orchestrator

    def required_capabilities(self, update: ClientUpdate) -> list[str]:
        """The capabilities (ALGORITHMS.md §1.5) this attack needs from ``update``."""
        return self.engine(update).required_capabilities(update)

    def check_update(self, update: ClientUpdate) -> None:
        """Raise before any work if the attack cannot run on ``update`` (wrong kind, missing
        capabilities, an orchestrator that cannot drive the engine)."""
        engine = self.engine(update)
        self._orchestrator(engine, self.engine_name(update))
        if hasattr(engine, "check_update"):
            engine.check_update(update)
        update.threat_model().require(engine.required_capabilities(update), f"attack {self.name!r}")

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
        """Reconstruct the client's batch from ``update`` with ``model`` (the client's architecture).

        ``callback`` receives an :class:`~privbox.attacks.engine.IterationInfo` every
        ``config.snapshot_every`` iterations (``phase`` and ``restart`` say where inside an
        orchestrator); checkpoints go to ``checkpoint_dir`` and ``resume`` continues from them;
        ``engine_kwargs`` (``init_images``, ``labels``, ``prior``, ...) reach the engine under the
        ``restarts`` orchestrator.
        """
        engine = self.engine(update)
        orchestrator = self._orchestrator(engine, self.engine_name(update))
        return orchestrator.run(model, update, callback=callback, checkpoint_dir=checkpoint_dir,
                                checkpoint_every=checkpoint_every, resume=resume, **engine_kwargs)

    def __repr__(self) -> str:
        return f"Attack({self.config.name!r}, engine={self.config.engine!r}, orchestrator={self.config.orchestrator!r})"


def build_attack(spec: AttackSpec, **overrides: Any) -> Attack:
    """Build a runnable attack from a preset name, a mapping or an :class:`AttackConfig`.

    Examples::

        build_attack("inverting_gradients", iterations=200).run(model, update)
        build_attack({"preset": "e2egi", "orchestrator_params": {"num_seeds": 2}})
        build_attack(AttackConfig.from_dict(saved["config"]))

    Raises:
        ConfigError: an unknown preset, key, engine or orchestrator, or an orchestrator that
            cannot drive the configured engine.
    """
    return Attack(resolve_config(spec, **overrides))
