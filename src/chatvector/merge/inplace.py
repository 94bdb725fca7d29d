"""Run a merge recipe into memory that already holds a model, instead of into a directory.

The same preflight and the same streaming engine as ``chatvector merge`` (:func:`build_plan`,
:func:`run_plan`), with only the destination swapped: each finished chunk goes to a
:class:`~chatvector.io.output.TensorSink` that the caller binds to the output tensors the plan
lists. A sink that writes into a loaded model's parameters (:mod:`chatvector.eval.backends.inplace`)
therefore leaves them holding, bit for bit, the bytes ``merge`` would write for the same recipe:
ratio rules, layer schedules, several terms, aligned vocabularies and sparsifying methods are all
the plan's and the engine's, not recomputed here.

Without a state, every tensor the plan lists is written at each call, the target's own values
included (a tensor kept as in the target is copied from the target's file again), so one candidate
never leaves a residue in the next.

With an :class:`InPlaceState` (one per destination, kept between calls), successive candidates
share two things, neither of which changes a byte written:

- *what each tensor holds*: a tensor whose work is the same as the one last written into it (the
  same inputs, ratios per term, rows, output dtype and method; the files unchanged) is left as it
  is, so a search candidate that changes one group's ratio recomputes that group's tensors only;
- *the inputs, in memory* (:mod:`chatvector.merge.resident`), when they fit in half the memory
  available: the target values and each term's float32 difference are read once, and the same
  engine computes every later candidate from them instead of from the files. When they do not
  fit, each candidate streams from the files as ``merge`` does; the log says which ran.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from chatvector.errors import NonFiniteError
from chatvector.io.output import TensorSink
from chatvector.merge.engine import EngineStats, run_plan
from chatvector.merge.inputs import locate, open_inputs, precheck_remote
from chatvector.merge.plan import Plan, TensorWork
from chatvector.merge.recipe import Recipe
from chatvector.merge.resident import FileStamps, ResidentStore, memory_available, resident_bytes
from chatvector.options import RunOptions

__all__ = ["OutputTensor", "InPlaceReport", "InPlaceState", "merge_into"]

RESIDENT_SHARE = 0.5  # the inputs are held in memory when they take at most this share of what is available

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputTensor:
    """One tensor the merge produces: its checkpoint name, safetensors dtype (``BF16``) and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass
class InPlaceReport:
    """What one in-place merge did.

    Attributes:
        recipe: the recipe as ``merge`` records it in its output (local inputs located), so an
            evaluation of the in-place model records what an evaluation of the written one would.
        tensors: how many tensors were computed and written.
        bytes_read: input bytes read (from the files or from memory).
        seconds: preflight and engine, wall clock.
        unchanged: tensors left as the previous candidate wrote them (their work was the same).
        resident: whether the inputs were read from memory (:mod:`chatvector.merge.resident`).
    """

    recipe: dict[str, Any]
    tensors: int
    bytes_read: int
    seconds: float
    nonfinite_tensors: list[str] = field(default_factory=list)
    unchanged: int = 0
    resident: bool = False


