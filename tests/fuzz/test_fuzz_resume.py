"""SIGKILL at random moments of a small DLG run (``privbox attack`` in a subprocess), then the same
command again (with ``--resume`` when a run record exists): the result must equal the
uninterrupted run's, bit for bit, and no temporary file may remain. The kill moments are drawn
from a seeded generator as fractions of the measured uninterrupted run time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from privbox.attacks import Reconstruction
from privbox.cli.main import main

from fuzz_helpers import OUTCOMES

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ["-o", "capture.model=dlg_lenet", "-o", "capture.num_classes=4", "-o", "capture.batch_size=2",
           "-o", "capture.image_size=8", "-o", "capture.channels=1", "-o", "capture.mean=[0.5]",
           "-o", "capture.std=[0.5]", "-o", "run.device=cpu"]
DLG = ["-c", "dlg", "-o", "attack.iterations=24", "-o", "attack.lbfgs_max_iter=4", "-o", "attack.early_stop_loss=0",
       "-o", "run.progress=false", "-o", "run.device=cpu", "-o", "run.checkpoint_every=1", "--snapshot-every", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def victim(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill_capture")
    assert main(["capture", "--out", str(folder), *CAPTURE]) == 0
    update = folder / "update.safetensors"
    reference_dir = tmp_path_factory.mktemp("kill_reference")
    proc = subprocess.Popen([sys.executable, "-m", "privbox.cli.main", "attack", *DLG, "--update", str(update),
                             "--out", str(reference_dir)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    started = _wait_for_record(reference_dir, proc)
    _, err = proc.communicate(timeout=300)
    duration = time.perf_counter() - started  # from the run record to the exit: the attack and its outputs
    assert proc.returncode == 0, err
    return update, Reconstruction.load(reference_dir / "reconstruction.safetensors"), duration


def _wait_for_record(out: Path, proc: subprocess.Popen) -> float:
    """Poll until the run record exists (the command has imported Paddle and started); its time."""
    deadline = time.perf_counter() + 300
    while not (out / "run.json").exists() and proc.poll() is None and time.perf_counter() < deadline:
        time.sleep(0.005)
    return time.perf_counter()


def _kill_and_resume(victim, out: Path, fraction: float) -> str:
    update, reference, duration = victim
    args = ["attack", *DLG, "--update", str(update), "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "privbox.cli.main", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if fraction >= 0:  # a negative fraction kills during start-up, before any record
        _wait_for_record(out, proc)
        time.sleep(fraction * duration)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    state = "no record"
    if (out / "run.json").exists():
        state = json.loads((out / "run.json").read_text())["status"]
    resume = ["--resume"] if (out / "run.json").exists() else []
    assert main([*args, *resume]) == 0
    recon = Reconstruction.load(out / "reconstruction.safetensors")
    np.testing.assert_array_equal(recon.images, reference.images)
    np.testing.assert_array_equal(recon.labels, reference.labels)
    assert recon.loss_trace == reference.loss_trace and recon.best_iteration == reference.best_iteration
    assert not [p for p in out.rglob(".*")], "temporary files left behind"
    OUTCOMES["sigkill resume"][f"killed while {state}: same result"] += 1
    return state


def _fractions(count: int, seed: int) -> list[float]:
    """Seeded kill moments, as fractions of the run after its record appears (-1: at start-up)."""
    return [-1.0] + sorted(np.random.default_rng(seed).uniform(0.0, 1.05, size=count - 1).round(3).tolist())


@pytest.mark.parametrize("fraction", _fractions(2, seed=12)[1:])
def test_sigkill_then_resume_equals_the_uninterrupted_run(victim, tmp_path, fraction):
    _kill_and_resume(victim, tmp_path, fraction)


@pytest.mark.slow
@pytest.mark.parametrize("fraction", _fractions(16, seed=2026))
def test_sigkill_then_resume_sweep(victim, tmp_path, fraction):
    _kill_and_resume(victim, tmp_path, fraction)
