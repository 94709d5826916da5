"""The config reference, generated: every section's keys from the dataclass field metadata
(type, default, help), and every registry's entries from their declarations (description, what
they require from the update, tunable ranges). ``privbox config --write-reference`` writes it into
the docs between :data:`REFERENCE_BEGIN` and :data:`REFERENCE_END`; a test keeps them current.

A part registered anywhere (a new regularizer, defense, attack preset) appears here without
editing this module.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any, Optional

from ..core.errors import ConfigError
from ..core.fields import field_choices, field_help, type_name
from ..core.registry import Registry
from .attack import AttackSection, attack_hints
from .dialect import dump_yaml
from .loader import SECTIONS

__all__ = ["config_reference_markdown", "registry_tables", "replace_reference_block", "REFERENCE_BEGIN",
           "REFERENCE_END"]

REFERENCE_BEGIN = "<!-- BEGIN GENERATED CONFIG REFERENCE (privbox config --reference) -->"
REFERENCE_END = "<!-- END GENERATED CONFIG REFERENCE -->"


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:  # pragma: no cover
        return "required"
    return "`" + dump_yaml(value, flow=True) + "`"


def _cell(text: str) -> str:
    """One table cell: reStructuredText roles turned into Markdown code, one line, pipes escaped."""
    text = re.sub(r":\w+:`~([^`]+)`", lambda m: "`" + m.group(1).split(".")[-1] + "`", text)
    text = re.sub(r":\w+:`([^`]+)`", r"`\1`", text).replace("``", "`")
    return " ".join(text.split()).replace("|", "\\|")


def _help(f: dataclasses.Field) -> str:
    text = field_help(f)
    if field_choices(f):
        text += " (one of " + ", ".join(f"`{c}`" for c in field_choices(f)) + ")"
    return text


def _summary(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.split("\n\n")[0]


def _options_table(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        lines.append(f"| `{f.name}` | {type_name(hints[f.name])} | {_default_text(f)} | {_cell(_help(f))} |")
    return lines


def _entries_table(registry: Registry, extra_columns: Optional[dict[str, Any]] = None) -> list[str]:
    extra_columns = extra_columns or {}
    header = ["name", "description", "requires", "tunable", *extra_columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in registry.entries():
        requires = ", ".join(f"`{r}`" for r in sorted(entry.requires)) or "—"
        tunable = ", ".join(f"`{k}` {v.describe()}" for k, v in entry.tunable.items()) or "—"
        cells = [f"`{entry.name}`", _cell(entry.description), requires, _cell(tunable)]
        cells += [_cell(str(fn(entry))) for fn in extra_columns.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def registry_tables() -> list[str]:
    """Markdown tables of every registry a config names parts from."""
    from ..attacks import ATTACKS, ENGINES, OBJECTIVES, ORCHESTRATORS, REGULARIZERS, SCHEDULES
    from ..labels import LABEL_REGISTRY
    from ..nn.models import MODELS

    lines = ["### Registries", "",
             "Every name a config may use, with what it requires from the update (capabilities of "
             "`ThreatModel`) and the ranges `privbox tune` may search (`tune.params`: an engine parameter, "
             "a regularizer's name for its weight, `<regularizer>.<option>` for another option).", ""]
    tables: list[tuple[str, Registry, Optional[dict[str, Any]]]] = [
        ("Attack presets (`attack.preset`)", ATTACKS,
         {"engine": lambda e: e.extra.get("engine"), "orchestrator": lambda e: e.extra.get("orchestrator")}),
        ("Engines (`attack.engine`)", ENGINES, {"default for": lambda e: e.extra.get("default_for", "—")}),
        ("Orchestrators (`attack.orchestrator`)", ORCHESTRATORS, None),
        ("Objectives (`attack.objective`)", OBJECTIVES, None),
        ("Regularizers (`attack.regularizers`)", REGULARIZERS, None),
        ("Learning-rate schedules (`attack.schedule`)", SCHEDULES, None),
        ("Label methods (`attack.label_method`)", LABEL_REGISTRY, None),
        ("Models (`capture.model`)", MODELS, None),
    ]
    try:
        from ..defenses import DEFENSES

        tables.append(("Defenses", DEFENSES, {"kind": lambda e: e.extra.get("kind", "—")}))
    except ImportError:  # pragma: no cover - the defenses registry is optional here
        pass
    for title, registry, columns in tables:
        lines += [f"#### {title}", "", *_entries_table(registry, columns), ""]
    for entry in ORCHESTRATORS.entries():
        options = entry.item.Options
        if dataclasses.fields(options):
            lines += [f"#### `attack.orchestrator_params` of `{entry.name}`", "", *_options_table(options), ""]
    return lines


def config_reference_markdown() -> str:
    """The reference of every config section and registry, generated (Markdown)."""
    from ..attacks.presets import get_preset
    from ..attacks.registries import ATTACKS

    lines = [
        "A config file has up to four sections; every key is optional. Unknown sections and keys are "
        "errors. Override any key on the command line with `-o section.key=value` (YAML-typed).",
        "",
    ]
    for name, cls in SECTIONS.items():
        lines += [f"### `{name}`", "", _cell(_summary(cls)), ""]
        if cls is AttackSection:
            from ..attacks.config import AttackConfig

            preset_field = next(f for f in dataclasses.fields(cls) if f.name == "preset")
            lines += ["| key | type | default | description |", "|---|---|---|---|"]
            lines.append(f"| `preset` | string | {_default_text(preset_field)} | one of "
                         f"{', '.join(f'`{p}`' for p in ATTACKS.names())} |")
            hints = attack_hints()
            for f in dataclasses.fields(AttackConfig):
                lines.append(f"| `{f.name}` | {type_name(hints[f.name])} | from the preset | {_cell(_help(f))} |")
            lines.append("")
            continue
        lines += [*_options_table(cls), ""]
    keys = ["optimizer", "lr", "iterations", "objective", "regularizers", "signed", "boxed", "noise", "label_strategy"]
    lines += ["### Preset defaults", "", "| preset | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for preset in ATTACKS.names():
        values = get_preset(preset).to_dict()
        cells = [_cell(dump_yaml(values[k], flow=True)) for k in keys]
        lines.append(f"| `{preset}` | " + " | ".join(cells) + " |")
    lines += ["", *registry_tables()]
    return "\n".join(lines).rstrip() + "\n"


def replace_reference_block(text: str, reference: Optional[str] = None) -> str:
    """Return ``text`` with the part between the reference markers replaced by the reference."""
    reference = config_reference_markdown() if reference is None else reference
    if REFERENCE_BEGIN not in text or REFERENCE_END not in text:
        raise ConfigError(f"the document has no {REFERENCE_BEGIN!r} ... {REFERENCE_END!r} markers")
    head, rest = text.split(REFERENCE_BEGIN, 1)
    _, tail = rest.split(REFERENCE_END, 1)
    return f"{head}{REFERENCE_BEGIN}\n\n{reference}\n{REFERENCE_END}{tail}"
