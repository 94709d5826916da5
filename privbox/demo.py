"""The ``privbox demo`` experiment: the quick defense x attack matrix on the embedded images.

Every attack family (DLG, iDLG, Inverting Gradients, GradInversion-style, E2EGI, GA, NVIDIA's
FedAvg update inversion) runs at a small CPU budget against an undefended client and against
DGC as the local optimiser over three rounds, per-sample DP-SGD (with its ε), GaussianPrivacy,
top-k pruning and a label defense (``privbox/configs/matrix_demo.yaml``). The output folder gets
the heatmap ``matrix.png``, the image grid ``grid.png``, ``matrix.md``/``.csv``/``.json``, plus
``metrics.json`` and ``results.md`` whose summary says which attacks leaked and which defenses
stopped them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from . import __version__
from .experiments import load_matrix_spec, run_matrix
from .experiments.summary import verdict_lines
from .report import markdown_table, write_json_atomic, write_text_atomic

DEMO_CONFIG = "matrix_demo"

READING = (
    "How to read it: each cell is the PSNR (dB) of the best reconstruction of the client's private "
    "photographs from what the client sent. A cell *leaked* when it beats the random-start PSNR (the "
    "bottom row of the heatmap) by at least {margin:g} dB; above about 25 dB the photograph is plainly "
    "recognisable. These are small CPU budgets on a 16x16 LeNet victim: a defense that stops an attack "
    "here may not stop it at the papers' budgets (docs/en/matrix.md)."
)


@dataclass
class DemoResult:
    """Where the demo wrote its outputs, the summary rows and the verdict."""

    out_dir: Path
    rows: list[dict]
    summary: dict
    figures: list[Path]
    metrics_path: Path
    table_path: Path
    wall_time: float


def run_demo(
    out_dir="privbox-demo",
    iterations: Optional[int] = None,
    seeds: Sequence[int] = (0,),
    attacks: Optional[Sequence[str]] = None,
    defenses: Optional[Sequence[str]] = None,
    utility: bool = True,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Run the quick matrix and write figures, tables, ``metrics.json`` and ``results.md``.

    Args:
        out_dir: output folder (created; cells already there are reused).
        iterations: cap every attack's iteration budget at this value (None: the demo budgets).
        seeds: client seeds.
        attacks / defenses: restrict to these entries of ``matrix_demo.yaml``.
        utility: measure the model accuracy (and DP-SGD's ε) under each defense.
        progress: progress bars inside attacks.
        log: where one line per cell goes.
    """
    start = time.perf_counter()
    spec = load_matrix_spec(DEMO_CONFIG).select(list(attacks or []), list(defenses or []))
    if iterations is not None:
        capped = [dataclasses.replace(a, attack=dict(a.attack, iterations=min(int(iterations), int(a.attack.get("iterations", iterations)))))
                  for a in spec.attacks]
        spec = dataclasses.replace(spec, attacks=capped)
    spec = dataclasses.replace(spec, seeds=[int(s) for s in seeds],
                               utility=dataclasses.replace(spec.utility, enabled=bool(utility)))
    result = run_matrix(spec, out_dir, progress=progress, log=log)
    wall = time.perf_counter() - start
    out = result.out_dir
    metrics_path = write_json_atomic(out / "metrics.json", {
        "run": {"privbox_version": __version__, "config": DEMO_CONFIG, "seeds": spec.seeds, "wall_time_s": wall,
                "iterations_cap": iterations},
        "summary": result.summary, "results": result.rows})
    ok = [r for r in result.rows if r["status"] == "ok"]
    table = markdown_table(ok, ["attack", "defense", "batch_size", "matching", "psnr_mean", "psnr_random", "ssim_mean",
                                "label_accuracy", "accuracy", "epsilon", "verdict"],
                           ["attack", "defense", "B", "matching", "PSNR (dB)", "random start", "SSIM", "label acc.",
                            "model acc.", "ε", "verdict"])
    body = ("# privbox demo: the quick defense x attack matrix\n\n"
            + "\n".join(f"- {line}" for line in verdict_lines(result.summary)) + "\n\n"
            + READING.format(margin=spec.leak_margin_db) + "\n\n"
            + f"Finished in {wall:.0f} s. Full report: [matrix.md](matrix.md).\n\n"
            + "![heatmap](matrix.png)\n\n![grid](grid.png)\n\n" + table)
    table_path = write_text_atomic(out / "results.md", body)
    figures = [p for k, p in result.files.items() if k in ("heatmap", "grid")]
    return DemoResult(out, result.rows, result.summary, figures, metrics_path, table_path, wall)
