"""The label-recovery tutorial runs as written and shows its real output."""

from __future__ import annotations

import re

from tutorials import blocks, page, run_blocks, shown_after


def _mask_times(text: str) -> str:
    # The last column of the comparison table is a wall-clock time.
    return re.sub(r"\| [0-9.]+ \|$", "| T |", text, flags=re.M)


def test_tutorial_snippets_run_and_match_the_shown_output():
    page_blocks = blocks(page("label-recovery.md"))
    checked = 0
    for index, printed in run_blocks(page_blocks, {"__name__": "label_recovery_tutorial"}, "label-recovery.md", kinds=("python",)):
        shown = shown_after(page_blocks, index)
        if shown is not None:
            assert _mask_times(printed) == _mask_times(shown), f"output of block {index} differs"
            checked += 1
    assert checked >= 9
