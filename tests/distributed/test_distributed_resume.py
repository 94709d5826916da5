"""An interrupted distributed attack resumes from the ranks' own checkpoints to the uninterrupted result.

Reference: the one-process attack on the same update and seed (which the uninterrupted
distributed run equals, test_attack_equality.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from privbox.attacks import Reconstruction
from privbox.cli.main import main

from dist_helpers import IG_BN, capture, launch

RUN = [*IG_BN, "-o", "run.snapshot_every=5"]


@pytest.mark.slow
def test_interrupted_distributed_attack_resumes_to_the_one_process_result(tmp_path):
    update = capture(tmp_path / "cap")
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["attack", *RUN, "--update", str(update), "--out", str(one)]) == 0
    first = launch(["attack", *RUN, "--update", update, "--out", two, "--distributed", "--_interrupt-after", "10"],
                   tmp_path / "log1")
    assert first.returncode != 0  # rank 0 stopped after iteration 10; rank 1 then lost its peer
    assert json.loads((two / "run.json").read_text())["status"] == "interrupted"
    assert not (two / "reconstruction.safetensors").exists()
    second = launch(["attack", *RUN, "--update", update, "--out", two, "--distributed", "--resume"], tmp_path / "log2")
    assert second.returncode == 0, second.describe()
    single = Reconstruction.load(one / "reconstruction.safetensors")
    resumed = Reconstruction.load(two / "reconstruction.safetensors")
    np.testing.assert_allclose(resumed.loss_trace, single.loss_trace, rtol=0, atol=1e-4)
    assert json.loads((two / "attack.json").read_text())["resumed"] is True
