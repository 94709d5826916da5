"""Atomic file output: write to a temporary file beside the target, then rename.

Every file privbox writes (updates, reconstructions, checkpoints, tables, figures) goes through
:func:`atomic_output`, so an interrupted or failed write never leaves a half-written file, and
the result gets the usual permissions (``0o666`` minus the umask; ``mkstemp`` alone gives 0600).
"""

from __future__ import annotations

import contextlib
import re
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

from .interrupts import deferred


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_output(path: Union[str, os.PathLike], suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``.

    ``suffix`` lets writers that pick a format from the extension (matplotlib) see the right one.
    On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        # Critical sections (privbox.core.interrupts.deferred): a SIGTERM or Ctrl-C never falls
        # between creating the temporary file and remembering it, nor inside the rename.
        with deferred():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
            os.close(fd)
        yield tmp
        with deferred():
            os.chmod(tmp, _default_mode())
            os.replace(tmp, path)
    except BaseException:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise


_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}(\.[A-Za-z0-9]+)$")


def remove_stale_temporaries(folder: Union[str, os.PathLike]) -> list[Path]:
    """Delete the temporary files that :func:`atomic_output` left in ``folder`` (and below) when
    its process was killed (SIGKILL cannot be handled); returns them. Only hidden names of the
    form ``.<target>.<8 random characters><suffix>`` (what ``mkstemp`` makes here) are touched;
    call it only on folders privbox writes, before the run that owns them continues."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.rglob(".*"):
        if path.is_file() and _TEMPORARY.match(path.name):
            path.unlink()
            removed.append(path)
    return removed
