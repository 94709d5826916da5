"""How much does privbox add on top of Paddle's own forward + double-backward cost?

Measures, in one process and on the same inputs:

1. ``bare``: one forward, ``g = grad(CE, params, create_graph=True)``, the squared L2 distance
   ``D`` to a fixed target gradient, and ``grad(D, x)``: the Paddle work every gradient-inversion
   iteration has to do (median over ``--repeats`` after warm-up);
2. ``adam``: privbox's time per attack iteration, ``GradientInversion(AttackConfig(
   optimizer="adam", lr=0.1, label_strategy="given", ...)).run(model, update)``, i.e.
   ``Reconstruction.wall_time / iterations`` (median over ``--repeats`` runs);
3. LeNet only, L-BFGS: the DLG preset (``privbox.attacks.DLG``, the engine's NumPy L-BFGS) versus
   ``paddle.optimizer.LBFGS`` and ``privbox.attacks.lbfgs.NumpyLBFGS`` driven directly by a small
   loop on the same DLG closure (joint image + soft-label variables, same start point), as time
   per outer step and per objective evaluation.

for (a) the DLG LeNet, B = 1, 3x32x32, 10 classes and (b) ``privbox.nn.resnet18`` (CIFAR stem),
B = 8, 3x32x32, eval mode. Ratios ``privbox / bare`` are reported from the same run.

Usage (from the repository root)::

    python benchmarks/bench_attack_speed.py --threads 1 --repeats 5 --out benchmarks/results.json

Not a test: pytest does not collect ``bench_*.py`` files.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (after warm-up)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up repeats of the bare step")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for Paddle (OMP/MKL)")
    parser.add_argument("--out", default=None, help="write the results as JSON to this path")
    parser.add_argument("--lenet-iterations", type=int, default=50, help="Adam iterations per LeNet attack run")
    parser.add_argument("--resnet-iterations", type=int, default=4, help="Adam iterations per ResNet-18 attack run")
    parser.add_argument("--lbfgs-steps", type=int, default=5, help="outer L-BFGS steps (DLG, LeNet)")
    parser.add_argument("--skip-resnet", action="store_true", help="LeNet only (quick check)")
    return parser.parse_args(argv)


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # Thread counts must be fixed before Paddle (and its OpenMP/MKL runtime) is imported.
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = str(ARGS.threads)

warnings.filterwarnings("ignore", category=UserWarning)  # ccache notice, to_tensor copy notices

import numpy as np  # noqa: E402
import paddle  # noqa: E402

import privbox  # noqa: E402
from privbox.attacks import DLG, AttackConfig, GradientInversion  # noqa: E402
from privbox.attacks.lbfgs import NumpyLBFGS  # noqa: E402
from privbox.fl.capture import compute_update  # noqa: E402
from privbox.core.images import normalize  # noqa: E402
from privbox.data import make_target_batch  # noqa: E402
from privbox.nn import DLGLeNet, make_twice_differentiable, resnet18, trainable_parameters  # noqa: E402
from privbox.nn import functional as PF  # noqa: E402

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
NUM_CLASSES = 10


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


# ------------------------------------------------------------------------------------ setup


class Case:
    """A victim model, its client update, and the attacker's view of it."""

    def __init__(self, name: str, model_id: str, build, batch_size: int, bn_mode: str) -> None:
        self.name, self.model_id, self.build, self.batch_size, self.bn_mode = name, model_id, build, batch_size, bn_mode
        paddle.seed(0)
        self.model = build()
        batch = make_target_batch(batch_size, num_classes=NUM_CLASSES, size=32, channels=3, seed=0)
        self.update, _ = compute_update(
            self.model, batch.images, batch.labels, CIFAR_MEAN, CIFAR_STD, bn_mode=bn_mode, model_id=model_id, share_labels=True
        )
        self.images = batch.images
        self.labels = batch.labels


def _attack_model(case: Case):
    """A fresh copy of the victim architecture, converted, with θ0 and the right BN mode."""
    paddle.seed(1)
    model = make_twice_differentiable(case.build())
    case.update.load_global_state(model)
    model.train() if case.bn_mode == "train" else model.eval()
    return model


