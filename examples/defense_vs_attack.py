"""Pair one defense with one attack on the embedded sample images and report the leakage.

    python examples/defense_vs_attack.py --defense dgc --attack dlg
    python examples/defense_vs_attack.py --defense gaussian --attack inverting_gradients --iterations 200
    python examples/defense_vs_attack.py --all --iterations 40        # the whole matrix, small budget

A client computes one FedSGD gradient of a target batch; the defense transforms it as the client
would before sending (``privbox.defenses.defend_update``); the attack sees only the defended
update; metrics compare the reconstruction with the ground truth. Attacks that use BatchNorm
statistics run against a small ConvNet with BN, DLG and iDLG against the DLG LeNet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import paddle

from privbox.attacks import GradientInversion, get_preset
from privbox.fl.capture import compute_update
from privbox.data import make_target_batch
from privbox.defenses import BatchClipNoise, DGCCompressor, GaussianPrivacy, TopKPruning, UpdateDefense, defend_update
from privbox.metrics import evaluate
from privbox.nn import ConvNet, DLGLeNet
from privbox.report import markdown_table, save_comparison_grid

DEFENSES: dict[str, Callable[[int], Optional[UpdateDefense]]] = {
    "none": lambda seed: None,
    "dgc": lambda seed: DGCCompressor(sparsity=0.8),
    "pruning": lambda seed: TopKPruning(prune_ratio=0.8),
    "gaussian": lambda seed: GaussianPrivacy(sigma0=1.0, seed=seed),
    "clip_noise": lambda seed: BatchClipNoise(max_norm=1.0, noise_multiplier=0.01, seed=seed),
}
ATTACKS = ("dlg", "idlg", "inverting_gradients", "gradinversion", "e2egi", "ga")
MEAN, STD = [0.5] * 3, [0.5] * 3


def run_pair(defense_name: str, attack_name: str, batch_size: int, iterations: int, seed: int, out: Optional[Path]) -> dict:
    """Capture, defend, attack, score; returns one result row."""
    batch = make_target_batch(batch_size, num_classes=10, seed=seed)
    paddle.seed(seed)
    uses_bn = attack_name in ("inverting_gradients", "gradinversion", "e2egi", "ga")
    if uses_bn:
        model, model_id, kwargs = ConvNet(num_classes=10, width=8), "convnet", {"width": 8}
    else:
        model, model_id, kwargs = DLGLeNet(num_classes=10, init_seed=seed), "dlg_lenet", {}
    update, secret = compute_update(
        model, batch.images, batch.labels, MEAN, STD, bn_mode="eval" if uses_bn else "train",
        model_id=model_id, model_kwargs=kwargs, share_labels=True, share_bn_stats=uses_bn,
    )
    defense = DEFENSES[defense_name](seed)
    if defense is not None:
        update = defend_update(update, defense)
    config = get_preset(attack_name, iterations=iterations, progress=False, seed=seed)
    if attack_name in ("inverting_gradients", "e2egi"):
        config = config.replace(label_strategy="given")
    recon = GradientInversion(config).run(model, update)
    scores = evaluate(recon, secret)
    if out is not None:
        assignment = scores["assignment"] or list(range(batch_size))
        save_comparison_grid(out / f"{defense_name}_{attack_name}.png", secret.images,
                             {f"{attack_name} vs {defense_name}": recon.pixels[np.asarray(assignment)]})
    return {
        "defense": defense_name,
        "attack": attack_name,
        "psnr": scores["psnr"],
        "ssim": scores["ssim"],
        "label_acc": scores["label_accuracy"],
        "defenses_recorded": "; ".join(update.meta.defenses) or "none",
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--defense", choices=sorted(DEFENSES), default="none")
    parser.add_argument("--attack", choices=ATTACKS, default="dlg")
    parser.add_argument("--all", action="store_true", help="run every defense x attack pairing")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for reconstruction grids")
    args = parser.parse_args(argv)
    pairs = [(d, a) for a in ATTACKS for d in DEFENSES] if args.all else [(args.defense, args.attack)]
    rows = []
    for defense_name, attack_name in pairs:
        rows.append(run_pair(defense_name, attack_name, args.batch_size, args.iterations, args.seed, args.out))
        print(f"{attack_name:>20} vs {defense_name:<10} PSNR {rows[-1]['psnr']:6.2f} dB  SSIM {rows[-1]['ssim']:.3f}", flush=True)
    print()
    print(markdown_table(rows, ["attack", "defense", "psnr", "ssim", "label_acc", "defenses_recorded"],
                         ["attack", "defense", "PSNR (dB)", "SSIM", "label acc.", "what the update records"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
