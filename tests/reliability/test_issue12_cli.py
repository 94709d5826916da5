"""Issue 12 through the command line: every ordinary mistake is one line on stderr and exit code
2 (no traceback unless --debug); the crash and hang cases end promptly with a message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from privbox.cli.main import main

from rel_helpers import ATTACK
from st_bytes import tamper

ROOT = Path(__file__).resolve().parents[2]


def _one_line_error(capsys, command: str, *fragments: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"privbox {command}: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], err
    return lines[0]


def _attack(update: Path, out: Path, *extra: str) -> int:
    return main(["attack", *ATTACK, "--update", str(update), "--out", str(out), *extra])


def test_batch_size_zero_is_a_clear_error_not_sigfpe(captured, tmp_path):
    """A subprocess, because the failure used to kill the interpreter (SIGFPE in Paddle)."""
    def zero(header):
        header["meta"]["batch_size"] = 0
        return header

    bad = tamper(captured / "update.safetensors", tmp_path / "zero.safetensors", header_edit=zero)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "privbox.cli.main", "attack", *ATTACK, "--update", str(bad), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "meta.batch_size: must lie in [1, 65536], got 0" in proc.stderr and "Traceback" not in proc.stderr


def test_fifo_as_update_does_not_hang(tmp_path, capsys):
    fifo = tmp_path / "update.safetensors"
    os.mkfifo(fifo)
    previous = signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("hung on the FIFO")))
    signal.alarm(10)
    try:
        assert main(["labels", "--update", str(fifo)]) == 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    _one_line_error(capsys, "labels", "FIFO", "not a regular file")


def test_directory_given_as_update(tmp_path, capsys):
    assert _attack(tmp_path, tmp_path / "out") == 2
    _one_line_error(capsys, "attack", "is a folder, not a regular file")


def test_output_path_that_is_a_file(captured, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("x")
    assert _attack(captured / "update.safetensors", taken) == 2
    _one_line_error(capsys, "attack", "--out", "is a file, not a folder")
    assert main(["capture", "--out", str(taken / "sub")]) == 2
    _one_line_error(capsys, "capture", "is a file, so")
    assert main(["evaluate", "--reconstruction", "r.safetensors", "--secret", "s.safetensors", "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "evaluate", "is a folder, not a file")


def test_read_only_output_directory(captured, tmp_path, capsys, monkeypatch):
    # As root every folder is writable, so os.access is what says "read-only" here.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(tmp_path) else real_access(path, mode))
    assert _attack(captured / "update.safetensors", tmp_path / "out") == 2
    _one_line_error(capsys, "attack", "is not writable")


def test_write_failure_mid_run_is_one_line_and_marks_the_run_failed(captured, tmp_path, capsys, monkeypatch):
    import json

    import privbox.cli.commands.attack as attack_command

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "reconstruction.png"))

    monkeypatch.setattr(attack_command, "save_image_grid", refuse)
    out = tmp_path / "run"
    assert _attack(captured / "update.safetensors", out) == 2
    _one_line_error(capsys, "attack", "Permission denied", "reconstruction.png")
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    monkeypatch.undo()
    # The same command, without --resume, is no longer refused after a failure.
    assert _attack(captured / "update.safetensors", out) == 0
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="not a regular file"):
        main(["attack", *ATTACK, "--update", str(tmp_path), "--out", str(tmp_path / "o"), "--debug"])


def test_model_kwargs_the_model_does_not_take_via_cli(captured, tmp_path, capsys):
    def edit(header):
        header["meta"]["model_kwargs"]["depth"] = 3
        return header

    bad = tamper(captured / "update.safetensors", tmp_path / "kw.safetensors", header_edit=edit)
    assert _attack(bad, tmp_path / "out") == 2
    _one_line_error(capsys, "attack", "does not take ['depth']")


def test_evaluate_bad_reconstruction_and_out_of_range_secret(captured, tmp_path, capsys):
    assert _attack(captured / "update.safetensors", tmp_path / "run") == 0
    recon = tmp_path / "run" / "reconstruction.safetensors"
    secret = captured / "secret.safetensors"
    capsys.readouterr()
    missing = tamper(recon, tmp_path / "missing.safetensors", tensor_edit=lambda t: t.pop("labels"))
    assert main(["evaluate", "--reconstruction", str(missing), "--secret", str(secret)]) == 2
    _one_line_error(capsys, "evaluate", "a reconstruction holds the tensors")
    extra = tamper(recon, tmp_path / "extra.safetensors", header_edit=lambda h: {**h, "psnr": 99})
    assert main(["evaluate", "--reconstruction", str(extra), "--secret", str(secret)]) == 2
    _one_line_error(capsys, "evaluate", "unknown header keys ['psnr']")

    def scale(tensors):
        tensors["images"] = tensors["images"] * np.float32(255)

    bright = tamper(secret, tmp_path / "bright.safetensors", tensor_edit=scale)
    assert main(["evaluate", "--reconstruction", str(recon), "--secret", str(bright)]) == 2
    _one_line_error(capsys, "evaluate", "pixels in [0, 1]", "divided by 255")


@pytest.mark.parametrize("args, where", [
    (["--steps", "0"], "--steps: must be >= 1"),
    (["--epochs", "0.001"], "--epochs"),
])
def test_privacy_with_no_steps(capsys, args, where):
    assert main(["privacy", "--noise-multiplier", "1", "--sample-rate", "0.01", *args]) == 2
    _one_line_error(capsys, "privacy", where)
