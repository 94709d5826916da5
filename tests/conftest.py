"""Shared fixtures: everything seeded, single-threaded, CPU."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import paddle  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_everything():
    paddle.seed(0)
    np.random.seed(0)
    yield
