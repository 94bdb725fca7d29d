"""Parse and write safetensors headers without loading tensors, defensively.

A safetensors file is an 8-byte little-endian header length, a JSON header mapping tensor names
to ``{"dtype", "shape", "data_offsets"}``, then the raw tensor bytes. Checkpoints come from
strangers, so the parser trusts nothing: it bounds the header length by the file size, refuses
duplicate names, non-UTF-8 or non-JSON bytes, numbers of more digits than any offset has, unknown
dtypes, byte spans that do not match the shape, and a data area that the tensors do not tile
exactly (spans that overlap, leave a gap, run past the end of the file or stop before it: bytes
nobody accounts for are what a truncated download, a wrong concatenation or a hidden payload leave).
The reference implementation refuses the same files.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatvector.dtypes import DTYPES, FLOAT_DTYPES
from chatvector.errors import CheckpointError

# The reference implementation refuses headers above 100 MB; so do we, before allocating.
MAX_HEADER_BYTES = 100_000_000
HEADER_PREFIX_BYTES = 8
# No real tensor has a dimension near 2^40 or 2^62 elements; bounding them keeps every product
# within int64, which numpy and the engine's offsets use (a [0, 2^70] shape holds no bytes and would
# otherwise pass the span check).
MAX_DIMENSION = 2**40
MAX_ELEMENTS = 2**62
# Offsets and dimensions fit in 64 bits (20 digits). The parser bounds digits well above that, so a
# hostile 5,000-digit number never reaches int() (Python refuses above 4,300 with a ValueError),
# while a merely too-large dimension such as 2^70 still reaches the shape checks, which name the tensor.
MAX_NUMBER_DIGITS = 40


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives on disk: enough to read any element range of it later."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    begin: int  # absolute byte offset of the first element in `file`
    end: int  # absolute byte offset one past the last element

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype].itemsize

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed header of one safetensors file."""

    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    header_bytes: bytes


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise CheckpointError(f"duplicate tensor name {key!r} in safetensors header")
        seen[key] = value
    return seen


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise CheckpointError(
            f"a number of {len(text.lstrip('-'))} digits in the safetensors header (offsets and shapes need "
            f"at most 20; more than {MAX_NUMBER_DIGITS} are refused unread)"
        )
    return int(text)


def _no_float(text: str) -> float:
    # Offsets, shapes and metadata values hold no fractions, NaN or Infinity.
    raise CheckpointError(f"a non-integer number {text[:40]!r} in the safetensors header")


def _decode_header(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        header = json.loads(
            text,
            object_pairs_hook=_reject_duplicates,
            parse_int=_bounded_int,
            parse_float=_no_float,
            parse_constant=_no_float,
        )
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"{path}: the safetensors header is not valid UTF-8 JSON ({error}); "
            "the file is corrupt or not a safetensors file"
        ) from None
    except RecursionError:  # hostile nesting depth; json recurses per level
        raise CheckpointError(
            f"{path}: the safetensors header is nested too deeply; the file is hostile or not a safetensors file"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object")
    return header


def _parse_entry(path: Path, name: str, entry: Any, data_start: int, data_size: int) -> TensorInfo:
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise CheckpointError(f"{where} has a header entry that is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise CheckpointError(f"{where} has unknown dtype {str(dtype)[:40]!r}")
    if (
        not isinstance(shape, list)
        or len(shape) > 16
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIMENSION for d in shape)
    ):
        raise CheckpointError(f"{where} has an invalid shape {str(shape)[:200]}")
    if math.prod(d for d in shape if d) > MAX_ELEMENTS:
        raise CheckpointError(f"{where} has a shape {tuple(shape)} of more elements than any real tensor")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise CheckpointError(f"{where} has invalid data_offsets {str(offsets)[:200]}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise CheckpointError(
            f"{where} spans bytes [{begin}, {end}) but the file holds {data_size} data bytes; "
            "the file is truncated or corrupt (download it again)"
        )
    expected = math.prod(shape) * DTYPES[dtype].itemsize
    if end - begin != expected:
        raise CheckpointError(
            f"{where}: dtype {dtype} and shape {tuple(shape)} need {expected} bytes but its span holds {end - begin}"
        )
    return TensorInfo(name, dtype, tuple(shape), path, data_start + begin, data_start + end)


def _check_tiling(path: Path, tensors: dict[str, TensorInfo], data_start: int, file_size: int) -> None:
    """The tensors' spans cover the data area exactly: no overlap, no gap, nothing after the last."""
    spans = sorted((t.begin, t.end, t.name) for t in tensors.values() if t.end > t.begin)
    reached, last = data_start, None
    for begin, end, name in spans:
        if begin < reached:
            raise CheckpointError(f"{path}: tensors {last!r} and {name!r} overlap on disk")
        if begin > reached:
            raise CheckpointError(
                f"{path}: {begin - reached} bytes before tensor {name!r} belong to no tensor; "
                "the file is corrupt or was altered (download it again)"
            )
        reached, last = end, name
    if reached != file_size:
        raise CheckpointError(
            f"{path}: {file_size - reached} bytes after the last tensor belong to no tensor (the file is "
            f"{file_size} bytes, its header accounts for {reached}); the file is corrupt or was altered "
            "(download it again)"
        )


def read_header(path: Path) -> SafetensorsHeader:
    """Parse the header of the safetensors file at ``path``, validating every entry.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt or hostile; the message names
            the file and, where there is one, the tensor.
    """
    path = Path(path)
    try:
        # O_NONBLOCK: a FIFO named like a weights file must not block the run forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise CheckpointError(f"{path}: not a regular file (a FIFO, device or directory); refusing to read it")
            file_size = info.st_size
            prefix = handle.read(HEADER_PREFIX_BYTES)
            if len(prefix) < HEADER_PREFIX_BYTES:
                raise CheckpointError(f"{path}: file of {file_size} bytes is too short to be safetensors")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > min(MAX_HEADER_BYTES, file_size - HEADER_PREFIX_BYTES):
                raise CheckpointError(
                    f"{path}: header claims {header_len} bytes but the file has {file_size}; "
                    "the file is truncated, corrupt or not safetensors"
                )
            raw = handle.read(header_len)
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error.strerror or error}") from None
    header = _decode_header(path, raw)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CheckpointError(f"{path}: __metadata__ must map strings to strings")
    data_start = HEADER_PREFIX_BYTES + header_len
    data_size = file_size - data_start
    tensors = {name: _parse_entry(path, name, entry, data_start, data_size) for name, entry in sorted(header.items())}
    _check_tiling(path, tensors, data_start, file_size)
    return SafetensorsHeader(path, tensors, metadata, raw)


def build_header(
    entries: list[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str]
) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """Lay out tensors back to back and return the encoded header and each tensor's data span.

    Args:
        entries: ``(name, dtype, shape)`` in the order the tensors are stored.
        metadata: string metadata stored under ``__metadata__``.

    Returns:
        The bytes to write at the start of the file (length prefix, JSON padded with spaces so
        that tensor data starts 8-byte aligned) and ``{name: (begin, end)}`` relative to the data.
    """
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    spans: dict[str, tuple[int, int]] = {}
    offset = 0
    for name, dtype, shape in entries:
        size = math.prod(shape) * DTYPES[dtype].itemsize
        spans[name] = (offset, offset + size)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    encoded += b" " * (-(len(encoded) + HEADER_PREFIX_BYTES) % 8)
    return struct.pack("<Q", len(encoded)) + encoded, spans
