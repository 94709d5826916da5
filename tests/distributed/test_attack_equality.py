"""Distributed inversion equals the one-process attack (2 gloo ranks started for real, ALGORITHMS.md §4.9).

The reference is the ordinary one-process ``privbox attack`` on the same update and seed; the
distributed run shares nothing with it but the engine loop. With synchronised BN in the
victim's forward, the straight-through all-reduce of ĝ, the synchronised BN-regularizer and TV
statistics and the global-batch noise/initialisation, the 20-iteration loss trace must agree
to 1e-4 (float32 summation order is the only difference).
"""

from __future__ import annotations

import json

import numpy as np

from privbox.attacks import Reconstruction
from privbox.cli.main import main

from dist_helpers import IG_BN, capture, launch


def test_ig_with_bn_statistics_on_two_ranks_equals_one_process(tmp_path):
    update = capture(tmp_path / "cap")
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["attack", *IG_BN, "--update", str(update), "--out", str(one)]) == 0
    result = launch(["attack", *IG_BN, "--update", update, "--out", two, "--distributed"], tmp_path / "log")
    assert result.returncode == 0, result.describe()

    single = Reconstruction.load(one / "reconstruction.safetensors")
    multi = Reconstruction.load(two / "reconstruction.safetensors")
    assert len(single.loss_trace) == len(multi.loss_trace) == 20
    # the attack moved: the test compares trajectories, not two copies of the start point
    assert single.loss_trace[-1] < 0.8 * single.loss_trace[0]
    np.testing.assert_allclose(multi.loss_trace, single.loss_trace, rtol=0, atol=1e-4)
    assert multi.best_iteration == single.best_iteration
    assert multi.images.shape == single.images.shape == (4, 3, 16, 16)
    np.testing.assert_array_equal(multi.labels, single.labels)
    # the gathered reconstruction is the global batch in order (a wrong shard order moves whole images)
    per_image = np.abs(multi.images - single.images).reshape(4, -1).mean(axis=1)
    assert per_image.max() < 1e-3, per_image

    record = json.loads((two / "attack.json").read_text())
    assert record["distributed"] == {"mode": "shard", "world_size": 2, "bn": "sync", "timeout_s": 300.0}
    assert json.loads((two / "run.json").read_text())["status"] == "complete"
    # each rank checkpoints its own shard; only rank 0 wrote outputs (no stray temporary files)
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == [
        "state_restart0_rank0.safetensors", "state_restart0_rank1.safetensors"]
    assert not [p for p in two.rglob(".*") if p.is_file()]
