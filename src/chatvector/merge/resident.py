"""A recipe's inputs held in memory across the in-place merges of a sweep or a search.

An in-place sweep or search merges the same target and terms again and again; only the ratios
change. Read from the files, every candidate reads the target, chat and base again (2.9 GB for a
0.5 B model in bfloat16) and forms every difference ``chat − base`` again. A
:class:`ResidentStore` keeps, for each tensor the plan merges:

- the target's values, as stored (its dtype);
- each term's float32 difference, formed once by
  :func:`~chatvector.merge.arithmetic.term_difference` (the first step of the engine's kernel)
  over the rows the term reaches (rows aligned by token string are kept in the output's order).

:func:`resident_plan` then rewrites a plan to read them: the target from memory, and each term as
a float32 "vector" with no minus operand. The engine runs that plan unchanged; its kernel scales
and adds a float32 operand where it lies, the very operations it applies to the difference it
forms itself, so the output bytes are the same. Tensors only copied from the target are left to
the files. What the store holds is keyed by tensor and file (with the file's size and
modification time), so a changed input is read again, and entries the current plan does not use
are dropped.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import logging
import os
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chatvector import interrupts
from chatvector.dtypes import DTYPES
from chatvector.io.checkpoint import Checkpoint
from chatvector.io.safetensors_header import TensorInfo
from chatvector.merge.arithmetic import RowRun, term_difference
from chatvector.merge.plan import Plan, TensorWork, TermWork

__all__ = ["FileStamps", "ResidentStore", "MemorySource", "memory_available", "resident_bytes"]

log = logging.getLogger(__name__)

PIECE_ELEMENTS = 1 << 20  # elements read and differenced at a time while filling the store
MEMORY = Path("<memory>")  # the "file" of tensors held in memory (shown in messages)


def memory_available() -> int | None:
    """Bytes of memory available now (``MemAvailable``: free plus reclaimable cache), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _merging(plan: Plan) -> Iterator[TensorWork]:
    """The tensors of ``plan`` that combine terms (the rest are copies, read from the files)."""
    return (w for w in plan.tensors if w.terms and w.numel)


def resident_bytes(plan: Plan) -> int:
    """Bytes a store holding ``plan``'s inputs takes: each merged tensor's target values as stored
    and a float32 difference per term."""
    return sum((w.target.nbytes if w.target else 0) + 4 * w.numel * len(w.terms) for w in _merging(plan))


@dataclass
class MemorySource(Checkpoint):
    """Tensors held in memory, read by the engine as a checkpoint (views, never copies)."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def read_typed(self, info: TensorInfo, start: int, count: int, buffer: np.ndarray) -> np.ndarray:
        return self.arrays[info.name][start : start + count]

    def read_into(self, info: TensorInfo, start: int, count: int, out: np.ndarray) -> None:
        data = self.read_typed(info, start, count, out).view(np.uint8)
        out[: data.size] = data

    def prefetch(self, info: TensorInfo, start: int, count: int) -> None:
        return None


class FileStamps:
    """Each input file's size and modification time, looked up once per plan."""

    def __init__(self) -> None:
        self.seen: dict[Path, tuple[int, int, int] | None] = {}

    def __call__(self, path: Path) -> tuple[int, int, int] | None:
        if path not in self.seen:
            try:
                stat = os.stat(path)
                self.seen[path] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
            except OSError:
                self.seen[path] = None
        return self.seen[path]


def target_key(info: TensorInfo, stamps: FileStamps) -> Hashable:
    return ("target", info, stamps(info.file))


def difference_key(term: TermWork, stamps: FileStamps) -> Hashable:
    minus = None if term.minus is None else (term.minus, stamps(term.minus.file))
    return ("difference", term.plus, stamps(term.plus.file), minus, term.runs)


