"""The streaming engine: execute a :class:`~chatvector.merge.plan.Plan` chunk by chunk.

Memory is bounded by a few fixed buffers per worker thread, whatever the model size: each
tensor is cut into chunks of about a million elements (an embedding matrix into blocks of rows),
each chunk's operands are read with ``pread`` into buffers reused for the whole run (fresh
allocations page-fault at ~1.4 GB/s here, slower than the disk), combined in float32 in blocks
small enough to stay in the CPU cache, cast once (:mod:`chatvector.casts`) and ``pwrite``-n at
its precomputed offset.
Two worker threads overlap one chunk's I/O with another's arithmetic; numpy and the I/O calls
release the GIL.

With a merge method other than plain task arithmetic (:mod:`chatvector.merge.methods`), each
term's delta of a chunk is formed in its own float32 buffer first and the method combines them.
A method with a pre-pass (TIES's magnitude cut) gets it once per tensor and term before the
merge: the delta is streamed into one float32 buffer as large as the largest tensor (one per
worker). A method that works on whole rows gets chunks of whole rows.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chatvector import interrupts
from chatvector.casts import Narrowing
from chatvector.dtypes import DTYPES
from chatvector.errors import NonFiniteError
from chatvector.io.checkpoint import Checkpoint
from chatvector.io.output import TensorSink
from chatvector.io.safetensors_header import TensorInfo
from chatvector.merge.arithmetic import accumulate_term, all_finite, start_accumulator
from chatvector.merge.methods import ChunkTerms, MergeMethod, Workspace
from chatvector.merge.plan import Plan, TensorWork, TermWork

log = logging.getLogger(__name__)

FLOAT32_MAX = float(np.finfo(np.float32).max)
CHUNK_ELEMENTS = 1 << 20  # per read and write: few system calls, little Python per byte
# per arithmetic step: 512 KB float32 blocks stay in the 2 MB L2 cache of each core here; about
# 20% faster with two workers than whole 1M-element chunks, and smaller blocks gain nothing
BLOCK_ELEMENTS = 1 << 17
# Input bytes the kernel is asked to read ahead of the workers (POSIX_FADV_WILLNEED). Reading
# three files chunk by chunk otherwise leaves the disk little to do at a time: with the inputs
# not in the page cache, a 1.1B merge here took 5.7-6.6 s without it and 4.6-5.1 s with 256 MB
# (four runs each); 512 MB was no better. It costs page cache only, not RSS.
PREFETCH_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Chunk:
    work: TensorWork
    start: int  # first element
    count: int  # number of elements
    rows: tuple[int, int] | None  # row block, when some term is aligned row by row


@dataclass
class EngineStats:
    """What one run moved and found."""

    bytes_read: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    nonfinite_tensors: list[str] = field(default_factory=list)


def plan_chunks(work: TensorWork, chunk_elements: int = CHUNK_ELEMENTS, whole_rows: bool = False) -> Iterator[Chunk]:
    """Cut one tensor's work into chunks (row blocks when rows are aligned or asked for; a
    tensor of fewer than two dimensions is one row when ``whole_rows``)."""
    total = work.numel
    if total == 0:
        return
    if whole_rows and len(work.shape) < 2:
        yield Chunk(work, 0, total, None)
        return
    if whole_rows or any(term.runs is not None for term in work.terms):
        rows = work.shape[0]
        row_len = total // rows
        step = max(1, chunk_elements // row_len)
        for first in range(0, rows, step):
            last = min(rows, first + step)
            yield Chunk(work, first * row_len, (last - first) * row_len, (first, last))
        return
    for start in range(0, total, chunk_elements):
        yield Chunk(work, start, min(chunk_elements, total - start), None)


def row_length(work: TensorWork) -> int:
    """Elements per row as methods see them: the last dimension (a 1-D tensor is one row)."""
    return work.shape[-1] if len(work.shape) >= 2 else work.numel


def input_bytes(chunk: Chunk) -> int:
    """Bytes one chunk reads from its inputs (about: row-aligned terms may read fewer rows)."""
    work = chunk.work
    infos = [work.target] + [i for t in work.terms for i in (t.plus, t.minus)]
    return chunk.count * sum(info.itemsize for info in infos if info is not None)


def largest_chunk(plan: Plan, chunk_elements: int, whole_rows: bool = False) -> int:
    """The most elements any chunk of the plan holds (sizes the reusable buffers)."""
    widest_row = max((w.numel // w.shape[0] for w in plan.tensors if w.shape and w.shape[0]), default=1)
    if whole_rows:
        widest_row = max([widest_row] + [w.numel for w in plan.tensors if len(w.shape) < 2])
    return max(chunk_elements, widest_row)


class _Buffers:
    """One worker's reusable buffers: raw bytes per operand, a float32 accumulator for a whole
    chunk and cache-sized float32 workspaces."""

    def __init__(self, elements: int) -> None:
        self.target = np.empty(elements * 8, dtype=np.uint8)
        self.plus = np.empty(elements * 8, dtype=np.uint8)
        self.minus = np.empty(elements * 8, dtype=np.uint8)
        self.out = np.empty(elements * 8, dtype=np.uint8)
        self.acc = np.empty(elements, dtype=np.float32)
        self.scratch = np.empty(BLOCK_ELEMENTS, dtype=np.float32)
        self.scratch_minus = np.empty(BLOCK_ELEMENTS, dtype=np.float32)
        self.elements = elements
        self.deltas: list[np.ndarray] = []  # per-term float32 chunks, only for methods other than plain
        self.work = Workspace()  # the method's scratch

    def term_deltas(self, count: int) -> list[np.ndarray]:
        """``count`` float32 chunk buffers (made on first use: a plain merge never needs them)."""
        while len(self.deltas) < count:
            self.deltas.append(np.empty(self.elements, dtype=np.float32))
        return self.deltas[:count]


def blocks(count: int) -> Iterator[slice]:
    """Cache-sized slices covering ``range(count)``."""
    for start in range(0, count, BLOCK_ELEMENTS):
        yield slice(start, min(count, start + BLOCK_ELEMENTS))


class _Run:
    """State shared by the worker threads of one engine run."""

    def __init__(
        self,
        plan: Plan,
        writer: TensorSink,
        allow_nonfinite: bool,
        progress: Callable[[int], None] | None,
        chunk_elements: int,
    ) -> None:
        self.plan, self.writer, self.allow_nonfinite = plan, writer, allow_nonfinite
        self.progress = progress
        # plain task arithmetic runs on the fast path below, without per-term buffers
        self.method: MergeMethod | None = plan.method if plan.method is not None and not plan.method.plain else None
        whole_rows = self.method is not None and self.method.whole_rows
        self.buffer_elements = largest_chunk(plan, chunk_elements, whole_rows)
        self.jobs = [c for w in plan.tensors for c in plan_chunks(w, chunk_elements, whole_rows)]
        self.next_index = 0  # the next chunk to hand out
        self.prefetched = 0  # chunks below this were handed out or asked for ahead
        self.ahead_bytes = 0  # input bytes asked for ahead and not handed out yet
        self.lock = threading.Lock()
        self.cancel = threading.Event()
        self.stats = EngineStats()
        self.chunk_elements = chunk_elements
        self.states: dict[tuple[str, int], Any] = {}  # (tensor, term) -> the method's pre-pass result
        # the cast to float16 through torch where the run is large enough to pay its import (casts.py)
        self.narrowing = Narrowing.for_run(sum(w.numel for w in plan.tensors if w.out_dtype == "F16"))

    def next_job(self) -> Chunk | None:
        """Hand out the next chunk, and ask the kernel to read the ones after it ahead."""
        with self.lock:
            if self.cancel.is_set() or self.next_index >= len(self.jobs):
                return None
            index = self.next_index
            self.next_index += 1
            if index < self.prefetched:
                self.ahead_bytes -= input_bytes(self.jobs[index])
            else:
                self.prefetched = index + 1
            ahead = []
            while self.prefetched < len(self.jobs) and self.ahead_bytes < PREFETCH_BYTES:
                ahead.append(self.jobs[self.prefetched])
                self.ahead_bytes += input_bytes(ahead[-1])
                self.prefetched += 1
        for chunk in ahead:
            self.prefetch(chunk)
        return self.jobs[index]

    def prefetch(self, chunk: Chunk) -> None:
        work, checkpoints = chunk.work, self.plan.checkpoints
        if work.target is not None and work.target_source is not None:
            checkpoints[work.target_source].prefetch(work.target, chunk.start, chunk.count)
        for term in work.terms:
            if term.runs is None:  # row-aligned terms read other rows; they are few and small
                checkpoints[term.plus_source].prefetch(term.plus, chunk.start, chunk.count)
                if term.minus is not None and term.minus_source is not None:
                    checkpoints[term.minus_source].prefetch(term.minus, chunk.start, chunk.count)

    def worker(self) -> None:
        buffers = _Buffers(self.buffer_elements)
        # an overflow to Inf is found and reported by check_finite, naming the tensor and the cause;
        # numpy's own warning on stderr would only repeat it without either
        with np.errstate(over="ignore", invalid="ignore"):
            self.work_through(buffers)

    def work_through(self, buffers: _Buffers) -> None:
        while (chunk := self.next_job()) is not None:
            read, written = self.process(chunk, buffers)
            with self.lock:
                self.stats.bytes_read += read
                self.stats.bytes_written += written
            if self.progress is not None:
                self.progress(read)

    def read(self, source: int, info: TensorInfo, start: int, count: int, raw: np.ndarray) -> np.ndarray:
        """Elements ``[start, start+count)`` of a tensor, typed: read into ``raw``, or a view of
        a source held in memory (:mod:`chatvector.merge.resident`)."""
        return self.plan.checkpoints[source].read_typed(info, start, count, raw)

    def process(self, chunk: Chunk, buffers: _Buffers) -> tuple[int, int]:
        work = chunk.work
        out_dtype = DTYPES[work.out_dtype].numpy
        out_bytes = chunk.count * out_dtype.itemsize
        target_source = work.target_source if work.target is not None else None
        if (
            not work.terms
            and work.target is not None
            and target_source is not None
            and work.out_dtype == work.target.dtype
        ):
            # A copy: move the bytes untouched (bit-exact, whatever the dtype).
            data = self.read(target_source, work.target, chunk.start, chunk.count, buffers.target)
            if work.target.is_float:
                self.check_copied_finite(chunk, data, buffers)
            self.writer.write(work.name, chunk.start * out_dtype.itemsize, data.view(np.uint8).data)
            return out_bytes, out_bytes
        acc = buffers.acc[: chunk.count]
        target = None
        read = 0
        if work.target is not None and target_source is not None:
            target = self.read(target_source, work.target, chunk.start, chunk.count, buffers.target)
            read += chunk.count * work.target.itemsize
        start_accumulator(acc, target)
        if self.method is not None and work.terms:
            read += self.add_by_method(self.method, chunk, acc, buffers)
        else:
            for term in work.terms:
                read += self.add_term(chunk, term, acc, buffers)
        if out_dtype == np.float32:  # the accumulator is the output: no copy
            for block in blocks(chunk.count):
                self.check_finite(chunk, acc[block])
            self.writer.write(work.name, chunk.start * 4, acc.view(np.uint8).data)
            return read, out_bytes
        out = buffers.out[:out_bytes].view(out_dtype)
        for block in blocks(chunk.count):
            finite = self.check_finite(chunk, acc[block], out_dtype)
            self.narrowing.cast(acc[block], out[block], finite)  # rounds to nearest even
        self.writer.write(work.name, chunk.start * out_dtype.itemsize, out.view(np.uint8).data)
        return read, out_bytes

    def add_term(self, chunk: Chunk, term: TermWork, acc: np.ndarray, buffers: _Buffers) -> int:
        if term.runs is None:
            return self.add_slice(term, chunk.start, chunk.count, acc, buffers)
        first, last = chunk.rows or (0, 0)
        row_len = chunk.count // (last - first)
        read = 0
        for run in term.runs:
            lo, hi = max(first, run.out_start), min(last, run.out_start + run.length)
            if lo >= hi:
                continue
            shift = lo - run.out_start
            target_slice = acc[(lo - first) * row_len : (hi - first) * row_len]
            read += self.add_slice(
                term,
                (run.plus_start + shift) * row_len,
                (hi - lo) * row_len,
                target_slice,
                buffers,
                None if run.minus_start is None else (run.minus_start + shift) * row_len,
            )
        return read

    def add_slice(
        self, term: TermWork, start: int, count: int, acc: np.ndarray, buffers: _Buffers, minus_start: int | None = None
    ) -> int:
        plus = self.read(term.plus_source, term.plus, start, count, buffers.plus)
        minus = None
        if term.minus is not None and term.minus_source is not None:
            begin = start if minus_start is None else minus_start
            minus = self.read(term.minus_source, term.minus, begin, count, buffers.minus)
        for block in blocks(count):
            size = block.stop - block.start
            accumulate_term(
                acc[block],
                term.ratio,
                plus[block],
                None if minus is None else minus[block],
                buffers.scratch[:size],
                buffers.scratch_minus[:size],
            )
        return count * (term.plus.itemsize + (term.minus.itemsize if term.minus else 0))

    def term_delta(self, chunk: Chunk, term: TermWork, out: np.ndarray, buffers: _Buffers) -> int:
        """One term's unscaled delta over the chunk, in output order (0 where rows get none)."""
        out.fill(0.0)
        return self.add_term(chunk, dataclasses.replace(term, ratio=1.0), out, buffers)

    def add_by_method(self, method: MergeMethod, chunk: Chunk, acc: np.ndarray, buffers: _Buffers) -> int:
        """Form each term's delta over the chunk and let the method combine them into ``acc``."""
        work, terms = chunk.work, chunk.work.terms
        deltas = [d[: chunk.count] for d in buffers.term_deltas(len(terms))]
        read = sum(self.term_delta(chunk, term, delta, buffers) for term, delta in zip(terms, deltas, strict=True))
        context = ChunkTerms(
            name=work.name,
            start=chunk.start,
            row_length=row_length(work),
            ratios=tuple(t.ratio for t in terms),
            terms=tuple(t.term for t in terms),
            states=tuple(self.states.get((work.name, t.term)) for t in terms),
            block=BLOCK_ELEMENTS,
        )
        method.combine(acc, deltas, context, buffers.work)
        return read

    def prepass(self, method: MergeMethod, threads: int) -> None:
        """The pass before the merge: the method's pre-pass result for each (tensor, term)."""
        jobs = [(w, t) for w in self.plan.tensors for t in w.terms if w.numel]
        if not jobs:
            return
        largest = max(w.numel for w, _ in jobs)
        log.info(
            "%s: one pass over %d tensor deltas first (%.0f MB buffer per worker)",
            method.name,
            len(jobs),
            largest * 4 / 1e6,
        )
        local = threading.local()

        def one(job: tuple[TensorWork, TermWork]) -> tuple[tuple[str, int], Any]:
            if not hasattr(local, "buffers"):
                local.buffers = _Buffers(self.buffer_elements)
                local.magnitudes = np.empty(largest, dtype=np.float32)
            work, term = job
            magnitudes = local.magnitudes[: work.numel]
            for chunk in plan_chunks(work, self.chunk_elements):
                part = magnitudes[chunk.start : chunk.start + chunk.count]
                self.term_delta(chunk, term, part, local.buffers)
                np.abs(part, out=part)
            return (work.name, term.term), method.prepare(magnitudes, lambda: self.rescan(work, term, local.buffers))

        with futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="chatvector-prepass") as pool:
            for key, state in pool.map(one, jobs):
                interrupts.check()
                self.states[key] = state

    def rescan(self, work: TensorWork, term: TermWork, buffers: _Buffers) -> Iterable[tuple[int, np.ndarray]]:
        """One term's delta over a tensor again, chunk by chunk in element order."""
        for chunk in plan_chunks(work, self.chunk_elements):
            part = buffers.acc[: chunk.count]
            self.term_delta(chunk, term, part, buffers)
            yield chunk.start, part

    def check_copied_finite(self, chunk: Chunk, data: np.ndarray, buffers: _Buffers) -> None:
        """Check copied float data; formats numpy cannot reduce are widened block by block
        into the float32 scratch (float16/32/64 are checked as they are: a float64 value beyond
        float32's range is still finite)."""
        if data.dtype in (np.float16, np.float32, np.float64):
            self.check_finite(chunk, data)
            return
        for block in blocks(data.size):
            values = buffers.scratch[: block.stop - block.start]
            np.copyto(values, data[block], casting="unsafe")
            self.check_finite(chunk, values)

    def check_finite(self, chunk: Chunk, values: np.ndarray, out_dtype: np.dtype | None = None) -> bool:
        """Whether ``values`` are finite (and fit ``out_dtype``); if not, raise, or with
        --allow-nonfinite note the tensor and return False."""
        if all_finite(values, out_dtype):
            return True
        name = chunk.work.name
        if self.allow_nonfinite:
            with self.lock:
                if name not in self.stats.nonfinite_tensors:
                    self.stats.nonfinite_tensors.append(name)
                    log.warning("tensor %s holds NaN or Inf (kept: --allow-nonfinite)", name)
            return False
        raise NonFiniteError(self.describe_nonfinite(chunk))

    def describe_nonfinite(self, chunk: Chunk) -> str:
        """Name the cause: an input holding NaN/Inf, an input beyond float32 (the arithmetic's
        format), the float32 arithmetic overflowing, or the result overflowing the output dtype."""
        work = chunk.work
        scratch = np.empty(chunk.count * 8, dtype=np.uint8)
        exclude = f"--exclude '^{re.escape(work.name)}$'"
        for source, info, start, count in self.operand_ranges(chunk):
            values = self.read(source, info, start, count, scratch)
            ref = self.plan.checkpoints[source].ref
            where = f"the {ref.role} model ({ref.spec}, {info.file.name})"
            if not all_finite(values):
                return (
                    f"tensor {work.name} holds NaN or Inf in {where}; fix that checkpoint, or pass "
                    "--allow-nonfinite to proceed"
                )
            if not all_finite(values, np.dtype(np.float32)):
                largest = float(np.max(np.abs(values.astype(np.float64))))
                return (
                    f"tensor {work.name} holds {largest:.3g} in {where} ({info.dtype}), beyond float32's "
                    f"range (±{FLOAT32_MAX:.3g}), the format chatvector computes in; rescale or convert "
                    f"that checkpoint, keep the tensor as in the target with {exclude}, or pass --allow-nonfinite"
                )
        if DTYPES[work.out_dtype].itemsize >= 4:
            return (
                f"tensor {work.name}: the merged values overflow float32, the format chatvector computes in "
                f"(beyond ±{FLOAT32_MAX:.3g}); use a smaller ratio, keep the tensor as in the target with "
                f"{exclude}, or pass --allow-nonfinite"
            )
        return (
            f"tensor {work.name}: the merged values overflow {work.out_dtype}; use a wider output type "
            "(--dtype bfloat16 or float32; --gguf-type bf16 or f32) or a smaller ratio, or pass --allow-nonfinite"
        )

    @staticmethod
    def operand_ranges(chunk: Chunk) -> Iterator[tuple[int, TensorInfo, int, int]]:
        """Every (source, tensor, first element, count) a chunk reads; row-aligned terms read the
        rows they line up with, which may lie elsewhere in the operand."""
        work = chunk.work
        if work.target is not None and work.target_source is not None:
            yield work.target_source, work.target, chunk.start, chunk.count
        for term in work.terms:
            sides = [(term.plus_source, term.plus, "plus")]
            if term.minus is not None and term.minus_source is not None:
                sides.append((term.minus_source, term.minus, "minus"))
            if term.runs is None:
                for source, info, _ in sides:
                    yield source, info, chunk.start, chunk.count
                continue
            first, last = chunk.rows or (0, 0)
            row_len = chunk.count // max(last - first, 1)
            for run in term.runs:
                lo, hi = max(first, run.out_start), min(last, run.out_start + run.length)
                for source, info, side in sides if lo < hi else ():
                    begin = run.plus_start if side == "plus" else run.minus_start
                    if begin is not None:
                        yield source, info, (begin + lo - run.out_start) * row_len, (hi - lo) * row_len


