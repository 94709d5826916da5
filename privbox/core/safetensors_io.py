"""The one reader and writer of privbox's safetensors files (updates, secrets, reconstructions,
attack checkpoints).

The reader parses the file itself, strictly, before it allocates anything: a file is accepted
only when it is a regular file (never a FIFO, folder or device, which would block or mislead),
its 8-byte little-endian header length is within :data:`Limits.max_header_bytes` and the file,
the header is one JSON object (``{"name": {"dtype", "shape", "data_offsets"}, "__metadata__":
{str: str}}``), every dtype is in :data:`DTYPES`, every declared shape matches its byte range,
the byte ranges tile the data section exactly, and the number of tensors and elements are
within the limits. Whether a file "looks like a pickle or a zip" (PyTorch checkpoint) is decided
only *after* this parse fails, so a valid file whose header length happens to start with byte
``0x80`` (the pickle protocol marker) is read normally. Nothing is ever unpickled.

The format is the published safetensors layout (https://github.com/huggingface/safetensors);
files are written with ``safetensors.numpy.save_file`` through :func:`~privbox.core.atomic.atomic_output`.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from .atomic import atomic_output
from .errors import UpdateFileError

__all__ = [
    "DTYPES",
    "Limits",
    "DEFAULT_LIMITS",
    "FORMAT_VERSION",
    "check_regular_file",
    "parse_header",
    "read_safetensors",
    "write_safetensors",
    "read_privbox_file",
    "write_privbox_file",
]

PathLike = Union[str, os.PathLike]
ArrayDict = dict[str, np.ndarray]

FORMAT_VERSION = "1"

#: safetensors dtype name -> little-endian NumPy dtype (the whitelist; BF16/F8 have no NumPy type).
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAME_OF = {dt: name for name, dt in DTYPES.items()}

_FIX = "Re-create it with privbox (ClientUpdate.save, Secret.save, privbox capture/attack)"
_PICKLE_FIX = (
    "privbox never unpickles files, because unpickling runs arbitrary code; re-export the tensors "
    "with safetensors (e.g. ClientUpdate.save)"
)


@dataclass(frozen=True)
class Limits:
    """Bounds checked before anything is allocated.

    Attributes:
        max_header_bytes: largest JSON header (safetensors itself stops at 100 MB).
        max_tensors: most tensors in one file.
        max_rank: most dimensions of one tensor.
        max_elements: most elements of one tensor (and of all tensors together).
        max_file_bytes: largest file read (tensors are read into memory).
    """

    max_header_bytes: int = 16 << 20
    max_tensors: int = 100_000
    max_rank: int = 8
    max_elements: int = 1 << 31
    max_file_bytes: int = 16 << 30


DEFAULT_LIMITS = Limits()


# ------------------------------------------------------------------------------- files
def check_regular_file(path: PathLike, what: str = "file") -> os.stat_result:
    """``os.stat`` ``path`` and raise unless it is an existing regular file.

    A FIFO would block ``open`` forever, a folder or device cannot be a tensor file; this check
    runs before any ``open``. Raises :class:`FileNotFoundError` (a ``PrivboxError``-free
    ``OSError`` the CLI also reports in one line) for a missing path and
    :class:`UpdateFileError` for anything that is not a regular file.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file ({what} expected)") from None
    except OSError as exc:
        raise UpdateFileError(f"cannot read this {what} ({exc.strerror})", where=str(path),
                              fix="check the path and its permissions") from None
    if not stat.S_ISREG(info.st_mode):
        kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode)
                else "a socket" if stat.S_ISSOCK(info.st_mode) else "a device" if stat.S_ISCHR(info.st_mode)
                or stat.S_ISBLK(info.st_mode) else "not a regular file")
        raise UpdateFileError(f"this {what} path is {kind}, not a regular file", where=str(path),
                              fix="pass the path of a .safetensors file written by privbox")
    return info


def _read_all(path: Path, limits: Limits) -> bytes:
    info = check_regular_file(path, "tensor file")
    if info.st_size > limits.max_file_bytes:
        raise UpdateFileError(f"the file has {info.st_size} bytes, more than the limit of {limits.max_file_bytes}",
                              where=str(path), fix="privbox files of one client update are far smaller; check the path")
    # O_NONBLOCK: if the path was swapped for a FIFO after the stat, open does not block.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise UpdateFileError(f"cannot open the file ({exc.strerror})", where=str(path),
                              fix="check its permissions") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UpdateFileError("the path is no longer a regular file", where=str(path),
                                  fix="pass the path of a .safetensors file written by privbox")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limits.max_file_bytes + 1)
    finally:
        os.close(fd)
    return data


