"""docs/en/errors.md: its Python example runs as written and prints what the page shows; the
limits the page states are the ones the code enforces."""

from __future__ import annotations

from tutorials import blocks, page, run_blocks, shown_after


def test_errors_page_example_prints_what_it_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    page_blocks = blocks(page("errors.md"))
    ran = 0
    for index, printed in run_blocks(page_blocks, {}, "errors.md", kinds=("python",)):
        assert printed == shown_after(page_blocks, index)
        ran += 1
    assert ran == 1


def test_errors_page_states_the_enforced_limits():
    from privbox.core import model_shapes, safetensors_io, validate, yaml_limits

    text = page("errors.md")
    limits = safetensors_io.DEFAULT_LIMITS
    assert limits.max_tensors == 100_000 and "(100 000)" in text
    assert limits.max_rank == 8 and "rank (8)" in text
    assert limits.max_elements == 2 ** 31 and "(2^31)" in text
    assert validate.MAX_BATCH == 65_536 and "[1, 65536]" in text
    assert validate.MAX_CLASSES == 100_000 and "[2, 100000]" in text
    assert validate.MAX_DUMMY_ELEMENTS == 2 ** 28 and "2^28" in text
    assert validate.MAX_ABS_UPDATE == 1e15 and "1e15" in text
    assert model_shapes.MAX_KWARG_INT == 131_072 and "131072" in text
    assert (yaml_limits.MAX_ALIASES, yaml_limits.MAX_ANCHORS, yaml_limits.MAX_DEPTH, yaml_limits.MAX_NODES) == \
        (100, 100, 64, 100_000)
    assert "100 aliases, 100 anchors, 64 levels of nesting and 100 000" in text