@dataclass
class InPlaceState:
    """What successive in-place merges into one destination share (see the module doc).

    Attributes:
        memory_limit: the most bytes the inputs held in memory may take; None: half of the memory
            available at each candidate; 0: always stream from the files.
        written: tensor name -> the work last written into it, complete.
        store: the inputs held in memory.
    """

    memory_limit: int | None = None
    written: dict[str, Hashable] = field(default_factory=dict)
    store: ResidentStore = field(default_factory=ResidentStore)
    _mode: str | None = field(default=None, repr=False)

    def forget(self) -> None:
        """Assume nothing about the destination's tensors (they were written by something else)."""
        self.written.clear()

    def close(self) -> None:
        self.written.clear()
        self.store.clear()

    def run(self, plan: Plan, sink: TensorSink, method: str | None, run: RunOptions) -> tuple[EngineStats, int, bool]:
        """Write the tensors of ``plan`` whose work changed; (stats, tensors left unchanged, resident)."""
        stamps = FileStamps()
        keys = {w.name: _work_key(w, method, stamps) for w in plan.tensors}
        todo = [w for w in plan.tensors if self.written.get(w.name) != keys[w.name]]
        changed = dataclasses.replace(plan, tensors=todo)
        engine_plan = self._from_memory(plan, changed, run.threads)
        for work in todo:  # written in part if the run fails
            self.written.pop(work.name, None)
        try:
            stats = run_plan(engine_plan, sink, threads=run.threads, allow_nonfinite=run.allow_nonfinite)
        except NonFiniteError:
            if engine_plan is changed:
                raise
            # name the input that holds NaN/Inf, or the overflow, from the files, as merge does
            run_plan(changed, sink, threads=run.threads, allow_nonfinite=run.allow_nonfinite)
            raise
        for work in todo:
            if work.name not in stats.nonfinite_tensors:  # recomputed next time, so always reported
                self.written[work.name] = keys[work.name]
        return stats, len(plan.tensors) - len(todo), engine_plan is not changed

    def _from_memory(self, plan: Plan, changed: Plan, threads: int) -> Plan:
        """``changed`` reading from memory when ``plan``'s inputs fit the limit, else as it is."""
        self.store.retain(plan)
        needed = resident_bytes(plan)
        missing = max(0, needed - self.store.nbytes)
        limit = self.memory_limit
        if limit is None:
            available = memory_available()
            limit = None if available is None else int((available + self.store.nbytes) * RESIDENT_SHARE)
        fits = needed > 0 and limit is not None and needed <= limit  # no figure: stream, as merge does
        mode = "memory" if fits else "files"
        if mode != self._mode:
            if fits:
                log.info(
                    "in place: inputs held in memory (%.2f GB, %.2f GB to read first)", needed / 1e9, missing / 1e9
                )
            else:
                shown = "unknown" if limit is None else f"{limit / 1e9:.2f} GB"
                log.info(
                    "in place: inputs read from the files at each candidate (in memory they would take "
                    "%.2f GB; the limit is %s)",
                    needed / 1e9,
                    shown,
                )
            self._mode = mode
        if not fits:
            self.store.clear()
            return changed
        return self.store.plan_from_memory(changed, threads)


def _work_key(work: TensorWork, method: str | None, stamps: FileStamps) -> Hashable:
    """What a tensor's output depends on: its work (inputs, ratios, rows, dtype), the method and the
    input files' size and modification time."""
    files = {work.target.file} if work.target else set()
    files |= {info.file for t in work.terms for info in (t.plus, t.minus) if info is not None}
    return (work, method, tuple(sorted((str(f), stamps(f)) for f in files)))


def merge_into(
    recipe: Recipe,
    bind: Callable[[list[OutputTensor]], TensorSink],
    run: RunOptions | None = None,
    state: InPlaceState | None = None,
) -> InPlaceReport:
    """Merge ``recipe`` and hand every chunk to the sink ``bind(outputs)`` returns.

    ``bind`` sees the whole list of output tensors before any arithmetic, so it can refuse a plan
    its destination cannot hold (another shape, a tensor it lacks) with a clear error first. With
    ``state`` (the same one for every call into the same destination), tensors whose work did not
    change since the last call are left as they are, and the inputs may be held in memory.

    Raises:
        PreflightError, InputError: as ``merge`` raises them, before anything is written.
        NonFiniteError: a NaN/Inf in an input or an overflow (unless ``run.allow_nonfinite``); the
            destination is then partly written and must not be used.
    """
    run = run or RunOptions()
    started = time.perf_counter()
    recipe.check_complete()
    precheck_remote(recipe, allow_pickle=run.allow_pickle)
    with open_inputs(recipe, allow_pickle=run.allow_pickle) as inputs:
        plan = inputs.plan()
        sink = bind([OutputTensor(w.name, w.out_dtype, tuple(w.shape)) for w in plan.tensors])
        unchanged, resident = 0, False
        if state is None:
            stats = run_plan(plan, sink, threads=run.threads, allow_nonfinite=run.allow_nonfinite)
        else:
            method = recipe.options.method or recipe.options.sparsify
            stats, unchanged, resident = state.run(plan, sink, method, run)
        recorded = locate(recipe, inputs).model_dump(mode="json", exclude_none=True)
    seconds = time.perf_counter() - started
    computed = len(plan.tensors) - unchanged
    where = "from memory" if resident else "from the files"
    log.info("merged %d tensors in place (%d unchanged) %s in %.2f s", computed, unchanged, where, seconds)
    return InPlaceReport(
        recorded, computed, stats.bytes_read, seconds, stats.nonfinite_tensors, unchanged=unchanged, resident=resident
    )