# ------------------------------------------------------------------------------ parsing
def _looks_like_pickle_or_zip(head: bytes) -> Optional[str]:
    """What a non-safetensors file looks like (asked only after the safetensors parse failed)."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "a zip archive (a pickle or PyTorch checkpoint?)"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle data (a pickle or PyTorch checkpoint?)"
    if head[:3] in (b"(dp", b"(lp", b"}q\x00", b"]q\x00") or head.startswith((b"cnumpy", b"ccopy_reg", b"ccollections")):
        return "pickle data (a pickle or PyTorch checkpoint?)"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy file"
    return None


def _bad(path: str, what: str) -> UpdateFileError:
    return UpdateFileError(f"not a valid safetensors file: {what}", where=path, fix=_FIX)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_header(data: bytes, where: str = "<bytes>", limits: Limits = DEFAULT_LIMITS) -> tuple[dict[str, dict[str, Any]], dict[str, str], int]:
    """Parse and check the header of safetensors bytes ``data``.

    Returns ``(entries, metadata, data_start)``: per tensor name ``{"dtype", "shape",
    "data_offsets"}`` in file order, the ``__metadata__`` strings, and the offset where the data
    section begins. Raises :class:`UpdateFileError` for anything malformed, naming a pickle or
    zip file as such (decided only after the safetensors parse failed).
    """
    try:
        return _parse_header(data, where, limits)
    except UpdateFileError:
        kind = _looks_like_pickle_or_zip(data[:16])
        if kind:
            raise UpdateFileError(f"the file is {kind}, not safetensors", where=where, fix=_PICKLE_FIX) from None
        raise


def _parse_header(data: bytes, where: str, limits: Limits) -> tuple[dict[str, dict[str, Any]], dict[str, str], int]:
    size = len(data)
    if size < 8:
        raise _bad(where, f"it has {size} bytes, fewer than the 8-byte header length")
    header_len = int.from_bytes(data[:8], "little")
    if header_len < 2:
        raise _bad(where, f"its header length is {header_len}")
    if header_len > limits.max_header_bytes:
        raise _bad(where, f"its header length {header_len} exceeds the limit of {limits.max_header_bytes} bytes")
    if 8 + header_len > size:
        raise _bad(where, f"it is truncated: the header says {header_len} bytes but the file has {size - 8} after the length")
    raw = data[8:8 + header_len]
    if raw[:1] != b"{":
        raise _bad(where, "its header does not start with '{'")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(where, "its header is not UTF-8") from None
    try:
        header = json.loads(text.rstrip(" "), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise _bad(where, f"its header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _bad(where, "its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise _bad(where, "__metadata__ must be a JSON object of strings")
    if len(header) > limits.max_tensors:
        raise _bad(where, f"it declares {len(header)} tensors, more than the limit of {limits.max_tensors}")
    data_start = 8 + header_len
    data_len = size - data_start
    entries: dict[str, dict[str, Any]] = {}
    total = 0
    for name, entry in header.items():
        if not name:
            raise _bad(where, "a tensor has an empty name")
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _bad(where, f"tensor {name!r} must have exactly the keys dtype, shape, data_offsets")
        dtype = entry["dtype"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise _bad(where, f"tensor {name!r} has dtype {dtype!r}; privbox reads {sorted(DTYPES)}")
        shape = entry["shape"]
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise _bad(where, f"tensor {name!r} has shape {shape!r}; a shape is a list of non-negative integers")
        if len(shape) > limits.max_rank:
            raise _bad(where, f"tensor {name!r} has {len(shape)} dimensions, more than the limit of {limits.max_rank}")
        count = 1
        for dim in shape:
            count *= dim
        if count > limits.max_elements:
            raise _bad(where, f"tensor {name!r} declares {count} elements, more than the limit of {limits.max_elements}")
        total += count
        if total > limits.max_elements:
            raise _bad(where, f"the tensors declare {total}+ elements, more than the limit of {limits.max_elements}")
        offsets = entry["data_offsets"]
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise _bad(where, f"tensor {name!r} has data_offsets {offsets!r}; they are [begin, end] with 0 <= begin <= end")
        if offsets[1] - offsets[0] != count * DTYPES[dtype].itemsize:
            raise _bad(where, f"tensor {name!r}: shape {shape} of {dtype} needs {count * DTYPES[dtype].itemsize} bytes "
                              f"but its data_offsets span {offsets[1] - offsets[0]}")
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
    # The byte ranges must tile the data section exactly: no gaps, no overlaps, nothing after.
    position = 0
    for name, entry in sorted(entries.items(), key=lambda item: tuple(item[1]["data_offsets"])):
        begin, end = entry["data_offsets"]
        if begin != position:
            raise _bad(where, f"tensor {name!r} starts at byte {begin} of the data but the previous tensor ends at {position}")
        position = end
    if position != data_len:
        raise _bad(where, f"the tensors cover {position} bytes but the data section has {data_len}"
                          + (" (the file is truncated)" if position > data_len else ""))
    return entries, metadata, data_start


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def read_safetensors(path: PathLike, limits: Limits = DEFAULT_LIMITS, allow_nonfinite: bool = False) -> tuple[ArrayDict, dict[str, str]]:
    """Read every tensor and the ``__metadata__`` of the safetensors file ``path`` (strictly).

    Float tensors holding NaN or Inf are refused unless ``allow_nonfinite``.
    """
    where = str(path)
    data = _read_all(Path(path), limits)
    entries, metadata, start = parse_header(data, where, limits)
    tensors: ArrayDict = {}
    for name, entry in entries.items():
        begin, end = entry["data_offsets"]
        dtype = DTYPES[entry["dtype"]]
        array = np.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=start + begin)
        array = array.reshape(entry["shape"]).astype(dtype.newbyteorder("="), copy=True)
        if entry["dtype"] == "BOOL" and array.size and np.frombuffer(data, np.uint8, end - begin, start + begin).max() > 1:
            raise _bad(where, f"tensor {name!r} is BOOL but holds bytes other than 0 and 1")
        if not allow_nonfinite and array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            bad = int(array.size - np.isfinite(array).sum())
            raise UpdateFileError(f"tensor {name!r} has {bad} NaN/Inf values", where=where,
                                  fix="the file is corrupt or was produced by a diverged run; re-create it")
        tensors[name] = array
    return tensors, metadata


def write_safetensors(path: PathLike, tensors: Mapping[str, Any], metadata: Optional[Mapping[str, str]] = None,
                      allow_nonfinite: bool = False) -> Path:
    """Write ``tensors`` (arrays of a :data:`DTYPES` type) and string ``metadata`` atomically."""
    from safetensors.numpy import save_file

    path = Path(path)
    checked: ArrayDict = {}
    for key, value in tensors.items():
        array = np.ascontiguousarray(np.asarray(value))
        if array.dtype.newbyteorder("<") not in _NAME_OF:
            raise UpdateFileError(f"tensor {key!r} has dtype {array.dtype}, which privbox files do not store",
                                  where=str(path), fix=f"convert it to one of {sorted(DTYPES)}")
        array = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
        if not allow_nonfinite and array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise UpdateFileError(f"refusing to save {key!r}: it contains NaN or Inf", where=str(path),
                                  fix="find where the values diverged (lower the lr, check the inputs)")
        checked[key] = array
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("safetensors metadata must map strings to strings")
    with atomic_output(path) as tmp:
        save_file(checked, tmp, metadata=dict(metadata) if metadata is not None else None)
    return path


# --------------------------------------------------------------------- privbox formats
def write_privbox_file(path: PathLike, tensors: Mapping[str, Any], fmt: str, header: Mapping[str, Any]) -> Path:
    """Write a privbox file of format ``fmt`` (e.g. ``privbox.ClientUpdate``) with a JSON ``header``."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise UpdateFileError("privbox files end in .safetensors", where=str(path),
                              fix=f"choose a path like {path.with_suffix('.safetensors')}")
    metadata = {"format": fmt, "format_version": FORMAT_VERSION, "privbox": json.dumps(dict(header))}
    return write_safetensors(path, tensors, metadata)


def read_privbox_file(path: PathLike, fmt: str, limits: Limits = DEFAULT_LIMITS) -> tuple[ArrayDict, dict[str, Any]]:
    """Read a privbox file, check its format is ``fmt`` and return ``(tensors, header)``.

    ``header`` is the JSON object stored under the ``privbox`` metadata key.
    """
    where = str(path)
    tensors, metadata = read_safetensors(path, limits)
    found = metadata.get("format")
    if found != fmt:
        raise UpdateFileError(f"this is a {found or 'foreign safetensors'} file, expected {fmt}", where=where,
                              fix="pass the file of the right kind (update, secret, reconstruction or checkpoint)")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise UpdateFileError(f"unsupported format version {metadata.get('format_version')!r}", where=where,
                              fix=f"this privbox reads version {FORMAT_VERSION}; re-create the file")
    try:
        header = json.loads(metadata.get("privbox", "{}"))
    except (ValueError, RecursionError) as exc:
        raise UpdateFileError(f"its privbox metadata is not valid JSON ({exc})", where=where, fix=_FIX) from None
    if not isinstance(header, dict):
        raise UpdateFileError(f"its privbox metadata is a JSON {type(header).__name__}, not an object",
                              where=where, fix=_FIX)
    return tensors, header

