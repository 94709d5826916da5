"""privbox.runtime: the thread policy's rule, and that a count really reaches Paddle and NumPy's BLAS."""

from __future__ import annotations

import ctypes
import os

import pytest

from privbox import runtime
from privbox.cli.main import main
from privbox.core.errors import ConfigError


@pytest.mark.parametrize(
    "cores,load,expected",
    [
        (1, 0.0, 1),
        (2, 0.0, 1),  # this CI machine
        (4, 0.0, 1),
        (8, 0.0, 4),  # half the cores
        (16, 0.0, 8),  # at most 8
        (64, 0.0, 8),
        (16, 10.0, 6),  # the idle cores
        (16, 14.5, 1),  # busy: fewer than 2 idle cores
        (16, 40.0, 1),
    ],
)
def test_default_thread_rule(cores, load, expected):
    n, reason = runtime.default_threads(cores=cores, load=load)
    assert n == expected and reason


def _openblas_threads() -> int:
    for path in runtime._loaded_openblas():
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads"):
            getter = getattr(lib, name, None)
            if getter is not None:
                return int(getter())
    pytest.skip("no OpenBLAS loaded by NumPy here")


@pytest.fixture
def _restore_threads(monkeypatch):
    monkeypatch.delenv(runtime.ENV_VAR, raising=False)
    yield
    runtime.configure_threads(1)  # the test suite's own setting (tests/conftest.py)


def test_configure_threads_reaches_paddle_blas_and_environment(_restore_threads):
    import numpy  # noqa: F401  (loads OpenBLAS)
    import paddle  # noqa: F401

    config = runtime.configure_threads(2)
    assert config.threads == 2 and config.reason == "requested" and config.paddle
    assert os.environ["OMP_NUM_THREADS"] == os.environ["OPENBLAS_NUM_THREADS"] == "2"
    assert config.blas, "no BLAS pool was limited"
    if not config.blas[0].startswith("threadpoolctl"):
        assert _openblas_threads() == 2
    runtime.configure_threads(1)
    if not config.blas[0].startswith("threadpoolctl"):
        assert _openblas_threads() == 1
    assert runtime.applied().threads == 1


def test_environment_variable_and_bad_counts(_restore_threads, monkeypatch):
    monkeypatch.setenv(runtime.ENV_VAR, "3")
    assert runtime.configure_threads(None).threads == 3
    monkeypatch.setenv(runtime.ENV_VAR, "many")
    with pytest.raises(ConfigError, match="PRIVBOX_THREADS"):
        runtime.configure_threads(None)
    with pytest.raises(ConfigError, match="positive integer"):
        runtime.configure_threads(0)


def test_cli_threads_option(_restore_threads, capsys):
    assert main(["--threads", "1", "config", "--list"]) == 0
    assert runtime.applied().threads == 1 and runtime.applied().reason == "requested"
    assert main(["--threads", "0", "config", "--list"]) == 2
    assert "--threads" in capsys.readouterr().err
