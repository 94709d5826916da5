"""E2EGI's MLCO: the phase/lr plan (ALGORITHMS.md §4.6.2) and an end-to-end run on a tiny victim."""

import numpy as np
import pytest

from privbox.attacks import ConfigError, e2egi, mlco_plan, run_mlco
from privbox.core.update import MissingCapabilityError

from tiny_victim import tiny_capture


def test_plan_matches_the_e2egi_arithmetic_for_24000_iterations():
    plan = mlco_plan(24000, 0.1046)
    assert [p.name for p in plan] == ["init"] + [f"inner {k}" for k in range(1, 9)] + ["final"]
    assert [p.iterations for p in plan] == [7200] + [1000] * 8 + [9600]
    assert sum(p.iterations for p in plan) == 24800
    init, inner, final = plan[0], plan[1:-1], plan[-1]
    assert init.lr_start == 0.1046
    assert init.lr_end == pytest.approx(0.07452, abs=5e-6)
    for k, phase in enumerate(inner):
        assert phase.lr_end - phase.lr_start == pytest.approx(-0.0041774, abs=1e-7)
        assert phase.lr_start == (init.lr_end if k == 0 else inner[k - 1].lr_end)
    assert inner[-1].lr_end == pytest.approx(0.04110, abs=5e-6)
    assert final.lr_start == inner[-1].lr_end and final.lr_end == 0.001
    # the lr falls linearly in the cumulative iteration count
    done = np.cumsum([p.iterations for p in plan])
    np.testing.assert_allclose([p.lr_end for p in plan], 0.1046 - (0.1046 - 0.001) * done / 24800, atol=1e-15)


def test_plan_uses_exact_ceilings_and_the_inner_length():
    plan = mlco_plan(30, 0.1, inner_iterations=5)
    assert [p.iterations for p in plan] == [9, 5, 5, 12]  # ceil(9), ceil(9/5) = 2 rounds, ceil(12)
    assert [p.iterations for p in mlco_plan(7, 0.1, inner_iterations=1000)] == [3, 1000, 3]
    with pytest.raises(ConfigError):
        mlco_plan(0, 0.1)


def _small_config(**overrides):
    return e2egi(**{"iterations": 20, "progress": False, **overrides})


def test_mlco_runs_end_to_end_and_records_every_phase():
    model, update, secret = tiny_capture()
    seen = []
    result = run_mlco(model, update, _small_config(snapshot_every=2), num_seeds=2, inner_iterations=4,
                      callback=lambda phase, seed, info: seen.append((phase, seed, info.iteration)))
    plan = mlco_plan(20, 0.1046, 4)
    assert [p.iterations for p in plan] == [6, 4, 4, 8]
    assert [r.name for r in result.phases] == [p.name for p in plan]
    for record, phase in zip(result.phases, plan):
        assert (record.iterations, record.lr_start, record.lr_end) == (phase.iterations, phase.lr_start, phase.lr_end)
    for record in result.phases[:-1]:
        assert len(record.seed_losses) == 2
        combo = record.combination
        assert len(combo.choice) == 2 and set(combo.choice) <= {0, 1}
        assert combo.loss <= min(record.seed_losses) + 1e-6
    # The final phase starts from the fresh group, so it can only improve on the last combination,
    # which is no worse than any seed of the last inner round.
    final = result.reconstruction
    last_combination = result.phases[-2].combination
    np.testing.assert_array_equal(result.group, last_combination.images)
    assert final.best_loss <= last_combination.loss + 1e-6 <= min(result.phases[-2].seed_losses) + 1e-6
    assert result.phases[-1].seed_losses == [final.best_loss] and result.phases[-1].combination is None
    assert result.total_iterations == final.iterations == 2 * (6 + 4 + 4) + 8
    assert final.attack == "e2egi_mlco" and final.label_method == "given" and final.label_order == "sample"
    assert final.labels.tolist() == secret.labels.tolist() and final.images.shape == (2, 3, 16, 16)
    assert result.final_start == "fresh" and any("fresh group" in e for e in final.events)
    assert final.config["mlco"]["final_start"] == "fresh" and len(final.config["mlco"]["plan"]) == 4
    assert {(p, s) for p, s, _ in seen} == {(n, s) for n in ("init", "inner 1", "inner 2") for s in (0, 1)} | {("final", 0)}
    summary = result.summary()
    assert summary["phases"][0]["lr"] == [0.1046, plan[0].lr_end]


def test_stale_final_start_reproduces_the_e2egi_code():
    model, update, _ = tiny_capture()
    result = run_mlco(model, update, _small_config(iterations=10), num_seeds=2, inner_iterations=2, final_start="stale")
    assert [r.name for r in result.phases] == ["init", "inner 1", "inner 2", "final"]
    assert result.final_start == "stale"
    # The group current during the last inner round: the combination after the previous phase.
    np.testing.assert_array_equal(result.group, result.phases[-3].combination.images)
    assert any("stale group" in e for e in result.reconstruction.events)


def test_mlco_checks_its_inputs():
    model, update, _ = tiny_capture(share_bn_stats=False)
    with pytest.raises(MissingCapabilityError, match="has_bn_batch_stats"):
        run_mlco(model, update, _small_config(), num_seeds=2, inner_iterations=4)
    with pytest.raises(ConfigError, match="final_start"):
        run_mlco(model, update, _small_config(regularizers={"tv": 0.01}), final_start="latest")
    with pytest.raises(ConfigError, match="num_seeds"):
        run_mlco(model, update, _small_config(regularizers={"tv": 0.01}), num_seeds=0)
