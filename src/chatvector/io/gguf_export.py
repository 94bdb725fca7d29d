"""``chatvector export gguf MODEL -o FILE``: an existing model directory as one GGUF file.

The same writer as ``merge --format gguf`` (:class:`~chatvector.io.gguf.GGUFTensorWriter`),
fed tensor by tensor in chunks read with ``pread``: memory stays at one chunk whatever the
model size, and the file is staged and published like every other output.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chatvector import interrupts
from chatvector.casts import Narrowing
from chatvector.dtypes import DTYPES
from chatvector.errors import InputError
from chatvector.io.checkpoint import Checkpoint
from chatvector.io.gguf import GGUFTensorWriter
from chatvector.io.gguf_model import describe_model
from chatvector.io.hub import resolve_model
from chatvector.io.output import StagedFile, check_output_file

__all__ = ["ExportReport", "export_gguf"]

log = logging.getLogger(__name__)

CHUNK_ELEMENTS = 1 << 20  # a multiple of every GGML block size


@dataclass
class ExportReport:
    """What an export wrote."""

    out: Path
    tensors: int
    bytes_written: int

    def summary(self) -> str:
        return f"Wrote GGUF to {self.out}: {self.tensors} tensors, {self.bytes_written / 1e6:.2f} MB"


def export_gguf(
    model: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    gguf_type: str = "f16",
    revision: str | None = None,
    force: bool = False,
    version: str = "",
) -> ExportReport:
    """Write ``model`` (a directory or hub id) as the GGUF file ``out``.

    Raises:
        InputError: an unsupported architecture or tokenizer (before any tensor is read).
        OutputError: OUT exists (without ``force``), the disk is full; nothing is kept.
    """
    out_path = Path(out)
    check_output_file(out_path, [], force)
    ref = resolve_model(model, "model", revision=revision)
    check_output_file(out_path, [ref.path], force)
    with Checkpoint.open(ref) as checkpoint:
        described = describe_model(ref.path, checkpoint.config)
        entries = [(name, tuple(info.shape)) for name, info in checkpoint.tensors.items()]
        for name, info in checkpoint.tensors.items():
            if not DTYPES[info.dtype].is_float:
                raise InputError(f"{ref.path}: tensor {name} holds {info.dtype}, not floats", tensor=name)
        metadata = {"chatvector.version": version, "chatvector.source": str(model)}
        with StagedFile(out_path, "model.gguf") as staging:
            writer = GGUFTensorWriter(staging.file, described, entries, gguf_type, metadata)
            try:
                _copy(checkpoint, writer)
                writer.finish()
            finally:
                writer.close()
            written = staging.file.stat().st_size
            interrupts.check()
            staging.commit(force)
    log.info("wrote %s", out_path)
    return ExportReport(out_path, len(entries), written)


def _copy(checkpoint: Checkpoint, writer: GGUFTensorWriter) -> None:
    """Every tensor, chunk by chunk, in the dtype the writer takes: its own bytes when it is
    stored in that dtype, else widened to float32 and (for f16/bf16) rounded once to nearest
    even, with the merge's cast (:mod:`chatvector.casts`)."""
    halves = [info for name, info in checkpoint.tensors.items() if writer.source_dtype(name) == np.float16]
    narrowing = Narrowing.for_run(sum(int(np.prod(info.shape, dtype=np.int64)) for info in halves))
    raw = np.empty(CHUNK_ELEMENTS * 8, dtype=np.uint8)
    wide = np.empty(CHUNK_ELEMENTS, dtype=np.float32)
    narrow = np.empty(CHUNK_ELEMENTS * 2, dtype=np.uint8)
    for name, info in checkpoint.tensors.items():
        numel = int(np.prod(info.shape, dtype=np.int64)) if info.shape else 1
        row = info.shape[-1] if len(info.shape) > 1 else 1
        step = max(CHUNK_ELEMENTS // row, 1) * row  # whole rows: a permuted tensor moves rows
        if step > wide.size:
            raw = np.empty(step * 8, dtype=np.uint8)
            wide = np.empty(step, dtype=np.float32)
            narrow = np.empty(step * 2, dtype=np.uint8)
        wanted = writer.source_dtype(name)
        for start in range(0, numel, step):
            interrupts.check()
            count = min(step, numel - start)
            checkpoint.read_into(info, start, count, raw)
            values = raw[: count * info.itemsize].view(DTYPES[info.dtype].numpy)
            if values.dtype != wanted:
                np.copyto(wide[:count], values, casting="unsafe")
                values = wide[:count]
            if values.dtype != wanted:
                values = narrow[: count * wanted.itemsize].view(wanted)
                narrowing.cast(wide[:count], values)
            writer.write(name, start * wanted.itemsize, values.view(np.uint8).data)
