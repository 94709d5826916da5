"""The attack tutorial (docs/en/attacks.md) runs as written; its figures exist and are small."""

import contextlib
import io
import re
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
IMAGE = re.compile(r"!\[[^\]]*\]\(\.\./images/([^)]+)\)")


def test_attack_tutorial_runs_as_written(tmp_path, monkeypatch):
    text = (DOCS / "en" / "attacks.md").read_text(encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "attacks_tutorial"}
    times = []
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for index, (kind, body) in enumerate(FENCE.findall(text)):
            if kind != "python":
                continue
            tic = time.perf_counter()
            exec(compile(body, f"attacks.md block {index}", "exec"), namespace)
            times.append(round(time.perf_counter() - tic, 1))
    printed = out.getvalue()
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
