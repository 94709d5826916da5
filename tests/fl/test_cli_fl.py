"""``privbox fl`` on the command line: one run, a sigma0 sweep with its combined figure, clear errors."""

import json

import pytest

pytest.importorskip("privbox.fl.client", reason="needs the one Client (privbox.fl.client) of issue 7")

from privbox.cli.main import main

TINY = ["-o", "fl.rounds=1", "-o", "audit.attack.iterations=5", "-o", "data.eval_images=16", "-o", "data.aux_images=16",
        "-o", "clients=[{name: high-risk, num_images: 1, batch_size: 1, invert: true}, {name: site-8x4, num_images: 8, batch_size: 4, invert: true}]"]


def test_sweep_writes_one_folder_per_value_and_the_combined_figure(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["fl", "-c", "fl", *TINY, "--sweep", "defense.sigma0=0,10", "--out", str(out), "--quiet"]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert [r["sigma0"] for r in sweep["runs"]] == [0.0, 10.0]
    assert (out / "sigma0=0" / "rdlv_per_round.png").exists() and (out / "sigma0=10" / "summary.md").exists()
    assert (out / "rdlv_vs_sigma0.png").stat().st_size > 1000
    table = (out / "sigma0=10" / "summary.md").read_text()
    assert "no formal guarantee" in table


def test_bad_values_exit_with_a_message(tmp_path, capsys):
    assert main(["fl", "-c", "fl", "-o", "defense.sigma0=-1", "--out", str(tmp_path / "x")]) == 2
    assert "defense.sigma0" in capsys.readouterr().err
    assert main(["fl", "-c", "fl", "--sweep", "sigma0", "--out", str(tmp_path / "y")]) == 2
