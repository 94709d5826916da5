"""SIGTERM and SIGINT as one clean stop, in every phase of a command.

Within :func:`interruptible`, the first SIGTERM or SIGINT raises :class:`KeyboardInterrupt`
where the program is, so the command's cleanup (run status, temporary files) runs and it exits
with code 130. Two things make this reliable where a bare handler is not:

* the signal is *recorded* as well as raised: a ``KeyboardInterrupt`` raised inside a garbage
  collector or weak-reference callback is swallowed by Python ("Exception ignored in ..."), and
  the run would otherwise finish as if nothing happened; :func:`check_interrupted`, called at
  safe points (each snapshot, before a run is declared complete), raises it again;
* a signal that arrives inside a weak-reference callback or ``__del__`` is only recorded there;
* a repeated signal within :data:`REPEAT_WINDOW_S` of the last raise is only recorded, so a
  second Ctrl-C does not interrupt the cleanup of the first.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Iterator, Optional

__all__ = ["interruptible", "check_interrupted", "deferred", "StopGuard", "REPEAT_WINDOW_S"]

#: Seconds after a raise during which further signals are recorded but not raised.
REPEAT_WINDOW_S = 1.0

_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), signal.SIGINT) if s is not None)


class StopGuard:
    """Records the stop signals received while it is installed."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._raised_at: Optional[float] = None
        self._defer_depth = 0
        self._pending = False

    @property
    def stopped(self) -> bool:
        """Whether a stop signal arrived."""
        return self.signum is not None

    def handler(self, signum: int, frame) -> None:
        self.signum = signum
        if _in_finaliser(frame):
            return  # Python would swallow the raise ("Exception ignored in ..."); check() raises it later
        now = time.monotonic()
        if self._raised_at is None or now - self._raised_at > REPEAT_WINDOW_S:
            self._raised_at = now
            if self._defer_depth:
                self._pending = True  # raised when the critical section ends
                return
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    def check(self) -> None:
        """Raise :class:`KeyboardInterrupt` if a stop signal arrived (even one whose raise was swallowed)."""
        if self.signum is not None:
            raise KeyboardInterrupt(f"signal {signal.Signals(self.signum).name}")


_ACTIVE: list[StopGuard] = []
_FINALISER_FILES = ("weakref.py", "_weakrefset.py")


def _in_finaliser(frame) -> bool:
    """Whether ``frame`` runs a weak-reference callback or ``__del__`` (where raises are swallowed)."""
    depth = 0
    while frame is not None and depth < 4:
        code = frame.f_code
        if code.co_name == "__del__" or code.co_filename.endswith(_FINALISER_FILES):
            return True
        frame, depth = frame.f_back, depth + 1
    return False


@contextlib.contextmanager
def interruptible() -> Iterator[StopGuard]:
    """Install the stop handler for SIGTERM and SIGINT (main thread only) for the block.

    Nested uses share the outermost guard. Off the main thread signals cannot be handled and
    the guard only records nothing.
    """
    if _ACTIVE:
        yield _ACTIVE[-1]
        return
    guard = StopGuard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = {sig: signal.signal(sig, guard.handler) for sig in _SIGNALS}
    _ACTIVE.append(guard)
    try:
        yield guard
    finally:
        _ACTIVE.remove(guard)
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A critical section: a stop signal arriving inside it is raised when it ends (if it ends
    normally), so a few statements that must run together (create a temporary file and remember
    its name, rename it into place) are never split by an interrupt."""
    guard = _ACTIVE[-1] if _ACTIVE else None
    if guard is None:
        yield
        return
    guard._defer_depth += 1
    try:
        yield
    finally:
        guard._defer_depth -= 1
    if guard._defer_depth == 0 and guard._pending:
        guard._pending = False
        raise KeyboardInterrupt(f"signal {signal.Signals(guard.signum).name}" if guard.signum else "signal")


def check_interrupted() -> None:
    """Raise :class:`KeyboardInterrupt` if the active guard recorded a stop signal."""
    if _ACTIVE:
        _ACTIVE[-1].check()