# ----------------------------------------------------------------------- measurements
#
# Each measurement is a ``once()`` callable returning one sample (a dict whose "s" entry is the
# time per unit: per step, per iteration or per evaluation). All measurements of a case are run
# round-robin (A B C A B C ...) after a warm-up, so slow drifts of a shared machine's load hit
# them alike; medians and minima are reported.


def make_bare(case: Case, inner: int):
    """Forward + grad(create_graph) + squared-L2 distance + grad wrt the input (``inner`` times)."""
    model = _attack_model(case)
    params = [p for _, p in trainable_parameters(model)]
    observed = case.update.gradients()
    target = [paddle.to_tensor(observed[name], dtype="float32") for name, _ in trainable_parameters(model)]
    labels = paddle.to_tensor(case.labels)
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.standard_normal((case.batch_size, 3, 32, 32)).astype(np.float32))
    x.stop_gradient = False

    def once() -> dict:
        start = time.perf_counter()
        for _ in range(inner):
            loss = PF.cross_entropy(model(x), labels)
            grads = paddle.grad(loss, params, create_graph=True)
            distance = paddle.add_n([((g - t) ** 2).sum() for g, t in zip(grads, target)])
            (grad_x,) = paddle.grad(distance, x)
            grad_x.numpy()  # materialise (CPU eager is synchronous; this is a few KB)
        return {"s": (time.perf_counter() - start) / inner}

    return once


def make_adam(case: Case, iterations: int):
    """privbox's time per attack iteration: Reconstruction.wall_time / iterations."""
    config = AttackConfig(optimizer="adam", lr=0.1, iterations=iterations, progress=False, label_strategy="given")
    model = _attack_model(case)

    def once() -> dict:
        rec = GradientInversion(config).run(model, case.update)
        return {"s": rec.wall_time / rec.iterations, "wall_s": rec.wall_time, "iterations": rec.iterations}

    return once


class _EvalCounter:
    """Counts forward calls of a model (one per objective evaluation in an attack)."""

    def __init__(self, model) -> None:
        self.count = 0
        self._handle = model.register_forward_post_hook(self._hook)

    def _hook(self, layer, inputs, output):
        self.count += 1

    def remove(self) -> None:
        self._handle.remove()


def make_dlg_engine(case: Case, steps: int):
    """The DLG preset through the engine (NumPy L-BFGS, lr 1, 20 inner iterations, history 100)."""
    model = _attack_model(case)

    def once() -> dict:
        counter = _EvalCounter(model)
        try:
            rec = DLG(iterations=steps, progress=False).run(model, case.update)
        finally:
            counter.remove()
        return {
            "s": rec.wall_time / counter.count,
            "s_per_outer_step": rec.wall_time / rec.iterations,
            "evaluations_per_outer_step": counter.count / rec.iterations,
            "outer_steps": rec.iterations,
        }

    return once


def _dlg_problem(case: Case):
    """The DLG objective on [x, y_logits] at the engine's start point (seed 0)."""
    model = _attack_model(case)
    params = [p for _, p in trainable_parameters(model)]
    observed = case.update.gradients()
    target = [paddle.to_tensor(observed[name], dtype="float32") for name, _ in trainable_parameters(model)]
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((case.batch_size, 3, 32, 32)).astype(np.float32)
    y0 = rng.standard_normal((case.batch_size, NUM_CLASSES)).astype(np.float32)

    def gradient_loss(x, y):
        loss = PF.cross_entropy(model(x), y, soft_label=True, label_logits=True)
        grads = paddle.grad(loss, params, create_graph=True)
        return paddle.add_n([((g - t) ** 2).sum() for g, t in zip(grads, target)])

    return gradient_loss, x0, y0


