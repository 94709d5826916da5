"""Typed YAML configs: loading, overrides, errors, packaged/example configs, generated reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from privbox.cli.main import main
from privbox.config import (
    PACKAGED_CONFIG_DIR,
    REFERENCE_BEGIN,
    REFERENCE_END,
    ConfigFileError,
    config_from_dict,
    config_reference_markdown,
    load_config,
    packaged_configs,
    parse_yaml_value,
    replace_reference_block,
)

ROOT = Path(__file__).resolve().parents[2]


def test_yaml_values_are_typed_like_yaml_1_2():
    assert parse_yaml_value("1e-3") == pytest.approx(1e-3)  # PyYAML alone reads this as a string
    assert parse_yaml_value("0.05") == 0.05
    assert parse_yaml_value("4") == 4 and isinstance(parse_yaml_value("4"), int)
    assert parse_yaml_value("true") is True
    assert parse_yaml_value("[0.5, 0.5]") == [0.5, 0.5]
    assert parse_yaml_value("{tv: 1e-4}") == {"tv": pytest.approx(1e-4)}
    assert parse_yaml_value("samples") == "samples"
    assert parse_yaml_value("null") is None


def test_overrides_apply_with_types_and_nested_keys_merge_into_the_preset():
    cfg = load_config("e2egi", ["attack.lr=0.05", "attack.regularizers.tv=1e-3", "capture.batch_size=4",
                                "attack.iterations=10", "tune.ranges.lr=[0.05, 0.5]"])
    built = cfg.attack.build()
    assert built.lr == 0.05 and isinstance(built.lr, float)
    assert built.iterations == 10
    # The TV weight changes, the preset's BN term and its options stay.
    assert built.regularizers == {"tv": 1e-3, "bn": {"weight": 0.0357, "source": "exact"}}
    assert cfg.capture.batch_size == 4
    assert cfg.tune.ranges["lr"] == [0.05, 0.5] and cfg.tune.ranges["bn"] == [1e-6, 0.1, "log"]  # the file's other ranges stay
    assert load_config(None, ["attack.lr=1"]).attack.build().lr == 1.0  # ints become floats


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["foo.x=1"], "unknown section 'foo'; valid sections are ['capture', 'attack', 'run', 'tune']"),
        (["capture.nope=1"], "valid keys are ['model', 'model_kwargs'"),
        (["attack.lrr=0.1"], "unknown key(s) ['lrr'] in section 'attack'; valid keys are ['preset', 'name'"),
        (["capture.batch_size=four"], "capture.batch_size: expected int, got 'four'"),
        (["attack.lr=-1"], "lr must be positive"),
        (["attack.preset=nope"], "attack.preset 'nope' is unknown; choose one of"),
        (["capture.model=nope"], "capture.model 'nope' is unknown"),
        (["capture.mean=[0.5]"], "capture.mean needs one value per channel (3)"),
        (["lr=0.1"], "overrides look like section.key=value"),
        (["attack.lr.x=1"], "attack.lr is 1.0, not a mapping"),
        (["run.device=tpu"], "run.device must be"),
        (["tune.params=[lr, momentum]"], "unknown parameter 'momentum'"),
        (["attack.signed=yes please"], "attack.signed: expected bool"),
        (["capture.kind=weight_delta", "capture.share_bn_stats=true"], "share_bn_stats applies to FedSGD"),
        (["capture.kind=fedprox"], "capture.kind must be one of ['gradient', 'weight_delta']"),
    ],
)
def test_bad_overrides_are_errors_that_name_the_problem(overrides, message):
    with pytest.raises(ConfigFileError) as err:
        load_config(None, overrides)
    assert message in str(err.value)


def test_unknown_sections_and_keys_in_a_file_list_the_valid_ones(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("attack:\n  preset: dlg\nmodel:\n  name: lenet\n")
    with pytest.raises(ConfigFileError, match=r"bad.yaml: unknown section\(s\) \['model'\]; valid sections"):
        load_config(path)
    path.write_text("capture:\n  batchsize: 4\n")
    with pytest.raises(ConfigFileError, match=r"unknown key\(s\) \['batchsize'\] in section 'capture'"):
        load_config(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigFileError, match="mapping of sections"):
        load_config(path)


def test_only_safe_yaml_is_read(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("attack: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigFileError, match="not valid YAML"):
        load_config(path)


def test_missing_config_names_the_packaged_ones():
    with pytest.raises(FileNotFoundError, match="packaged config name"):
        load_config("no_such_config")


def test_every_packaged_config_loads_and_the_examples_are_the_packaged_files():
    names = packaged_configs()
    assert {"dlg", "idlg", "inverting_gradients", "e2egi", "ga", "capture_lenet", "capture_resnet18"} <= set(names)
    for name in names:
        text = (PACKAGED_CONFIG_DIR / f"{name}.yaml").read_text(encoding="utf-8")
        # privbox fl and privbox matrix have their own sections and loaders (tests/fl, tests/experiments)
        if not name.startswith(("fl", "matrix")):
            load_config(name).attack.build()
        text = (PACKAGED_CONFIG_DIR / f"{name}.yaml").read_text(encoding="utf-8")
        assert text.startswith("# "), f"{name}.yaml starts with a comment saying what it is"
        example = ROOT / "examples" / "configs" / f"{name}.yaml"
        assert example.read_text(encoding="utf-8") == text, f"examples/configs/{name}.yaml differs from the packaged one"
    assert load_config("e2egi").attack.build().name == "e2egi"


def test_config_round_trips_through_yaml():
    cfg = load_config("capture_resnet18", ["attack.preset=e2egi", "attack.lr=0.2", "tune.params=[lr, tv]"])
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again.to_dict() == cfg.to_dict()


def test_config_command_prints_the_effective_config(capsys):
    assert main(["config", "-c", "dlg", "-o", "attack.lr=0.5", "-o", "capture.batch_size=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["attack"]["lr"] == 0.5 and printed["attack"]["preset"] == "dlg"
    assert printed["capture"]["batch_size"] == 3


def test_cli_reports_config_errors_with_exit_code_2(capsys, tmp_path):
    code = main(["capture", "--out", str(tmp_path), "-o", "capture.batch_sise=4"])
    err = capsys.readouterr().err
    assert code == 2
    assert "privbox capture: error:" in err and "batch_sise" in err and "valid keys are" in err
    assert not (tmp_path / "update.safetensors").exists()


def test_reference_covers_every_key():
    ref = config_reference_markdown()
    for section in ("capture", "attack", "run", "tune"):
        assert f"### `{section}`" in ref
    for key in ("batch_size", "share_bn_stats", "preset", "regularizers", "lbfgs_history", "snapshot_every",
                "surrogate_seed", "reduction_factor"):
        assert f"| `{key}` |" in ref
    assert "| `e2egi` |" in ref  # preset table


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_docs_embed_the_current_generated_reference(lang):
    path = ROOT / "docs" / lang / "cli.md"
    text = path.read_text(encoding="utf-8")
    assert REFERENCE_BEGIN in text and REFERENCE_END in text
    assert replace_reference_block(text) == text, (
        f"{path} has an outdated config reference; regenerate it with "
        "`privbox config --write-reference docs/en/cli.md docs/zh/cli.md`"
    )
