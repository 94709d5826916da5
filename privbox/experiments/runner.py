"""Run a :class:`~privbox.experiments.spec.MatrixSpec` cell by cell and write its report.

Every cell is saved as it finishes (``cells/<attack>__<defense>__s<seed>.json`` plus the pixels in
a ``.safetensors`` file, both atomic), and every accuracy measurement likewise under ``utility/``;
a rerun with the same output folder reuses the files whose recorded settings match and runs only
the rest, so an interrupted matrix resumes cell by cell. At the end the folder gets
``matrix.json``, ``matrix.csv``, ``matrix.md``, the heatmap ``matrix.png`` and ``grid.png``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..core.atomic import atomic_output
from ..report import markdown_table, write_json_atomic, write_text_atomic
from .cell import run_cell
from .spec import AttackEntry, DefenseEntry, MatrixSpec
from .summary import aggregate, settings_rows, summary_csv, summary_markdown, verdict_lines, verdicts
from .utility import measure_row_utility, utility_key

__all__ = ["MatrixResult", "run_matrix", "run_pairing", "cell_key", "load_cell", "save_cell"]


@dataclass
class MatrixResult:
    """What :func:`run_matrix` wrote and computed."""

    out_dir: Path
    cells: list[dict]
    rows: list[dict]
    summary: dict
    files: dict[str, Path]
    wall_s: float
    ran: int
    reused: int


def cell_key(attack: AttackEntry, defense: DefenseEntry, seed: int, extra: Optional[dict] = None) -> str:
    """A digest of everything a cell depends on (a stored cell is reused only if it matches)."""
    payload = json.dumps({"attack": asdict(attack), "defense": asdict(defense), "seed": seed, "extra": extra or {}},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _cell_stem(attack: str, defense: str, seed: int) -> str:
    return f"{attack}__{defense}__s{seed}"


def save_cell(folder: Path, stem: str, row: dict, originals: Optional[np.ndarray], recon: Optional[np.ndarray]) -> None:
    """Write the pixels (safetensors, atomic) first, then the row (JSON, atomic): a row on disk
    always has its pixels."""
    if originals is not None and recon is not None:
        from safetensors.numpy import save_file

        path = folder / f"{stem}.safetensors"
        with atomic_output(path, suffix=".safetensors") as tmp:
            save_file({"originals": np.ascontiguousarray(originals, dtype=np.float32),
                       "reconstruction": np.ascontiguousarray(recon, dtype=np.float32)}, tmp,
                      metadata={"format": "privbox.matrix_cell", "cell": stem})
    write_json_atomic(folder / f"{stem}.json", row)


def load_cell(folder: Path, stem: str, key: str) -> Optional[dict]:
    """The stored row of a cell if it exists and was made with the same settings, else None."""
    path = folder / f"{stem}.json"
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if row.get("key") != key:
        return None
    if row.get("status") == "ok" and not (folder / f"{stem}.safetensors").is_file():
        return None
    return row


def load_pixels(folder: Path, stem: str) -> Optional[dict]:
    """``{"originals", "reconstruction"}`` of a stored cell, or None."""
    path = folder / f"{stem}.safetensors"
    if not path.is_file():
        return None
    from safetensors.numpy import load_file

    return load_file(str(path))


def _utilities(spec: MatrixSpec, out: Path, log: Callable[[str], None]) -> dict[str, dict]:
    folder = out / "utility"
    results: dict[str, dict] = {}
    if not spec.utility.enabled:
        return results
    for attack in spec.attacks:
        for defense in spec.defenses:
            key = utility_key(attack, defense)
            if key in results:
                continue
            digest = hashlib.sha256(json.dumps([key, asdict(spec.utility), asdict(defense), attack.client],
                                               sort_keys=True, default=str).encode()).hexdigest()[:16]
            path = folder / f"{key}.json"
            if path.is_file():
                stored = json.loads(path.read_text(encoding="utf-8"))
                if stored.get("digest") == digest:
                    results[key] = stored
                    continue
            log(f"[privbox matrix] accuracy of {key} ...")
            result = dict(measure_row_utility(attack, defense, spec.utility), digest=digest, key=key)
            write_json_atomic(path, result)
            results[key] = result
    return results


def run_matrix(spec: MatrixSpec, out_dir, resume: bool = True, progress: bool = False,
               log: Callable[[str], None] = print, figures: bool = True) -> MatrixResult:
    """Run every cell of ``spec`` (reusing stored ones when ``resume``) and write the report.

    Args:
        spec: the matrix.
        out_dir: output folder (created).
        resume: reuse stored cells and accuracy measurements whose settings match.
        progress: progress bars inside attacks.
        log: where one line per cell goes.
        figures: write ``matrix.png`` and ``grid.png``.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    cells_dir = out / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    cells: list[dict] = []
    ran = reused = 0
    for attack in spec.attacks:
        for defense in spec.defenses:
            for seed in spec.seeds:
                stem, key = _cell_stem(attack.name, defense.name, seed), cell_key(attack, defense, seed)
                row = load_cell(cells_dir, stem, key) if resume else None
                if row is not None:
                    reused += 1
                else:
                    result = run_cell(attack, defense, seed, progress=progress)
                    row = dict(result.row, key=key)
                    save_cell(cells_dir, stem, row, result.originals, result.reconstruction)
                    ran += 1
                cells.append(row)
                log(_cell_line(row))
    utilities = _utilities(spec, out, log)
    rows = aggregate(cells, spec, utilities)
    summary = verdicts(rows)
    files = _write_report(spec, out, cells, rows, summary, utilities, time.perf_counter() - start, figures)
    return MatrixResult(out, cells, rows, summary, files, time.perf_counter() - start, ran, reused)


