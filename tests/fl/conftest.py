"""Shared helpers of the federated-simulation tests: a tiny config built in code."""

import copy

import pytest

TINY = {
    "fl": {"rounds": 2, "seed": 0},
    "data": {"classes": ["camera", "astronaut"], "image_size": 16, "eval_images": 16, "aux_images": 16},
    "client": {"model": "convnet", "model_kwargs": {"width": 4}, "lr": 0.1, "bn_mode": "train"},
    "clients": [
        {"name": "high-risk", "num_images": 1, "batch_size": 1, "invert": True},
        {"name": "site-8x4", "num_images": 8, "batch_size": 4, "invert": True},
    ],
    "audit": {"attack": {"preset": "nvidia_fl", "iterations": 20, "progress": False, "fedavg": {"mode": "reference", "bn_model": "global"}},
              "frequency": 1, "start_round": 100},
}


@pytest.fixture
def tiny():
    """A deep copy of the tiny config mapping (edit freely)."""
    return copy.deepcopy(TINY)
