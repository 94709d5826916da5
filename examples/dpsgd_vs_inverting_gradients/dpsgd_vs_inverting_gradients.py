"""Per-sample DP-SGD against Inverting Gradients.

The client clips each example's gradient to C and adds N(0, (sigma C)^2) to the sum (DP-SGD, Abadi
et al. 2016); Inverting Gradients (Geiping et al. 2020: cosine distance, TV prior, signed Adam)
inverts what it sends. For each noise multiplier sigma the script prints the reconstruction PSNR and
the epsilon (at delta 1e-5) that the RDP accountant gives for the short training run in which the
model accuracy is measured.

    python examples/dpsgd_vs_inverting_gradients/dpsgd_vs_inverting_gradients.py
    python examples/dpsgd_vs_inverting_gradients/dpsgd_vs_inverting_gradients.py --sigma 0.001 0.01 0.1 1
"""

from __future__ import annotations

import argparse

from privbox.experiments import AttackEntry, DefenseEntry, run_pairing

VICTIM = {"model": "dlg_lenet", "image_size": 16, "num_images": 1, "mean": [0.5] * 3, "std": [0.5] * 3}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.01, 0.1, 1.0], help="DP-SGD noise multipliers")
    parser.add_argument("--clip", type=float, default=1.0, help="per-sample clipping norm C")
    parser.add_argument("--iterations", type=int, default=500, help="Inverting Gradients Adam steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--no-utility", action="store_true", help="skip the accuracy/epsilon training runs")
    parser.add_argument("--out", default="runs/dpsgd_vs_inverting_gradients")
    args = parser.parse_args(argv)
    rows = [DefenseEntry(f"dp_sgd_sigma{s:g}", defenses=[{"name": "dp_sgd", "params": {"noise_multiplier": s, "max_grad_norm": args.clip}}])
            for s in args.sigma]
    attack = AttackEntry("inverting_gradients", {"preset": "inverting_gradients", "iterations": args.iterations},
                         VICTIM)
    run_pairing(attack, rows, args.seeds, args.out, utility=not args.no_utility)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
