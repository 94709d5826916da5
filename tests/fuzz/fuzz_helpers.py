"""Shared machinery of the fuzz suite: hypothesis settings (seeded, fast by default, a larger
marked-slow sweep), a per-case time box, and the one property every case must have: the input
either works or raises privbox's own error type, never another exception, a hang or a crash.

Outcomes are tallied in :data:`OUTCOMES` (per test: "ok" or the error kind); the slow sweep
writes them to ``$PRIVBOX_FUZZ_REPORT`` when that variable names a file.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import threading
from typing import Any, Callable, Iterator

from hypothesis import HealthCheck, settings

from privbox.core.errors import PrivboxError

#: Examples per property by default (CI) and in the slow sweep.
FAST_EXAMPLES = 25
SLOW_EXAMPLES = 400
#: Seconds one case may take before it counts as a hang.
TIME_BOX_S = 20.0

OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def fuzz_settings(examples: int = FAST_EXAMPLES) -> settings:
    """Derandomized (the same cases on every run), no database, no deadline flakiness: the time
    box below is what catches hangs."""
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@contextlib.contextmanager
def time_box(seconds: float = TIME_BOX_S) -> Iterator[None]:
    """Fail the case with TimeoutError if it runs longer than ``seconds`` (SIGALRM, main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):  # noqa: ARG001
        raise TimeoutError(f"the case ran longer than {seconds} s (a hang)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def works_or_privbox_error(name: str, action: Callable[[], Any]) -> Any:
    """Run ``action`` in the time box; return its result, or None after a :class:`PrivboxError`
    (which must carry a message). Any other exception propagates and fails the case."""
    with time_box():
        try:
            result = action()
        except PrivboxError as exc:
            assert str(exc).strip(), "a PrivboxError without a message"
            OUTCOMES[name][type(exc).__name__] += 1
            return None
    OUTCOMES[name]["ok"] += 1
    return result


def write_report() -> None:
    """Write the tallies to ``$PRIVBOX_FUZZ_REPORT`` (JSON), if set."""
    target = os.environ.get("PRIVBOX_FUZZ_REPORT")
    if target:
        with open(target, "w", encoding="utf-8") as fh:
            json.dump({k: dict(v) for k, v in sorted(OUTCOMES.items())}, fh, indent=1, sort_keys=True)
