"""docs/en/defenses.md: every block runs and prints what is shown."""

from __future__ import annotations

import privbox.cli.main as cli
from tutorials import blocks, page, run_blocks, shown_after


def test_tutorial_runs_as_written_and_matches_the_shown_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "SUBCOMMANDS", ("privacy", "rank"))
    page_blocks = blocks(page("defenses.md"))
    checked = 0
    for index, printed in run_blocks(page_blocks, {"__name__": "defenses_tutorial"}, "defenses.md"):
        shown = shown_after(page_blocks, index)
        if shown is not None:
            assert printed == shown, f"output of block {index} differs:\n{printed}"
            checked += 1
    assert checked >= 12
    assert (tmp_path / "dgc_state.safetensors").exists()


if __name__ == "__main__":  # print the outputs, to refresh the text blocks by hand
    import os
    import tempfile

    cli.SUBCOMMANDS = ("privacy", "rank")
    os.chdir(tempfile.mkdtemp())
    for i, printed in run_blocks(blocks(page("defenses.md")), {"__name__": "defenses_tutorial"}, "defenses.md"):
        print(f"===== block {i}\n{printed}", end="")