@dataclass
class ResidentStore:
    """Target values and term differences held in memory between merges (see the module doc)."""

    arrays: dict[Hashable, np.ndarray] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def clear(self) -> None:
        self.arrays.clear()

    def keys_for(self, plan: Plan) -> set[Hashable]:
        stamps = FileStamps()
        keys: set[Hashable] = set()
        for work in _merging(plan):
            if work.target is not None:
                keys.add(target_key(work.target, stamps))
            keys.update(difference_key(term, stamps) for term in work.terms)
        return keys

    def retain(self, plan: Plan) -> None:
        """Drop what ``plan`` does not use (another recipe's inputs, a changed file): what is left
        is all of use to it."""
        wanted = self.keys_for(plan)
        for key in [k for k in self.arrays if k not in wanted]:
            del self.arrays[key]

    def plan_from_memory(self, plan: Plan, threads: int) -> Plan:
        """``plan`` rewritten to read its merged tensors' inputs from memory (filled first)."""
        stamps = FileStamps()
        self._fill(plan, stamps, threads)
        arrays: dict[str, np.ndarray] = {}
        tensors: dict[str, TensorInfo] = {}
        source = len(plan.checkpoints)

        def held(name: str, key: Hashable, dtype: str, shape: tuple[int, ...]) -> TensorInfo:
            array = self.arrays[key]
            tensors[name] = TensorInfo(name, dtype, shape, MEMORY, 0, array.nbytes)
            arrays[name] = array.view(DTYPES[dtype].numpy)
            return tensors[name]

        works = []
        for work in plan.tensors:
            if not (work.terms and work.numel):
                works.append(work)
                continue
            target = work.target
            if target is not None:
                target = held(work.name, target_key(target, stamps), target.dtype, target.shape)
            terms = tuple(
                dataclasses.replace(
                    term,
                    plus=held(
                        f"{work.name} (term {term.term + 1}, difference)",
                        difference_key(term, stamps),
                        "F32",
                        work.shape,
                    ),
                    plus_source=source,
                    minus=None,
                    minus_source=None,
                    runs=None
                    if term.runs is None
                    else tuple(RowRun(r.out_start, r.out_start, None, r.length) for r in term.runs),
                )
                for term in work.terms
            )
            works.append(
                dataclasses.replace(work, target=target, target_source=None if target is None else source, terms=terms)
            )
        frame = plan.checkpoints[0].ref
        memory = MemorySource(frame, "memory", tensors, {}, arrays=arrays)
        return dataclasses.replace(plan, tensors=works, checkpoints=[*plan.checkpoints, memory])

    # -- filling ----------------------------------------------------------------------------
    def _fill(self, plan: Plan, stamps: FileStamps, threads: int) -> None:
        jobs: dict[Hashable, tuple[TensorWork, TermWork | None]] = {}
        for work in _merging(plan):
            if work.target is not None:
                jobs.setdefault(target_key(work.target, stamps), (work, None))
            for term in work.terms:
                jobs.setdefault(difference_key(term, stamps), (work, term))
        missing = [(key, job) for key, job in jobs.items() if key not in self.arrays]
        if not missing:
            return
        log.info("in place: reading the inputs of %d tensors into memory, once", len(missing))

        def read(item: tuple[Hashable, tuple[TensorWork, TermWork | None]]) -> tuple[Hashable, np.ndarray]:
            key, (work, term) = item
            return key, self._read(plan, work, term)

        with futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="chatvector-resident") as pool:
            for key, array in pool.map(read, missing):
                interrupts.check()
                self.arrays[key] = array

    @staticmethod
    def _read(plan: Plan, work: TensorWork, term: TermWork | None) -> np.ndarray:
        """The target's bytes of ``work`` (``term`` None), or ``term``'s float32 difference laid
        out as the output is (aligned rows at their output rows)."""
        if term is None:
            assert work.target is not None and work.target_source is not None
            info = work.target
            raw = np.empty(info.numel * info.itemsize, dtype=np.uint8)
            plan.checkpoints[work.target_source].read_into(info, 0, info.numel, raw)
            return raw
        difference = np.zeros(work.numel, dtype=np.float32)  # rows no run reaches are never read
        row = work.numel // work.shape[0] if term.runs is not None else 1
        spans = (
            [(0, 0, 0, work.numel)]
            if term.runs is None
            else [
                (r.out_start * row, r.plus_start * row, (r.minus_start or 0) * row, r.length * row) for r in term.runs
            ]
        )
        step = min(PIECE_ELEMENTS, max(s[3] for s in spans) if spans else 1)
        plus_raw = np.empty(step * term.plus.itemsize, dtype=np.uint8)
        minus_raw = np.empty(step * (term.minus.itemsize if term.minus else 0), dtype=np.uint8)
        scratch_minus = np.empty(step, dtype=np.float32)
        for out_start, plus_start, minus_start, length in spans:
            for done in range(0, length, step):
                count = min(step, length - done)
                plus = plan.checkpoints[term.plus_source].read_typed(term.plus, plus_start + done, count, plus_raw)
                minus = None
                if term.minus is not None and term.minus_source is not None:
                    source = plan.checkpoints[term.minus_source]
                    minus = source.read_typed(term.minus, minus_start + done, count, minus_raw)
                into = difference[out_start + done : out_start + done + count]
                result = term_difference(plus, minus, into, scratch_minus[:count])
                if result is not into:  # a float32 vector used as it lies: keep a copy of it
                    np.copyto(into, result)
        return difference
