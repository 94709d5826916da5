"""RDP accountant: Opacus golden values (ALGORITHMS.md §6.3) and properties."""

import math

import numpy as np
import pytest

from privbox.defenses import (
    DEFAULT_ALPHAS,
    RDPAccountant,
    compute_rdp,
    gdp_epsilon,
    get_noise_multiplier,
    get_privacy_spent,
    rdp_to_epsilon,
)


def test_alpha_grid_is_opacus():
    assert len(DEFAULT_ALPHAS) == 151
    assert DEFAULT_ALPHAS[0] == pytest.approx(1.1) and DEFAULT_ALPHAS[98] == pytest.approx(10.9)
    assert DEFAULT_ALPHAS[99:] == tuple(float(a) for a in range(12, 64))
    assert 4.0 in DEFAULT_ALPHAS  # integer-valued grid points are exact


def test_golden_epsilon():
    steps = int(90 / 0.04)
    assert steps == 2250
    eps, alpha = get_privacy_spent(0.04, 1.5, steps, 1e-5)
    assert eps == pytest.approx(7.32911117143, abs=1e-6)
    assert alpha == pytest.approx(3.9)


def test_golden_accountant_object():
    acc = RDPAccountant()
    for _ in range(2250):
        acc.step(noise_multiplier=1.5, sample_rate=0.04)
    assert len(acc) == 2250 and len(acc.history) == 1  # merged history
    eps, alpha = acc.get_privacy_spent(1e-5)
    assert eps == pytest.approx(7.32911117143, abs=1e-6) and alpha == pytest.approx(3.9)
    assert acc.get_epsilon(1e-5) == eps
    restored = RDPAccountant()
    restored.set_state_dict(acc.state_dict())
    assert restored.get_epsilon(1e-5) == eps


def test_golden_noise_multiplier_epochs():
    assert get_noise_multiplier(8.0, 1e-5, 0.04, epochs=90) == 1.416015625


def test_golden_noise_multiplier_steps():
    assert get_noise_multiplier(8.0, 1e-5, 0.04, steps=2000) == 1.356201171875


def test_conversion_matters():
    """q 0.01, σ 4, δ 1e-5: Balle (Opacus) vs the classic moments conversion."""
    for epochs, balle, classic in ((100, 1.035, 1.259), (400, 2.210, 2.576)):
        steps = int(epochs / 0.01)
        eps_b, _ = get_privacy_spent(0.01, 4.0, steps, 1e-5)
        eps_c, _ = get_privacy_spent(0.01, 4.0, steps, 1e-5, orders=range(2, 64), method="classic")
        assert eps_b == pytest.approx(balle, abs=5e-4)
        assert eps_c == pytest.approx(classic, abs=5e-4)
        assert eps_c > eps_b


def test_gdp_optional_goldens():
    # Opacus's GDP test uses steps = 90 // 0.04 = 2249 (floating-point floor division)
    assert 6.59 < gdp_epsilon(0.04, 1.5, int(90 // 0.04), 1e-5) < 6.60
    assert get_noise_multiplier(8.0, 1e-5, 0.04, epochs=90, accountant="gdp") == 1.3232421875


def test_fractional_and_integer_orders_consistent():
    # RDP is continuous in alpha: a fractional order next to an integer one gives a close value
    r = compute_rdp(0.05, 1.2, 1, orders=[2.999999, 3.0, 3.000001])
    assert r[0] == pytest.approx(r[1], rel=1e-4) and r[2] == pytest.approx(r[1], rel=1e-4)


def test_special_cases():
    assert np.all(compute_rdp(0.0, 1.0, 10) == 0)
    full = compute_rdp(1.0, 2.0, 3, orders=[2.0, 5.5])
    assert full == pytest.approx([3 * 2.0 / 8.0, 3 * 5.5 / 8.0])
    assert np.all(np.isinf(compute_rdp(0.1, 0.0, 1, orders=[2.0])))
    assert get_privacy_spent(0.1, 0.0, 1, 1e-5)[0] == math.inf
    assert RDPAccountant().get_privacy_spent(1e-5)[0] == 0.0


def test_epsilon_grows_with_steps_and_falls_with_sigma():
    eps_steps = [get_privacy_spent(0.02, 1.0, t, 1e-5)[0] for t in (10, 100, 1000, 5000)]
    assert all(a < b for a, b in zip(eps_steps, eps_steps[1:]))
    eps_sigma = [get_privacy_spent(0.02, s, 1000, 1e-5)[0] for s in (0.7, 1.0, 1.5, 3.0)]
    assert all(a > b for a, b in zip(eps_sigma, eps_sigma[1:]))
    eps_q = [get_privacy_spent(q, 1.0, 1000, 1e-5)[0] for q in (0.001, 0.01, 0.1)]
    assert all(a < b for a, b in zip(eps_q, eps_q[1:]))


def test_history_composition_is_additive():
    acc = RDPAccountant()
    acc.step(1.0, 0.01, steps=100)
    acc.step(2.0, 0.05, steps=50)
    expected = compute_rdp(0.01, 1.0, 100) + compute_rdp(0.05, 2.0, 50)
    assert acc.get_rdp() == pytest.approx(expected)
    eps, alpha = rdp_to_epsilon(DEFAULT_ALPHAS, expected, 1e-5)
    assert acc.get_privacy_spent(1e-5) == (eps, alpha)


def test_rdp_to_epsilon_ignores_nan():
    eps, alpha = rdp_to_epsilon([2.0, 3.0], [float("nan"), 0.5], 1e-5)
    assert alpha == 3.0 and math.isfinite(eps)
    assert rdp_to_epsilon([2.0], [float("nan")], 1e-5)[0] == math.inf


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: compute_rdp(1.5, 1.0, 1), "sample_rate"),
        (lambda: compute_rdp(0.1, -1.0, 1), "noise_multiplier"),
        (lambda: compute_rdp(0.1, 1.0, 1, orders=[0.5]), "order"),
        (lambda: get_privacy_spent(0.1, 1.0, 1, 0.0), "delta"),
        (lambda: get_noise_multiplier(8, 1e-5, 0.04), "exactly one"),
        (lambda: get_noise_multiplier(8, 1e-5, 0.04, epochs=1, steps=1), "exactly one"),
        (lambda: get_noise_multiplier(-1, 1e-5, 0.04, epochs=1), "target_epsilon"),
        (lambda: get_noise_multiplier(1e-6, 1e-5, 0.01, steps=10**6), "budget"),
        (lambda: rdp_to_epsilon([2.0], [1.0], 1e-5, method="nope"), "method"),
        (lambda: get_noise_multiplier(8, 1e-5, 0.04, epochs=1, epsilon_tolerance=-1), "tolerance"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
