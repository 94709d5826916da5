"""docs/en/cli.md: every `privbox` command in its bash blocks runs as written, in order."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from privbox.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _commands(text: str) -> list[list[str]]:
    commands = []
    for lang, body in FENCE.findall(text):
        if lang != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            if line.strip().startswith("privbox "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_cli_page_commands_run_as_written(tmp_path, monkeypatch, capsys):
    commands = _commands((ROOT / "docs" / "en" / "cli.md").read_text(encoding="utf-8"))
    used = {argv[0] for argv in commands}
    assert {"config", "capture", "attack", "evaluate", "labels", "tune"} <= used
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        code = main([*argv, "-o", "run.progress=false"] if argv[0] in ("attack", "tune") else argv)
        assert code == 0, f"privbox {' '.join(argv)} failed:\n{capsys.readouterr().err}"
    assert (tmp_path / "run" / "dlg" / "metrics.json").exists()
    assert (tmp_path / "run" / "tune" / "attack" / "reconstruction.safetensors").exists()
    assert (tmp_path / "runfa" / "nvidia" / "reconstruction.safetensors").exists()
