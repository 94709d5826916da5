"""docs/en/matrix.md: its Python block runs as written and prints what the page shows; the English
and Chinese pages show the same matrix."""

from tutorials import blocks, page, run_blocks, shown_after


def test_python_block_prints_what_the_page_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = page("matrix.md")
    found = blocks(text)
    outputs = dict(run_blocks(found, {}, "matrix.md", kinds=("python",)))
    assert outputs
    for index, printed in outputs.items():
        shown = shown_after(found, index)
        assert shown is not None and printed.strip() == shown.strip()
    assert (tmp_path / "runs" / "tiny-matrix" / "matrix.png").exists()


def test_both_languages_show_the_same_matrix():
    en, zh = page("matrix.md"), page("matrix.md", "zh")
    rows = lambda t: [line for line in t.splitlines() if line.startswith("| none |") or line.startswith("| dp_sgd |")]  # noqa: E731
    assert rows(en) and rows(en) == rows(zh)
