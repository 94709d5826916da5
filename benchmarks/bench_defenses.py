"""Privacy and utility of each defense: DLG against defended updates, accuracy at a matched lr.

Privacy (``--part attacks``): DLG (Zhu et al., NeurIPS 2019; L-BFGS, joint soft labels, the
full 300-step preset budget) on the DLG LeNet, B = 1, 32x32 RGB embedded sample images,
mean/std 0.5, against the undefended update and against defended copies
(:func:`privbox.defenses.defend_update`):

* DGC s = 0.8 (Lin et al., ICLR 2018) at its first step t = 0 — bitwise the same update as
  per-tensor top-k pruning at 0.8 (checked), so it is attacked once — and at round 3 of DGC
  training (:func:`privbox.defenses.run_defended_rounds`: three earlier rounds on other images,
  server lr 0.01; the attacker knows θ_3 and matches a plain gradient);
* per-tensor top-k pruning at 0.2 (the DLG paper: > 20 % pruning stops DLG);
* ``GaussianPrivacy`` σ0 ∈ {0.01, 0.1, 1, 5, 10} (NVIDIA FLARE, Hatamizadeh et al. 2023; heuristic);
* ``batch_clip_noise`` C = 1, σ = 0.01 (the Label-based-Defense "DP-SGD", no DP guarantee);
* real DP-SGD (Abadi et al., CCS 2016) σ ∈ {0.1, 1}, C = 1 via
  :func:`privbox.defenses.real_dp_sgd` (at B = 1 the shared gradient is the clipped gradient
  plus N(0, σ²C²));
* clipping rescales the gradient, which alone breaks DLG's L2 distance, so the clipped rows are
  also attacked with DLG-cosine (``objective="cosine"``, scale-free), with an undefended and a
  clip-only control.

Utility (``--part utility``): :func:`privbox.defenses.measure_utility` on the sample-photograph
*proxy* task (21 classes, 504 training / 336 test random views, :class:`UtilityCNN`, 8 epochs,
batch 16), every defense at the **same** lr as its baseline: SGD at lr 0.05 for the update
transforms and DP-SGD (Poisson sampling, ε from the RDP accountant at δ = 1e-5); Momentum 0.9
at lr 0.01 for DGC (whose emitted values contain momentum 0.9). Mean over ``--seeds``.

Usage (from the repository root)::

    python benchmarks/bench_defenses.py --threads 1 --out benchmarks/results_defenses.json \\
        --markdown benchmarks/defenses_table.md

``--part attacks`` / ``--part utility`` run one half and merge it into ``--out``, so the halves
can run in separate processes (``--defenses key,...`` re-runs some attack rows and keeps the
others); ``--part report`` only rewrites the markdown from ``--out``.
Not a test: pytest does not collect ``bench_*.py`` files.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "attacks", "utility", "report"), default="all")
    parser.add_argument("--steps", type=int, default=300, help="DLG outer L-BFGS steps (preset: 300)")
    parser.add_argument("--images", default="retina", help="comma-separated sample names attacked at B = 1")
    parser.add_argument("--defenses", default="", help="comma-separated attack row keys (default: all)")
    parser.add_argument("--epochs", type=int, default=8, help="utility training epochs")
    parser.add_argument("--seeds", default="0,1", help="utility seeds (mean reported)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for Paddle (OMP/MKL)")
    parser.add_argument("--out", default="benchmarks/results_defenses.json", help="JSON results (merged per part)")
    parser.add_argument("--markdown", default=None, help="write the markdown tables here")
    return parser.parse_args(argv)


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = str(ARGS.threads)

warnings.filterwarnings("ignore", category=UserWarning)

import logging  # noqa: E402

import numpy as np  # noqa: E402

MEAN, STD = [0.5] * 3, [0.5] * 3
#: (init seed, label) of each image: the convention of tests/core/test_attacks.py (image i: seed i, label (3i+1) mod 10).
DLG_IMAGES = ("astronaut", "chelsea", "coffee", "retina", "coins")
#: earlier DGC rounds of the "round 3" row (the client's other batches, one image each).
DGC_HISTORY = (("coffee", 2), ("coins", 5), ("chelsea", 7))


def _image_setting(name: str) -> tuple[int, int]:
    from privbox.data import SAMPLE_NAMES

    if name in DLG_IMAGES:
        i = DLG_IMAGES.index(name)
    elif name in SAMPLE_NAMES:
        i = len(DLG_IMAGES) + SAMPLE_NAMES.index(name)
    else:
        raise SystemExit(f"unknown sample image {name!r}; choose from {', '.join(SAMPLE_NAMES)}")
    return i, (3 * i + 1) % 10


# ---------------------------------------------------------------------------------- attacks
def _attack_rows():
    """(key, defense label, attacker objective, builder(model, update, image, label) -> update)."""
    from privbox.defenses import BatchClipNoise, DGCCompressor, GaussianPrivacy, TopKPruning, defend_update
    from privbox.defenses.schemes import capture_with_scheme, real_dp_sgd

    def transform(factory):
        return lambda model, update, image, label, seed: defend_update(update, factory(seed))

    def dgc_round3(model, update, image, label, seed):
        from privbox.data import load_samples
        from privbox.defenses import run_defended_rounds

        names = [n for n, _ in DGC_HISTORY]
        history = load_samples(32, 3, names=names)
        batches = [(history[i : i + 1], np.array([lab])) for i, (_, lab) in enumerate(DGC_HISTORY)]
        rounds = run_defended_rounds(model, batches + [(image, np.array([label]))], DGCCompressor(0.8, 0.9),
                                     lr=0.01, mean=MEAN, std=STD, model_id="dlg_lenet")
        return rounds[-1][0]

    def dp_sgd(sigma):
        def build(model, update, image, label, seed):
            dp, _ = capture_with_scheme(real_dp_sgd(sigma, 1.0), model, image, np.array([label]), MEAN, STD,
                                        model_id="dlg_lenet", seed=seed)
            return dp
        return build

    rows = [
        ("none", "none", "l2", None),
        ("dgc_t0", "DGC s=0.8, t=0 (= TopK 0.8)", "l2", transform(lambda s: DGCCompressor(0.8, 0.9))),
        ("dgc_r3", "DGC s=0.8, round 3", "l2", dgc_round3),
    ]
    rows.append(("topk_0.2", "TopK 0.2", "l2", transform(lambda s: TopKPruning(0.2))))
    for sigma0 in (0.01, 0.1, 1.0, 5.0, 10.0):
        rows.append((f"gp_{sigma0:g}", f"GaussianPrivacy sigma0={sigma0:g}", "l2",
                     transform(lambda s, sigma0=sigma0: GaussianPrivacy(sigma0, seed=s))))
    rows += [
        ("bcn_l2", "batch_clip_noise C=1 sigma=0.01", "l2", transform(lambda s: BatchClipNoise(1.0, 0.01, seed=s))),
        ("none_cos", "none", "cosine", None),
        ("clip_cos", "clip only C=1 (sigma=0)", "cosine", transform(lambda s: BatchClipNoise(1.0, 0.0))),
        ("bcn_cos", "batch_clip_noise C=1 sigma=0.01", "cosine", transform(lambda s: BatchClipNoise(1.0, 0.01, seed=s))),
        ("dp_0.1", "DP-SGD sigma=0.1 C=1", "cosine", dp_sgd(0.1)),
        ("dp_1", "DP-SGD sigma=1 C=1", "cosine", dp_sgd(1.0)),
    ]
    return rows


def run_attacks(args) -> list[dict]:
    from privbox.attacks import DLG
    from privbox.fl.capture import compute_update
    from privbox.data import load_samples
    from privbox.defenses import DGCCompressor, TopKPruning, defend_update
    from privbox.metrics import evaluate
    from privbox.nn import DLGLeNet

    rows = _attack_rows()
    wanted = [k for k in args.defenses.split(",") if k]
    unknown = sorted(set(wanted) - {r[0] for r in rows})
    if unknown:
        raise SystemExit(f"unknown defense keys {unknown}; choose from {[r[0] for r in rows]}")
    rows = [r for r in rows if not wanted or r[0] in wanted]
    results = []
    for name in [n for n in args.images.split(",") if n]:
        seed, label = _image_setting(name)
        image = load_samples(32, 3, names=(name,))
        for key, what, objective, build in rows:
            model = DLGLeNet(num_classes=10, init_seed=seed)
            update, secret = compute_update(model, image, np.array([label]), MEAN, STD, model_id="dlg_lenet")
            if key == "dgc_t0":  # DGC at step 0 is per-tensor top-k pruning: check it, bitwise
                pruned = defend_update(update, TopKPruning(0.8))
            if build is not None:
                update = build(DLGLeNet(num_classes=10, init_seed=seed), update, image, label, seed)
            if key == "dgc_t0":
                assert all(np.array_equal(update.tensors[k], pruned.tensors[k]) for k in pruned.tensors)
            start = time.perf_counter()
            recon = DLG(iterations=args.steps, progress=False, seed=seed, objective=objective).run(
                DLGLeNet(num_classes=10, init_seed=seed), update)
            wall = time.perf_counter() - start
            scores = evaluate(recon, secret)
            row = {
                "image": name, "key": key, "defense": what, "attacker": f"DLG-{'L2' if objective == 'l2' else 'cosine'}",
                "psnr": scores["psnr"], "ssim": scores["ssim"], "label_accuracy": scores["label_accuracy"],
                "iterations": recon.iterations, "gradient_loss": recon.best_loss, "seconds": wall,
                "recorded": update.meta.defenses,
            }
            results.append(row)
            print(f"[attack] {name:10s} {what:36s} {row['attacker']:11s} PSNR {row['psnr']:6.2f} dB  SSIM "
                  f"{row['ssim']:.3f}  label {row['label_accuracy']:.0f}  {wall:6.1f} s", flush=True)
    return results


# ---------------------------------------------------------------------------------- utility
def _utility_rows():
    from privbox.defenses import DGCCompressor, GaussianPrivacy, TopKPruning
    from privbox.defenses.schemes import SCHEMES, real_dp_sgd

    rows = [("none", "none (SGD)", lambda: None, 0.05, 0.0), ("topk_0.8", "TopK 0.8", lambda: TopKPruning(0.8), 0.05, 0.0)]
    rows.append(("topk_0.2", "TopK 0.2", "l2", transform(lambda s: TopKPruning(0.2))))
    for sigma0 in (0.01, 0.1, 1.0, 5.0, 10.0):
        rows.append((f"gp_{sigma0:g}", f"GaussianPrivacy sigma0={sigma0:g}", lambda s=sigma0: GaussianPrivacy(s, seed=0), 0.05, 0.0))
    rows += [
        ("bcn", "batch_clip_noise C=1 sigma=0.01 (scheme DP-SGD)", lambda: SCHEMES["DP-SGD"], 0.05, 0.0),
        ("dp_0.1", "DP-SGD sigma=0.1 C=1", lambda: real_dp_sgd(0.1), 0.05, 0.0),
        ("dp_1", "DP-SGD sigma=1 C=1", lambda: real_dp_sgd(1.0), 0.05, 0.0),
        ("momentum", "none (Momentum 0.9)", lambda: None, 0.01, 0.9),
        ("dgc", "DGC s=0.8 m=0.9", lambda: DGCCompressor(0.8, 0.9), 0.01, 0.0),
    ]
    return rows


def run_utility(args) -> list[dict]:
    from privbox.defenses.utility import measure_utility, sample_task

    seeds = [int(s) for s in args.seeds.split(",") if s]
    results = []
    for key, what, factory, lr, momentum in _utility_rows():
        runs = []
        for seed in seeds:
            train, test = sample_task(seed=seed)
            runs.append(measure_utility(factory(), dataset=train, test_dataset=test, epochs=args.epochs, lr=lr,
                                        momentum=momentum, seed=seed, batch_size=16))
        accs = [r["test_accuracy"] for r in runs]
        row = {
            "key": key, "defense": what, "lr": lr, "momentum": momentum, "test_accuracy": float(np.mean(accs)),
            "test_accuracy_runs": accs, "train_accuracy": float(np.mean([r["train_accuracy"] for r in runs])),
            "diverged": sum(bool(r["diverged"]) for r in runs),
            "epsilon": runs[0]["epsilon"], "delta": runs[0]["delta"], "steps": runs[0]["steps"],
            "seconds": float(np.sum([r["seconds"] for r in runs])), "dataset": runs[0]["dataset"],
            "described": runs[0]["defense"],
        }
        results.append(row)
        eps = "" if row["epsilon"] is None else f"  epsilon {row['epsilon']:.3g}"
        eps += f"  DIVERGED in {row['diverged']} run(s)" if row["diverged"] else ""
        print(f"[utility] {what:48s} lr {lr:g} m {momentum:g}: test acc {row['test_accuracy']:.3f} {accs}{eps} "
              f"({row['seconds']:.0f} s)", flush=True)
    return results


# ----------------------------------------------------------------------------------- report
def markdown(results: dict) -> str:
    from privbox.report import markdown_table

    parts = []
    attacks = results.get("attacks", [])
    if attacks:
        parts.append(f"DLG on the DLG LeNet, B = 1, {results.get('attack_steps')} L-BFGS steps, images: "
                     f"{', '.join(sorted({r['image'] for r in attacks}))}.\n")
        parts.append(markdown_table(
            attacks, ["image", "defense", "attacker", "psnr", "ssim", "label_accuracy", "seconds"],
            ["image", "defense", "attacker", "PSNR (dB)", "SSIM", "label acc.", "time (s)"]))
    utility = results.get("utility", [])
    if utility:
        seeds = len(utility[0]["test_accuracy_runs"])
        parts.append(f"\nUtility proxy ({utility[0]['dataset']}), UtilityCNN, {results.get('utility_epochs')} epochs, "
                     f"batch 16, mean test accuracy over {seeds} seed(s); epsilon at delta 1e-5 (DP-SGD only).\n")
        rows = [dict(r, runs=" / ".join(f"{a:.3f}" for a in r["test_accuracy_runs"])) for r in utility]
        parts.append(markdown_table(
            rows, ["defense", "lr", "momentum", "test_accuracy", "runs", "epsilon", "steps", "diverged"],
            ["defense", "lr", "momentum", "test acc.", "per seed", "epsilon", "steps", "diverged runs"], digits=3))
    return "\n".join(parts)


def main(args) -> int:
    logging.disable(logging.INFO)  # GaussianPrivacy logs every call
    own: dict = {}
    if args.part in ("all", "attacks"):
        own["attack_steps"] = args.steps
        own["attacks"] = run_attacks(args)
    if args.part in ("all", "utility"):
        own["utility_epochs"] = args.epochs
        own["utility"] = run_utility(args)
    from privbox.report import write_json_atomic, write_text_atomic

    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}  # read late: the other part may have finished
    if "attacks" in own and args.defenses and results.get("attacks"):
        # a partial run (--defenses) replaces its own rows and keeps the others, in the table's order
        order = {key: i for i, (key, *_rest) in enumerate(_attack_rows())}
        merged = {(r["image"], r["key"]): r for r in results["attacks"]}
        merged.update({(r["image"], r["key"]): r for r in own["attacks"]})
        own["attacks"] = sorted(merged.values(), key=lambda r: (r["image"], order.get(r["key"], len(order))))
    results.update(own)
    if own:
        results.update({
            "benchmark": "bench_defenses", "date": _dt.datetime.now().isoformat(timespec="seconds"),
            "python": sys.version.split()[0], "platform": platform.platform(), "threads": args.threads,
        })
        write_json_atomic(out, results)
    text = markdown(results)
    if args.markdown:
        write_text_atomic(args.markdown, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
