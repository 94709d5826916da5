"""Typed config of a federated simulation with a per-round leakage audit (``privbox fl``).

A YAML file has these sections (each a dataclass below; unknown keys are a
:class:`~privbox.core.errors.ConfigError` that lists the valid ones)::

    fl:       rounds, client sampling, FedAvg weighting, seed           (FLSection)
    data:     the image pool, evaluation set and prior image            (privbox.fl.data.FLDataSpec)
    client:   ClientSpec fields shared by every client (model, lr, ...) (privbox.fl.spec.ClientSpec)
    clients:  the client table: one row per client                      (ClientRow)
    defense:  GaussianPrivacy sigma0 for every client, more transforms  (DefenseSection)
    audit:    the leakage filter: attack, RDLV, threshold, schedule     (AuditSection)
    ledger:   DP-SGD accounting: delta and the epsilon budget           (LedgerSection)

A row of the client table is ``name``, ``invert`` (audited by the leakage filter) and any
:class:`~privbox.fl.spec.ClientSpec` field (``num_images``, ``batch_size``, ``lr``,
``local_epochs``, ``defenses``, ...) that overrides the shared ``client`` section, as in the
9-client table of the NVIDIA experiment (ALGORITHMS.md §9.1).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..core.errors import ConfigError
from ._fields import check_keys, h, positive_int
from .data import FLDataSpec

__all__ = [
    "FLSection",
    "ClientRow",
    "DefenseSection",
    "AuditSection",
    "LedgerSection",
    "FLConfig",
    "load_fl_config",
    "WEIGHTINGS",
]

WEIGHTINGS = ("samples", "steps")


@dataclass
class FLSection:
    """The round loop."""

    rounds: int = h(4, "number of FedAvg rounds")
    clients_per_round: Optional[int] = h(None, "clients sampled per round (seeded, without replacement); null: all")
    weighting: str = h("samples", "FedAvg weight of a client: 'samples' (n_k, McMahan et al. 2017) or 'steps' (local steps, NVIDIA FLARE)")
    seed: int = h(0, "seed of the global model, the client sampling and every client's noise")

    def __post_init__(self) -> None:
        positive_int(self.rounds, "fl.rounds")
        positive_int(self.clients_per_round, "fl.clients_per_round", allow_none=True)
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"must be one of {list(WEIGHTINGS)}, got {self.weighting!r}", where="fl.weighting")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"must be an integer, got {self.seed!r}", where="fl.seed")


@dataclass
class ClientRow:
    """One row of the client table: its name, whether it is audited, and ClientSpec overrides."""

    name: str
    invert: bool = False
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass
class DefenseSection:
    """Update transforms every client applies before the leakage filter (ALGORITHMS.md §9.3)."""

    sigma0: float = h(0.0, "GaussianPrivacy: noise std = sigma0 x the percentile of the non-zero |update| "
                           "(every key, BN statistics included); 0 switches it off. Heuristic, no DP guarantee")
    percentile: float = h(95.0, "GaussianPrivacy percentile, in [0, 100]")
    transforms: list[dict[str, Any]] = h(list, "more update transforms after GaussianPrivacy: [{name, params}] from "
                                               "privbox.defenses.DEFENSES (kind update_transform), e.g. top_k, dgc", factory=True)

    def __post_init__(self) -> None:
        try:
            sigma0 = float(self.sigma0)
        except (TypeError, ValueError):
            raise ConfigError(f"must be a number >= 0, got {self.sigma0!r}", where="defense.sigma0") from None
        if not math.isfinite(sigma0) or sigma0 < 0:
            raise ConfigError(f"must be a finite number >= 0, got {self.sigma0!r}", where="defense.sigma0",
                              fix="use 0 for no noise, or e.g. 5, 10, 20")
        self.sigma0 = sigma0
        if not 0.0 <= float(self.percentile) <= 100.0:
            raise ConfigError(f"must lie in [0, 100], got {self.percentile!r}", where="defense.percentile")
        if not isinstance(self.transforms, list):
            raise ConfigError("must be a list of {name, params}", where="defense.transforms")


@dataclass
class AuditSection:
    """The leakage filter: which attack, how RDLV is scored, when it runs and what it drops."""

    attack: Any = h(lambda: {"preset": "nvidia_fl", "iterations": 300, "progress": False,
                                  "fedavg": {"mode": "reference", "bn_model": "global"}},
                    "attack spec for privbox.attacks.build_attack: a preset name or a mapping {preset, field: value}", factory=True)
    frequency: int = h(2, "audit every `frequency` rounds ...")
    start_round: int = h(0, "... from this round on (round % frequency == 0 and round >= start_round)")
    threshold: float = h(1.0, "drop the update when RDLV > threshold (RDLV 1 = the similarity doubled)")
    metrics: list[str] = h(lambda: ["ssim"], "similarity metrics (privbox.metrics.rdlv.SIMILARITIES); the first picks "
                                             "the closest reconstruction", factory=True)
    reduce: str = h("max", "'max' over images (similarities) or 'min' (distances such as mse)")
    convention: str = h("default", "'default' ([0, 1], data_range 1) or 'nvflare' (0-255, data_range 256)")
    rescale: str = h("minmax", "reconstructions to [0, 1]: 'minmax' (NVIDIA) or 'clip'")
    use_prior: bool = h(True, "start the attack from the prior image and score relative to it")
    save_images: bool = h(True, "write every audited reconstruction (safetensors + PNG)")

    def __post_init__(self) -> None:
        positive_int(self.frequency, "audit.frequency")
        positive_int(self.start_round, "audit.start_round", allow_zero=True)
        if not isinstance(self.metrics, list) or not self.metrics:
            raise ConfigError("needs at least one metric", where="audit.metrics", fix="e.g. [ssim]")
        from ..metrics.rdlv import CONVENTIONS, REDUCES, RESCALES, SIMILARITIES

        for m in self.metrics:
            if m not in SIMILARITIES:
                raise ConfigError(f"unknown similarity metric {m!r}", where="audit.metrics", fix=f"choose from {SIMILARITIES.names()}")
        for key, choices in (("reduce", REDUCES), ("convention", tuple(CONVENTIONS)), ("rescale", RESCALES)):
            if getattr(self, key) not in choices:
                raise ConfigError(f"must be one of {list(choices)}, got {getattr(self, key)!r}", where=f"audit.{key}")
        self.threshold = float(self.threshold)

    def due(self, round_index: int) -> bool:
        """Whether the filter runs in ``round_index`` (ALGORITHMS.md §8.5 gating)."""
        return round_index >= self.start_round and round_index % self.frequency == 0


@dataclass
class LedgerSection:
    """Privacy accounting of DP-SGD clients (ALGORITHMS.md §6.3)."""

    delta: float = h(1e-5, "delta of the (epsilon, delta) guarantee")
    epsilon_budget: Optional[float] = h(None, "a DP-SGD client whose epsilon would exceed this stops participating; null: no limit")

    def __post_init__(self) -> None:
        if not 0.0 < float(self.delta) < 1.0:
            raise ConfigError(f"must lie in (0, 1), got {self.delta!r}", where="ledger.delta")
        if self.epsilon_budget is not None and not float(self.epsilon_budget) > 0:
            raise ConfigError(f"must be > 0 or null, got {self.epsilon_budget!r}", where="ledger.epsilon_budget")


_SECTIONS = {"fl": FLSection, "data": FLDataSpec, "defense": DefenseSection, "audit": AuditSection, "ledger": LedgerSection}
_TOP = ("fl", "data", "client", "clients", "defense", "audit", "ledger")
_ROW_OWN = ("name", "invert")


def _client_fields() -> list[str]:
    from .spec import ClientSpec

    return [f.name for f in dataclasses.fields(ClientSpec)]


@dataclass
class FLConfig:
    """The whole experiment (see the module docstring)."""

    fl: FLSection = dataclasses.field(default_factory=FLSection)
    data: FLDataSpec = dataclasses.field(default_factory=FLDataSpec)
    client: dict[str, Any] = dataclasses.field(default_factory=dict)
    clients: list[ClientRow] = dataclasses.field(default_factory=list)
    defense: DefenseSection = dataclasses.field(default_factory=DefenseSection)
    audit: AuditSection = dataclasses.field(default_factory=AuditSection)
    ledger: LedgerSection = dataclasses.field(default_factory=LedgerSection)
    source: Optional[str] = None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_dict(cls, data: Any, source: Optional[str] = None) -> "FLConfig":
        """Validate a parsed YAML mapping (unknown sections/keys are errors naming the valid ones)."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config is a mapping of sections, got {type(data).__name__}", where=source)
        unknown = sorted(set(data) - set(_TOP))
        if unknown:
            raise ConfigError(f"unknown sections {unknown}", where=source, fix=f"valid sections are {', '.join(_TOP)}")
        values: dict[str, Any] = {}
        for key, section in _SECTIONS.items():
            values[key] = section(**check_keys(section, data.get(key), key))
        fields = _client_fields()
        base = data.get("client") or {}
        if not isinstance(base, dict):
            raise ConfigError("must be a mapping of ClientSpec fields", where="client")
        bad = sorted(set(base) - set(fields))
        if bad:
            raise ConfigError(f"unknown keys {bad}", where="client", fix=f"valid keys are {', '.join(fields)}")
        values["client"] = dict(base)
        rows = data.get("clients")
        if not isinstance(rows, list) or not rows:
            raise ConfigError("needs a table with at least one client", where="clients",
                              fix="e.g. - {name: high-risk, num_images: 1, batch_size: 1, invert: true}")
        values["clients"] = [_row(r, i, fields) for i, r in enumerate(rows)]
        names = [r.name for r in values["clients"]]
        if len(set(names)) != len(names):
            raise ConfigError(f"client names must be unique, got {names}", where="clients")
        config = cls(**values, source=source)
        config.client_specs()  # validate every row now
        return config

    def client_specs(self) -> list:
        """One validated :class:`~privbox.fl.spec.ClientSpec` per row (shared section + row overrides)."""
        from .spec import ClientSpec

        specs = []
        for i, row in enumerate(self.clients):
            merged = copy.deepcopy(self.client)
            merged.update(copy.deepcopy(row.overrides))
            merged.setdefault("share", "delta")
            merged.setdefault("image_size", self.data.image_size)
            merged.setdefault("channels", self.data.channels)
            merged.setdefault("num_classes", self.num_classes())
            merged["seed"] = int(merged.get("seed", 0)) + 1000 * (i + 1) + self.fl.seed
            where = f"clients[{i}] ({row.name})"
            spec = ClientSpec.from_dict(merged, where=where)
            if spec.share != "delta":
                raise ConfigError("a FedAvg client sends its weight delta", where=f"{where}.share", fix="use share: delta")
            if spec.batch_size is not None and spec.batch_size > spec.num_images:
                raise ConfigError(
                    f"batch_size {spec.batch_size} is larger than the client's dataset ({spec.num_images} images)",
                    where=f"{where}.batch_size", fix=f"use a batch size <= {spec.num_images}",
                )
            if spec.image_size != self.data.image_size or spec.channels != self.data.channels:
                raise ConfigError("image_size and channels come from the data section", where=where,
                                  fix="set them under data:, not per client")
            specs.append(spec)
        return specs

    def num_classes(self) -> int:
        """Classes of the task: one per embedded photograph, or as given in the client section."""
        if "num_classes" in self.client:
            return int(self.client["num_classes"])
        if self.data.source == "embedded":
            return len(self.data.classes)
        raise ConfigError("a folder dataset needs client.num_classes (the number of class folders)", where="client.num_classes")

    def to_dict(self) -> dict[str, Any]:
        """Plain values that :meth:`from_dict` reads back (written to the run folder)."""
        out = {key: dataclasses.asdict(getattr(self, key)) for key in _SECTIONS}
        out["client"] = copy.deepcopy(self.client)
        out["clients"] = [{"name": r.name, "invert": r.invert, **copy.deepcopy(r.overrides)} for r in self.clients]
        return out


