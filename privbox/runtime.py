"""Thread policy: how many CPU threads Paddle and NumPy's BLAS may use.

Gradient inversion on CPU is a long chain of small kernels. Extra threads help little there
(one 3x3 convolution at batch 8 is 5-10 ms), and on a shared or busy machine they hurt a lot:
with every library starting one thread per core, a demo next to other jobs had L-BFGS iterations
(NumPy BLAS) that stalled for seconds. privbox therefore picks a small number by default:

- 1 thread on machines with at most 4 usable cores, or when fewer than 2 cores are idle
  (1-minute load average);
- otherwise the idle cores, at most half of the usable cores and at most 8.

``configure_threads(n)`` applies a count to Paddle (``paddle.set_num_threads`` /
``core.set_num_threads``), to NumPy's BLAS (through ``threadpoolctl`` when it is installed, else
OpenBLAS's own ``*_set_num_threads`` symbol found in the loaded libraries), and to the
``OMP/MKL/OPENBLAS_NUM_THREADS`` variables for libraries loaded later and child processes. The
``privbox`` command applies it before every subcommand (``privbox --threads N ...``; the
``PRIVBOX_THREADS`` variable sets the default). See ``docs/en/performance.md``.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from typing import Optional

ENV_VAR = "PRIVBOX_THREADS"
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_OPENBLAS_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_", "openblas_set_num_threads")


@dataclass
class ThreadConfig:
    """What :func:`configure_threads` did."""

    threads: int
    reason: str
    paddle: bool = False
    blas: list[str] = field(default_factory=list)

    def describe(self) -> str:
        blas = ", ".join(self.blas) if self.blas else "no BLAS library loaded yet (environment variables set)"
        return f"{self.threads} thread(s) ({self.reason}); Paddle {'set' if self.paddle else 'not loaded'}; BLAS: {blas}"


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load_average() -> Optional[float]:
    """The 1-minute load average, or None where the platform has none."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def default_threads(cores: Optional[int] = None, load: Optional[float] = None) -> tuple[int, str]:
    """The default thread count and why (see the module docstring for the rule)."""
    cores = usable_cores() if cores is None else max(1, int(cores))
    load = load_average() if load is None else load
    if cores <= 4:
        return 1, f"{cores} usable cores (<= 4)"
    idle = cores - (load or 0.0)
    if idle < 2:
        return 1, f"busy machine (load {load:.1f} on {cores} cores)"
    n = max(1, min(int(idle), cores // 2, 8))
    return n, f"{cores} usable cores, load {load or 0.0:.1f}"


def _check_count(value, where: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        from .core.errors import ConfigError

        raise ConfigError(f"thread count must be a positive integer, got {value!r}", where=where, fix="pass e.g. --threads 1")
    return n


def _set_paddle_threads(n: int) -> bool:
    import sys

    paddle = sys.modules.get("paddle")
    if paddle is None:
        return False
    setter = getattr(paddle, "set_num_threads", None)
    if setter is None:
        core = getattr(getattr(paddle, "base", None), "core", None)
        setter = getattr(core, "set_num_threads", None)
    if setter is None:
        return False
    setter(n)
    return True


def _loaded_openblas() -> list[str]:
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return []
    return sorted(paths)


def _set_blas_threads(n: int) -> list[str]:
    """Limit already-loaded BLAS pools; returns what was limited."""
    try:
        from threadpoolctl import threadpool_limits  # optional
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        global _LIMITER
        _LIMITER = threadpool_limits(limits=n, user_api="blas")
        return ["threadpoolctl (blas)"]
    done = []
    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _OPENBLAS_SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(ctypes.c_int(n))
                done.append(f"{os.path.basename(path)}:{name}")
                break
    return done


_LIMITER = None
_APPLIED: Optional[ThreadConfig] = None


def configure_threads(threads: Optional[int] = None) -> ThreadConfig:
    """Apply a thread count to Paddle and NumPy's BLAS (and the environment); returns what was done.

    Args:
        threads: the count; None takes ``$PRIVBOX_THREADS`` if set, else :func:`default_threads`.

    Raises:
        ConfigError: a count that is not a positive integer.
    """
    global _APPLIED
    if threads is not None:
        n, reason = _check_count(threads, "--threads"), "requested"
    elif os.environ.get(ENV_VAR, "").strip():
        n, reason = _check_count(os.environ[ENV_VAR], f"${ENV_VAR}"), f"${ENV_VAR}"
    else:
        n, reason = default_threads()
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    config = ThreadConfig(threads=n, reason=reason)
    config.paddle = _set_paddle_threads(n)
    config.blas = _set_blas_threads(n)
    _APPLIED = config
    return config


def applied() -> Optional[ThreadConfig]:
    """The last configuration applied in this process, or None."""
    return _APPLIED


def ensure_threads_configured() -> ThreadConfig:
    """Apply the default policy once per process unless a count was applied already (the demo and
    other long-running entry points call this)."""
    return _APPLIED if _APPLIED is not None else configure_threads(None)