def make_bare_dlg(case: Case, inner: int):
    """The bare cost of one DLG-objective evaluation (soft-label logits, gradient wrt x and y)."""
    gradient_loss, x0, y0 = _dlg_problem(case)
    x = paddle.to_tensor(x0)
    y = paddle.to_tensor(y0)
    x.stop_gradient = y.stop_gradient = False

    def once() -> dict:
        start = time.perf_counter()
        for _ in range(inner):
            gx, gy = paddle.grad(gradient_loss(x, y), [x, y])
            gx.numpy(), gy.numpy()
        return {"s": (time.perf_counter() - start) / inner}

    return once


def _lbfgs_sample(wall: float, steps: int, evaluations: int) -> dict:
    return {
        "s": wall / evaluations,
        "s_per_outer_step": wall / steps,
        "evaluations_per_outer_step": evaluations / steps,
        "outer_steps": steps,
    }


def make_paddle_lbfgs(case: Case, steps: int):
    """``paddle.optimizer.LBFGS`` (no line search) driven by a direct loop on the DLG closure.

    The closure is the usual Paddle one (``clear_grad``, loss, ``loss.backward()``), as in the
    engine's strong-Wolfe path.
    """
    gradient_loss, x0, y0 = _dlg_problem(case)

    def once() -> dict:
        x = paddle.to_tensor(x0)
        y = paddle.to_tensor(y0)
        x.stop_gradient = y.stop_gradient = False
        optimizer = paddle.optimizer.LBFGS(learning_rate=1.0, max_iter=20, history_size=100, line_search_fn=None, parameters=[x, y])
        count = [0]

        def closure():
            optimizer.clear_grad()
            loss = gradient_loss(x, y)
            loss.backward()
            count[0] += 1
            return loss

        start = time.perf_counter()
        for _ in range(steps):
            optimizer.step(closure)
        return _lbfgs_sample(time.perf_counter() - start, steps, count[0])

    return once


def make_numpy_lbfgs(case: Case, steps: int):
    """privbox's ``NumpyLBFGS`` driven by the same direct loop (no engine around it)."""
    gradient_loss, x0, y0 = _dlg_problem(case)
    x = paddle.to_tensor(x0)
    y = paddle.to_tensor(y0)
    x.stop_gradient = y.stop_gradient = False
    count = [0]

    def closure(flat: np.ndarray):
        x.set_value(flat[: x0.size].reshape(x0.shape).astype(np.float32))
        y.set_value(flat[x0.size :].reshape(y0.shape).astype(np.float32))
        loss = gradient_loss(x, y)
        gx, gy = paddle.grad(loss, [x, y])
        count[0] += 1
        value = float(loss)
        if not math.isfinite(value):
            return value, np.zeros_like(flat)
        return value, np.concatenate([gx.numpy().ravel(), gy.numpy().ravel()]).astype(np.float64)

    def once() -> dict:
        optimizer = NumpyLBFGS(np.concatenate([x0.ravel(), y0.ravel()]).astype(np.float64), lr=1.0, max_iter=20, history_size=100)
        count[0] = 0
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.step(closure)
        return _lbfgs_sample(time.perf_counter() - start, steps, count[0])

    return once


def run_interleaved(measurements: dict, repeats: int, warmups: dict) -> dict:
    """Warm each measurement up, then sample them round-robin; summarise each."""
    for key, once in measurements.items():
        for _ in range(warmups.get(key, 1)):
            once()
    samples: dict = {key: [] for key in measurements}
    for _ in range(repeats):
        for key, once in measurements.items():
            samples[key].append(once())
    summary = {}
    for key, values in samples.items():
        seconds = [v["s"] for v in values]
        entry = {"median_s": _median(seconds), "min_s": min(seconds), "samples_s": seconds}
        for extra in ("s_per_outer_step", "evaluations_per_outer_step", "outer_steps", "iterations"):
            if extra in values[0]:
                entry[extra if extra != "s_per_outer_step" else "median_s_per_outer_step"] = _median([v[extra] for v in values])
        summary[key] = entry
    return summary


# ------------------------------------------------------------------------------------ main

