"""Helpers of the distributed tests: start real ranks with ``paddle.distributed.launch`` (gloo, CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from privbox.cli.main import main

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RANK_MAIN = HERE / "rank_main.py"

#: A BN CNN (ConvNet, width 4) on four 16x16 RGB images, 4 classes; labels and exact BN statistics shared.
BN_CAPTURE = [
    "-o", "capture.model=convnet",
    "-o", "capture.model_kwargs={width: 4}",
    "-o", "capture.batch_size=4",
    "-o", "capture.image_size=16",
    "-o", "capture.num_classes=4",
    "-o", "capture.share_labels=true",
    "-o", "capture.share_bn_stats=true",
    "-o", "run.device=cpu",
]

#: Inverting Gradients (signed Adam, cosine, TV, box) plus BN-statistics matching, 20 iterations.
IG_BN = [
    "-c", "inverting_gradients",
    "-o", "attack.iterations=20",
    "-o", "attack.label_strategy=given",
    "-o", "attack.regularizers={tv: 1.0e-4, bn: {weight: 0.1, source: exact}}",
    "-o", "run.progress=false",
    "-o", "run.device=cpu",
]


@dataclass
class Launch:
    """The outcome of one launch: exit code, wall seconds, launcher output and each rank's log."""

    returncode: int
    seconds: float
    output: str
    logs: dict[int, str]

    def describe(self) -> str:
        return f"exit {self.returncode} after {self.seconds:.1f} s\n{self.output[-3000:]}\n" + "\n".join(
            f"--- rank {r}\n{text[-3000:]}" for r, text in sorted(self.logs.items()))


def capture(out: Path, extra: Sequence[str] = ()) -> Path:
    """Capture the BN CNN's update in this process; returns the update file."""
    assert main(["capture", "--out", str(out), *BN_CAPTURE, *extra]) == 0
    return out / "update.safetensors"


def launch(args: Sequence[str], log_dir: Path, nproc: int = 2, timeout: float = 180,
           env: Optional[dict] = None, script: Path = RANK_MAIN) -> Launch:
    """Run ``python -m paddle.distributed.launch --nproc_per_node N script args`` with a timeout."""
    environ = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
               "--log_dir", str(log_dir), str(script), *map(str, args)]
    start = time.monotonic()
    process = subprocess.Popen(command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=str(log_dir.parent), start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
        code = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the launcher and every rank it started
        output, _ = process.communicate()
        code, output = -9, f"launcher timed out after {timeout} s\n{output}"
    seconds = time.monotonic() - start
    logs = {}
    for rank in range(nproc):
        path = log_dir / f"workerlog.{rank}"
        logs[rank] = path.read_text(errors="replace") if path.exists() else ""
    return Launch(code, seconds, output, logs)
