"""Leakage-vs-privacy curves (``privbox matrix --sweep``).

Each :class:`~privbox.experiments.spec.SweepSpec` sweeps one parameter of one defense (DP-SGD's
noise multiplier, GaussianPrivacy's σ0, DGC's or top-k's sparsity) against one attack entry of the
matrix: at every value the attack runs on the defended client for every seed (reconstruction PSNR,
mean ± std) and the victim is trained under that defense (model accuracy, and ε where the defense
has an accountant). Each curve is written as ``sweep_<name>.csv`` and ``sweep_<name>.png``
(PSNR on the left axis, accuracy on the right); cells resume like the matrix's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..report import csv_table, markdown_table, write_text_atomic
from .cell import run_cell
from .runner import cell_key, load_cell, save_cell
from .spec import DefenseEntry, MatrixSpec, SweepSpec
from .utility import measure_row_utility

__all__ = ["SweepResult", "run_sweeps", "sweep_points", "SWEEP_COLUMNS"]

SWEEP_COLUMNS = ["sweep", "attack", "defense", "param", "value", "psnr_mean", "psnr_std", "ssim_mean", "psnr_random",
                 "label_accuracy", "accuracy", "epsilon", "seeds"]


@dataclass
class SweepResult:
    """Where the curves went and their rows."""

    out_dir: Path
    rows: list[dict]
    files: list[Path]
    wall_s: float


def sweep_points(sweep: SweepSpec) -> list[DefenseEntry]:
    """One defense row per swept value (``params[param] = value``)."""
    points = []
    for i, value in enumerate(sweep.values):
        params = dict(sweep.defense.get("params", {}), **{sweep.param: value})
        points.append(DefenseEntry(name=f"{sweep.name}-{i}", defenses=[{"name": sweep.defense["name"], "params": params}],
                                   rounds=sweep.rounds, note=f"{sweep.param}={value}"))
    return points


def _point(spec: MatrixSpec, sweep: SweepSpec, defense: DefenseEntry, value: float, folder: Path,
           log: Callable[[str], None]) -> dict:
    attack = next(a for a in spec.attacks if a.name == sweep.attack)
    cells = []
    for seed in spec.seeds:
        stem, key = f"{attack.name}__{defense.name}__s{seed}", cell_key(attack, defense, seed)
        row = load_cell(folder, stem, key)
        if row is None:
            result = run_cell(attack, defense, seed)
            row = dict(result.row, key=key)
            save_cell(folder, stem, row, result.originals, result.reconstruction)
        cells.append(row)
    ok = [c for c in cells if c["status"] == "ok"]
    util = measure_row_utility(attack, defense, spec.utility) if spec.utility.enabled else {}
    point = {"sweep": sweep.name, "attack": attack.name, "defense": sweep.defense["name"], "param": sweep.param,
             "value": value, "seeds": len(ok), "accuracy": util.get("accuracy"), "epsilon": util.get("epsilon")}
    if ok:
        psnr = [c["psnr"] for c in ok]
        point.update(psnr_mean=float(np.mean(psnr)), psnr_std=float(np.std(psnr)),
                     ssim_mean=float(np.mean([c["ssim"] for c in ok])),
                     psnr_random=float(np.mean([c["psnr_random"] for c in ok])),
                     label_accuracy=float(np.mean([c["label_accuracy"] for c in ok])))
    else:
        point["reason"] = cells[0].get("reason", "")
    log(f"[privbox sweep] {sweep.name}: {sweep.param}={value}: PSNR {point.get('psnr_mean', float('nan')):.2f} dB, "
        f"accuracy {point['accuracy'] if point['accuracy'] is not None else '—'}, epsilon {point['epsilon']}")
    return point



def run_sweeps(spec: MatrixSpec, out_dir, resume: bool = True, log: Callable[[str], None] = print,
               names: Optional[list[str]] = None) -> SweepResult:
    """Run every sweep of ``spec`` (or those in ``names``) and write one CSV and one PNG per curve
    plus ``sweeps.md``."""
    from ..report.matrix_figures import save_sweep_curve

    start = time.perf_counter()
    out = Path(out_dir)
    folder = out / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    if not resume:
        for stale in folder.glob("*.json"):
            stale.unlink()
    rows: list[dict] = []
    files: list[Path] = []
    sections = []
    for sweep in spec.sweeps:
        if names and sweep.name not in names:
            continue
        points = [_point(spec, sweep, d, v, folder, log) for d, v in zip(sweep_points(sweep), sweep.values)]
        rows += points
        files.append(write_text_atomic(out / f"sweep_{sweep.name}.csv", csv_table(points, SWEEP_COLUMNS)))
        done = [p for p in points if "psnr_mean" in p]
        ticks = None
        if any(p.get("epsilon") is not None for p in done):
            ticks = [f"{p['value']:g}\nε={p['epsilon']:.3g}" if p.get("epsilon") is not None else f"{p['value']:g}"
                     for p in done]
        files.append(save_sweep_curve(
            out / f"sweep_{sweep.name}.png", [p["value"] for p in done], [p["psnr_mean"] for p in done],
            [p["psnr_std"] for p in done], [p.get("accuracy") for p in done], sweep.x_label or sweep.param,
            f"{sweep.attack} vs {sweep.defense['name']}: leakage and accuracy",
            psnr_random=done[0]["psnr_random"] if done else None, log_x=sweep.log_x, x_ticks=ticks))
        sections.append(f"## {sweep.name}: {sweep.attack} vs {sweep.defense['name']} ({sweep.param})\n\n"
                        + markdown_table(points, ["value", "psnr_mean", "psnr_std", "psnr_random", "ssim_mean",
                                                  "accuracy", "epsilon"],
                                         [sweep.param, "PSNR", "± (seeds)", "random start", "SSIM", "model acc.", "ε"])
                        + f"\n![{sweep.name}](sweep_{sweep.name}.png)\n")
    wall = time.perf_counter() - start
    files.append(write_text_atomic(out / "sweeps.md", f"# Leakage vs privacy ({spec.title})\n\nSeeds {spec.seeds}, "
                                   f"{wall:.0f} s.\n\n" + "\n".join(sections)))
    return SweepResult(out, rows, files, wall)
