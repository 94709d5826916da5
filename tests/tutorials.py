"""Run the tutorials' code blocks the way a reader would (shared by every docs test).

``python`` blocks run in order in one namespace; ``bash`` blocks run each ``privbox ...`` line
through ``privbox.cli.main``; a ``text`` block right after a block shows what it prints.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path
from typing import Iterator, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
NUMBERED_HEADING = re.compile(r"^(#+) (\d+(?:\.\d+)*\.)?", re.M)


def page(name: str, language: str = "en") -> str:
    """The text of ``docs/<language>/<name>``."""
    return (DOCS / language / name).read_text(encoding="utf-8")


def blocks(text: str) -> list[tuple[str, str]]:
    """``(kind, body)`` of every fenced block, in order."""
    return FENCE.findall(text)


def shown_after(page_blocks: Sequence[tuple[str, str]], index: int) -> Optional[str]:
    """The ``text`` block that follows block ``index`` (its shown output), if any."""
    if index + 1 < len(page_blocks) and page_blocks[index + 1][0] == "text":
        return page_blocks[index + 1][1]
    return None


def run_blocks(
    page_blocks: Sequence[tuple[str, str]],
    namespace: dict,
    label: str,
    kinds: Sequence[str] = ("python", "bash"),
) -> Iterator[tuple[int, str]]:
    """Run the blocks of ``kinds`` in order; yield ``(index, printed output)`` for each."""
    import privbox.cli.main as cli

    for index, (kind, body) in enumerate(page_blocks):
        if kind not in kinds:
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            if kind == "python":
                exec(compile(body, f"{label} block {index}", "exec"), namespace)
            elif kind == "bash":
                for line in body.strip().splitlines():
                    argv = shlex.split(line)
                    assert argv[0] == "privbox", f"{label}: only privbox commands run in tests: {line}"
                    assert cli.main(argv[1:]) == 0, line
        yield index, out.getvalue()
