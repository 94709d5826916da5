"""Attack speed side by side: privbox, bare Paddle and PyTorch eager (issue 11).

For each case (model, batch) the three sides get the same architecture, the same weights, the same
target batch and the same start point, and run the same gradient-inversion iteration: forward,
``g = grad(CE, params, create_graph=True)``, the cosine distance to the client's gradient
(Geiping et al., NeurIPS 2020), its gradient with respect to the dummy images, and an Adam step
(lr 0.1) on the images; BN in eval mode, labels given.

- **privbox**: ``GradientInversion(AttackConfig(optimizer="adam", objective="cosine", ...))`` run on
  the update that ``privbox.fl.capture.compute_update`` produced, from ``init_images=x0`` (the whole
  engine: its checks, best-iterate tracking, the conv backend chosen by ``privbox.nn``: ``auto``).
- **bare Paddle**: a hand-written loop on the same ``privbox.nn`` model with Paddle's own
  convolution (``set_conv_backend("reference")``) and no engine.
- **PyTorch eager**: the same architecture written in ``torch.nn`` with the weights copied over,
  the same loop (optional: ``pip install "privbox[bench]"``; the column is empty without torch).

Each side runs in its own worker process (so peak memory is per side); the parent sends the
workers their samples in turn, rotating the order (interleaving: a change in the machine's load
hits all sides alike), after one untimed warm-up sample each. Time is the worker's **CPU time**
(``time.process_time``) per iteration, which other jobs on a shared machine do not inflate as they
do wall time. Peak memory is the worker's peak RSS (``ru_maxrss``) and its growth over the
RSS before the first sample.

Usage (from the repository root; about 10-20 minutes on a busy 2-core machine)::

    python benchmarks/attack_speed.py --threads 1 --repeats 5 --out /tmp/attack_speed.json

Not a test: pytest does not collect this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "dlg_lenet_b1": {"model": "dlg_lenet", "batch": 1, "iterations": 40},
    "dlg_lenet_b8": {"model": "dlg_lenet", "batch": 8, "iterations": 20},
    "convnet_b8": {"model": "convnet", "batch": 8, "iterations": 8},
    "resnet18_cifar_b1": {"model": "resnet18_cifar", "batch": 1, "iterations": 4},
    "resnet18_cifar_b8": {"model": "resnet18_cifar", "batch": 8, "iterations": 3},
    "resnet18_cifar_b16": {"model": "resnet18_cifar", "batch": 16, "iterations": 2},
    "resnet18_imagenet_b8": {"model": "resnet18_imagenet", "batch": 8, "iterations": 3},
}
SIDES = ("privbox", "paddle", "torch")
MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
NUM_CLASSES, LR, BETAS, EPS = 10, 0.1, (0.9, 0.999), 1e-8


def _set_thread_env(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _peak_mb() -> float:
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a worker would report its parent's peak.
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------------ Paddle sides


def _paddle_model(name: str):
    import privbox.nn as pnn

    builders = {
        "dlg_lenet": lambda: pnn.DLGLeNet(num_classes=NUM_CLASSES),
        "convnet": lambda: pnn.ConvNet(num_classes=NUM_CLASSES),
        "resnet18_cifar": lambda: pnn.resnet18(num_classes=NUM_CLASSES),
        "resnet18_imagenet": lambda: pnn.resnet18(num_classes=NUM_CLASSES, stem="imagenet"),
    }
    model = pnn.make_twice_differentiable(builders[name]())
    model.eval()
    return model


def _load(data_dir: str) -> dict:
    from safetensors.numpy import load_file

    return load_file(os.path.join(data_dir, "data.safetensors"))


class _PaddleSide:
    """The hand-written loop (bare Paddle) or the privbox engine on the same model."""

    def __init__(self, case: dict, data: dict, engine: bool) -> None:
        import numpy as np
        import paddle

        import privbox.nn as pnn
        from privbox.nn import functional as PF

        paddle.set_device("cpu")
        self.case, self.engine, self.np, self.paddle, self.PF = case, engine, np, paddle, PF
        pnn.set_conv_backend("auto" if engine else "reference")
        paddle.seed(0)
        self.model = _paddle_model(case["model"])
        self.model.set_state_dict({k[2:]: paddle.to_tensor(v) for k, v in data.items() if k.startswith("w.")})
        self.pixels, self.labels, self.x0 = data["pixels"], data["labels"], data["x0"]
        if engine:
            from privbox.attacks.config import AttackConfig
            from privbox.attacks.engine import GradientInversion
            from privbox.fl.capture import compute_update

            self.update, _ = compute_update(
                self.model, self.pixels, self.labels, MEAN, STD, num_classes=NUM_CLASSES, bn_mode="eval",
                model_id=case["model"], share_labels=True,
            )
            config = AttackConfig(
                optimizer="adam", lr=LR, adam_betas=BETAS, objective="cosine", label_strategy="given",
                iterations=case["iterations"], progress=False, return_best=True,
            )
            self.attack = GradientInversion(config)
        else:
            self.params = [p for p in self.model.parameters() if not p.stop_gradient]
            images = paddle.to_tensor(((self.pixels - np.array(MEAN)[:, None, None]) / np.array(STD)[:, None, None]).astype("float32"))
            self.y = paddle.to_tensor(self.labels.astype("int64"))
            loss = PF.cross_entropy(self.model(images), self.y)
            self.target = [g.detach() for g in paddle.grad(loss, self.params)]

    def sample(self) -> float:
        """Run the case's iterations from x0; return the final objective (a sanity value)."""
        if self.engine:
            recon = self.attack.run(self.model, self.update, init_images=self.x0)
            return float(recon.loss_trace[-1]) if recon.loss_trace else float("nan")
        paddle, PF = self.paddle, self.PF
        x = paddle.to_tensor(self.x0)
        m = paddle.zeros_like(x)
        v = paddle.zeros_like(x)
        value = float("nan")
        for t in range(1, self.case["iterations"] + 1):
            x.stop_gradient = False
            loss = PF.cross_entropy(self.model(x), self.y)
            grads = paddle.grad(loss, self.params + [x], create_graph=True)[: len(self.params)]
            dot = paddle.add_n([(g * s).sum() for g, s in zip(grads, self.target)])
            gn = paddle.add_n([(g * g).sum() for g in grads])
            tn = paddle.add_n([(s * s).sum() for s in self.target])
            objective = 1.0 - dot / (paddle.sqrt(gn + 1e-12) * paddle.sqrt(tn + 1e-12))
            (gx,) = paddle.grad(objective, x)
            with paddle.no_grad():
                m = BETAS[0] * m + (1 - BETAS[0]) * gx
                v = BETAS[1] * v + (1 - BETAS[1]) * gx * gx
                step = LR * (m / (1 - BETAS[0] ** t)) / (paddle.sqrt(v / (1 - BETAS[1] ** t)) + EPS)
                x = (x - step).detach()
            value = float(objective)
        return value

    def extra(self) -> dict:
        from privbox.nn import fast_conv

        decisions = fast_conv.auto_decisions()
        return {"conv_backend": fast_conv.get_conv_backend(), "fast_convs": sum(decisions.values()), "calibrated_shapes": len(decisions)}


