"""Hand-built safetensors bytes for the tests, written from the published layout (8-byte
little-endian header length, JSON header, data section), independently of privbox's reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

_NAMES = {"<f8": "F64", "<f4": "F32", "<f2": "F16", "<i8": "I64", "<i4": "I32", "<i2": "I16", "|i1": "I8",
          "|u1": "U8", "|b1": "BOOL"}


def build(tensors: dict[str, np.ndarray], metadata: Optional[dict[str, str]] = None, pad_to: Optional[int] = None,
          header_override: Optional[dict[str, Any]] = None) -> bytes:
    """Safetensors bytes of ``tensors``; ``pad_to`` pads the JSON header with spaces to that length."""
    header: dict[str, Any] = {}
    data = b""
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _NAMES[array.dtype.newbyteorder("<").str], "shape": list(array.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    if header_override is not None:
        header = header_override
    text = json.dumps(header).encode()
    if pad_to is not None:
        assert pad_to >= len(text), (pad_to, len(text))
        text += b" " * (pad_to - len(text))
    return len(text).to_bytes(8, "little") + text + data


def split(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """(header, data section) of safetensors bytes."""
    length = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + length]), blob[8 + length:]


def repad_low_byte(path: Path, low_byte: int = 0x80) -> int:
    """Rewrite the file at ``path`` with its header padded (with spaces, as the format allows) so
    that the first byte of the header length is ``low_byte``; returns the new header length."""
    blob = path.read_bytes()
    length = int.from_bytes(blob[:8], "little")
    header = blob[8:8 + length].rstrip(b" ")
    target = len(header) + ((low_byte - len(header)) % 256)
    new = target.to_bytes(8, "little") + header + b" " * (target - len(header)) + blob[8 + length:]
    path.write_bytes(new)
    assert new[0] == low_byte
    return target


def tamper(src: Path, dst: Path, header_edit=None, tensor_edit=None) -> Path:
    """Copy the privbox file ``src`` to ``dst`` through the safetensors library, letting
    ``header_edit(header)`` change the privbox JSON header (return the new one) and
    ``tensor_edit(tensors)`` change the tensors in place."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(str(src), framework="np") as handle:
        metadata = dict(handle.metadata())
    tensors = {k: v.copy() for k, v in load_file(str(src)).items()}
    if header_edit is not None:
        header = json.loads(metadata["privbox"])
        metadata["privbox"] = json.dumps(header_edit(header))
    if tensor_edit is not None:
        tensor_edit(tensors)
    save_file(tensors, str(dst), metadata=metadata)
    return dst
