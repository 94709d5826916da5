"""Aggregate matrix cells over seeds, decide what leaked and what a defense stopped, and render
the tables (markdown and CSV) and the paper-vs-CPU settings comparison."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ..report.tables import csv_table
from .spec import MatrixSpec

__all__ = ["aggregate", "verdicts", "summary_markdown", "summary_csv", "settings_rows", "SUMMARY_COLUMNS"]

#: columns of matrix.csv, in order
SUMMARY_COLUMNS = [
    "attack", "defense", "status", "seeds", "batch_size", "image_size", "model", "matching",
    "psnr_mean", "psnr_std", "psnr_min", "psnr_max", "ssim_mean", "ssim_std", "psnr_random", "psnr_gain",
    "label_accuracy", "label_accuracy_kind", "rdlv", "accuracy", "epsilon", "leaked", "verdict", "wall_s", "reason",
]


def _mean(values: Sequence[float]) -> Optional[float]:
    return float(np.mean(values)) if len(values) else None


def _std(values: Sequence[float]) -> Optional[float]:
    return float(np.std(values)) if len(values) else None


def aggregate(cells: list[dict], spec: MatrixSpec, utilities: dict[str, dict]) -> list[dict]:
    """One summary row per (attack, defense): PSNR/SSIM mean, spread over seeds (std, min, max),
    random-start PSNR, gain, label accuracy, RDLV, accuracy and ε of the row, wall time."""
    from .utility import utility_key

    rows = []
    for attack in spec.attacks:
        for defense in spec.defenses:
            mine = [c for c in cells if c["attack"] == attack.name and c["defense"] == defense.name]
            ok = [c for c in mine if c["status"] == "ok"]
            util = utilities.get(utility_key(attack, defense)) or {}
            row: dict[str, Any] = {"attack": attack.name, "defense": defense.name, "seeds": len(mine),
                                   "accuracy": util.get("accuracy"), "epsilon": util.get("epsilon"),
                                   "wall_s": float(sum(c.get("wall_s", 0.0) for c in mine))}
            if not ok:
                reasons = sorted({c.get("reason", "") for c in mine})
                row.update(status="skipped" if mine else "missing", reason=" | ".join(reasons), leaked=None)
                rows.append(row)
                continue
            psnr = [c["psnr"] for c in ok]
            first = ok[0]
            row.update(
                status="ok", reason="",
                batch_size=first["batch_size"], image_size=first["image_size"], model=first["model"],
                matching=first["matching"], label_accuracy_kind=first["label_accuracy_kind"],
                psnr_mean=_mean(psnr), psnr_std=_std(psnr), psnr_min=float(min(psnr)), psnr_max=float(max(psnr)),
                ssim_mean=_mean([c["ssim"] for c in ok]), ssim_std=_std([c["ssim"] for c in ok]),
                psnr_random=_mean([c["psnr_random"] for c in ok]),
                label_accuracy=_mean([c["label_accuracy"] for c in ok]),
                rdlv=_mean([c["rdlv"] for c in ok]),
            )
            row["psnr_gain"] = row["psnr_mean"] - row["psnr_random"]
            row["leaked"] = bool(row["psnr_gain"] >= spec.leak_margin_db)
            rows.append(row)
    _add_verdicts(rows)
    return rows


def _add_verdicts(rows: list[dict]) -> None:
    undefended = {r["attack"]: r for r in rows if r["defense"] == "none"}
    for row in rows:
        base = undefended.get(row["attack"])
        if row["status"] != "ok":
            row["verdict"] = "skipped" if row["status"] == "skipped" else "not run"
        elif row["defense"] == "none":
            row["verdict"] = "leaks" if row["leaked"] else "no leak at this budget"
        elif base is None or base.get("status") != "ok" or not base["leaked"]:
            row["verdict"] = "no undefended leak to stop"
        elif not row["leaked"]:
            row["verdict"] = "stopped"
        elif base["psnr_mean"] - row["psnr_mean"] >= 3.0:
            row["verdict"] = "reduced"
        else:
            row["verdict"] = "still leaks"


def verdicts(rows: list[dict]) -> dict[str, Any]:
    """Which attacks leaked undefended, and which defenses stopped which of them."""
    leaked = [r["attack"] for r in rows if r["defense"] == "none" and r.get("leaked")]
    quiet = [r["attack"] for r in rows if r["defense"] == "none" and r["status"] == "ok" and not r.get("leaked")]
    stopped: dict[str, list[str]] = {}
    reduced: dict[str, list[str]] = {}
    failed: dict[str, list[str]] = {}
    for r in rows:
        bucket = {"stopped": stopped, "reduced": reduced, "still leaks": failed}.get(r.get("verdict", ""))
        if bucket is not None:
            bucket.setdefault(r["defense"], []).append(r["attack"])
    return {"leaked_undefended": leaked, "no_leak_undefended": quiet, "stopped": stopped, "reduced": reduced,
            "still_leaks": failed}


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    """The plain-language summary the demo and matrix.md print."""
    lines = [f"Leaked with no defense: {', '.join(summary['leaked_undefended']) or 'none'}."]
    if summary["no_leak_undefended"]:
        lines.append(f"No leak even undefended (budget too small?): {', '.join(summary['no_leak_undefended'])}.")
    for key, text in (("stopped", "stopped"), ("reduced", "lowered the PSNR of (still above the leak line)"),
                      ("still_leaks", "did not stop")):
        for defense, attacks in summary[key].items():
            lines.append(f"{defense} {text}: {', '.join(attacks)}.")
    return lines


def _cell_text(row: dict) -> str:
    if row["status"] != "ok":
        return "skipped" if row["status"] == "skipped" else "—"
    return f"{row['psnr_mean']:.1f} ± {row['psnr_std']:.1f}"


def summary_markdown(rows: list[dict], spec: MatrixSpec) -> str:
    """The PSNR grid (defenses x attacks) and the long table with every metric."""
    attacks = [a.name for a in spec.attacks]
    by = {(r["attack"], r["defense"]): r for r in rows}
    out = ["| defense \\ attack | " + " | ".join(attacks) + " | accuracy | ε |",
           "|---|" + "---|" * (len(attacks) + 2)]
    for d in spec.defenses:
        cells = [_cell_text(by[(a, d.name)]) for a in attacks]
        util = next((by[(a, d.name)] for a in attacks if by[(a, d.name)].get("accuracy") is not None), {})
        acc = "" if util.get("accuracy") is None else f"{util['accuracy']:.2f}"
        eps = "" if util.get("epsilon") is None else f"{util['epsilon']:.3g}"
        out.append(f"| {d.name} | " + " | ".join(cells) + f" | {acc} | {eps} |")
    random_row = [f"{by[(a, 'none')]['psnr_random']:.1f}" if by[(a, "none")].get("psnr_random") is not None else "—"
                  for a in attacks]
    out.append("| *random start* | " + " | ".join(random_row) + " | | |")
    return "\n".join(out) + "\n"


def summary_csv(rows: list[dict]) -> str:
    """matrix.csv: one line per (attack, defense) with :data:`SUMMARY_COLUMNS`."""
    return csv_table(rows, SUMMARY_COLUMNS)


_SETTINGS = ("iterations", "lr", "optimizer", "objective", "gradient_weight", "regularizers", "noise", "schedule",
             "label_strategy", "early_stop_tv")


def settings_rows(spec: MatrixSpec) -> list[dict]:
    """The paper preset's settings beside the CPU settings of each attack entry (only fields
    that differ, plus the victim), so nobody takes the CPU budget for the paper's."""
    from ..attacks.build import resolve_config

    rows = []
    for attack in spec.attacks:
        used = resolve_config(attack.attack)
        preset = attack.attack.get("preset")
        paper = resolve_config(preset) if preset else None
        client = attack.client
        victim = (f"{client.get('model', 'dlg_lenet')}{client.get('model_kwargs') or ''}, "
                  f"{client.get('image_size', 32)}px, B={client.get('num_images', 1)}, share={client.get('share', 'gradient')}")
        rows.append({"attack": attack.name, "setting": "victim (CPU)", "paper": "see the paper", "cpu": victim})
        for key in _SETTINGS:
            value = getattr(used, key)
            ref = getattr(paper, key) if paper is not None else None
            if paper is None or value != ref:
                rows.append({"attack": attack.name, "setting": key, "paper": "" if paper is None else str(ref), "cpu": str(value)})
        if attack.note:
            rows.append({"attack": attack.name, "setting": "why", "paper": "", "cpu": attack.note})
    return rows


def pairing_table(rows: list[dict]) -> str:
    """A compact markdown table of summary rows (what the example scripts print)."""
    from ..report import markdown_table

    shown = [dict(r, psnr_text="skipped" if r["status"] != "ok" else f"{r['psnr_mean']:.1f} ± {r['psnr_std']:.1f}")
             for r in rows]
    return markdown_table(shown, ["attack", "defense", "psnr_text", "psnr_random", "ssim_mean", "label_accuracy", "rdlv",
                                  "accuracy", "epsilon", "verdict"],
                          ["attack", "defense", "PSNR (dB)", "random start", "SSIM", "label acc.", "RDLV", "model acc.",
                           "ε", "verdict"])