def _row(data: Any, index: int, fields: Sequence[str]) -> ClientRow:
    where = f"clients[{index}]"
    if not isinstance(data, dict):
        raise ConfigError(f"a client row is a mapping, got {type(data).__name__}", where=where)
    valid = list(_ROW_OWN) + list(fields)
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"unknown keys {unknown} in the client table", where=where, fix=f"valid keys are {', '.join(valid)}")
    name = data.get("name", f"client-{index + 1}")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"a client name is a non-empty string without '/', got {name!r}", where=f"{where}.name")
    invert = data.get("invert", False)
    if not isinstance(invert, bool):
        raise ConfigError(f"must be true or false, got {invert!r}", where=f"{where}.invert")
    return ClientRow(name=name, invert=invert, overrides={k: v for k, v in data.items() if k not in _ROW_OWN})


PathLike = Union[str, Path]


def load_fl_config(path: Optional[PathLike] = None, overrides: Sequence[str] = ()) -> FLConfig:
    """Read a YAML file (or packaged config name, default ``fl``) and apply ``section.key=value`` overrides."""
    from ..config import parse_override, parse_yaml_value, resolve_config_path
    from ..config.dialect import read_yaml  # the one safe YAML reader of privbox

    resolved = resolve_config_path(path if path is not None else "fl")
    data = copy.deepcopy(read_yaml(resolved))
    for text in overrides:
        head, sep, raw = text.partition("=")
        if sep and head.strip() in ("clients", "client"):  # a whole table or section: clients=[{...}, ...]
            data[head.strip()] = parse_yaml_value(raw)
            continue
        keys, value = parse_override(text)
        if keys[0] not in _TOP:
            raise ConfigError(f"unknown section {keys[0]!r}", where=f"-o {text}", fix=f"valid sections are {', '.join(_TOP)}")
        node = data
        for key in keys[:-1]:
            child = node.get(key) if isinstance(node, dict) else None
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{key!r} is not a mapping", where=f"-o {text}")
            node = child
        node[keys[-1]] = value
    try:
        return FLConfig.from_dict(data, source=str(resolved))
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), where=str(resolved)) from None
