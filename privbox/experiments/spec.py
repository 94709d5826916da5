"""Typed description of a defense x attack matrix (the ``privbox matrix -c matrix.yaml`` file).

A :class:`MatrixSpec` lists attacks, defenses and seeds. Each attack entry carries the attack
spec (anything :func:`privbox.attacks.build_attack` takes) and the victim it is run against (a
:class:`privbox.fl.spec.ClientSpec` as a mapping): the model, image size, batch and what the
client shares. Each defense entry adds defenses (:data:`privbox.defenses.DEFENSES` names), an
optional client scheme and client-setting overrides to that victim. A cell is one attack against
one defense for one seed; the same seeds give the same target batches in every cell.

Unknown keys raise a :class:`~privbox.core.errors.ConfigError` that lists the valid ones.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from ..core.errors import ConfigError

__all__ = ["AttackEntry", "DefenseEntry", "UtilitySpec", "SweepSpec", "MatrixSpec", "merge_client"]


def _check_keys(cls: type, data: Any, where: str) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {type(data).__name__}", where=where, fix="write key: value pairs")
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"unknown keys {unknown}", where=where, fix=f"valid keys are {', '.join(valid)}")
    return dict(data)


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "/\\ "):
        raise ConfigError(f"name must be a non-empty string without spaces or slashes, got {value!r}", where=where)
    return value


def merge_client(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` applied; nested mappings (``data``) merge key by key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "model_kwargs":
            out[key] = merge_client(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class AttackEntry:
    """One column of the matrix: an attack and the victim (client) it runs against undefended.

    Attributes:
        name: column label (also the file-name stem of its cells).
        attack: the attack spec for :func:`privbox.attacks.build_attack` (``{"preset": ..., **overrides}``).
        client: the victim as :class:`privbox.fl.spec.ClientSpec` fields (model, image size,
            batch, what is shared); ``seed`` is set per cell.
        note: why these settings (printed beside the paper preset's).
    """

    name: str
    attack: dict[str, Any]
    client: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        _name(self.name, "attacks[].name")
        if isinstance(self.attack, str):
            self.attack = {"preset": self.attack}
        if not isinstance(self.attack, dict):
            raise ConfigError(f"attack must be a preset name or a mapping, got {type(self.attack).__name__}",
                              where=f"attacks.{self.name}.attack")
        if not isinstance(self.client, dict):
            raise ConfigError("client must be a mapping of ClientSpec fields", where=f"attacks.{self.name}.client")

    @classmethod
    def from_dict(cls, data: Any) -> "AttackEntry":
        return cls(**_check_keys(cls, data, "attacks[]"))


@dataclass
class DefenseEntry:
    """One row of the matrix: what the client does on top of the attack's victim.

    Attributes:
        name: row label (``none`` for the undefended client).
        defenses: :class:`privbox.fl.spec.DefenseSpec` mappings (``{"name": ..., "params": {...}}``)
            appended to the victim's, in order.
        scheme: a client scheme of ``privbox.defenses.schemes.SCHEMES`` (e.g. ``"RA"``).
        client: ClientSpec overrides (e.g. ``label_order: grouped``).
        rounds: FL rounds the client runs (the server applies each update with the client's
            lr); the attacker inverts the last round's update. Stateful defenses (DGC residuals,
            DP accounting) carry over between rounds.
        note: a short description for the tables.
    """

    name: str
    defenses: list[dict[str, Any]] = field(default_factory=list)
    scheme: Optional[str] = None
    client: dict[str, Any] = field(default_factory=dict)
    rounds: int = 1
    note: str = ""

    def __post_init__(self) -> None:
        _name(self.name, "defenses[].name")
        self.defenses = [{"name": d} if isinstance(d, str) else dict(d) for d in self.defenses]
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise ConfigError(f"rounds must be a positive integer, got {self.rounds!r}", where=f"defenses.{self.name}")

    @classmethod
    def from_dict(cls, data: Any) -> "DefenseEntry":
        if isinstance(data, str):
            return cls(name=data)
        return cls(**_check_keys(cls, data, "defenses[]"))

    def client_overrides(self) -> dict[str, Any]:
        """The ClientSpec changes this row makes to an attack's victim."""
        out = dict(self.client)
        if self.scheme:
            out["scheme"] = self.scheme
        return out


@dataclass
class UtilitySpec:
    """How the model accuracy under each defense row is measured: a short FedAvg run
    (:func:`privbox.fl.simulation.run_simulation`) whose clients are the row's victim, on the
    embedded-photograph task, evaluated on held-out crops (see :mod:`privbox.experiments.utility`).

    ``enabled: false`` leaves the accuracy and ε columns empty.
    """

    enabled: bool = True
    rounds: int = 5
    clients: int = 4
    images_per_client: int = 32
    batch_size: int = 8
    lr: float = 0.5
    eval_images: int = 100
    delta: float = 1e-5

    def __post_init__(self) -> None:
        for key in ("rounds", "clients", "images_per_client", "batch_size", "eval_images"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}", where="utility")
        if not float(self.lr) > 0:
            raise ConfigError(f"lr must be positive, got {self.lr!r}", where="utility")

    @classmethod
    def from_dict(cls, data: Any) -> "UtilitySpec":
        return cls(**_check_keys(cls, data, "utility"))


