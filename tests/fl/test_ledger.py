"""The per-client privacy ledger against the RDP accountant run directly (ALGORITHMS.md §6.3)."""

import logging

import pytest

from privbox.defenses.accountant import get_privacy_spent
from privbox.fl.ledger import DPSetting, PrivacyLedger


def test_ledger_epsilon_equals_the_accountant_on_the_rounds_taken_part_in():
    ledger = PrivacyLedger(delta=1e-5)
    a = DPSetting(noise_multiplier=1.1, sample_rate=0.25, steps=4, sample_rate_source="defense")
    b = DPSetting(noise_multiplier=2.0, sample_rate=0.5, steps=2, sample_rate_source="defense")
    for t in (0, 2, 3):          # client a takes part in three rounds
        eps_a = ledger.record("a", a, t)
    eps_b = ledger.record("b", b, 1)
    assert eps_a == pytest.approx(get_privacy_spent(0.25, 1.1, 12, 1e-5)[0], rel=1e-12)
    assert eps_b == pytest.approx(get_privacy_spent(0.5, 2.0, 2, 1e-5)[0], rel=1e-12)
    assert ledger.record("c", None, 0) is None and ledger.epsilon("c") is None
    assert [r["round"] for r in ledger.records if r["client"] == "a"] == [0, 2, 3]


def test_budget_stops_a_client_with_a_log_line(caplog):
    setting = DPSetting(1.0, 0.5, 4, "defense")
    one_round = get_privacy_spent(0.5, 1.0, 4, 1e-5)[0]
    two_rounds = get_privacy_spent(0.5, 1.0, 8, 1e-5)[0]
    ledger = PrivacyLedger(delta=1e-5, budget=(one_round + two_rounds) / 2)
    assert ledger.allows("a", setting, 0)
    ledger.record("a", setting, 0)
    with caplog.at_level(logging.WARNING, logger="privbox.fl"):
        assert not ledger.allows("a", setting, 1)
    assert "client a stops participating at round 1" in caplog.text
    assert not ledger.allows("a", setting, 2)          # stays out
    state = ledger.state_dict()
    again = PrivacyLedger(delta=1e-5, budget=ledger.budget)
    again.set_state_dict(state)
    assert again.epsilon("a") == pytest.approx(one_round) and "a" in again.stopped
