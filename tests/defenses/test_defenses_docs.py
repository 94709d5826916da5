"""docs/en|zh/defenses.md: same code in both languages; every block runs and prints what is shown."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re
import shlex

import privbox.cli.main as cli

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```(python|text|bash)\n(.*?)^```", re.S | re.M)


def _blocks(language: str):
    text = (DOCS / language / "defenses.md").read_text(encoding="utf-8")
    return text, FENCE.findall(text)


def test_english_and_chinese_have_the_same_code_and_sections():
    en_text, en_blocks = _blocks("en")
    zh_text, zh_blocks = _blocks("zh")
    assert en_blocks == zh_blocks
    heading = re.compile(r"^(#+) (\d+(?:\.\d+)*\.)?", re.M)
    assert heading.findall(en_text) == heading.findall(zh_text)


def run_blocks(blocks, namespace):
    """Yield (index, printed output) for each python/bash block, run in order."""
    for index, (kind, body) in enumerate(blocks):
        out = io.StringIO()
        if kind == "python":
            with contextlib.redirect_stdout(out):
                exec(compile(body, f"defenses.md block {index}", "exec"), namespace)
        elif kind == "bash":
            for line in body.strip().splitlines():
                argv = shlex.split(line)
                assert argv[0] == "privbox", line
                with contextlib.redirect_stdout(out):
                    assert cli.main(argv[1:]) == 0, line
        else:
            continue
        yield index, out.getvalue()


def test_tutorial_runs_as_written_and_matches_the_shown_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "SUBCOMMANDS", ("privacy", "rank"))
    _, blocks = _blocks("en")
    namespace = {"__name__": "defenses_tutorial"}
    checked = 0
    for index, printed in run_blocks(blocks, namespace):
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if following is not None and following[0] == "text":
            assert printed == following[1], f"output of block {index} differs:\n{printed}"
            checked += 1
    assert checked >= 12
    assert (tmp_path / "dgc_state.safetensors").exists()


if __name__ == "__main__":  # print the outputs, to refresh the text blocks by hand
    import os
    import tempfile

    cli.SUBCOMMANDS = ("privacy", "rank")
    os.chdir(tempfile.mkdtemp())
    for i, printed in run_blocks(_blocks("en")[1], {"__name__": "defenses_tutorial"}):
        print(f"===== block {i}\n{printed}", end="")
