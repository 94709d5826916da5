"""The example scripts run as documented (tiny budgets)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("defense, attack", [("dgc", "dlg"), ("gaussian", "inverting_gradients"), ("clip_noise", "e2egi")])
def test_defense_vs_attack_pairing_runs(defense, attack, tmp_path, capsys):
    example = _load("defense_vs_attack")
    assert example.main(["--defense", defense, "--attack", attack, "--iterations", "2", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert f"| {attack} | {defense} |" in printed
    assert (tmp_path / f"{defense}_{attack}.png").exists()


@pytest.mark.slow
def test_every_pairing_runs(capsys):
    example = _load("defense_vs_attack")
    assert example.main(["--all", "--iterations", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("| ") >= len(example.ATTACKS) * len(example.DEFENSES)
