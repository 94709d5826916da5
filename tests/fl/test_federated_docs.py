"""docs/en/federated.md: the Python example of section 8 runs as written (the others need Flower or minutes)."""

import pytest

pytest.importorskip("privbox.fl.client", reason="needs the one Client (privbox.fl.client) of issue 7")

from tutorials import blocks, page, run_blocks


def test_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    page_blocks = blocks(page("federated.md"))
    first_python = next(i for i, (kind, body) in enumerate(page_blocks) if kind == "python" and "run_simulation" in body)
    namespace: dict = {}
    printed = "".join(out for _, out in run_blocks(page_blocks[first_python:first_python + 1], namespace, "federated.md", kinds=("python",)))
    assert "high-risk" in printed and "site-8x4" in printed
    assert (tmp_path / "fl_run" / "summary.md").exists()
