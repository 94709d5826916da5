"""Make the figures of the attack tutorial (docs/en/attacks.md, docs/zh/attacks.md).

One comparison grid per attack family, written with :func:`privbox.report.save_comparison_grid`
into ``docs/images/attacks_*.png``, and a Markdown table of the measured PSNR, gradient loss and
wall time on stdout. CPU, single thread, seeded::

    OMP_NUM_THREADS=1 python benchmarks/make_attack_figures.py            # ~15 min on one core
    OMP_NUM_THREADS=1 python benchmarks/make_attack_figures.py --quick    # smoke test, ~1 min

The victims are small on purpose (CPU): the DLG LeNet for DLG/iDLG, a width-16 ResNet-18 at 32x32
for Inverting Gradients, and a width-8 ConvNet (conv-BN-ReLU, train-mode BN) at 16x16 for the
batch attacks (Paddle's train-mode BN double backward is ~10x slower than eval mode on CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import paddle  # noqa: E402

from privbox.attacks import (  # noqa: E402
    DLG,
    IDLG,
    GradientInversion,
    e2egi,
    ga,
    gradinversion,
    inverting_gradients,
    mlco_plan,
    run_group_consistency,
    run_mlco,
)
from privbox.fl.capture import compute_update  # noqa: E402
from privbox.data import make_target_batch  # noqa: E402
from privbox.metrics import evaluate  # noqa: E402
from privbox.nn import ConvNet, DLGLeNet, resnet18  # noqa: E402
from privbox.report import markdown_table, save_comparison_grid  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
ROWS: list[dict] = []


def _row(family: str, attack: str, recon, secret, note: str = "") -> tuple[np.ndarray, list[str]]:
    """Score ``recon``, record a table row, return the matched pixels and per-image captions."""
    result = evaluate(recon, secret)
    ROWS.append({
        "family": family, "attack": attack, "psnr_db": round(result["psnr"], 2), "ssim": round(result["ssim"], 3),
        "gradient_loss": f"{recon.best_loss:.3g}", "iterations": recon.iterations,
        "wall_s": round(recon.wall_time, 1), "note": note,
    })
    matched = recon.pixels[np.asarray(result["assignment"])] if result["assignment"] is not None else recon.pixels
    return matched, [f"{p:.1f} dB" for p in result["per_image"]["psnr"]]


def _grid(out: Path, name: str, secret, rows: dict, title: str) -> None:
    images = {label: pixels for label, (pixels, _) in rows.items()}
    captions = {label: caps for label, (_, caps) in rows.items()}
    path = save_comparison_grid(out / name, secret.images, images, captions=captions, title=title)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)", flush=True)


def convnet_capture(batch_size: int, seed: int, **kwargs):
    paddle.seed(seed)
    model = ConvNet(num_classes=10, width=8)
    batch = make_target_batch(batch_size, num_classes=10, size=16, seed=seed, shuffle_images=True)
    update, secret = compute_update(model, batch.images, batch.labels, CIFAR_MEAN, CIFAR_STD, bn_mode="train",
                                    model_id="convnet", model_kwargs={"width": 8}, **kwargs)
    return model, update, secret


def figure_dlg(out: Path, scale: float) -> None:
    batch = make_target_batch(1, num_classes=10, seed=0)
    model = DLGLeNet(num_classes=10, init_seed=0)
    update, secret = compute_update(model, batch.images, batch.labels, [0.5] * 3, [0.5] * 3, model_id="dlg_lenet")
    steps = max(5, int(60 * scale))
    rows = {
        "DLG": _row("DLG", "dlg", DLG(iterations=steps, progress=False).run(model, update), secret),
        "iDLG": _row("DLG", "idlg", IDLG(iterations=steps, progress=False).run(model, update), secret),
    }
    _grid(out, "attacks_dlg.png", secret, rows, f"DLG / iDLG, DLG LeNet, B = 1, {steps} L-BFGS steps")


def figure_inverting_gradients(out: Path, scale: float) -> None:
    paddle.seed(0)
    model = resnet18(num_classes=10, width=16)
    batch = make_target_batch(1, num_classes=10, seed=0)
    update, secret = compute_update(model, batch.images, batch.labels, CIFAR_MEAN, CIFAR_STD, bn_mode="eval",
                                    share_labels=True, model_id="resnet18", model_kwargs={"width": 16})
    iterations = max(10, int(400 * scale))
    rows = {}
    for lr, tv in ((0.1, 1e-4), (0.5, 0.02)):
        cfg = inverting_gradients(iterations=iterations, lr=lr, regularizers={"tv": tv}, label_strategy="given",
                                  progress=False)
        rows[f"lr {lr:g}, TV {tv:g}"] = _row("Inverting Gradients", f"inverting_gradients lr={lr:g} tv={tv:g}",
                                             GradientInversion(cfg).run(model, update), secret)
    _grid(out, "attacks_inverting_gradients.png", secret, rows,
          f"Inverting Gradients, ResNet-18 (width 16), eval BN, B = 1, {iterations} it")


def figure_gradinversion(out: Path, scale: float) -> None:
    model, update, secret = convnet_capture(4, seed=1)
    iterations = max(8, int(200 * scale))
    cfg = gradinversion(iterations=iterations, gradient_weight=1.0, progress=False)
    single = GradientInversion(cfg).run(model, update)
    group = run_group_consistency(model, update, cfg, num_seeds=4, refresh_every=max(4, iterations // 4))
    consensus = dataclasses.replace(group.reconstruction, images=group.consensus, pixels=group.consensus_pixels)
    rows = {
        "one seed": _row("GradInversion-style", "gradinversion (1 seed)", single, secret),
        "best of 4 (group)": _row("GradInversion-style", "group consistency, best seed", group.reconstruction, secret),
        "consensus": _row("GradInversion-style", "group consistency, mean consensus", consensus, secret),
    }
    _grid(out, "attacks_gradinversion.png", secret, rows,
          f"GradInversion-style, ConvNet, train BN, B = 4, {iterations} iterations, w_g = 1")


def figure_e2egi(out: Path, scale: float) -> None:
    model, update, secret = convnet_capture(4, seed=2, share_labels=True, share_bn_stats=True)
    iterations = max(10, int(200 * scale))
    inner = max(2, iterations // 10)
    total = sum(p.iterations for p in mlco_plan(iterations, 0.1046, inner))
    single = GradientInversion(e2egi(iterations=total, progress=False)).run(model, update)
    mlco = run_mlco(model, update, e2egi(iterations=iterations, progress=False), num_seeds=4, inner_iterations=inner)
    rows = {
        f"1 seed, {total} it": _row("E2EGI", f"e2egi single seed, {total} iterations", single, secret),
        "MLCO, 4 seeds": _row("E2EGI", f"MLCO S=4, T={iterations}, T_in={inner}", mlco.reconstruction, secret),
    }
    _grid(out, "attacks_e2egi.png", secret, rows, f"E2EGI, ConvNet, exact BN, B = 4; MLCO T = {iterations}")


def figure_ga(out: Path, scale: float) -> None:
    model, update, secret = convnet_capture(4, seed=3)
    iterations = max(10, int(400 * scale))
    recon = GradientInversion(ga(iterations=iterations, progress=False)).run(model, update)
    note = recon.events[-1] if recon.events else "no early stop"
    rows = {"GA": _row("GA", "ga", recon, secret, note)}
    _grid(out, "attacks_ga.png", secret, rows, f"GA (Label-based-Defense), ConvNet, LLG labels, {recon.iterations} iterations")


FIGURES = {
    "dlg": figure_dlg,
    "inverting_gradients": figure_inverting_gradients,
    "gradinversion": figure_gradinversion,
    "e2egi": figure_e2egi,
    "ga": figure_ga,
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"), help="output folder (default docs/images)")
    parser.add_argument("--quick", action="store_true", help="tiny budgets (a smoke test, not the published figures)")
    parser.add_argument("--only", nargs="*", choices=sorted(FIGURES), help="make only these figures")
    args = parser.parse_args(argv)
    out = Path(args.out)
    scale = 0.02 if args.quick else 1.0
    start = time.perf_counter()
    for name in args.only or FIGURES:
        tic = time.perf_counter()
        FIGURES[name](out, scale)
        print(f"{name}: {time.perf_counter() - tic:.1f} s", flush=True)
    print()
    print(markdown_table(ROWS, ["family", "attack", "psnr_db", "ssim", "gradient_loss", "iterations", "wall_s", "note"]))
    print(f"\ntotal {time.perf_counter() - start:.1f} s, paddle {paddle.__version__}, CPU, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")


if __name__ == "__main__":
    main()
