"""docs/en/architecture.md: every block runs and prints what is shown; the parts the page
registers (a regularizer, a defense, an attack preset) are removed afterwards."""

from __future__ import annotations

from tutorials import blocks, page, run_blocks, shown_after


def test_architecture_page_runs_as_written_and_matches_the_shown_output(tmp_path, monkeypatch):
    from privbox.attacks import ATTACKS, REGULARIZERS
    from privbox.defenses import DEFENSES

    monkeypatch.chdir(tmp_path)
    page_blocks = blocks(page("architecture.md"))
    checked = 0
    try:
        for index, printed in run_blocks(page_blocks, {"__name__": "architecture_tutorial"}, "architecture.md"):
            shown = shown_after(page_blocks, index)
            assert shown is not None, f"block {index} has no shown output"
            assert printed == shown, f"output of block {index} differs:\n{printed}"
            checked += 1
    finally:
        REGULARIZERS.unregister("mean_brightness")
        DEFENSES.unregister("quantize")
        ATTACKS.unregister("dlg_cosine")
    assert checked == 5