# ---------------------------------------------------------------------------------- PyTorch


def _torch_model(name: str):
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin, planes, stride, downsample):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    class ResNet18(nn.Module):
        def __init__(self, stem):
            super().__init__()
            if stem == "cifar":
                self.conv1, self.maxpool = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity()
            else:
                self.conv1, self.maxpool = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.MaxPool2d(3, 2, 1)
            self.bn1, self.relu = nn.BatchNorm2d(64), nn.ReLU()
            cin, stages = 64, []
            for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                down = None
                if stride != 1 or cin != planes:
                    down = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
                stages.append(nn.Sequential(BasicBlock(cin, planes, stride, down), BasicBlock(planes, planes, 1, None)))
                cin = planes
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(512, NUM_CLASSES)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    class DLGLeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(3, 12, 5, 2, 2), nn.Sigmoid(), nn.Conv2d(12, 12, 5, 2, 2), nn.Sigmoid(),
                nn.Conv2d(12, 12, 5, 1, 2), nn.Sigmoid(),
            )
            self.fc = nn.Linear(768, NUM_CLASSES)

        def forward(self, x):
            return self.fc(self.body(x).flatten(1))

    class ConvNet(nn.Module):
        def __init__(self, width=16):
            super().__init__()

            def block(cin, cout):
                return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

            self.features = nn.Sequential(
                *block(3, width), *block(width, 2 * width), nn.MaxPool2d(2), *block(2 * width, 4 * width),
                nn.MaxPool2d(2), *block(4 * width, 4 * width), nn.AdaptiveAvgPool2d(1),
            )
            self.fc = nn.Linear(4 * width, NUM_CLASSES)

        def forward(self, x):
            return self.fc(self.features(x).flatten(1))

    builders = {
        "dlg_lenet": DLGLeNet, "convnet": ConvNet,
        "resnet18_cifar": lambda: ResNet18("cifar"), "resnet18_imagenet": lambda: ResNet18("imagenet"),
    }
    torch.manual_seed(0)
    return builders[name]()


