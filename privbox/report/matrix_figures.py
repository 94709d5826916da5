"""Figures of the defense x attack matrix: the PSNR heatmap, the reconstruction grid and the
leakage-vs-privacy curves (all written atomically through :func:`privbox.report.figures._save`)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from .figures import _pyplot, _save, _to_hwc

__all__ = ["save_matrix_heatmap", "save_matrix_grid", "save_sweep_curve"]


def save_matrix_heatmap(path, rows: Sequence[Mapping], attacks: Sequence[str], defenses: Sequence[str],
                        title: str = "PSNR (dB) of the reconstruction, mean ± std over seeds") -> Path:
    """Heatmap: rows defenses, columns attacks, colour = mean PSNR, annotated ``mean ± std``;
    skipped cells are grey with the word *skipped*; the bottom row is the random start."""
    plt = _pyplot()
    by = {(r["attack"], r["defense"]): r for r in rows}
    labels = list(defenses) + ["random start"]
    grid = np.full((len(labels), len(attacks)), np.nan)
    text = [["" for _ in attacks] for _ in labels]
    for j, a in enumerate(attacks):
        for i, d in enumerate(defenses):
            r = by.get((a, d), {})
            if r.get("status") == "ok":
                grid[i, j] = r["psnr_mean"]
                text[i][j] = f"{r['psnr_mean']:.1f}\n±{r['psnr_std']:.1f}"
            else:
                text[i][j] = "skipped" if r.get("status") == "skipped" else "—"
        base = by.get((a, "none"), {})
        if base.get("psnr_random") is not None:
            grid[-1, j] = base["psnr_random"]
            text[-1][j] = f"{base['psnr_random']:.1f}"
    fig, ax = plt.subplots(figsize=(1.25 * len(attacks) + 2.4, 0.62 * len(labels) + 1.4))
    cmap = plt.get_cmap("RdYlGn_r").with_extremes(bad="#d0d0d0")
    finite = grid[np.isfinite(grid)]
    vmin, vmax = (float(finite.min()), float(max(finite.max(), finite.min() + 1))) if finite.size else (0.0, 1.0)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    for i in range(len(labels)):
        for j in range(len(attacks)):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(attacks)), attacks, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.axhline(len(defenses) - 0.5, color="black", linewidth=1)
    fig.colorbar(image, ax=ax, label="PSNR (dB), red = leaked")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def save_matrix_grid(path, originals: Mapping[str, np.ndarray], images: Mapping[tuple, np.ndarray],
                     attacks: Sequence[str], defenses: Sequence[str], captions: Optional[Mapping[tuple, str]] = None,
                     title: str = "first image of each cell (seed 0)") -> Path:
    """Image grid: first row the originals (per attack: its victim's first image), then one row
    per defense, one column per attack; ``images[(attack, defense)]`` is ``[C, H, W]`` in [0, 1]."""
    plt = _pyplot()
    labels = ["original"] + list(defenses)
    fig, axes = plt.subplots(len(labels), len(attacks), figsize=(1.35 * len(attacks) + 1.0, 1.35 * len(labels) + 0.6),
                             squeeze=False)
    for j, a in enumerate(attacks):
        for i, d in enumerate(labels):
            ax = axes[i][j]
            picture = originals.get(a) if d == "original" else images.get((a, d))
            if picture is not None:
                ax.imshow(_to_hwc(picture), cmap="gray" if picture.shape[0] == 1 else None, vmin=0, vmax=1,
                          interpolation="nearest")
            else:
                ax.set_facecolor("#d0d0d0")
                ax.text(0.5, 0.5, "skipped" if d != "original" else "", ha="center", va="center", fontsize=7,
                        transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(a, fontsize=8)
            if j == 0:
                ax.set_ylabel(d, fontsize=8)
            if captions and (a, d) in captions:
                ax.set_xlabel(captions[(a, d)], fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def save_sweep_curve(path, x: Sequence[float], psnr: Sequence[float], psnr_std: Sequence[float],
                     accuracy: Sequence[Optional[float]], x_label: str, title: str, psnr_random: Optional[float] = None,
                     log_x: bool = False, x_ticks: Optional[Sequence[str]] = None) -> Path:
    """One leakage-vs-privacy curve: PSNR (left axis, mean ± std) and model accuracy (right axis)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    xs = np.asarray(x, dtype=float)
    ax.errorbar(xs, psnr, yerr=psnr_std, marker="o", color="tab:red", capsize=3, label="reconstruction PSNR")
    if psnr_random is not None:
        ax.axhline(psnr_random, color="tab:red", linestyle=":", linewidth=1, label="random start")
    ax.set_xlabel(x_label)
    ax.set_ylabel("PSNR (dB)", color="tab:red")
    if log_x:
        ax.set_xscale("log")
    if x_ticks is not None:
        ax.set_xticks(xs, x_ticks)
    acc = [np.nan if a is None else a for a in accuracy]
    if np.isfinite(acc).any():
        ax2 = ax.twinx()
        ax2.plot(xs, acc, marker="s", color="tab:blue", label="model accuracy")
        ax2.set_ylabel("model accuracy (proxy task)", color="tab:blue")
        ax2.set_ylim(0, 1)
    ax.legend(loc="best", fontsize=7)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