def _cell_line(row: dict) -> str:
    head = f"[privbox matrix] {row['attack']:>20} vs {row['defense']:<16} seed {row['seed']}:"
    if row["status"] != "ok":
        return f"{head} skipped ({row['reason']})"
    return (f"{head} PSNR {row['psnr']:6.2f} dB (random start {row['psnr_random']:.2f}), SSIM {row['ssim']:.3f}, "
            f"labels {row['label_accuracy']:.2f}, {row['wall_s']:.1f} s")


def _environment() -> dict:
    import os

    import paddle

    from .. import __version__

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"privbox": __version__, "paddle": paddle.__version__, "device": paddle.get_device(),
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "load_average": list(load) if load else None, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _write_report(spec: MatrixSpec, out: Path, cells: list[dict], rows: list[dict], summary: dict,
                  utilities: dict, wall: float, figures: bool) -> dict[str, Path]:
    env = _environment()
    files = {
        "json": write_json_atomic(out / "matrix.json", {"spec": spec.to_dict(), "environment": env, "wall_s": wall,
                                                         "summary": summary, "rows": rows, "cells": cells,
                                                         "utility": utilities, "settings": settings_rows(spec)}),
        "csv": write_text_atomic(out / "matrix.csv", summary_csv(rows)),
    }
    if figures:
        files.update(write_figures(spec, out, rows))
    long_table = markdown_table(
        [r for r in rows if r["status"] == "ok"],
        ["attack", "defense", "batch_size", "matching", "psnr_mean", "psnr_std", "psnr_random", "ssim_mean",
         "label_accuracy", "rdlv", "accuracy", "epsilon", "verdict", "wall_s"],
        ["attack", "defense", "B", "matching", "PSNR", "± (seeds)", "random start", "SSIM", "label acc.", "RDLV",
         "model acc.", "ε", "verdict", "time (s)"],
    )
    skipped = [r for r in rows if r["status"] == "skipped"]
    body = [f"# {spec.title}\n",
            f"Seeds {spec.seeds}; a cell *leaked* when its mean PSNR beats the random-start PSNR by at least "
            f"{spec.leak_margin_db:g} dB. PSNR/SSIM on [0, 1] pixels, matching named per row; label accuracy is the "
            f"multiset accuracy; RDLV is NVIDIA's relative data leakage value (SSIM, population-average prior); model "
            f"accuracy is a short training run of the same victim under the same defense on the embedded-photograph "
            f"proxy task. {env['device']}, Paddle {env['paddle']}, {env['date']}, {wall:.0f} s.\n",
            "## Verdict\n", "\n".join(f"- {line}" for line in verdict_lines(summary)) + "\n",
            "## PSNR (dB), mean ± std over seeds\n", summary_markdown(rows, spec),
            "![heatmap](matrix.png)\n\n![grid](grid.png)\n" if figures else "",
            "## Every metric\n", long_table]
    if skipped:
        body += ["## Skipped pairs (read from the registries' requirements)\n",
                 "\n".join(f"- {r['attack']} vs {r['defense']}: {r['reason']}" for r in skipped) + "\n"]
    body += ["## CPU settings beside the paper presets\n",
             "These budgets make every attack work undefended within minutes on a CPU; they are **not** the "
             "papers' settings.\n\n",
             markdown_table(settings_rows(spec), ["attack", "setting", "paper", "cpu"],
                            ["attack", "setting", "paper preset", "this matrix (CPU)"])]
    files["md"] = write_text_atomic(out / "matrix.md", "\n".join(body))
    return files


def write_figures(spec: MatrixSpec, out: Path, rows: list[dict]) -> dict[str, Path]:
    """``matrix.png`` (heatmap) and ``grid.png`` (first image of each cell at the first seed)."""
    from ..report.matrix_figures import save_matrix_grid, save_matrix_heatmap

    attacks = [a.name for a in spec.attacks]
    defenses = [d.name for d in spec.defenses]
    heat = save_matrix_heatmap(out / "matrix.png", rows, attacks, defenses)
    originals: dict[str, np.ndarray] = {}
    images: dict[tuple, np.ndarray] = {}
    captions: dict[tuple, str] = {}
    seed = spec.seeds[0]
    for a in attacks:
        for d in defenses:
            pixels = load_pixels(out / "cells", _cell_stem(a, d, seed))
            if pixels is None:
                continue
            originals.setdefault(a, pixels["originals"][0])
            images[(a, d)] = pixels["reconstruction"][0]
            cell = json.loads((out / "cells" / f"{_cell_stem(a, d, seed)}.json").read_text(encoding="utf-8"))
            captions[(a, d)] = f"{cell['per_image_psnr'][0]:.1f} dB" if "per_image_psnr" in cell else ""
    grid = save_matrix_grid(out / "grid.png", originals, images, attacks, defenses, captions,
                            title=f"first image of each cell (seed {seed}); rows: defenses, columns: attacks")
    return {"heatmap": heat, "grid": grid}


def run_pairing(attack: AttackEntry, defenses: list[DefenseEntry], seeds, out_dir, utility: bool = True,
                show: Callable[[str], None] = print) -> MatrixResult:
    """One attack against no defense and ``defenses``: run the small matrix, show its table
    (:func:`privbox.experiments.summary.pairing_table`) and where the report went. The example
    scripts are built on this."""
    from .summary import pairing_table

    spec = MatrixSpec(attacks=[attack], defenses=[DefenseEntry("none")] + list(defenses), seeds=list(seeds))
    spec.utility.enabled = bool(utility)
    result = run_matrix(spec, out_dir, log=lambda line: None)
    show(pairing_table(result.rows))
    show(f"Report, heatmap and image grid: {result.out_dir / 'matrix.md'}")
    return result
