"""The label-recovery tutorial runs as written, in both languages, and shows its real output."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"```(python|text)\n(.*?)```", re.S)


def _blocks(language: str):
    text = (DOCS / language / "label-recovery.md").read_text(encoding="utf-8")
    return text, FENCE.findall(text)


def _mask_times(text: str) -> str:
    # The last column of the comparison table is a wall-clock time.
    return re.sub(r"\| [0-9.]+ \|$", "| T |", text, flags=re.M)


def test_english_and_chinese_have_the_same_code_and_sections():
    en_text, en_blocks = _blocks("en")
    zh_text, zh_blocks = _blocks("zh")
    assert en_blocks == zh_blocks
    heading = re.compile(r"^(#+) (\d+\.)?", re.M)
    assert heading.findall(en_text) == heading.findall(zh_text)


def test_tutorial_snippets_run_and_match_the_shown_output():
    _, blocks = _blocks("en")
    namespace = {"__name__": "label_recovery_tutorial"}
    checked = 0
    for index, (kind, body) in enumerate(blocks):
        if kind != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(body, f"label-recovery.md block {index}", "exec"), namespace)
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if following is not None and following[0] == "text":
            assert _mask_times(out.getvalue()) == _mask_times(following[1]), f"output of block {index} differs"
            checked += 1
    assert checked >= 9
