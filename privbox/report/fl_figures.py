"""Figures of the federated leakage audit (ALGORITHMS.md §9.4), as in Hatamizadeh et al.
(IEEE TMI 2023) and NVIDIA FLARE's quantifying-data-leakage example:

* :func:`plot_rdlv_per_round`: RDLV per audited round, one line per client: the mean over the
  client's training images with a bootstrap 95 % confidence band, and the maximum (the value the
  filter compares with its threshold) as a dashed line; a line at 0 (no better than the prior);
* :func:`plot_rdlv_vs_sigma0`: RDLV against GaussianPrivacy's σ0 (one run per value), mean over
  images and audited rounds with its 95 % band and the maximum, per client; on a second axis the
  test accuracy of each run's best global model (dashed grey);
* :func:`save_audit_pairs`: a client's training images over their closest reconstructions.

All files are written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from .figures import _pyplot, _save, _to_hwc

__all__ = ["bootstrap_ci", "plot_rdlv_per_round", "plot_rdlv_vs_sigma0", "save_audit_pairs", "group_rdlv"]


def bootstrap_ci(values: Sequence[float], level: float = 0.95, resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its percentile-bootstrap confidence interval (one value: no width)."""
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if x.size < 2:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return mean, float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def group_rdlv(audits: Sequence[Mapping]) -> dict[str, dict[int, list[float]]]:
    """``{client: {round: per-image RDLV}}`` from audit summaries."""
    out: dict[str, dict[int, list[float]]] = {}
    for a in audits:
        out.setdefault(str(a["client"]), {})[int(a["round"])] = [float(v) for v in a["rdlv_per_image"]]
    return out


def plot_rdlv_per_round(audits: Sequence[Mapping], path, title: str = "") -> Path:
    """RDLV per audited round per client (mean, 95 % band, max); see the module docstring."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for c, (client, rounds) in enumerate(sorted(group_rdlv(audits).items())):
        xs = sorted(rounds)
        stats = np.array([bootstrap_ci(rounds[r]) for r in xs])
        colour = f"C{c}"
        ax.plot(xs, stats[:, 0], "o-", color=colour, label=f"{client} (mean)")
        ax.fill_between(xs, stats[:, 1], stats[:, 2], color=colour, alpha=0.2)
        ax.plot(xs, [max(rounds[r]) for r in xs], "^--", color=colour, alpha=0.8, label=f"{client} (max)")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("FL round")
    ax.set_ylabel("RDLV (relative to the prior)")
    ax.set_title(title or "RDLV per round (mean with 95% band, and max over the client's images)", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_rdlv_vs_sigma0(runs: Sequence[Mapping], path, title: str = "") -> Path:
    """RDLV against σ0 per client with the best global model's test accuracy on a twin axis.

    ``runs``: one mapping per σ0 with ``sigma0``, ``audits`` (audit summaries) and ``test_accuracy``.
    """
    plt = _pyplot()
    runs = sorted(runs, key=lambda r: float(r["sigma0"]))
    sigmas = [float(r["sigma0"]) for r in runs]
    clients = sorted({str(a["client"]) for r in runs for a in r["audits"]})
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for c, client in enumerate(clients):
        xs, stats, maxima = [], [], []
        for s, r in zip(sigmas, runs):
            values = [v for a in r["audits"] if str(a["client"]) == client for v in a["rdlv_per_image"]]
            if values:
                xs.append(s)
                stats.append(bootstrap_ci(values))
                maxima.append(max(values))
        if not xs:
            continue
        stats_a = np.array(stats)
        colour = f"C{c}"
        ax.plot(xs, stats_a[:, 0], "o-", color=colour, label=f"{client} (mean)")
        ax.fill_between(xs, stats_a[:, 1], stats_a[:, 2], color=colour, alpha=0.2)
        ax.plot(xs, maxima, "^--", color=colour, alpha=0.8, label=f"{client} (max)")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("GaussianPrivacy sigma0 (no formal guarantee)")
    ax.set_ylabel("RDLV (relative to the prior)")
    twin = ax.twinx()
    acc = [r.get("test_accuracy") for r in runs]
    twin.plot(sigmas, [np.nan if a is None else a for a in acc], "s--", color="grey", label="best global model: test accuracy")
    twin.set_ylim(0.0, 1.0)
    twin.set_ylabel("test accuracy", color="grey")
    lines, labels = ax.get_legend_handles_labels()
    l2, lab2 = twin.get_legend_handles_labels()
    ax.legend(lines + l2, labels + lab2, fontsize=7, loc="best")
    ax.set_title(title or "RDLV vs sigma0 (mean with 95% band over images and rounds, and max)", fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def save_audit_pairs(path, targets: np.ndarray, closest: np.ndarray, captions: Sequence[str], title: str = "") -> Path:
    """Two rows: the client's training images and, under each, its closest reconstruction."""
    plt = _pyplot()
    targets = np.asarray(targets, dtype=np.float32)
    closest = np.asarray(closest, dtype=np.float32)
    if closest.shape[1] != targets.shape[1]:
        closest = np.repeat(closest[:, :1], targets.shape[1], axis=1)
    n = targets.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n + 0.4, 3.2), squeeze=False)
    for i in range(n):
        for row, images in enumerate((targets, closest)):
            img = images[i]
            lo, hi = float(img.min()), float(img.max())
            shown = (img - lo) / (hi - lo) if row == 1 and hi > lo else img
            a = axes[row][i]
            a.imshow(_to_hwc(shown), cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1, interpolation="nearest")
            a.set_xticks([])
            a.set_yticks([])
        axes[1][i].set_xlabel(captions[i] if i < len(captions) else "", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    return _save(fig, path)
