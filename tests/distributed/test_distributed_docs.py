"""The CPU commands of docs/en/distributed.md run as written (2 gloo ranks), iterations shortened.

The page's ``privbox capture`` line runs in this process; each ``python -m
paddle.distributed.launch ... privbox ARGS`` line runs ARGS on 2 real ranks. GPU and
multi-machine commands are only checked to parse with the CLI (no GPU here).
"""

from __future__ import annotations

import shlex

import pytest

from privbox.cli.main import build_parser, main

from dist_helpers import launch
from tutorials import blocks, page

SHORT = ["-o", "attack.iterations=3", "-o", "run.progress=false"]


def _commands():
    return [shlex.split(line) for kind, body in blocks(page("distributed.md")) if kind == "bash"
            for line in body.splitlines() if line.strip()]


def _privbox_args(words):
    return words[words.index("privbox") + 1:]


def test_every_documented_command_parses():
    commands = _commands()
    assert len(commands) == 7
    parser = build_parser()
    for words in commands:
        args = parser.parse_args(_privbox_args(words))
        assert args.command in ("capture", "attack")
        if words[:3] == ["python", "-m", "paddle.distributed.launch"]:
            assert args.distributed in ("shard", "seeds")


@pytest.mark.slow
def test_cpu_commands_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cpu = [w for w in _commands() if "run.device=cpu" in w]
    assert len(cpu) == 4
    for n, words in enumerate(cpu):
        args = _privbox_args(words)
        if words[0] == "privbox":
            assert main(args) == 0
            continue
        extra = SHORT if args[0] == "attack" else []
        result = launch([*args, *extra], tmp_path / f"log{n}")
        assert result.returncode == 0, result.describe()
    for out in ("run/ig", "run/ig_seeds", "run_gh"):
        assert any((tmp_path / out).glob("*.safetensors")), out
