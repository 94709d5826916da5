"""The RA scheme (a large stem max-pool) against E2EGI.

Label-based-Defense's RA scheme enlarges the stem max-pool to kernel 19, so many inputs map to the
same activations (RA-i > 0) and the gradient no longer pins the image down; the attacker knows
the architecture and uses the same kernel. E2EGI (cosine gradient matching, TV, BN statistics
matching, known labels) attacks the BN LeNet victim without a stem pool, with an ordinary 3x3 stem
pool, and under RA (19x19).

    python examples/ra_vs_e2egi/ra_vs_e2egi.py
"""

from __future__ import annotations

import argparse

from privbox.experiments import AttackEntry, DefenseEntry, run_pairing

VICTIM = {"model": "dlg_lenet", "model_kwargs": {"batch_norm": True}, "image_size": 16, "num_images": 1,
          "mean": [0.5] * 3, "std": [0.5] * 3, "include_labels": True, "include_bn_stats": True}
ATTACK = {"preset": "e2egi_single", "noise": 0.0, "regularizers": {"tv": 1e-4, "bn": {"weight": 0.001, "source": "exact"}}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=400, help="E2EGI Adam steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--no-utility", action="store_true", help="skip the model-accuracy runs")
    parser.add_argument("--out", default="runs/ra_vs_e2egi")
    args = parser.parse_args(argv)
    defenses = [
        DefenseEntry("stem_pool_3", client={"model_kwargs": {"batch_norm": True, "maxpool_kernel": 3}}),
        DefenseEntry("RA", scheme="RA"),
    ]
    attack = AttackEntry("e2egi", dict(ATTACK, iterations=args.iterations), VICTIM)
    run_pairing(attack, defenses, args.seeds, args.out, utility=not args.no_utility)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
