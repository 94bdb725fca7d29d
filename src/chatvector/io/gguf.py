"""Write a GGUF file tensor by tensor, from any thread, in the order chunks are computed.

GGUF puts every tensor's name, shape, type and offset in the header, before the data. All of
that is known from the merge plan, so the header (metadata and tensor infos, written with the
``gguf`` package's writer) goes first, the data region is reserved in one ``posix_fallocate``
(a full disk fails there, before any computation) and each chunk the engine hands over is
moved to the row llama.cpp wants (Q/K of Llama, see :meth:`GGUFModel.row_permutation`) and
``pwrite``-n at its offset.

The one rounding is made where a safetensors output makes it: the engine casts its float32
result to f16 or bf16 itself (:func:`engine_dtype`), so an f16/bf16/f32 chunk arrives as the
file's bytes. Only q8_0 is packed here, from float32 chunks, by :func:`quantize_q8_0` (bit for
bit ``gguf.quants.quantize``, about three times faster). Packing and permuting use buffers
kept per worker thread, so nothing is allocated per chunk. Each tensor's checksum (xxh3-128) is
computed from the pieces as they are written (in order, the few that come early waiting for
their turn). It guards against corruption, not tampering (it is stored in the same file, where
whoever rewrites a tensor can rewrite its hash too), so a fast checksum serves where SHA-256
would cost more CPU than the rest of the write (1.2 GB/s against xxh3's 10 GB/s here);
:meth:`GGUFTensorWriter.finish` checks every tensor was written whole, records the hashes in a
metadata field laid out with placeholders up front, and fsyncs.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chatvector.dtypes import DTYPES
from chatvector.errors import InputError, MissingExtraError, OutputError
from chatvector.io.gguf_model import GGUFModel, load_gguf
from chatvector.io.output import WriteBehind, _disk_error

__all__ = [
    "GGUF_TYPES",
    "GGUFTensorWriter",
    "HASHES_KEY",
    "RECIPE_KEY",
    "engine_dtype",
    "gguf_tensor_type",
    "quantize_q8_0",
]

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0")
RECIPE_KEY = "chatvector.recipe"
HASHES_KEY = "chatvector.tensor_xxh3_128"
_FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0"}
_QTYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0"}
_PLACEHOLDER = "0" * 32  # a hex xxh3-128 digest


def gguf_tensor_type(gguf_type: str, shape: tuple[int, ...]) -> Any:
    """The GGML type one tensor gets: vectors (norms, biases) stay float32, as llama.cpp's
    converter keeps them; a q8_0 file stores rows that are no multiple of 32 in f16."""
    gguf = load_gguf()
    kinds = gguf.GGMLQuantizationType
    if len(shape) <= 1 or gguf_type == "f32":
        return kinds.F32
    if gguf_type == "q8_0" and shape[-1] % gguf.GGML_QUANT_SIZES[kinds.Q8_0][0] != 0:
        return kinds.F16
    return kinds[_QTYPES[gguf_type]]


def engine_dtype(gguf_type: str, shape: tuple[int, ...]) -> str:
    """The dtype (safetensors name) the engine hands over for one tensor: the GGML type itself
    where it is a float format (F32, F16, BF16: the engine's cast is the conversion), float32
    where the writer still has to pack blocks (q8_0)."""
    kinds = load_gguf().GGMLQuantizationType
    qtype = gguf_tensor_type(gguf_type, shape)
    return {kinds.F16: "F16", kinds.BF16: "BF16"}.get(qtype, "F32")


# The largest float32 below 0.5: trunc(v + copysign(_HALF, v)) is v rounded half away from zero
# (C's roundf, as ggml rounds q8_0) for every float32, exactly: adding 0.5 itself would round
# 0.49999997 up to 1.
_HALF = np.nextafter(np.float32(0.5), np.float32(0))


def quantize_q8_0(values: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> None:
    """Pack float32 ``values`` (a whole number of 32-element blocks) as GGML q8_0 into the uint8
    ``out`` (34 bytes a block: the f16 scale, then 32 int8), bit for bit as
    ``gguf.quants.quantize`` (and ggml's reference ``quantize_row_q8_0``) does it:
    ``d = max|x| / 127``, ``q = roundf(x * (1/d))``. ``scratch``: float32, at least twice as
    large as ``values``. Six passes of numpy instead of that function's dozen, and the block
    maxima as a tree of long strided passes (numpy reduces a 32-wide axis slowly). A block
    holding NaN or Inf sends the chunk through ``gguf.quants.quantize`` itself."""
    size = values.size
    blocks = values.reshape(-1, 32)
    packed = out.reshape(-1, 34)
    first, second = scratch[:size], scratch[size : 2 * size]
    level, free = np.abs(values, out=first), second
    while level.size > blocks.shape[0]:  # pairwise maxima: 32 -> 16 -> ... -> 1 per block
        half = level.size // 2
        level = np.maximum(level[0::2], level[1::2], out=free[:half])
        free = free[half:]
    scale = level / np.float32(127)
    if not np.isfinite(scale).all():
        gguf = load_gguf()
        packed[:] = gguf.quants.quantize(blocks, gguf.GGMLQuantizationType.Q8_0)
        return
    with np.errstate(divide="ignore"):
        inverse = np.where(scale == 0, np.float32(0), np.float32(1) / scale)
    scaled = np.multiply(blocks, inverse[:, None], out=first.reshape(-1, 32))
    np.add(scaled, np.copysign(_HALF, scaled, out=second.reshape(-1, 32)), out=scaled)
    np.copyto(packed[:, 2:].view(np.int8), scaled, casting="unsafe")  # truncates toward zero
    packed[:, :2] = scale.astype(np.float16).view(np.uint8).reshape(-1, 2)


def _new_checksum() -> Any:
    try:
        import xxhash
    except ImportError:
        raise MissingExtraError("GGUF output", "gguf", "xxhash") from None
    return xxhash.xxh3_128()


class _OrderedHash:
    """The xxh3-128 checksum of one tensor's bytes, fed in whatever order the worker threads write them:
    a piece that comes before its turn waits (copied) until the bytes before it have come. The
    engine hands chunks out in order, so only the few in flight ever wait."""

    def __init__(self) -> None:
        self.digest = _new_checksum()
        self.done = 0  # bytes hashed, from the tensor's start
        self.waiting: dict[int, bytes] = {}
        self.lock = threading.Lock()

    def feed(self, offset: int, data: memoryview) -> None:
        with self.lock:
            if offset != self.done:
                self.waiting[offset] = bytes(data)
                return
            self.digest.update(data)
            self.done += len(data)
            while self.done in self.waiting:
                piece = self.waiting.pop(self.done)
                self.digest.update(piece)
                self.done += len(piece)


@dataclass
class _Slot:
    gguf_name: str
    shape: tuple[int, ...]
    qtype: Any
    source: np.dtype  # what the engine hands over (see engine_dtype)
    block: int  # elements per block of its type
    block_bytes: int
    permute: Callable[[int], int] | None
    head_rows: int  # rows that a permutation keeps together (one head)
    offset: int = 0  # absolute byte offset in the file
    hashed: _OrderedHash = field(default_factory=_OrderedHash)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def row(self) -> int:
        return self.shape[-1] if len(self.shape) > 1 else 1

    @property
    def nbytes(self) -> int:
        return self.encoded_bytes(self.numel)

    def encoded_bytes(self, elements: int) -> int:
        return elements // self.block * self.block_bytes


class GGUFTensorWriter:
    """One GGUF file, laid out up front, filled with ``pwrite`` from any thread.

    Args:
        path: the file to create (inside a staging directory).
        model: architecture, names and tokenizer (see :func:`chatvector.io.gguf_model.describe_model`).
        entries: ``(transformers name, shape)`` of every tensor, in storage order.
        gguf_type: ``f32``, ``f16``, ``bf16`` or ``q8_0``.
        metadata: extra string fields (the recipe, the chatvector version).
        name: ``general.name`` (default: the model directory's name).

    :meth:`write` takes each tensor's bytes in its :func:`engine_dtype`.
    """

    def __init__(
        self,
        path: Path,
        model: GGUFModel,
        entries: list[tuple[str, tuple[int, ...]]],
        gguf_type: str,
        metadata: dict[str, str],
        name: str | None = None,
    ) -> None:
        if gguf_type not in GGUF_TYPES:
            raise InputError(f"--gguf-type {gguf_type}: choose one of {', '.join(GGUF_TYPES)}", option="--gguf-type")
        gguf = load_gguf()
        self.path = path
        self.slots: dict[str, _Slot] = {}
        for name, shape in entries:
            gguf_name = model.tensor_name(name)
            if gguf_name is None:
                raise InputError(
                    f"--format gguf: tensor {name} has no llama.cpp counterpart in {model.arch}; "
                    "exclude it or write safetensors",
                    tensor=name,
                )
            qtype = gguf_tensor_type(gguf_type, shape)
            block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
            permute = model.row_permutation(name)
            source = DTYPES[engine_dtype(gguf_type, shape)].numpy
            self.slots[name] = _Slot(gguf_name, shape, qtype, source, block, block_bytes, permute, model.head_dim)
        self._buffers = threading.local()  # each worker thread's packing buffers, reused
        self._fd = -1
        self._hashes_at = -1
        try:
            self._lay_out(model, gguf_type, metadata, name or model.directory.name)
        except BaseException:
            self.close()
            raise
        self._write_behind = WriteBehind()  # writeback starts as the data comes, not all at fsync

    def _hash_field(self, hashes: dict[str, str]) -> str:
        return json.dumps({s.gguf_name: hashes.get(s.gguf_name, _PLACEHOLDER) for s in self.slots.values()})

    def _lay_out(self, model: GGUFModel, gguf_type: str, metadata: dict[str, str], name: str) -> None:
        gguf = load_gguf()
        writer = gguf.GGUFWriter(None, model.arch)
        writer.add_name(name)
        model.write_metadata(writer, int(gguf.LlamaFileType[_FILE_TYPES[gguf_type]]))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for key, value in metadata.items():
            writer.add_string(key, value)
        placeholder = self._hash_field({})
        writer.add_string(HASHES_KEY, placeholder)
        for slot in self.slots.values():
            writer.add_tensor_info(slot.gguf_name, slot.shape, np.dtype(np.float32), slot.nbytes, raw_dtype=slot.qtype)
        try:
            writer.write_header_to_file(self.path)
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            assert writer.fout is not None
            handle = writer.fout[0]
            writer.write_padding(handle, handle.tell())
            data_start = handle.tell()
            writer.close()
        except OSError as error:
            writer.close()
            raise _disk_error(error, self.path) from None
        alignment = writer.data_alignment
        offset = data_start
        for slot in self.slots.values():
            slot.offset = offset
            offset += -(-slot.nbytes // alignment) * alignment
        self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        header = os.pread(self._fd, data_start, 0)
        encoded = placeholder.encode("utf-8")
        if header.count(encoded) != 1:
            raise OutputError(f"internal: cannot find the hash field in {self.path}")
        self._hashes_at = header.index(encoded)
        try:
            os.posix_fallocate(self._fd, 0, offset)  # a full disk fails here, before any arithmetic
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise _disk_error(error, self.path) from None
            # A file system that cannot reserve: the pwrites extend the file, and a full disk
            # surfaces there, mid-write, as the same OutputError.
        self.data_end = offset

    def write(self, name: str, byte_offset: int, data: memoryview) -> None:
        """Write ``data`` of tensor ``name`` (in its :func:`engine_dtype`) starting at byte
        ``byte_offset`` of its transformers layout (packed and moved to llama.cpp's layout here)."""
        slot = self.slots[name]
        values = np.frombuffer(data, dtype=slot.source)
        start = byte_offset // slot.source.itemsize
        if start % slot.block or values.size % slot.block:
            raise OutputError(f"internal: chunk of {slot.gguf_name} not aligned to its {slot.block}-element blocks")
        payload = self._encode(slot, values)
        if slot.permute is None:
            self._put(slot, start, payload)
            return
        row, group = slot.row, slot.row * slot.head_rows
        if start % group == 0 and values.size % group == 0:
            # whole heads: permute their rows in memory and write them at once
            first = start // row
            rows = payload.reshape(-1, slot.encoded_bytes(row))
            moved = self._buffer("moved", payload.size).reshape(rows.shape)
            targets = np.fromiter((slot.permute(first + r) - first for r in range(rows.shape[0])), np.int64)
            moved[targets] = rows
            self._put(slot, start, moved.reshape(-1))
            return
        done = 0  # a chunk that cuts heads (or rows): piece by piece, each at its row's place
        while done < values.size:
            line, column = divmod(start + done, row)
            count = min(row - column, values.size - done)
            at = slot.encoded_bytes(done)
            self._put(slot, slot.permute(line) * row + column, payload[at : at + slot.encoded_bytes(count)])
            done += count

    def source_dtype(self, name: str) -> np.dtype:
        """The dtype :meth:`write` takes for tensor ``name`` (see :func:`engine_dtype`)."""
        return self.slots[name].source

    def _encode(self, slot: _Slot, values: np.ndarray) -> np.ndarray:
        """The chunk's bytes in the tensor's GGML type: the engine's own bytes where that is a
        float format, packed q8_0 blocks otherwise."""
        if slot.source != np.float32 or slot.qtype == load_gguf().GGMLQuantizationType.F32:
            return values.view(np.uint8)
        packed = self._buffer("packed", slot.encoded_bytes(values.size))
        scratch = self._buffer("scratch", values.size * 8).view(np.float32)
        quantize_q8_0(values, packed, scratch)
        return packed

    def _buffer(self, role: str, nbytes: int) -> np.ndarray:
        """This thread's uint8 buffer for ``role``, at least ``nbytes`` long (grown, never shrunk)."""
        buffers: dict[str, np.ndarray] = self._buffers.__dict__.setdefault("by_role", {})
        if role not in buffers or buffers[role].size < nbytes:
            buffers[role] = np.empty(nbytes, dtype=np.uint8)
        return buffers[role][:nbytes]

    def _put(self, slot: _Slot, start: int, payload: np.ndarray) -> None:
        """Write encoded bytes whose first element is element ``start`` of the GGUF tensor."""
        at = slot.offset + slot.encoded_bytes(start)
        if at + payload.size > slot.offset + slot.nbytes:
            raise OutputError(f"internal: write past the end of tensor {slot.gguf_name}")
        self._pwrite(payload.data, at)
        slot.hashed.feed(at - slot.offset, payload.data)

    def _pwrite(self, payload: memoryview | bytes, at: int) -> None:
        view = memoryview(payload).cast("B")
        done = 0
        while done < len(view):
            try:
                done += os.pwrite(self._fd, view[done:], at + done)
            except OSError as error:
                raise _disk_error(error, self.path) from None
        self._write_behind.wrote(self._fd, len(view))

    def finish(self) -> dict[str, str]:
        """Check every tensor was written whole, record the hashes of their bytes, fsync, close.

        Returns: the xxh3-128 checksum (hex) of each tensor's GGUF bytes, by GGUF name.
        """
        self._write_behind.stop()
        if self._write_behind.error is not None:
            raise _disk_error(self._write_behind.error, self.path)
        try:  # the padding after the last tensor, where the pwrites did not reach it
            if os.fstat(self._fd).st_size < self.data_end:
                os.ftruncate(self._fd, self.data_end)
        except OSError as error:
            raise _disk_error(error, self.path) from None
        hashes: dict[str, str] = {}
        for slot in self.slots.values():
            if slot.hashed.done != slot.nbytes or slot.hashed.waiting:
                raise OutputError(
                    f"internal: tensor {slot.gguf_name} of {self.path} was not written whole; nothing was kept"
                )
            hashes[slot.gguf_name] = slot.hashed.digest.hexdigest()
        self._pwrite(self._hash_field(hashes).encode("utf-8"), self._hashes_at)
        try:
            os.fsync(self._fd)
        except OSError as error:
            raise _disk_error(error, self.path) from None
        self.close()
        return hashes

    def close(self) -> None:
        if hasattr(self, "_write_behind"):
            self._write_behind.stop()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
