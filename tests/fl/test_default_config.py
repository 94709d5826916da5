"""The packaged default config end to end at a tiny budget (ALGORITHMS.md §9.5)."""

import pytest

pytest.importorskip("privbox.fl.client", reason="needs the one Client (privbox.fl.client) of issue 7")

from privbox.fl.config import load_fl_config
from privbox.fl.simulation import run_simulation


@pytest.mark.slow  # ~20 s of CPU for the two 150-iteration attacks
def test_default_config_high_risk_client_leaks_more(tmp_path):
    config = load_fl_config("fl", ["fl.rounds=1", "data.eval_images=16", "audit.attack.iterations=150"])
    result = run_simulation(config, tmp_path / "run")
    by_client = {a["client"]: a["rdlv"] for a in result.audits}
    assert set(by_client) == {"high-risk", "site-8x4"}
    assert by_client["high-risk"] > by_client["site-8x4"]
    assert (tmp_path / "run" / "rdlv_per_round.png").exists()
    assert (tmp_path / "run" / "summary.md").read_text().count("|") > 10
