"""docs/en/client.md: every block runs and prints what is shown."""

from __future__ import annotations

from tutorials import blocks, page, run_blocks, shown_after


def test_client_page_runs_as_written_and_matches_the_shown_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    page_blocks = blocks(page("client.md"))
    checked = 0
    for index, printed in run_blocks(page_blocks, {"__name__": "client_tutorial"}, "client.md"):
        shown = shown_after(page_blocks, index)
        assert shown is not None, f"block {index} has no shown output"
        assert printed == shown, f"output of block {index} differs:\n{printed}"
        checked += 1
    assert checked == 7
