"""Weak scaling of the distributed inversion: batch K·B on K processes against batch B on one.

Runs the same attack (Inverting Gradients + BN-statistics matching, signed Adam, train-mode BN,
exact BN statistics, labels given) on

* ``1 proc, B``: one process, batch B (the unit of work per process);
* ``K procs, K·B``: ``python -m paddle.distributed.launch --nproc_per_node K`` (gloo on CPU,
  NCCL on GPU), batch K·B split into K shards of B (``--distributed``);
* ``1 proc, K·B``: one process on the whole batch (what the K processes replace).

Each row is timed inside the worker, start-up and model building excluded: the engine's wall
time per iteration (``Reconstruction.wall_time / iterations``) and the CPU time of the process
per iteration (``time.process_time``; for K ranks the slowest rank's), median over
``--repeats`` launches. On a shared machine the wall time follows the machine's load; the CPU
time is the work each process did (its own compute plus the CPU the collectives cost; time spent
waiting for a peer is not counted). Weak-scaling efficiency = t(1 proc, B) / t(K procs, K·B)
(1.0 ideal: K processes do K times the work in the same time); speed-up =
t(1 proc, K·B) / t(K procs, K·B); both for wall and CPU time.

CPU example (the numbers in benchmarks/README.md)::

    OMP_NUM_THREADS=1 python benchmarks/distributed_scaling.py --batch 4 --nproc 2 --out /tmp/dist_scaling.json

GPU (one process per GPU; ResNet-50 at 224x224, the E2EGI setting)::

    python benchmarks/distributed_scaling.py --device gpu --model resnet50 --width 64 --image-size 224 \\
        --classes 1000 --batch 8 --nproc 8 --iterations 20 --out /tmp/dist_scaling_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    """One timed attack (in this process, or as one rank under the launcher)."""
    import numpy as np
    import paddle

    from privbox.attacks import GradientInversion, inverting_gradients
    from privbox.attacks.tuning import build_model_for_update
    from privbox.core.update import ClientUpdate
    from privbox.distributed.collective import LOCAL, use
    from privbox.distributed.sync_bn import convert_sync_batchnorm

    paddle.set_device(args.device)
    collective = LOCAL
    if args.distributed:
        from privbox.distributed.comm import ShardCollective, init_process_group

        collective = ShardCollective(init_process_group(timeout=600))
    update = ClientUpdate.load(args.update)
    model = build_model_for_update(update)
    # Every row uses the composed BatchNorm of privbox.distributed.sync_bn (the distributed rows
    # must); Paddle's fused train-mode batch_norm has a ~10x dearer double backward on CPU.
    convert_sync_batchnorm(model)
    config = inverting_gradients(iterations=args.iterations, label_strategy="given", progress=False,
                                 regularizers={"tv": 1e-4, "bn": {"weight": 0.1, "source": "exact"}})
    cpu = time.process_time()
    with use(collective):
        recon = GradientInversion(config).run(model, update)
    cpu = (time.process_time() - cpu) / recon.iterations
    if collective.distributed:  # the slowest rank's CPU time
        cpu = max(float(c[0]) for c in collective.group.all_gather_np(np.asarray([cpu]), "benchmark CPU times"))
    if collective.rank == 0:
        Path(args.result).write_text(json.dumps({"wall_s": recon.wall_time / recon.iterations, "cpu_s": cpu,
                                                 "iterations": recon.iterations}))


def capture(path: Path, args: argparse.Namespace, batch: int) -> None:
    """The victim's update of ``batch`` images (labels and exact BN statistics shared)."""
    from privbox.cli.main import main

    code = main(["capture", "--out", str(path), "-o", f"capture.model={args.model}",
                 "-o", f"capture.model_kwargs={{width: {args.width}}}", "-o", f"capture.batch_size={batch}",
                 "-o", f"capture.image_size={args.image_size}", "-o", f"capture.num_classes={args.classes}",
                 "-o", "capture.shuffle_images=true", "-o", "capture.share_labels=true",
                 "-o", "capture.share_bn_stats=true", "-o", "run.device=cpu"])
    if code != 0:
        raise SystemExit(f"capture of batch {batch} failed")


def timed(args: argparse.Namespace, update: Path, nproc: int, work: Path) -> dict:
    """Per-iteration wall and CPU seconds of one worker run (one process, or ``nproc`` ranks)."""
    result = work / f"result_{nproc}_{time.monotonic_ns()}.json"
    worker_args = [str(Path(__file__).resolve()), "--worker", "--update", str(update), "--result", str(result),
                   "--iterations", str(args.iterations), "--device", args.device]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}
    if nproc == 1:
        command = [sys.executable, *worker_args]
    else:
        command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
                   "--log_dir", str(work / "log"), *worker_args, "--distributed"]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(result.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4, help="B, the batch per process")
    parser.add_argument("--nproc", type=int, default=2, help="K, the number of processes")
    parser.add_argument("--model", default="convnet")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--update", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    with tempfile.TemporaryDirectory(prefix="privbox-dist-bench-") as tmp:
        work = Path(tmp)
        small, large = work / "small", work / "large"
        capture(small, args, args.batch)
        capture(large, args, args.batch * args.nproc)
        names = ["1 proc, B", f"{args.nproc} procs, {args.nproc}B", f"1 proc, {args.nproc}B"]
        runs = [(small, 1), (large, args.nproc), (large, 1)]
        rows: dict = {name: [] for name in names}
        load = os.getloadavg()
        for _ in range(args.repeats):  # round-robin, so load changes hit every row alike
            for name, (folder, nproc) in zip(names, runs):
                rows[name].append(timed(args, folder / "update.safetensors", nproc, work))
    median = {kind: {n: statistics.median(r[f"{kind}_s"] for r in rows[n]) for n in names} for kind in ("wall", "cpu")}
    report = {
        "setting": {k: getattr(args, k) for k in ("batch", "nproc", "model", "width", "image_size", "classes",
                                                   "iterations", "repeats", "threads", "device")},
        "samples": rows,
        "median_s": median,
        "weak_scaling_efficiency": {k: median[k][names[0]] / median[k][names[1]] for k in median},
        "speedup_over_one_process": {k: median[k][names[2]] / median[k][names[1]] for k in median},
        "environment": {"cpus": os.cpu_count(), "load_average_at_start": load, "load_average_at_end": os.getloadavg(),
                        "machine": platform.machine(), "python": platform.python_version()},
    }
    for kind in ("wall", "cpu"):
        for name in names:
            samples = [round(1000 * r[f"{kind}_s"], 1) for r in rows[name]]
            print(f"{kind:>4} {name:>16}: {1000 * median[kind][name]:8.1f} ms/iteration (samples {samples})")
        print(f"{kind:>4} weak-scaling efficiency {report['weak_scaling_efficiency'][kind]:.2f}, "
              f"speed-up over one process on the same batch {report['speedup_over_one_process'][kind]:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
