"""DGC against DLG, the pairing of PaddleSleeve's gradient-compression demo.

A client trains the DLG LeNet on one private photograph. Undefended, it sends its plain gradient;
defended, it trains with DGCMomentum (Deep Gradient Compression as the local optimiser, Lin et al.
2018) for a few rounds, so what it sends is the sparse, momentum-corrected update. DLG (Zhu et al.
2019) inverts what was sent. The model accuracy column trains the same victim under the same
defense at the same learning rate (the old demo compared DGC at lr 0.001 with Momentum at 0.01).

    python examples/dgc_vs_dlg/dgc_vs_dlg.py
    python examples/dgc_vs_dlg/dgc_vs_dlg.py --sparsity 0.8 0.99 --rounds 3 --seeds 0 1 2
"""

from __future__ import annotations

import argparse

from privbox.experiments import AttackEntry, DefenseEntry, run_pairing

VICTIM = {"model": "dlg_lenet", "image_size": 16, "num_images": 1, "mean": [0.5] * 3, "std": [0.5] * 3}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.8, 0.99], help="DGC sparsities (0.8: PaddleSleeve's)")
    parser.add_argument("--rounds", type=int, default=3, help="FL rounds under DGC before the attacked one ends")
    parser.add_argument("--iterations", type=int, default=60, help="DLG L-BFGS steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--no-utility", action="store_true", help="skip the model-accuracy runs")
    parser.add_argument("--out", default="runs/dgc_vs_dlg")
    args = parser.parse_args(argv)
    dgc = [DefenseEntry(f"dgc_momentum_{s:g}", defenses=[{"name": "dgc_momentum", "params": {"sparsity": s, "momentum": 0.9}}],
                        rounds=args.rounds) for s in args.sparsity]
    attack = AttackEntry("dlg", {"preset": "dlg", "iterations": args.iterations}, VICTIM)
    run_pairing(attack, dgc, args.seeds, args.out, utility=not args.no_utility)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
