"""E2EGI's MLCO with the batch sharded over 2 ranks equals the one-process MLCO (ALGORITHMS.md §4.9).

The greedy per-sample combination (§4.6.3) runs in lockstep: every candidate batch is scored by
one distributed gradient-distance evaluation (BN statistics of the *mixed* batch synchronised),
so the ranks take the same decisions as one process. The one-process reference runs the same
worker script without a process group.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from dist_helpers import HERE, REPO, capture, launch

WORKER = HERE / "mlco_worker.py"


@pytest.mark.slow
def test_mlco_combination_on_two_ranks_equals_one_process(tmp_path):
    update = capture(tmp_path / "cap")
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, str(WORKER), str(update), str(one)], env=env, check=True, timeout=300)
    result = launch([update, two, "--distributed"], tmp_path / "log", script=WORKER)
    assert result.returncode == 0, result.describe()
    single, multi = json.loads(one.read_text()), json.loads(two.read_text())

    assert [p["name"] for p in multi["phases"]] == ["init", "inner 1", "final"]
    for a, b in zip(single["phases"], multi["phases"]):
        np.testing.assert_allclose(b["seed_losses"], a["seed_losses"], rtol=0, atol=1e-4)
        if a["combination"] is None:
            continue
        # the same greedy decisions over the global batch, and the same scores
        assert b["combination"]["choice"] == a["combination"]["choice"]
        assert b["combination"]["start_seed"] == a["combination"]["start_seed"]
        assert b["combination"]["evaluations"] == a["combination"]["evaluations"] == 2 + 4 * 1
        np.testing.assert_allclose(b["combination"]["seed_losses"], a["combination"]["seed_losses"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(b["combination"]["loss"], a["combination"]["loss"], rtol=0, atol=1e-4)
    # the combination mixes the seeds (otherwise it would not test the per-sample swap)
    assert any(len(set(p["combination"]["choice"])) > 1 for p in single["phases"] if p["combination"])
    np.testing.assert_allclose(multi["trace"], single["trace"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(multi["group"]), np.asarray(single["group"]), rtol=0, atol=1e-3)
