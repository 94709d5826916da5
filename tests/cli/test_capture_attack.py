"""privbox capture / attack / evaluate / labels end to end with tiny budgets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from privbox.attacks import Reconstruction
from privbox.cli.main import main
from privbox.core.update import ClientUpdate, Secret

from cli_helpers import TINY_ADAM, TINY_CAPTURE


def test_capture_writes_update_and_secret_separately(captured, capsys):
    update = ClientUpdate.load(captured / "update.safetensors")
    secret = Secret.load(captured / "secret.safetensors")
    assert update.batch_size == 2 and update.num_classes == 4
    assert update.meta.model_id == "dlg_lenet"
    # in_channels and image_size were filled in, so the attacker can rebuild the model.
    assert update.meta.model_kwargs == {"in_channels": 1, "image_size": 8}
    assert update.meta.input_shape == [1, 8, 8] and update.meta.mean == [0.5]
    assert update.labels is None and update.global_state is not None  # labels not shared
    assert secret.images.shape == (2, 1, 8, 8) and secret.labels.shape == (2,)
    assert (captured / "secret.png").exists()


def test_capture_is_deterministic_and_refuses_to_overwrite(captured, tmp_path, capsys):
    assert main(["capture", "--out", str(tmp_path), *TINY_CAPTURE]) == 0
    a = ClientUpdate.load(captured / "update.safetensors")
    b = ClientUpdate.load(tmp_path / "update.safetensors")
    for key in a.tensors:
        np.testing.assert_array_equal(a.tensors[key], b.tensors[key])
    assert main(["capture", "--out", str(tmp_path), *TINY_CAPTURE]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["capture", "--out", str(tmp_path), "--force", *TINY_CAPTURE, "-o", "capture.share_labels=true"]) == 0
    assert ClientUpdate.load(tmp_path / "update.safetensors").labels is not None


def test_attack_evaluate_and_labels(captured, tmp_path, capsys):
    out = tmp_path / "dlg"
    code = main(["attack", "-c", "dlg", "--update", str(captured / "update.safetensors"), "--out", str(out),
                 "-o", "attack.iterations=6", "-o", "attack.lbfgs_max_iter=4", "-o", "run.progress=false",
                 "--snapshot-every", "3"])
    assert code == 0
    for name in ("reconstruction.safetensors", "reconstruction.png", "loss.png", "attack.json", "run.json",
                 "snapshots/iter_000003.png", "snapshots/iter_000006.png", "checkpoints/state_restart0.safetensors"):
        assert (out / name).exists(), name
    assert not list(out.rglob("*.tmp"))
    recon = Reconstruction.load(out / "reconstruction.safetensors")
    assert recon.images.shape == (2, 1, 8, 8) and recon.iterations == 6
    report = json.loads((out / "attack.json").read_text())
    assert report["attack"] == "dlg" and report["config"]["iterations"] == 6
    assert json.loads((out / "run.json").read_text())["status"] == "complete"

    metrics = tmp_path / "metrics.json"
    assert main(["evaluate", "--reconstruction", str(out / "reconstruction.safetensors"),
                 "--secret", str(captured / "secret.safetensors"), "--matching", "hungarian",
                 "--out", str(metrics), "--figure", str(tmp_path / "cmp.png")]) == 0
    printed = capsys.readouterr().out
    assert "| dlg | hungarian |" in printed
    scores = json.loads(metrics.read_text())
    assert scores["matching"] == "hungarian" and np.isfinite(scores["psnr"])
    assert (tmp_path / "cmp.png").exists()

    assert main(["labels", "--update", str(captured / "update.safetensors"),
                 "--secret", str(captured / "secret.safetensors"), "--ginfor", "--out", str(tmp_path / "l.json")]) == 0
    printed = capsys.readouterr().out
    for method in ("yin", "llg", "e2egi", "ilrg"):
        assert f"| {method} |" in printed
    assert "multiset acc" in printed and "GIR %" in printed
    assert json.loads((tmp_path / "l.json").read_text())["ginfor"]


def test_attack_refuses_to_mix_runs(captured, tmp_path, capsys):
    update = str(captured / "update.safetensors")
    out = str(tmp_path / "run")
    args = ["attack", *TINY_ADAM, "-o", "attack.iterations=4", "--update", update, "--out", out]
    assert main([*args, "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(args) == 0
    assert main(args) == 2
    assert "already holds an attack run" in capsys.readouterr().err
    # Resuming a finished run with the same config rewrites the same result.
    before = Reconstruction.load(tmp_path / "run" / "reconstruction.safetensors")
    assert main([*args, "--resume"]) == 0
    after = Reconstruction.load(tmp_path / "run" / "reconstruction.safetensors")
    np.testing.assert_array_equal(before.images, after.images)


def test_labels_and_evaluate_errors(captured, tmp_path, capsys):
    assert main(["labels", "--update", str(captured / "update.safetensors"), "--ginfor"]) == 2
    assert "--ginfor needs --secret" in capsys.readouterr().err
    assert main(["labels", "--update", str(captured / "update.safetensors"), "--methods", "idlg,magic"]) == 2
    assert "unknown method" in capsys.readouterr().err
    pickle_file = tmp_path / "update.safetensors"
    pickle_file.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    assert main(["labels", "--update", str(pickle_file)]) == 2
    assert "pickle" in capsys.readouterr().err
    assert main(["evaluate", "--reconstruction", str(tmp_path / "missing.safetensors"),
                 "--secret", str(captured / "secret.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["dlg", "idlg", "inverting_gradients", "ga"])
def test_packaged_attack_configs_run_with_tiny_budgets(captured, tmp_path, name):
    code = main(["attack", "-c", name, "--update", str(captured / "update.safetensors"), "--out", str(tmp_path),
                 "-o", "attack.iterations=2", "-o", "attack.lbfgs_max_iter=2", "-o", "run.progress=false",
                 "-o", "run.device=cpu"])
    assert code == 0
    assert Reconstruction.load(tmp_path / "reconstruction.safetensors").iterations <= 2
