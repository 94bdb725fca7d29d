"""Run a merge recipe into memory that already holds a model, instead of into a directory.

The same preflight and the same streaming engine as ``chatvector merge`` (:func:`build_plan`,
:func:`run_plan`), with only the destination swapped: each finished chunk goes to a
:class:`~chatvector.io.output.TensorSink` that the caller binds to the output tensors the plan
lists. A sink that writes into a loaded model's parameters (:mod:`chatvector.eval.backends.inplace`)
therefore leaves them holding, bit for bit, the bytes ``merge`` would write for the same recipe:
ratio rules, layer schedules, several terms, aligned vocabularies and sparsifying methods are all
the plan's and the engine's, not recomputed here.

Every tensor the plan lists is written at each call, the target's own values included (a tensor
kept as in the target is copied from the target's file again), so one candidate never leaves a
residue in the next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chatvector.io.output import TensorSink
from chatvector.merge.engine import run_plan
from chatvector.merge.inputs import locate, open_inputs, precheck_remote
from chatvector.merge.recipe import Recipe
from chatvector.options import RunOptions

__all__ = ["OutputTensor", "InPlaceReport", "merge_into"]

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
        tensors: how many tensors were written.
        bytes_read: input bytes read.
        seconds: preflight and engine, wall clock.
    """

    recipe: dict[str, Any]
    tensors: int
    bytes_read: int
    seconds: float
    nonfinite_tensors: list[str] = field(default_factory=list)


def merge_into(
    recipe: Recipe, bind: Callable[[list[OutputTensor]], TensorSink], run: RunOptions | None = None
) -> InPlaceReport:
    """Merge ``recipe`` and hand every chunk to the sink ``bind(outputs)`` returns.

    ``bind`` sees the whole list of output tensors before any arithmetic, so it can refuse a plan
    its destination cannot hold (another shape, a tensor it lacks) with a clear error first.

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
        stats = run_plan(plan, sink, threads=run.threads, allow_nonfinite=run.allow_nonfinite)
        recorded = locate(recipe, inputs).model_dump(mode="json", exclude_none=True)
    seconds = time.perf_counter() - started
    log.info("merged %d tensors in place in %.2f s", len(plan.tensors), seconds)
    return InPlaceReport(recorded, len(plan.tensors), stats.bytes_read, seconds, stats.nonfinite_tensors)
