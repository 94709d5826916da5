"""README/README_cn, docs/en/docs/zh parity, .ci/run agreement, and runnable tutorials."""

from tutorials import NUMBERED_HEADING, ROOT, blocks, run_blocks


def code_blocks(text: str, lang: str = None) -> list[str]:
    return [body for kind, body in blocks(text) if lang is None or kind == lang]


def headings(text: str, level: str = "## ") -> list[str]:
    return [line for line in text.splitlines() if line.startswith(level)]


def test_readmes_link_each_other_and_mirror_sections():
    en = (ROOT / "README.md").read_text(encoding="utf-8")
    zh = (ROOT / "README_cn.md").read_text(encoding="utf-8")
    assert "(README_cn.md)" in en and "(README.md)" in zh
    assert len(headings(en)) == len(headings(zh))
    assert code_blocks(en) == code_blocks(zh), "README code blocks must be identical in both languages"


def test_quick_start_has_two_commands_and_ci_runs_the_test_command():
    en = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = en.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [line for block in code_blocks(quick, "bash") for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    assert "privbox demo" in commands[0]
    test_command = commands[1]
    assert "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci.splitlines(), f"{test_command!r} must appear verbatim in .ci/run"


def _doc_pairs():
    en = sorted(p.relative_to(ROOT / "docs" / "en") for p in (ROOT / "docs" / "en").rglob("*.md"))
    zh = sorted(p.relative_to(ROOT / "docs" / "zh") for p in (ROOT / "docs" / "zh").rglob("*.md"))
    return en, zh


def test_docs_en_and_zh_have_the_same_files_sections_and_code():
    en, zh = _doc_pairs()
    assert en == zh
    for rel in en:
        a = (ROOT / "docs" / "en" / rel).read_text(encoding="utf-8")
        b = (ROOT / "docs" / "zh" / rel).read_text(encoding="utf-8")
        assert len(headings(a)) == len(headings(b)), rel
        assert NUMBERED_HEADING.findall(a) == NUMBERED_HEADING.findall(b), f"{rel}: section numbering differs"
        assert blocks(a) == blocks(b), f"{rel}: code and output blocks differ between languages"


def test_getting_started_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    text = (ROOT / "docs" / "en" / "getting-started.md").read_text(encoding="utf-8")
    printed = "".join(out for _, out in run_blocks(blocks(text), namespace, "getting-started.md", kinds=("python",)))
    assert "fails: pool2d_grad_grad" in printed and "double grad OK" in printed
    assert (tmp_path / "update.safetensors").exists()
    from privbox.metrics import evaluate

    assert evaluate(namespace["dlg_result"], namespace["secret"])["psnr"] > 30
