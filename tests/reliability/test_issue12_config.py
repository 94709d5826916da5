"""Issue 12, config values: each silently-accepted value of the issue is a ConfigError naming the
key, through ``-o`` overrides and through a YAML file; a YAML alias bomb fails fast."""

from __future__ import annotations

import re
import time

import pytest

from privbox.cli.main import main
from privbox.config import load_config
from privbox.core.errors import ConfigError



@pytest.mark.parametrize("override, where", [
    ("attack.lr=.inf", "attack.lr: is inf"),
    ("attack.regularizers.tv=.nan", "attack.regularizers.tv: is nan"),
    ("attack.adam_betas=[0.9, 1.5]", "attack.adam_betas[1]: value 1.5 is outside [0, 1)"),
    ("attack.adam_betas=[-0.1, 0.9]", "attack.adam_betas[0]"),
    ("attack.early_stop_loss=.nan", "attack.early_stop_loss: is nan"),
    ("attack.early_stop_tv=.nan", "attack.early_stop_tv: is nan"),
])
def test_silently_accepted_attack_values_are_config_errors(override, where):
    with pytest.raises(ConfigError, match=re.escape(where)):
        load_config("ga", [override]).attack.build()


def test_the_cli_reports_them_in_one_line(captured, tmp_path, capsys):
    code = main(["attack", "-c", "ga", "-o", "attack.lr=.inf", "--update", str(captured / "update.safetensors"),
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "attack.lr: is inf" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_values_in_a_yaml_file(tmp_path):
    path = tmp_path / "nan.yaml"
    path.write_text("attack:\n  preset: ga\n  regularizers: {tv: .nan}\n")
    with pytest.raises(ConfigError, match="attack.regularizers.tv"):
        load_config(str(path)).attack.build()


def test_yaml_alias_bomb_fails_fast(tmp_path):
    lines = ["attack:", "  preset: dlg", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="nodes once its aliases are expanded"):
        load_config(str(path))
    assert time.perf_counter() - start < 5.0


def test_a_fifo_given_as_config_does_not_hang(tmp_path):
    import os

    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="FIFO"):
        load_config(str(fifo))
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("override, where", [("capture.local_lr=.inf", "capture.local_lr: is inf"),
                                             ("capture.mean=[.nan, 0.5, 0.5]", "capture.mean[0]: is nan")])
def test_other_sections_refuse_nan_and_inf(override, where):
    with pytest.raises(ConfigError, match=re.escape(where)):
        load_config(None, [override])
