"""Label order and repetition (Label-based-Defense) against E2EGI's label reconstruction.

E2EGI (Li et al.) first reconstructs the batch's labels from the last layer's gradient (its
column-sum heuristic, no labels shared), then the images. The Label-based-Defense study ("Label
is the culprit") argues that repeating labels inside a batch and grouping the batch by label
weakens that first step. The client here holds four photographs with 4, 2 or 1 distinct labels,
optionally grouped by label; the table shows E2EGI's label accuracy (multiset) and image PSNR.

    python examples/label_defense_vs_e2egi/label_defense_vs_e2egi.py
"""

from __future__ import annotations

import argparse

from privbox.experiments import AttackEntry, DefenseEntry, run_pairing

VICTIM = {"model": "dlg_lenet", "model_kwargs": {"batch_norm": True}, "image_size": 16, "num_images": 4,
          "mean": [0.5] * 3, "std": [0.5] * 3, "include_bn_stats": True}
ATTACK = {"preset": "e2egi_single", "label_strategy": "recover", "label_method": "e2egi", "noise": 0.0,
          "regularizers": {"tv": 1e-4, "bn": {"weight": 0.001, "source": "exact"}}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=600, help="E2EGI Adam steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="runs/label_defense_vs_e2egi")
    args = parser.parse_args(argv)
    defenses = [
        DefenseEntry("repeat_2_labels", client={"data": {"distinct_labels": 2}}),
        DefenseEntry("repeat_2_grouped", client={"data": {"distinct_labels": 2}, "label_order": "grouped"}),
        DefenseEntry("one_label", client={"data": {"distinct_labels": 1}}),
    ]
    attack = AttackEntry("e2egi", dict(ATTACK, iterations=args.iterations), VICTIM)
    run_pairing(attack, defenses, args.seeds, args.out, utility=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
