"""privbox.core.safetensors_io: the strict reader against the safetensors library and hand-built
bytes (tests/reliability/st_bytes.py), and the issue-12 file cases as named regressions."""

from __future__ import annotations

import json
import os
import pickle
import signal
import zipfile

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from privbox.core.errors import PrivboxError, UpdateFileError
from privbox.core.safetensors_io import (
    DTYPES,
    Limits,
    check_regular_file,
    parse_header,
    read_privbox_file,
    read_safetensors,
    write_privbox_file,
    write_safetensors,
)
from st_bytes import build, repad_low_byte, split


def _arrays():
    rng = np.random.default_rng(3)
    return {
        "f64": rng.normal(size=(2, 3)),
        "f32": rng.normal(size=(4,)).astype(np.float32),
        "f16": rng.normal(size=(1, 2, 2)).astype(np.float16),
        "i64": np.arange(-3, 3, dtype=np.int64),
        "i32": np.array([[7, -8]], dtype=np.int32),
        "i16": np.array([1], dtype=np.int16),
        "i8": np.array([-1, 2], dtype=np.int8),
        "u8": np.array([0, 255], dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def test_reads_what_the_safetensors_library_writes(tmp_path):
    arrays = _arrays()
    path = tmp_path / "lib.safetensors"
    save_file(arrays, str(path), metadata={"a": "b"})
    tensors, metadata = read_safetensors(path)
    reference = load_file(str(path))
    assert metadata == {"a": "b"}
    assert set(tensors) == set(reference) == set(arrays)
    for key in arrays:
        assert tensors[key].dtype == reference[key].dtype and tensors[key].shape == reference[key].shape
        np.testing.assert_array_equal(tensors[key], reference[key])


def test_writer_output_is_read_by_the_safetensors_library(tmp_path):
    arrays = _arrays()
    path = write_safetensors(tmp_path / "mine.safetensors", arrays, {"k": "v"})
    reference = load_file(str(path))
    for key, value in arrays.items():
        np.testing.assert_array_equal(reference[key], value)


def test_big_endian_input_is_stored_little_endian(tmp_path):
    value = np.arange(4, dtype=">f4")
    path = write_safetensors(tmp_path / "be.safetensors", {"x": value})
    np.testing.assert_array_equal(load_file(str(path))["x"], np.arange(4, dtype=np.float32))


@pytest.mark.parametrize("low_byte", [0x80, 0x7F, 0x81, 0xFF, 0x00, 0x02, 0x28, 0x7D, 0x50])
def test_header_length_low_byte_is_not_a_pickle_marker(tmp_path, low_byte):
    """Issue 12: a header of 128 bytes starts the file with 0x80 and was refused as a pickle."""
    path = tmp_path / "x.safetensors"
    save_file({"w": np.ones((2, 2), np.float32)}, str(path), metadata={"format": "x"})
    repad_low_byte(path, low_byte)
    assert path.read_bytes()[0] == low_byte
    tensors, metadata = read_safetensors(path)
    np.testing.assert_array_equal(tensors["w"], load_file(str(path))["w"])
    assert metadata == {"format": "x"}


def test_hand_built_128_byte_header(tmp_path):
    blob = build({"a": np.arange(3, dtype=np.int64)}, pad_to=128)
    assert blob[:2] == b"\x80\x00"
    path = tmp_path / "h.safetensors"
    path.write_bytes(blob)
    np.testing.assert_array_equal(read_safetensors(path)[0]["a"], [0, 1, 2])


def test_fifo_is_refused_without_blocking(tmp_path):
    """Issue 12: a FIFO as the update path blocked forever."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    previous = signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("blocked")))
    signal.alarm(5)
    try:
        with pytest.raises(UpdateFileError, match="FIFO"):
            read_safetensors(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_directory_and_device_are_refused(tmp_path):
    with pytest.raises(UpdateFileError, match="folder"):
        read_safetensors(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(UpdateFileError, match="device"):
            read_safetensors("/dev/zero")
    with pytest.raises(FileNotFoundError):
        check_regular_file(tmp_path / "missing.safetensors")


def test_pickle_zip_and_npy_are_named(tmp_path):
    cases = {
        "p.safetensors": pickle.dumps({"w": [1, 2]}, protocol=2),
        "p4.safetensors": pickle.dumps({"w": [1, 2]}, protocol=4),
        "n.safetensors": b"\x93NUMPY\x01\x00" + b"\x00" * 40,
    }
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as archive:
        archive.writestr("archive/data.pkl", b"x")
    cases["z.safetensors"] = (tmp_path / "z.zip").read_bytes()
    for name, blob in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(UpdateFileError, match="pickle or PyTorch|NumPy") as info:
            read_safetensors(path)
        assert "never unpickles" in str(info.value) or "NumPy" in str(info.value)


@pytest.mark.parametrize(
    "header, message",
    [
        ([1, 2], "does not start with"),
        ({"a": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}}, "dtype 'BF16'"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, "shape"),
        ({"a": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}}, "shape"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, "needs 8 bytes"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, "data_offsets"),
        ({"a": {"dtype": "F32", "shape": [1]}}, "exactly the keys"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}, "exactly the keys"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "__metadata__": {"k": 1}}, "__metadata__"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "__metadata__": ["k"]}, "__metadata__"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, "starts at byte 4"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
          "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, "starts at byte 0"),
        ({"a": {"dtype": "F32", "shape": [65536, 65536, 65536], "data_offsets": [0, 4]}}, "elements"),
        ({"a": {"dtype": "F32", "shape": [1] * 9, "data_offsets": [0, 4]}}, "dimensions"),
    ],
)
def test_malformed_headers_are_refused(tmp_path, header, message):
    blob = build({}, header_override=header) + b"\x00" * 4
    path = tmp_path / "bad.safetensors"
    path.write_bytes(blob)
    with pytest.raises(UpdateFileError, match=message):
        read_safetensors(path)


def test_duplicate_keys_and_trailing_bytes_are_refused(tmp_path):
    entry = '{"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}'
    text = ('{"a": ' + entry + ', "a": ' + entry + "}").encode()
    path = tmp_path / "dup.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"\x01")
    with pytest.raises(UpdateFileError, match="duplicate"):
        read_safetensors(path)
    path.write_bytes(build({"a": np.zeros(2, np.uint8)}) + b"extra")
    with pytest.raises(UpdateFileError, match="data section has"):
        read_safetensors(path)


def test_limits_are_checked_before_allocation(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes((1 << 40).to_bytes(8, "little") + b"{}")
    with pytest.raises(UpdateFileError, match="exceeds the limit"):
        read_safetensors(path)
    many = {f"t{i}": np.zeros(1, np.uint8) for i in range(5)}
    path.write_bytes(build(many))
    with pytest.raises(UpdateFileError, match="5 tensors"):
        read_safetensors(path, Limits(max_tensors=4))
    with pytest.raises(UpdateFileError, match="exceeds the limit"):
        read_safetensors(path, Limits(max_header_bytes=16))
    with pytest.raises(UpdateFileError, match="more than the limit"):
        read_safetensors(path, Limits(max_file_bytes=10))


def test_bool_bytes_and_nonfinite_values(tmp_path):
    blob = bytearray(build({"b": np.array([True, False])}))
    blob[-1] = 7
    path = tmp_path / "b.safetensors"
    path.write_bytes(bytes(blob))
    with pytest.raises(UpdateFileError, match="BOOL"):
        read_safetensors(path)
    path.write_bytes(build({"x": np.array([1.0, np.inf], np.float32)}))
    with pytest.raises(UpdateFileError, match="NaN/Inf"):
        read_safetensors(path)
    assert np.isinf(read_safetensors(path, allow_nonfinite=True)[0]["x"][1])


def test_truncation_at_every_byte_is_an_error(tmp_path):
    blob = build({"a": np.arange(3, dtype=np.float32), "b": np.ones((2, 2), np.int64)}, {"m": "v"})
    header_len = int.from_bytes(blob[:8], "little")
    path = tmp_path / "t.safetensors"
    for cut in range(len(blob)):
        path.write_bytes(blob[:cut])
        with pytest.raises(UpdateFileError):
            read_safetensors(path)
    # Growing the declared header length past its JSON is an error too, not a silent misread.
    for delta in (1, 2, 255, 256):
        path.write_bytes((header_len + delta).to_bytes(8, "little") + blob[8:])
        with pytest.raises(UpdateFileError):
            read_safetensors(path)


def test_privbox_file_format_checks(tmp_path):
    path = write_privbox_file(tmp_path / "f.safetensors", {"a": np.ones(2, np.float32)}, "privbox.Test", {"k": [1]})
    tensors, header = read_privbox_file(path, "privbox.Test")
    assert header == {"k": [1]}
    with pytest.raises(UpdateFileError, match="expected privbox.Other"):
        read_privbox_file(path, "privbox.Other")
    for meta, message in [
        ({"format": "privbox.Test", "format_version": "1", "privbox": "[1, 2]"}, "JSON list, not an object"),
        ({"format": "privbox.Test", "format_version": "1", "privbox": "{oops"}, "not valid JSON"),
        ({"format": "privbox.Test", "format_version": "9", "privbox": "{}"}, "format version"),
    ]:
        save_file({"a": np.ones(2, np.float32)}, str(path), metadata=meta)
        with pytest.raises(UpdateFileError, match=message):
            read_privbox_file(path, "privbox.Test")
    with pytest.raises(UpdateFileError, match=r"\.safetensors"):
        write_privbox_file(tmp_path / "f.bin", {}, "privbox.Test", {})
    with pytest.raises(UpdateFileError, match="dtype complex"):
        write_privbox_file(tmp_path / "c.safetensors", {"c": np.ones(2, np.complex64)}, "privbox.Test", {})


def test_every_error_is_a_privbox_error_with_where_and_fix(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00[1,2]")
    with pytest.raises(PrivboxError) as info:
        read_safetensors(path)
    assert info.value.where == str(path) and info.value.fix
    assert str(info.value).startswith(f"{path}: ")


def test_parse_header_reports_data_start():
    blob = build({"a": np.zeros(3, np.uint8)}, pad_to=100)
    entries, metadata, start = parse_header(blob)
    assert start == 108 and entries["a"]["data_offsets"] == [0, 3] and metadata == {}
    assert split(blob)[1] == b"\x00\x00\x00"
    assert set(DTYPES) >= {"F32", "I64"}
    json.dumps(entries)
