"""A served sweep that starts the engine once and tells it to load each ratio's weights
(``sweep --serve sglang``; ``--serve-reload`` asks for it, ``--no-serve-reload`` restarts instead).

Where the ``--serve`` preset declares a documented weight reload
(:mod:`chatvector.eval.serve_reload`; today SGLang's), the first ratio is merged as a sweep on
disk merges it (into RAM or ``OUT/models``) and the server is started on it, its log in
``OUT/server.log``. Each later ratio is merged the same way, the running server is told to load
it, the answer is checked, and the merged directory is removed once loaded (unless ``--keep``);
the directory the server was started on is kept until the server stops. Each ratio is then
evaluated by the normal evaluation on the open backend, its replies cached and recorded under the
ratio's recipe, as a sweep on disk records them. A reload that fails is an error naming the engine
and its message; the server is stopped and no merged model is left (the ratios evaluated before
stay, so the sweep resumes).

Engines without a documented reload (vLLM, ``transformers serve``, llama.cpp) are started and
stopped per ratio (:func:`chatvector.sweep.job.evaluate_ratio`).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chatvector
from chatvector.errors import InputError

if TYPE_CHECKING:
    from chatvector.sweep.job import RatioJob, SweepSpec

__all__ = ["reload_wanted", "run_reloading", "merge_to"]

log = logging.getLogger(__name__)


def reload_wanted(spec: SweepSpec) -> bool:
    """Whether the sweep starts its server once and reloads weights per ratio: as asked
    (``--serve-reload`` is refused, with the reason, where it cannot work) or, by default, when the
    ``--serve`` preset declares a reload and one process evaluates every ratio."""
    why_not = _obstacle(spec)
    if spec.serve_reload is True and why_not is not None:
        raise InputError(f"--serve-reload: {why_not}; use --no-serve-reload", option="--serve-reload")
    return spec.serve_reload is not False and why_not is None


def _obstacle(spec: SweepSpec) -> str | None:
    from chatvector.eval.serve_reload import RELOADS, reload_of

    if spec.backend.serve is None:
        return "it reloads the weights of a server started by --serve; no --serve is given"
    if reload_of(spec.backend) is None:
        return (
            f"--serve {spec.backend.serve} has no documented weight reload (those that have: "
            f"{', '.join(RELOADS)}); it is restarted per model"
        )
    if spec.workers > 1 or spec.ray is not None:
        return "ratios evaluated in several processes (--workers, --ray) each start their own server"
    return None


def merge_to(spec: SweepSpec, recipe: Any, model_dir: Path) -> float:
    """Merge ``recipe`` into ``model_dir`` as a sweep on disk does; the seconds it took."""
    started = time.perf_counter()
    chatvector.merge(recipe=recipe, out=model_dir, run=spec.merge_run.model_copy(update={"force": True}))
    return time.perf_counter() - started


def run_reloading(
    jobs: list[RatioJob],
    models_root: Path,
    on_ratio: Callable[[float, bool], None] | None,
    on_suite: Callable[[str, int], None] | None,
) -> Iterator[tuple[RatioJob, dict[str, Any], dict[str, float]]]:
    """Evaluate each job's ratio on one server, reloaded per ratio; yield (job, results.json, seconds)."""
    from chatvector.eval.backends import open_backend

    spec, first = jobs[0].spec, jobs[0]
    launched = models_root / first.ratio_dir.name
    try:
        merged = merge_to(spec, spec.recipe_at(first.ratio), launched)
        started = time.perf_counter()
        model_id = spec.eval_job(first.ratio, launched, first.ratio_dir).model_id
        with open_backend(str(launched), spec.backend, spec.generation, log_dir=spec.out, model_id=model_id) as backend:
            if not backend.capabilities.reloads_weights:  # the preset said it could: a bug, not bad input
                raise RuntimeError(f"the {spec.backend.serve} backend cannot reload weights")
            seconds = {"merge": merged, "load": time.perf_counter() - started}
            log.info("served sweep: the server was started once, in %.2f s; each ratio is reloaded", seconds["load"])
            recipe = None  # the first ratio's is read from its directory, which stays while the server runs
            for job in jobs:
                if on_ratio is not None:
                    on_ratio(job.ratio, False)
                if job is not first:
                    seconds, recipe = _reload(job, backend, models_root)
                yield _evaluate(job, backend, launched, on_suite, seconds, recipe)
    finally:
        if not spec.keep:
            shutil.rmtree(launched, ignore_errors=True)


def _reload(job: RatioJob, backend: Any, models_root: Path) -> tuple[dict[str, float], dict[str, Any] | None]:
    """Merge ``job``'s ratio and have the server load it; the merged files are removed once
    loaded (or when the reload failed), unless kept. Returns the seconds taken and the recipe the
    merged model carried (recorded with its results, as a sweep on disk records it)."""
    from chatvector.eval.evaluation import load_recipe_of

    spec = job.spec
    model_dir = models_root / job.ratio_dir.name
    try:
        merged = merge_to(spec, spec.recipe_at(job.ratio), model_dir)
        recipe = load_recipe_of(model_dir)
        started = time.perf_counter()
        backend.reload_weights(str(model_dir), spec.eval_job(job.ratio, model_dir, job.ratio_dir).model_id)
    finally:
        if not spec.keep:
            shutil.rmtree(model_dir, ignore_errors=True)
    return {"merge": merged, "load": time.perf_counter() - started}, recipe


def _evaluate(
    job: RatioJob,
    backend: Any,
    launched: Path,
    on_suite: Callable[[str, int], None] | None,
    seconds: dict[str, float],
    recipe: dict[str, Any] | None,
) -> tuple[RatioJob, dict[str, Any], dict[str, float]]:
    from chatvector.eval.job import run_eval

    spec = job.spec
    model_dir = launched.parent / job.ratio_dir.name  # a reloaded one is gone unless --keep
    eval_job = spec.eval_job(job.ratio, model_dir, job.ratio_dir)
    if recipe is not None:
        eval_job = dataclasses.replace(eval_job, recipe=recipe)
    run = run_eval(eval_job, on_suite=on_suite, backend=backend)
    timings = {**run.timings, "merge": round(seconds["merge"], 3), "load": round(seconds["load"], 3)}
    return job, run.result.to_json(), timings
