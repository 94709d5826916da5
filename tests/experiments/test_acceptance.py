"""Acceptance of the shipped CPU settings (privbox/configs/matrix*.yaml).

Every attack family, undefended, must beat its random start by a clear margin; DGC (as the local
optimiser, over rounds), per-sample DP-SGD at a stated noise level and GaussianPrivacy must
lower DLG's PSNR clearly. PSNR, the matching and the random-start baseline are recomputed here
with NumPy (best permutation by brute force), independently of privbox.metrics.
"""

import dataclasses
import itertools

import numpy as np
import pytest

from privbox.experiments import DefenseEntry, load_matrix_spec
from privbox.experiments.cell import run_cell

MARGIN_DB = 5.0


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2), 1e-12)))


def _best_psnr(originals: np.ndarray, images: np.ndarray) -> float:
    """Mean PSNR under the best one-to-one assignment (brute force over permutations)."""
    n = len(originals)
    return max(np.mean([_psnr(originals[i], images[p[i]]) for i in range(n)]) for p in itertools.permutations(range(n)))


def _random_start(originals: np.ndarray, seed: int) -> float:
    """PSNR of the N(0, I) model-space start de-normalised with mean = std = 0.5 (the CPU victims')."""
    x = np.random.default_rng(1000 + seed).standard_normal(originals.shape)
    return _best_psnr(originals, np.clip(0.5 * x + 0.5, 0.0, 1.0))


def _entry(spec, name, **client):
    attack = next(a for a in spec.attacks if a.name == name)
    return dataclasses.replace(attack, client=dict(attack.client, **client)) if client else attack


NONE = DefenseEntry("none")
DEMO = load_matrix_spec("matrix_demo")


def _check_leaks(attack, seed):
    result = run_cell(attack, NONE, seed)
    assert result.row["status"] == "ok", result.row
    ours = _best_psnr(result.originals, result.reconstruction)
    assert ours == pytest.approx(result.row["psnr"], abs=0.05)  # privbox's matching agrees with brute force
    baseline = _random_start(result.originals, seed)
    assert ours > baseline + MARGIN_DB, (attack.name, seed, ours, baseline)
    return ours


@pytest.mark.parametrize("name", [a.name for a in DEMO.attacks])
def test_every_attack_leaks_undefended_at_the_demo_budget(name):
    _check_leaks(_entry(DEMO, name), 0)


@pytest.mark.parametrize("name, seed", [("inverting_gradients", 1), ("ga", 2), ("dlg", 3)])
def test_leaks_on_other_photographs_and_seeds(name, seed):
    """Other seeds draw other labels and (shuffle_images) other photographs."""
    _check_leaks(_entry(DEMO, name, data={"shuffle_images": True}), seed)


DLG_DEFENSES = [
    DefenseEntry("dgc_momentum", defenses=[{"name": "dgc_momentum", "params": {"sparsity": 0.99, "momentum": 0.9}}], rounds=3),
    DefenseEntry("dp_sgd_sigma1", defenses=[{"name": "dp_sgd", "params": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}}]),
    DefenseEntry("gaussian_privacy", defenses=[{"name": "gaussian_privacy", "params": {"sigma0": 1.0}}]),
]


def test_dgc_dpsgd_and_gaussian_privacy_lower_dlg_clearly():
    dlg = _entry(DEMO, "dlg", num_images=1)
    undefended = _check_leaks(dlg, 0)
    for defense in DLG_DEFENSES:
        result = run_cell(dlg, defense, 0)
        defended = _best_psnr(result.originals, result.reconstruction)
        assert defended < undefended - 15.0, (defense.name, defended, undefended)
        assert defended < _random_start(result.originals, 0) + MARGIN_DB, defense.name


@pytest.mark.slow
@pytest.mark.parametrize("name", [a.name for a in load_matrix_spec("matrix").attacks])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_matrix_settings_leak_on_three_seeds(name, seed):
    spec = load_matrix_spec("matrix")
    _check_leaks(_entry(spec, name, data={"shuffle_images": True}), seed)
