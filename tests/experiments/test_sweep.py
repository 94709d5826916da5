"""``privbox matrix --sweep``: one CSV and one PNG per curve; epsilon falls as the DP noise grows;
leakage falls as GaussianPrivacy's sigma0 grows (slow)."""

import csv

import pytest

from privbox.cli.main import main
from privbox.experiments import MatrixSpec
from privbox.experiments.sweep import run_sweeps

LENET = {"model": "dlg_lenet", "image_size": 8, "num_images": 1, "mean": [0.5] * 3, "std": [0.5] * 3}


def _spec(iterations=2, seeds=(0,), utility=None, values=(0.5, 2.0)):
    return MatrixSpec.from_dict({
        "attacks": [{"name": "dlg", "attack": {"preset": "dlg", "iterations": iterations}, "client": LENET}],
        "seeds": list(seeds),
        "utility": utility or {"rounds": 1, "clients": 1, "images_per_client": 8, "batch_size": 4, "eval_images": 10},
        "sweeps": [{"name": "dp", "attack": "dlg", "defense": {"name": "dp_sgd", "params": {"max_grad_norm": 1.0}},
                    "param": "noise_multiplier", "values": list(values), "log_x": True}],
    })


def test_sweep_writes_curves_and_epsilon_falls_with_noise(tmp_path):
    result = run_sweeps(_spec(), tmp_path, log=lambda line: None)
    rows = list(csv.DictReader((tmp_path / "sweep_dp.csv").open()))
    assert [float(r["value"]) for r in rows] == [0.5, 2.0]
    eps = [float(r["epsilon"]) for r in rows]
    assert eps[0] > eps[1] > 0
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    assert (tmp_path / "sweep_dp.png").stat().st_size > 0 and (tmp_path / "sweeps.md").exists()
    assert tmp_path / "sweep_dp.png" in result.files


def test_cli_sweep(tmp_path, capsys):
    import yaml

    config = tmp_path / "m.yaml"
    config.write_text(yaml.safe_dump(_spec().to_dict()))
    assert main(["matrix", "-c", str(config), "--out", str(tmp_path / "o"), "--sweep", "--no-utility"]) == 0
    assert "sweep_dp.png" in capsys.readouterr().out


@pytest.mark.slow
def test_gaussian_privacy_curve_falls():
    spec = MatrixSpec.from_dict({
        "attacks": [{"name": "dlg", "attack": {"preset": "dlg", "iterations": 40}, "client": dict(LENET, image_size=16)}],
        "seeds": [0, 1], "utility": {"enabled": False},
        "sweeps": [{"name": "gp", "attack": "dlg", "defense": {"name": "gaussian_privacy"}, "param": "sigma0",
                    "values": [0.0, 0.01, 1.0]}],
    })
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        rows = run_sweeps(spec, tmp, log=lambda line: None).rows
    psnr = [r["psnr_mean"] for r in rows]
    assert psnr[0] > psnr[2] + 15
