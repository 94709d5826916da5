"""Quality and speed of every attack preset on the embedded images.

For each preset (DLG, iDLG, Inverting Gradients, GradInversion-style, E2EGI, GA), each model
(the DLG LeNet and ResNet-18 with a CIFAR stem, eval-mode BN) and each batch size, a client
computes one gradient of a target batch from the embedded samples; the preset attacks it with a
fixed iteration budget; the table reports PSNR / SSIM (Hungarian or index matching, named),
label accuracy (multiset) and seconds per iteration. Budgets are far below the papers' 24 000
iterations on purpose (CPU): the numbers rank presets at equal cost, they do not reproduce the
papers' final quality.

    python benchmarks/bench_presets.py --batch-sizes 1,4,8 --iterations 200 --resnet-iterations 20

Writes a markdown table to stdout and, with --out, JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import paddle

from privbox.attacks import GradientInversion, get_preset
from privbox.fl.capture import compute_update
from privbox.data import make_target_batch
from privbox.metrics import evaluate
from privbox.nn import DLGLeNet, resnet18
from privbox.report import markdown_table

PRESETS = ("dlg", "idlg", "inverting_gradients", "gradinversion", "e2egi", "ga")


def build(model_name: str, seed: int):
    paddle.seed(seed)
    if model_name == "dlg_lenet":
        return DLGLeNet(num_classes=10, init_seed=seed), {}
    return resnet18(num_classes=10), {}


def run_one(preset: str, model_name: str, batch_size: int, iterations: int, seed: int) -> dict:
    batch = make_target_batch(batch_size, num_classes=10, seed=seed)
    model, kwargs = build(model_name, seed)
    bn_mode = "eval"
    update, secret = compute_update(
        model, batch.images, batch.labels, [0.5] * 3, [0.5] * 3, bn_mode=bn_mode,
        model_id=model_name, model_kwargs=kwargs, share_labels=True, share_bn_stats=model_name != "dlg_lenet",
    )
    overrides = {"iterations": iterations, "progress": False, "seed": seed}
    config = get_preset(preset, **overrides)
    if model_name == "dlg_lenet" and "bn" in config.regularizers:
        config = config.replace(regularizers={k: v for k, v in config.regularizers.items() if k != "bn"})
    if preset == "e2egi" and model_name != "dlg_lenet":
        config = config.replace(regularizers={**config.regularizers, "bn": {"weight": 0.0357, "source": "exact"}})
    start = time.perf_counter()
    recon = GradientInversion(config).run(model, update)
    wall = time.perf_counter() - start
    scores = evaluate(recon, secret)
    return {
        "preset": preset,
        "model": model_name,
        "B": batch_size,
        "iterations": recon.iterations,
        "psnr": scores["psnr"],
        "ssim": scores["ssim"],
        "label_acc": scores["label_accuracy"],
        "matching": scores["matching"],
        "s_per_it": wall / max(recon.iterations, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--models", default="dlg_lenet,resnet18")
    parser.add_argument("--batch-sizes", default="1,4,8")
    parser.add_argument("--iterations", type=int, default=200, help="budget on the DLG LeNet")
    parser.add_argument("--resnet-iterations", type=int, default=20, help="budget on ResNet-18")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    rows = []
    for model_name in args.models.split(","):
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            for preset in args.presets.split(","):
                iterations = args.iterations if model_name == "dlg_lenet" else args.resnet_iterations
                row = run_one(preset, model_name, batch_size, iterations, args.seed)
                rows.append(row)
                print(json.dumps(row), flush=True)
    info = {
        "device": paddle.get_device(),
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "paddle": paddle.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    print()
    print(f"Device {info['device']} ({info['cpu']}), {args.threads} thread(s), Paddle {info['paddle']}, {info['date']}")
    print(markdown_table(rows, ["preset", "model", "B", "iterations", "psnr", "ssim", "label_acc", "matching", "s_per_it"],
                         ["preset", "model", "B", "iterations", "PSNR (dB)", "SSIM", "label acc.", "matching", "s / iteration"], digits=3))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"run": info, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
