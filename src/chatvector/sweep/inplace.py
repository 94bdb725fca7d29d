"""A sweep that loads the model once and merges each ratio into it (``sweep --in-place``).

The first ratio is merged as ``merge`` merges it (into RAM or ``OUT/models``) and loaded by the
backend, which so gets the output's config, tokenizer, chat template and stop ids; the files are
removed at once unless ``--keep``. Every ratio, the first included, is then computed by the merge
engine straight into the loaded parameters
(:meth:`~chatvector.eval.backends.hf.HFBackend.merge_in_place`), bit for bit what loading that
ratio's merged model gives, and evaluated by the normal evaluation on the open backend. No model
is written or reloaded per ratio; ``--keep`` still writes each ratio's model to ``OUT/models``.

Which backends can: those declaring ``updates_in_place`` (:class:`~chatvector.eval.backends.base.
Capabilities`), today the hf backend. Served engines are restarted per ratio (docs/sweep.md).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chatvector
from chatvector.errors import InputError

if TYPE_CHECKING:
    from chatvector.sweep.job import RatioJob, SweepSpec

__all__ = ["in_place_wanted", "run_in_place"]

log = logging.getLogger(__name__)

LOADED = "loaded"  # the folder, beside the ratios' models, of the model loaded once


def in_place_wanted(spec: SweepSpec) -> bool:
    """Whether the sweep runs in place: as asked (``--in-place`` refused where it cannot work), or,
    by default, when the backend can update its weights, one process evaluates every ratio, the
    model is on one device and the target fits in the memory available now."""
    from chatvector.eval.backends import kind_of

    why_not = _obstacle(spec, kind_of(spec.backend).capabilities.updates_in_place)
    if spec.in_place is True and why_not is not None:
        raise InputError(f"--in-place: {why_not}; use --no-in-place", option="--in-place")
    if spec.in_place is None and why_not is None and not _fits_in_memory(spec):
        log.info("in place: the target may not fit in the memory available; each ratio is merged and loaded")
        return False
    return bool(spec.in_place is not False and why_not is None)


def _obstacle(spec: SweepSpec, capable: bool) -> str | None:
    if not capable:
        return "the backend cannot update a loaded model's weights (only the hf backend can; served engines restart)"
    if spec.workers > 1 or spec.ray is not None:
        return "ratios evaluated in several processes (--workers, --ray) each load their own model"
    if spec.backend.device_map is not None:
        return "a model spread over devices by --device-map"
    return None


def _fits_in_memory(spec: SweepSpec) -> bool:
    """The target's weights, as float32 (what the hf backend loads on the CPU), fit in the memory
    available now."""
    from chatvector.io.checkpoint import Checkpoint
    from chatvector.io.hub import resolve_model

    target = spec.recipe_at(1.0).target
    if target is None:
        return False
    with Checkpoint.open(resolve_model(target, "target")) as checkpoint:
        elements = sum(info.nbytes // info.itemsize for info in checkpoint.tensors.values())
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return True  # no figure to go by: as a sweep on disk would, try
    return elements * 4 < available


def run_in_place(
    jobs: list[RatioJob],
    models_root: Path,
    on_ratio: Callable[[float, bool], None] | None,
    on_suite: Callable[[str, int], None] | None,
) -> Iterator[tuple[RatioJob, dict[str, Any], dict[str, float]]]:
    """Evaluate each job's ratio on one loaded model; yield (job, results.json, seconds)."""
    from chatvector.eval.backends import open_backend
    from chatvector.eval.job import run_eval

    spec = jobs[0].spec
    merge_run = spec.merge_run.model_copy(update={"force": True})
    # kept: the first ratio's model is the one loaded; else a folder removed once loaded
    loaded = models_root / (jobs[0].ratio_dir.name if spec.keep else LOADED)
    started = time.perf_counter()
    chatvector.merge(recipe=spec.recipe_at(jobs[0].ratio), out=loaded, run=merge_run)
    try:
        with open_backend(str(loaded), spec.backend, spec.generation) as backend:
            if not spec.keep:
                shutil.rmtree(loaded, ignore_errors=True)  # loaded: the files are no longer needed
            setup = time.perf_counter() - started
            log.info("in place: model loaded once in %.2f s", setup)
            for job in jobs:
                if on_ratio is not None:
                    on_ratio(job.ratio, False)
                yield _one_ratio(job, backend, loaded, on_suite, run_eval, setup)
                setup = 0.0
    finally:
        if not spec.keep:
            shutil.rmtree(loaded, ignore_errors=True)


def _one_ratio(
    job: RatioJob,
    backend: Any,
    loaded: Path,
    on_suite: Callable[[str, int], None] | None,
    run_eval: Callable[..., Any],
    setup: float,
) -> tuple[RatioJob, dict[str, Any], dict[str, float]]:
    spec = job.spec
    recipe = spec.recipe_at(job.ratio)
    model_dir = loaded.parent / job.ratio_dir.name  # r=R, as a sweep on disk names it
    eval_job = spec.eval_job(job.ratio, model_dir, job.ratio_dir)
    started = time.perf_counter()
    report = backend.merge_in_place(recipe, spec.merge_run, model_id=eval_job.model_id)
    merged = time.perf_counter() - started
    if spec.keep and model_dir != loaded:
        chatvector.merge(recipe=recipe, out=model_dir, run=spec.merge_run.model_copy(update={"force": True}))
    # model: where a sweep on disk puts this ratio's model. It exists only with --keep, and then its
    # weight fingerprint keys the replies as on disk; otherwise the recipe (in model_id) names them.
    eval_job = dataclasses.replace(eval_job, recipe=report.recipe)
    run = run_eval(eval_job, on_suite=on_suite, backend=backend)
    # the keys of a sweep on disk: "merge" is the in-place merge, "load" the one load (first ratio)
    seconds = {"merge": round(merged, 3), **run.timings, "load": round(setup + run.timings["load"], 3)}
    return job, run.result.to_json(), seconds
