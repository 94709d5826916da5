"""Issue 12, interruption: SIGTERM in every phase of ``privbox attack`` (also while each output is
written), swallowed interrupts, run.json after failures, and tampered checkpoints / run records."""

from __future__ import annotations

import json
import os
import signal
import tempfile as real_tempfile
from pathlib import Path

import numpy as np
import pytest

from privbox.attacks import GradientInversion, Reconstruction, get_preset
from privbox.cli.main import main
from privbox.core.errors import CheckpointError
from privbox.core.interrupts import check_interrupted, deferred, interruptible

from rel_helpers import ATTACK
from st_bytes import tamper


def _hidden(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")]


def _same(a: Reconstruction, b: Reconstruction) -> None:
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.loss_trace == b.loss_trace and a.best_iteration == b.best_iteration


@pytest.fixture(scope="module")
def reference(captured, tmp_path_factory) -> Reconstruction:
    out = tmp_path_factory.mktemp("uninterrupted")
    assert main(["attack", *ATTACK, "--update", str(captured / "update.safetensors"), "--out", str(out)]) == 0
    return Reconstruction.load(out / "reconstruction.safetensors")


class _KillingTempfile:
    """Stands in for ``tempfile`` in privbox.core.atomic: sends SIGTERM to this process right after
    the temporary file of ``target`` is created (the most fragile moment of an atomic write)."""

    def __init__(self, target: str) -> None:
        self.target, self.fired = target, False

    def mkstemp(self, prefix="", suffix="", dir=None):  # noqa: A002 - tempfile's signature
        result = real_tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=dir)
        if not self.fired and prefix == f".{self.target}.":
            self.fired = True
            os.kill(os.getpid(), signal.SIGTERM)
        return result


@pytest.mark.parametrize("target", ["state_restart0.safetensors", "iter_000008.png", "reconstruction.safetensors",
                                    "reconstruction.png", "loss.png", "attack.json"])
def test_sigterm_while_an_output_is_written(captured, reference, tmp_path, capsys, monkeypatch, target):
    import privbox.core.atomic as atomic

    killer = _KillingTempfile(target)
    monkeypatch.setattr(atomic, "tempfile", killer)
    args = ["attack", *ATTACK, "--update", str(captured / "update.safetensors"), "--out", str(tmp_path)]
    assert main(args) == 130
    assert killer.fired
    assert "--resume" in capsys.readouterr().out
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "interrupted"
    assert not _hidden(tmp_path), _hidden(tmp_path)
    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0
    _same(reference, Reconstruction.load(tmp_path / "reconstruction.safetensors"))
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "complete"


def test_sigterm_while_the_run_record_is_written(captured, tmp_path, capsys, monkeypatch):
    import privbox.core.atomic as atomic

    monkeypatch.setattr(atomic, "tempfile", _KillingTempfile("run.json"))
    assert main(["attack", *ATTACK, "--update", str(captured / "update.safetensors"), "--out", str(tmp_path)]) == 130
    assert not _hidden(tmp_path)
    # Stopped while the first record was written: nothing half-written, so no record at all.
    assert not (tmp_path / "run.json").exists()
    assert "interrupted" in capsys.readouterr().err


def test_an_interrupt_swallowed_in_a_finaliser_still_stops(capsys):
    """Python drops exceptions raised in __del__ and weakref callbacks ("Exception ignored"); the
    guard records the signal there and raises it at the next check instead."""

    class Dies:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(10))  # give the interpreter a point to run the handler inside __del__

    with interruptible() as guard:
        item = Dies()
        del item
        assert guard.stopped
        with pytest.raises(KeyboardInterrupt):
            check_interrupted()
    assert "Exception ignored" not in capsys.readouterr().err


def test_deferred_section_raises_at_its_end():
    done = []
    with interruptible():
        with pytest.raises(KeyboardInterrupt):
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                sum(range(10))
                done.append("rest of the section ran")
    assert done == ["rest of the section ran"]


def test_sigint_is_handled_like_sigterm(captured, tmp_path, capsys, monkeypatch):
    import privbox.core.atomic as atomic

    class Ctrl(_KillingTempfile):
        def mkstemp(self, prefix="", suffix="", dir=None):  # noqa: A002
            result = real_tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=dir)
            if not self.fired and prefix == f".{self.target}.":
                self.fired = True
                os.kill(os.getpid(), signal.SIGINT)
            return result

    monkeypatch.setattr(atomic, "tempfile", Ctrl("loss.png"))
    assert main(["attack", *ATTACK, "--update", str(captured / "update.safetensors"), "--out", str(tmp_path)]) == 130
    assert not _hidden(tmp_path)


# ------------------------------------------------------------------------------- run.json
def test_garbage_run_record_is_a_checkpoint_error(captured, tmp_path, capsys):
    args = ["attack", *ATTACK, "--update", str(captured / "update.safetensors"), "--out", str(tmp_path)]
    for garbage in ("{not json", "[1, 2]", '{"status": "exploded"}'):
        (tmp_path / "run.json").write_text(garbage)
        for extra in ([], ["--resume"]):
            assert main([*args, *extra]) == 2
            err = capsys.readouterr().err
            assert "run.json" in err and "delete" in err and "Traceback" not in err


# --------------------------------------------------------------------------- checkpoints
@pytest.fixture()
def interrupted_run(captured, tmp_path):
    args = ["attack", *ATTACK, "--update", str(captured / "update.safetensors"), "--out", str(tmp_path)]
    assert main([*args, "--_interrupt-after", "8"]) == 130
    return args, tmp_path / "checkpoints" / "state_restart0.safetensors"


@pytest.mark.parametrize("iteration, message", [(-50, "outside"), (10**9, "outside"), (1e9, "malformed")])
def test_checkpoint_with_a_tampered_iteration_counter(interrupted_run, capsys, iteration, message):
    args, checkpoint = interrupted_run
    tamper(checkpoint, checkpoint, header_edit=lambda h: {**h, "iteration": iteration})
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert message in err and "state_restart0.safetensors" in err and "start the run afresh" in err


def test_checkpoint_with_a_wrong_tensor_shape(interrupted_run, capsys):
    args, checkpoint = interrupted_run

    def shrink(tensors):
        tensors["x"] = tensors["x"][:1]

    tamper(checkpoint, checkpoint, tensor_edit=shrink)
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    assert "tensor 'x' has shape (1, 1, 8, 8), the run needs (2, 1, 8, 8)" in capsys.readouterr().err


def test_checkpoint_checks_at_the_engine(captured, tmp_path):
    from privbox.attacks.tuning import build_model_for_update
    from privbox.core.update import ClientUpdate

    update = ClientUpdate.load(captured / "update.safetensors")
    model = build_model_for_update(update)
    config = get_preset("ga", iterations=6, label_strategy="joint", progress=False, snapshot_every=2)

    def stop(info):
        if info.iteration >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        GradientInversion(config).run(model, update, callback=stop, checkpoint_dir=str(tmp_path), checkpoint_every=2)
    checkpoint = tmp_path / "state_restart0.safetensors"
    tamper(checkpoint, checkpoint, tensor_edit=lambda t: t.update(trace=t["trace"][:1]))
    with pytest.raises(CheckpointError, match="loss trace has 1 entries for 4 iterations"):
        GradientInversion(config).run(model, update, checkpoint_dir=str(tmp_path), resume=True)
    tamper(checkpoint, checkpoint, header_edit=lambda h: {**h, "fingerprint": "0" * 16})
    with pytest.raises(CheckpointError, match="different configuration or seed"):
        GradientInversion(config).run(model, update, checkpoint_dir=str(tmp_path), resume=True)