class _TorchSide:
    def __init__(self, case: dict, data: dict, threads: int) -> None:
        import numpy as np
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
        self.torch, self.case = torch, case
        self.model = _torch_model(case["model"])
        state = {}
        for key, value in data.items():
            if not key.startswith("w."):
                continue
            name = key[2:].replace("._mean", ".running_mean").replace("._variance", ".running_var")
            if name.endswith("weight") and value.ndim == 2:  # Paddle's Linear weight is [in, out]
                value = value.T.copy()
            state[name] = torch.from_numpy(np.ascontiguousarray(value))
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if unexpected or any(not m.endswith("num_batches_tracked") for m in missing):
            raise RuntimeError(f"weight mapping failed: missing {missing}, unexpected {unexpected}")
        self.model.eval()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        mean, std = np.array(MEAN)[:, None, None], np.array(STD)[:, None, None]
        images = torch.from_numpy(((data["pixels"] - mean) / std).astype("float32"))
        self.y = torch.from_numpy(data["labels"].astype("int64"))
        loss = torch.nn.functional.cross_entropy(self.model(images), self.y)
        self.target = [g.detach() for g in torch.autograd.grad(loss, self.params)]
        self.x0 = torch.from_numpy(data["x0"])

    def sample(self) -> float:
        torch = self.torch
        x, m, v = self.x0.clone(), torch.zeros_like(self.x0), torch.zeros_like(self.x0)
        value = float("nan")
        for t in range(1, self.case["iterations"] + 1):
            x.requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(self.model(x), self.y)
            grads = torch.autograd.grad(loss, self.params, create_graph=True)
            dot = sum((g * s).sum() for g, s in zip(grads, self.target))
            gn = sum((g * g).sum() for g in grads)
            tn = sum((s * s).sum() for s in self.target)
            objective = 1.0 - dot / (torch.sqrt(gn + 1e-12) * torch.sqrt(tn + 1e-12))
            (gx,) = torch.autograd.grad(objective, x)
            with torch.no_grad():
                m = BETAS[0] * m + (1 - BETAS[0]) * gx
                v = BETAS[1] * v + (1 - BETAS[1]) * gx * gx
                x = x - LR * (m / (1 - BETAS[0] ** t)) / (torch.sqrt(v / (1 - BETAS[1] ** t)) + EPS)
            value = float(objective)
        return value

    def extra(self) -> dict:
        return {"torch_version": self.torch.__version__, "mkldnn": bool(self.torch.backends.mkldnn.is_available())}


# ------------------------------------------------------------------------------------ worker