def run_plan(
    plan: Plan,
    writer: TensorSink,
    *,
    threads: int = 2,
    allow_nonfinite: bool = False,
    progress: Callable[[int], None] | None = None,
    chunk_elements: int | None = None,
) -> EngineStats:
    """Compute every output tensor of ``plan`` and write it through ``writer``.

    Stops promptly (after the chunks in flight) when a worker fails or the main thread is
    interrupted, and re-raises; the caller's staging directory then removes the partial output.
    """
    run = _Run(plan, writer, allow_nonfinite, progress, chunk_elements or CHUNK_ELEMENTS)
    started = time.perf_counter()
    if run.method is not None and run.method.needs_prepass:
        run.prepass(run.method, threads)
    pool = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="chatvector")
    try:
        pending = {pool.submit(run.worker) for _ in range(threads)}
        while pending:
            done, pending = futures.wait(pending, timeout=0.2, return_when=futures.FIRST_EXCEPTION)
            interrupts.check()
            for future in done:
                future.result()  # re-raises a worker's exception here
    except BaseException:
        run.cancel.set()
        raise
    finally:
        pool.shutdown(wait=True)
    run.stats.seconds = time.perf_counter() - started
    return run.stats


def close_all(checkpoints: list[Checkpoint]) -> None:
    for checkpoint in checkpoints:
        checkpoint.close()
