"""The attack tutorial (docs/en/attacks.md) runs as written; its figures exist and are small."""

import re
import time

from tutorials import DOCS, blocks, page, run_blocks

IMAGE = re.compile(r"!\[[^\]]*\]\(\.\./images/([^)]+)\)")


def test_attack_tutorial_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "attacks_tutorial"}
    times, outputs = [], []
    tic = time.perf_counter()
    for _, printed in run_blocks(blocks(page("attacks.md")), namespace, "attacks.md", kinds=("python",)):
        times.append(round(time.perf_counter() - tic, 1))
        outputs.append(printed)
        tic = time.perf_counter()
    printed = "".join(outputs)
    print(printed, times)
    assert "refused:" in printed and "has_bn_batch_stats" in printed
    assert "early stop" in printed
    assert namespace["mlco"].final_start == "fresh"
    assert len(times) >= 8


def test_attack_tutorial_figures_exist_in_both_languages_and_are_small():
    for language in ("en", "zh"):
        names = IMAGE.findall((DOCS / language / "attacks.md").read_text(encoding="utf-8"))
        assert len(names) == 5, language
        for name in names:
            path = DOCS / "images" / name
            assert path.exists(), path
            assert path.stat().st_size < 200_000, path