def _worker(args: argparse.Namespace) -> int:
    case = json.loads(Path(args.data, "case.json").read_text())
    data = _load(args.data)
    if args.side == "torch":
        side = _TorchSide(case, data, args.threads)
    else:
        if args.threads is not None:
            import paddle

            paddle.base.core.set_num_threads(args.threads)
        side = _PaddleSide(case, data, engine=args.side == "privbox")
    baseline = _rss_mb()
    print(json.dumps({"ready": True, "rss_mb": baseline}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        value = side.sample()
        cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
        print(json.dumps({"cpu": cpu, "wall": wall, "value": value}), flush=True)
    print(json.dumps({"peak_mb": _peak_mb(), "baseline_mb": baseline, **side.extra()}), flush=True)
    return 0


# ------------------------------------------------------------------------------------ parent


def _write_case(case: dict, directory: str) -> None:
    import numpy as np
    import paddle
    from safetensors.numpy import save_file

    from privbox.data import make_target_batch

    paddle.seed(0)
    model = _paddle_model(case["model"])
    batch = make_target_batch(case["batch"], num_classes=NUM_CLASSES, seed=0)
    tensors = {f"w.{k}": v.numpy().astype("float32") for k, v in model.state_dict().items()}
    tensors["pixels"] = np.asarray(batch.images, dtype="float32")
    tensors["labels"] = np.asarray(batch.labels, dtype="int64")
    tensors["x0"] = np.random.default_rng(0).standard_normal(tensors["pixels"].shape).astype("float32")
    save_file(tensors, os.path.join(directory, "data.safetensors"))
    Path(directory, "case.json").write_text(json.dumps(case))


class _Worker:
    def __init__(self, side: str, data_dir: str, threads: int, torch_path: str | None) -> None:
        env = dict(os.environ)
        if side == "torch" and torch_path:
            env["PYTHONPATH"] = os.pathsep.join([torch_path] + [p for p in [env.get("PYTHONPATH")] if p])
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", side, "--data", data_dir, "--threads", str(threads)]
        self.side = side
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ready = self._read()

    def _read(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the {self.side} worker exited (code {self.proc.wait()})")
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)

    def run(self) -> dict:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> dict:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        result = self._read()
        self.proc.wait()
        return result


def _torch_available(torch_path: str | None) -> bool:
    env = dict(os.environ)
    if torch_path:
        env["PYTHONPATH"] = torch_path
    return subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True).returncode == 0


def _loadavg() -> list[float]:
    with open("/proc/loadavg", encoding="utf-8") as f:
        return [float(v) for v in f.read().split()[:3]]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run_case(name: str, case: dict, args: argparse.Namespace, sides: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="privbox-speed-") as directory:
        _write_case(case, directory)
        workers = {side: _Worker(side, directory, args.threads, args.torch_path) for side in sides}
        try:
            for worker in workers.values():  # untimed warm-up (programs, calibration, caches)
                worker.run()
            samples: dict[str, list[dict]] = {side: [] for side in sides}
            for rep in range(args.repeats):
                order = sides[rep % len(sides):] + sides[: rep % len(sides)]
                for side in order:
                    samples[side].append(workers[side].run())
            finals = {side: worker.close() for side, worker in workers.items()}
        finally:
            for worker in workers.values():
                if worker.proc.poll() is None:
                    worker.proc.kill()
    result = {"case": name, **case, "sides": {}}
    for side in sides:
        per_iter = [s["cpu"] / case["iterations"] for s in samples[side]]
        result["sides"][side] = {
            "cpu_s_per_iter_median": statistics.median(per_iter),
            "cpu_s_per_iter_min": min(per_iter),
            "wall_s_per_iter_median": statistics.median(s["wall"] / case["iterations"] for s in samples[side]),
            "samples_cpu_s_per_iter": per_iter,
            "final_objective": samples[side][-1]["value"],
            **finals[side],
        }
    med = {side: result["sides"][side]["cpu_s_per_iter_median"] for side in sides}
    result["privbox_over_paddle"] = med["privbox"] / med["paddle"]
    if "torch" in med:
        result["privbox_over_torch"] = med["privbox"] / med["torch"]
        result["paddle_over_torch"] = med["paddle"] / med["torch"]
    return result


def _table(results: list[dict]) -> str:
    head = (
        "| case | privbox s/it | bare Paddle s/it | PyTorch s/it | privbox / Paddle | privbox / PyTorch "
        "| peak MB privbox / Paddle / PyTorch (growth) | fast convs |\n|---|---|---|---|---|---|---|---|"
    )
    rows = [head]
    for r in results:
        s = r["sides"]
        t = s.get("torch")

        def mem(side):
            if side is None:
                return "-"
            return f"{side['peak_mb']:.0f} ({side['peak_mb'] - side['baseline_mb']:+.0f})"

        rows.append(
            f"| {r['case']} | {s['privbox']['cpu_s_per_iter_median']:.3f} | {s['paddle']['cpu_s_per_iter_median']:.3f} "
            f"| {t['cpu_s_per_iter_median']:.3f} | {r['privbox_over_paddle']:.2f} | "
            f"{r['privbox_over_torch']:.2f} | {mem(s['privbox'])} / {mem(s['paddle'])} / {mem(t)} "
            f"| {s['privbox']['fast_convs']}/{s['privbox']['calibrated_shapes']} |"
            if t is not None
            else f"| {r['case']} | {s['privbox']['cpu_s_per_iter_median']:.3f} | {s['paddle']['cpu_s_per_iter_median']:.3f} "
            f"| - | {r['privbox_over_paddle']:.2f} | - | {mem(s['privbox'])} / {mem(s['paddle'])} / - "
            f"| {s['privbox']['fast_convs']}/{s['privbox']['calibrated_shapes']} |"
        )
    return "\n".join(rows)


def _parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=5, help="timed samples per side and case")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per worker (Paddle, BLAS, torch)")
    parser.add_argument("--torch-path", default=None, help="extra sys.path entry for the PyTorch worker only")
    parser.add_argument("--out", default=None, help="write the results as JSON here (atomically)")
    parser.add_argument("--worker", choices=SIDES, dest="side", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    _set_thread_env(args.threads)
    if args.side:
        return _worker(args)
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        raise SystemExit(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    sides = ["privbox", "paddle"] + (["torch"] if _torch_available(args.torch_path) else [])
    if "torch" not in sides:
        print("PyTorch not importable: the PyTorch column stays empty (pip install 'privbox[bench]')", file=sys.stderr)
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": _cpu_name(), "usable_cores": len(os.sched_getaffinity(0)), "threads": args.threads,
        "loadavg_start": _loadavg(), "python": platform.python_version(), "repeats": args.repeats,
    }
    results = []
    for name in names:
        results.append(_run_case(name, CASES[name], args, sides))
        print(f"[attack_speed] {name}: load {_loadavg()[0]:.1f}; " + json.dumps(
            {k: round(v, 3) for k, v in results[-1].items() if k.endswith("_over_torch") or k.endswith("_over_paddle")}),
            file=sys.stderr, flush=True)
    meta["loadavg_end"] = _loadavg()
    import paddle

    meta["paddle"] = paddle.__version__
    report = {"meta": meta, "results": results, "table": _table(results)}
    if args.out:
        from privbox.report import write_json_atomic

        write_json_atomic(args.out, report)
    print(json.dumps(meta))
    print(report["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
