"""Fuzzing privbox files: truncation at every header boundary, header lengths across byte
boundaries (0x7F/0x80/0xFF/0x100/...), random bytes, byte flips and JSON-header mutations. Each
input loads (and then equals the original where only padding changed) or raises UpdateFileError."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

from privbox.core.errors import UpdateFileError
from privbox.core.update import ClientUpdate

from fuzz_helpers import FAST_EXAMPLES, SLOW_EXAMPLES, fuzz_settings, works_or_privbox_error
from fuzz_victim import saved_update, tiny_update

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from st_bytes import split  # noqa: E402


class _Blob(bytes):
    """The valid file's bytes, with a short repr for hypothesis' failure reports."""

    def __repr__(self) -> str:
        return f"<valid update file, {len(self)} bytes>"


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> bytes:
    return _Blob(saved_update(tmp_path_factory.mktemp("fuzz_files")).read_bytes())


def _load(tmp_path: Path, blob: bytes, name: str = "case.safetensors"):
    path = tmp_path / name
    path.write_bytes(blob)
    return works_or_privbox_error("files", lambda: ClientUpdate.load(path))


def _assert_equal_update(loaded) -> None:
    update, _ = tiny_update()
    assert loaded.names() == update.names()
    for key, value in update.tensors.items():
        np.testing.assert_array_equal(loaded.tensors[key], value)
    np.testing.assert_array_equal(loaded.labels, update.labels)


def test_truncation_at_every_header_boundary(original, tmp_path):
    header_len = int.from_bytes(original[:8], "little")
    cuts = list(range(0, 8 + header_len + 64)) + [len(original) - k for k in (1, 2, 3, 4, 7, 8, 9)]
    for cut in cuts:
        path = tmp_path / "cut.safetensors"
        path.write_bytes(original[:cut])
        with pytest.raises(UpdateFileError):
            ClientUpdate.load(path)


def test_declared_header_length_across_byte_boundaries(original, tmp_path):
    header_len = int.from_bytes(original[:8], "little")
    body = original[8:]
    lengths = {0, 1, 2, 0x7F, 0x80, 0x81, 0xFF, 0x100, 0x101, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 1 << 31, 1 << 32,
               (1 << 63) - 1, (1 << 64) - 1, header_len - 1, header_len + 1}
    for length in sorted(lengths):
        loaded = _load(tmp_path, length.to_bytes(8, "little") + body)
        assert loaded is None, f"declared header length {length} was accepted"


@pytest.mark.parametrize("target", [0x87F, 0x880, 0x881, 0x8FF, 0x900, 0x901, 0x980, 0xA80, 0xFFF, 0x1000, 0x1080,
                                    0x7FFF, 0x8000, 0x8080, 0xFFFF, 0x10000])
def test_valid_files_with_header_lengths_across_byte_boundaries(original, tmp_path, target):
    header, data = split(original)
    text = json.dumps(header, separators=(",", ":")).encode()
    assert target >= len(text), "the tiny update's header grew; raise the targets"
    blob = target.to_bytes(8, "little") + text + b" " * (target - len(text)) + data
    _assert_equal_update(_load(tmp_path, blob))


def _random_bytes_case(tmp_path, blob):
    assert _load(tmp_path, blob) is None


def _flip_case(original, tmp_path, flips):
    blob = bytearray(original)
    header_end = 8 + int.from_bytes(original[:8], "little")
    for position, value in flips:
        blob[position % header_end] = value
    _load(tmp_path, bytes(blob))


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                     max_leaves=12)


def _mutate_case(original, tmp_path, field, value, which):
    header, data = split(original)
    names = sorted(k for k in header if k != "__metadata__")
    name = names[which % len(names)]
    if field == "__entry__":
        header[name] = value
    elif field == "__metadata__":
        header["__metadata__"] = value
    else:
        header[name][field] = value
    text = json.dumps(header, separators=(",", ":")).encode()
    _load(tmp_path, len(text).to_bytes(8, "little") + text + data)


_FIELDS = st.sampled_from(["dtype", "shape", "data_offsets", "__entry__", "__metadata__"])
_FLIPS = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=6)


@fuzz_settings(FAST_EXAMPLES)
@given(blob=st.binary(max_size=512))
def test_random_bytes(tmp_path, blob):
    _random_bytes_case(tmp_path, blob)


@fuzz_settings(FAST_EXAMPLES)
@given(flips=_FLIPS)
def test_header_byte_flips(original, tmp_path, flips):
    _flip_case(original, tmp_path, flips)


@fuzz_settings(FAST_EXAMPLES)
@given(field=_FIELDS, value=_JSON, which=st.integers(0, 100))
def test_header_json_mutations(original, tmp_path, field, value, which):
    _mutate_case(original, tmp_path, field, value, which)


@pytest.mark.slow
@fuzz_settings(SLOW_EXAMPLES)
@given(blob=st.binary(max_size=4096))
def test_random_bytes_sweep(tmp_path, blob):
    _random_bytes_case(tmp_path, blob)


@pytest.mark.slow
@fuzz_settings(SLOW_EXAMPLES)
@given(flips=_FLIPS)
def test_header_byte_flips_sweep(original, tmp_path, flips):
    _flip_case(original, tmp_path, flips)


@pytest.mark.slow
@fuzz_settings(SLOW_EXAMPLES)
@given(field=_FIELDS, value=_JSON, which=st.integers(0, 100))
def test_header_json_mutations_sweep(original, tmp_path, field, value, which):
    _mutate_case(original, tmp_path, field, value, which)