@dataclass
class SweepSpec:
    """One leakage-vs-privacy curve: a defense parameter swept against one attack.

    Attributes:
        name: curve label.
        attack: name of an attack entry of the matrix.
        defense: the defense (``{"name": ..., "params": {...}}``) whose ``param`` is swept.
        param: the parameter swept (``noise_multiplier``, ``sigma0``, ``sparsity``, ...).
        values: its values, in plot order.
        rounds: client rounds per point (as :attr:`DefenseEntry.rounds`).
        x_label: axis label (default: ``param``); ``epsilon`` on DP curves is added from the
            accountant when the defense has one.
        log_x: logarithmic x axis.
    """

    name: str
    attack: str
    defense: dict[str, Any]
    param: str
    values: list[float]
    rounds: int = 1
    x_label: str = ""
    log_x: bool = False

    def __post_init__(self) -> None:
        _name(self.name, "sweeps[].name")
        if not self.values:
            raise ConfigError("values must list at least one value", where=f"sweeps.{self.name}")

    @classmethod
    def from_dict(cls, data: Any) -> "SweepSpec":
        return cls(**_check_keys(cls, data, "sweeps[]"))


@dataclass
class MatrixSpec:
    """The whole experiment: attacks x defenses x seeds, utility settings and sweeps.

    Attributes:
        attacks / defenses: the columns and rows (a defense named ``none`` with no defenses is
            added first when missing: every matrix has its undefended row).
        seeds: client seeds; seed s draws the labels and the attack initialisation.
        leak_margin_db: a cell *leaked* when its mean PSNR beats the random-start PSNR by at
            least this many dB.
        utility: :class:`UtilitySpec`.
        sweeps: :class:`SweepSpec` curves for ``privbox matrix --sweep``.
        title: heading of the report.
    """

    attacks: list[AttackEntry]
    defenses: list[DefenseEntry] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    leak_margin_db: float = 5.0
    utility: UtilitySpec = field(default_factory=UtilitySpec)
    sweeps: list[SweepSpec] = field(default_factory=list)
    title: str = "privbox defense x attack matrix"

    def __post_init__(self) -> None:
        self.attacks = [a if isinstance(a, AttackEntry) else AttackEntry.from_dict(a) for a in self.attacks]
        self.defenses = [d if isinstance(d, DefenseEntry) else DefenseEntry.from_dict(d) for d in self.defenses]
        self.sweeps = [s if isinstance(s, SweepSpec) else SweepSpec.from_dict(s) for s in self.sweeps]
        if isinstance(self.utility, dict):
            self.utility = UtilitySpec.from_dict(self.utility)
        if not self.attacks:
            raise ConfigError("lists no attacks", where="matrix.attacks", fix="add at least one attack entry")
        if not any(d.name == "none" for d in self.defenses):
            self.defenses.insert(0, DefenseEntry(name="none", note="undefended client"))
        for what, names in (("attacks", [a.name for a in self.attacks]), ("defenses", [d.name for d in self.defenses])):
            if len(set(names)) != len(names):
                raise ConfigError(f"names repeat: {names}", where=f"matrix.{what}", fix="give every entry its own name")
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in self.seeds):
            raise ConfigError(f"seeds must be a non-empty list of integers, got {self.seeds!r}", where="matrix.seeds")
        known = {a.name for a in self.attacks}
        for sweep in self.sweeps:
            if sweep.attack not in known:
                raise ConfigError(f"sweep {sweep.name!r} names attack {sweep.attack!r}", where="matrix.sweeps",
                                  fix=f"use one of {sorted(known)}")

    @classmethod
    def from_dict(cls, data: Any) -> "MatrixSpec":
        return cls(**_check_keys(cls, data, "matrix"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def select(self, attacks: Optional[list[str]] = None, defenses: Optional[list[str]] = None) -> "MatrixSpec":
        """A copy restricted to the named attacks and defenses (``none`` is always kept)."""
        def pick(entries, names, what):
            if not names:
                return list(entries)
            unknown = sorted(set(names) - {e.name for e in entries})
            if unknown:
                raise ConfigError(f"unknown {what} {unknown}", where=f"matrix --{what}",
                                  fix=f"choose from {[e.name for e in entries]}")
            return [e for e in entries if e.name in names or (what == "defenses" and e.name == "none")]

        return dataclasses.replace(self, attacks=pick(self.attacks, attacks, "attacks"),
                                   defenses=pick(self.defenses, defenses, "defenses"),
                                   sweeps=[s for s in self.sweeps if not attacks or s.attack in attacks])
