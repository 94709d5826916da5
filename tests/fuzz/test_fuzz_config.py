"""Fuzzing configs: ``-o section.key=value`` overrides (every known key, bogus keys, YAML values
of every kind including .inf, .nan, anchors and aliases) and whole YAML documents (random text,
random structures, alias bombs). Each either loads, and its attack section builds into an
AttackConfig with only finite numbers, or raises a PrivboxError."""

from __future__ import annotations

import dataclasses
import math

import pytest
import yaml
from hypothesis import given, strategies as st

from privbox.attacks import AttackConfig
from privbox.config import SECTIONS, load_config

from privbox.core.errors import ConfigError


from fuzz_helpers import FAST_EXAMPLES, SLOW_EXAMPLES, fuzz_settings, works_or_privbox_error


def _keys() -> list[str]:
    keys = [f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
    keys += [f"attack.{f.name}" for f in dataclasses.fields(AttackConfig)]
    keys += ["attack.regularizers.tv", "attack.regularizers.l2", "attack.schedule_params.milestones", "bogus.key",
             "attack", "attack.", ".lr", "attack.lr.x"]
    return sorted(set(keys))


_SCALARS = st.sampled_from([
    "0", "1", "-1", "2", "1e9", "1e-12", "1e400", "-1e400", ".inf", "-.inf", ".nan", "0.5", "0.999", "1.0", "100000",
    "null", "~", "true", "false", "yes", "''", "'x'", "adam", "lbfgs", "dlg", "[]", "[1]", "[0.9, 0.999]",
    "[0.9, 1.5]", "[.nan, .nan]", "{}", "{tv: .nan}", "{a: 1}", "&x [1, *x]", "*undefined", "!!python/object:os.system",
    "[[[[[[[[[[[[1]]]]]]]]]]]]", "2" * 40, "gpu:99", "cpu", "auto",
])
_VALUES = _SCALARS | st.text(max_size=12)


def _check_loaded(config) -> None:
    built = config.attack.build()
    for f in dataclasses.fields(built):
        value = getattr(built, f.name)
        if isinstance(value, float):
            assert math.isfinite(value), f"attack.{f.name} = {value} was accepted"
    config.run.intervals(built.iterations)


def _override_case(base, pairs):
    overrides = [f"{key}={value}" for key, value in pairs]
    config = works_or_privbox_error("config overrides", lambda: load_config(base, overrides))
    if config is not None:
        works_or_privbox_error("config overrides build", lambda: _check_loaded(config))


_DOCUMENT = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 40), 2 ** 40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["capture", "attack", "run", "tune", "preset", "lr", "iterations", "regularizers", "tv",
                         "model", "device", "x"]), inner, max_size=4),
    max_leaves=10,
)


def _document_case(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    config = works_or_privbox_error("config documents", lambda: load_config(str(path)))
    if config is not None:
        works_or_privbox_error("config documents build", lambda: _check_loaded(config))


def _bomb(levels: int, width: int) -> str:
    lines = ["attack:", "  preset: dlg", "x0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels, width, message", [
    (9, 9, "nodes once its aliases are expanded"),  # the classic billion laughs
    (20, 2, "nodes once its aliases are expanded"),
    (6, 30, "more than 100 aliases"),
    (3, 3, "x0"),  # small: loads, then the unknown section is named
])
def test_alias_bombs_are_refused_quickly(tmp_path, levels, width, message):
    from privbox.core.errors import ConfigError

    from fuzz_helpers import time_box

    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(levels, width))
    with time_box(5.0), pytest.raises(ConfigError, match=message):
        load_config(str(path))


@fuzz_settings(FAST_EXAMPLES)
@given(base=st.sampled_from([None, "dlg", "ga", "e2egi"]),
       pairs=st.lists(st.tuples(st.sampled_from(_keys()), _VALUES), min_size=1, max_size=3))
def test_overrides(base, pairs):
    _override_case(base, pairs)


@fuzz_settings(FAST_EXAMPLES)
@given(document=_DOCUMENT)
def test_yaml_documents(tmp_path, document):
    _document_case(tmp_path, yaml.safe_dump(document))


@fuzz_settings(FAST_EXAMPLES)
@given(text=st.text(max_size=200))
def test_yaml_text(tmp_path, text):
    _document_case(tmp_path, text)


@pytest.mark.slow
@fuzz_settings(SLOW_EXAMPLES)
@given(base=st.sampled_from([None, "dlg", "ga", "e2egi", "inverting_gradients"]),
       pairs=st.lists(st.tuples(st.sampled_from(_keys()), _VALUES), min_size=1, max_size=4))
def test_overrides_sweep(base, pairs):
    _override_case(base, pairs)


@pytest.mark.slow
@fuzz_settings(SLOW_EXAMPLES)
@given(document=_DOCUMENT)
def test_yaml_documents_sweep(tmp_path, document):
    _document_case(tmp_path, yaml.safe_dump(document))


@pytest.mark.slow
@fuzz_settings(SLOW_EXAMPLES)
@given(text=st.text(max_size=400))
def test_yaml_text_sweep(tmp_path, text):
    _document_case(tmp_path, text)
