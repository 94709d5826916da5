"""Fixtures of the reliability tests: one tiny captured update for the CLI cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from privbox.cli.main import main

from rel_helpers import CAPTURE


@pytest.fixture(scope="session")
def captured(tmp_path_factory) -> Path:
    """A folder with update.safetensors and secret.safetensors of the tiny victim."""
    out = tmp_path_factory.mktemp("rel_capture")
    assert main(["capture", "--out", str(out), *CAPTURE]) == 0
    return out
