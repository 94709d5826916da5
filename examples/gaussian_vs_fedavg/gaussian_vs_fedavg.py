"""NVIDIA FLARE's GaussianPrivacy against FedAvg update inversion.

The client runs one local SGD step and sends its weight delta; GaussianPrivacy adds noise of
sigma0 times the 95th percentile of |delta| to every entry (Hatamizadeh et al., IEEE TMI 2023).
The NVIDIA FL inversion (unrolled local SGD, update matching, four-direction TV) inverts the
noised delta. RDLV is NVIDIA's relative data leakage value (SSIM against a population-average
prior; above 0 the reconstruction is closer to the private image than the prior is).

    python examples/gaussian_vs_fedavg/gaussian_vs_fedavg.py
    python examples/gaussian_vs_fedavg/gaussian_vs_fedavg.py --sigma0 0.01 0.1 0.5 1 5
"""

from __future__ import annotations

import argparse

from privbox.experiments import AttackEntry, DefenseEntry, run_pairing

VICTIM = {"model": "dlg_lenet", "image_size": 16, "num_images": 1, "mean": [0.5] * 3, "std": [0.5] * 3,
          "share": "delta", "lr": 0.01}
ATTACK = {"preset": "nvidia_fl", "gradient_weight": 1.0, "regularizers": {"tv4": 1e-4, "image_norm": 1e-5}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sigma0", type=float, nargs="+", default=[0.01, 0.1, 1.0], help="GaussianPrivacy sigma0 values")
    parser.add_argument("--iterations", type=int, default=600, help="inversion Adam steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--no-utility", action="store_true", help="skip the model-accuracy runs")
    parser.add_argument("--out", default="runs/gaussian_vs_fedavg")
    args = parser.parse_args(argv)
    rows = [DefenseEntry(f"gaussian_sigma0_{s:g}", defenses=[{"name": "gaussian_privacy", "params": {"sigma0": s}}])
            for s in args.sigma0]
    attack = AttackEntry("nvidia_fl", dict(ATTACK, iterations=args.iterations), VICTIM)
    run_pairing(attack, rows, args.seeds, args.out, utility=not args.no_utility)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