LABELS = {
    "bare": "bare forward + double backward",
    "adam": "privbox Adam, per iteration",
    "bare_dlg": "bare DLG objective (soft labels, grad wrt x and y)",
    "dlg_engine": "DLG preset (engine, NumPy L-BFGS), per evaluation",
    "numpy_lbfgs": "direct loop, privbox NumpyLBFGS, per evaluation",
    "paddle_lbfgs": "direct loop, paddle.optimizer.LBFGS, per evaluation",
}


def main(args: argparse.Namespace) -> dict:
    paddle.set_device("cpu")
    if hasattr(paddle.base.core, "set_num_threads"):  # semi-private; the env vars above also apply
        paddle.base.core.set_num_threads(args.threads)
    started = time.perf_counter()
    results: dict = {
        "environment": {
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu": _cpu_model(),
            "cpus_visible": os.cpu_count(),
            "threads": args.threads,
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "paddle": paddle.__version__,
            "paddle_commit": getattr(paddle.version, "commit", "unknown"),
            "privbox": getattr(privbox, "__version__", "unknown"),
            "numpy": np.__version__,
            "python": platform.python_version(),
            "command": " ".join(["python"] + sys.argv),
        },
        "settings": vars(args),
        "cases": {},
    }
    env = results["environment"]
    print(f"privbox attack-speed benchmark  {env['date']}")
    print(f"  CPU {env['cpu']} ({env['cpus_visible']} visible), threads {env['threads']}, Paddle {env['paddle']}")
    print(f"  load average at start {env['load_average_at_start']}")

    cases = [("lenet_b1", "DLG LeNet, B=1, 3x32x32", "dlg_lenet", lambda: DLGLeNet(num_classes=NUM_CLASSES), 1, "train")]
    if not args.skip_resnet:
        cases.append(("resnet18_b8", "ResNet-18 (CIFAR stem), B=8, 3x32x32, eval", "resnet18", lambda: resnet18(num_classes=NUM_CLASSES), 8, "eval"))

    for key, title, model_id, build, batch_size, bn_mode in cases:
        case = Case(key, model_id, build, batch_size, bn_mode)
        lenet = key == "lenet_b1"
        measurements = {
            "bare": make_bare(case, inner=20 if lenet else 1),
            "adam": make_adam(case, args.lenet_iterations if lenet else args.resnet_iterations),
        }
        if lenet:
            measurements["bare_dlg"] = make_bare_dlg(case, inner=20)
            measurements["dlg_engine"] = make_dlg_engine(case, args.lbfgs_steps)
            measurements["numpy_lbfgs"] = make_numpy_lbfgs(case, args.lbfgs_steps)
            measurements["paddle_lbfgs"] = make_paddle_lbfgs(case, args.lbfgs_steps)
        summary = run_interleaved(measurements, args.repeats, {"bare": args.warmup, "bare_dlg": args.warmup})
        bare = summary["bare"]
        for name, entry in summary.items():
            entry["ratio_median_to_bare"] = entry["median_s"] / bare["median_s"]
            entry["ratio_min_to_bare"] = entry["min_s"] / bare["min_s"]
            if name in ("dlg_engine", "numpy_lbfgs", "paddle_lbfgs"):
                entry["ratio_median_to_bare_dlg"] = entry["median_s"] / summary["bare_dlg"]["median_s"]
        results["cases"][key] = {"title": title, "batch_size": batch_size, "bn_mode": bn_mode, **summary}

        print(f"\n{title}   (median / min of {args.repeats}; ratio = median / bare median)")
        for name, entry in summary.items():
            line = f"  {LABELS[name]:<52s} {entry['median_s'] * 1e3:9.2f} / {entry['min_s'] * 1e3:9.2f} ms   x{entry['ratio_median_to_bare']:5.2f}"
            if "median_s_per_outer_step" in entry:
                line += (
                    f" (x{entry['ratio_median_to_bare_dlg']:4.2f} bare DLG)   {entry['median_s_per_outer_step'] * 1e3:.1f} ms"
                    f" per outer step, {entry['evaluations_per_outer_step']:.1f} evaluations/step"
                )
            print(line)

    results["total_runtime_s"] = time.perf_counter() - started
    print(f"\ntotal runtime {results['total_runtime_s']:.1f} s")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2)
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main(ARGS)
