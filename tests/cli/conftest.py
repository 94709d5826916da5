"""Tiny fixtures for the CLI tests: one captured update reused by every test of the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from privbox.cli.main import main

from cli_helpers import TINY_CAPTURE


@pytest.fixture(scope="session")
def captured(tmp_path_factory) -> Path:
    """A folder with update.safetensors and secret.safetensors of the tiny victim."""
    out = tmp_path_factory.mktemp("capture")
    assert main(["capture", "--out", str(out), *TINY_CAPTURE]) == 0
    return out
