"""Ratio sweeps: merge at each ratio, evaluate, and recommend a ratio by a documented rule.

Each ratio's evaluation is a normal ``chatvector eval`` run (:func:`chatvector.eval.job.run_eval`)
into ``OUT/ratios/r=R/``, with every option ``eval`` takes; a sweep that is interrupted resumes
from the ratios already there, once it has checked that each was evaluated with the same settings.
Ratios run one after the other, in ``workers`` local processes, or as Ray tasks
(:mod:`chatvector.sweep.distributed`); the files they leave are the same.

By default (``in_place``, :mod:`chatvector.sweep.inplace`) the model is loaded once and each
ratio is merged straight into its parameters, bit for bit what loading the merged model gives.
Otherwise merged models go to RAM (``/dev/shm``, a folder of this run's own: :mod:`chatvector.sweep.ram`)
when they are small, else to ``OUT/models/r=R`` (or ``--shared-dir`` on Ray), and are removed
after their evaluation unless ``keep`` is set (then they stay; a 7B model is 14 GB per ratio).
RAM folders left by sweeps that were killed are removed by the next sweep. A served sweep
(``--serve``) whose engine documents a weight reload starts the server once and reloads each
ratio into it (:mod:`chatvector.sweep.reload`); other engines are started and stopped per ratio.

r = 0, the target alone, is always evaluated: it is the baseline the recommendation tests every
ratio against. Every ratio is checked (finite, distinct once printed: ``r=0.5`` names a folder and
a plot label) before anything is written, and the sweep's state files are written atomically
(:mod:`chatvector.sweep.state`).

The recommendation rule is in :mod:`chatvector.sweep.recommend`.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from chatvector.errors import InputError
from chatvector.sweep import inplace, ram, reload, state
from chatvector.sweep.job import TIMINGS_FILE, RatioJob, SweepSpec, evaluate_ratio
from chatvector.sweep.options import check_ratios, ratio_name
from chatvector.sweep.recommend import recommend, row_from_results
from chatvector.sweep.report import write_reports

__all__ = ["SweepSpec", "RatioJob", "run_sweep", "evaluate_ratio", "ratio_name", "recommend", "merge_root"]

log = logging.getLogger(__name__)


def _models_root(spec: SweepSpec) -> Path:
    """Where merged models go: RAM (:data:`chatvector.sweep.ram.RAM`, meaning a folder of this
    run's own there) for small models that are not kept, else ``OUT/models``.

    A small model (target weights up to ``in_memory_limit`` bytes) is merged into RAM when it has
    room for it twice over, so a sweep of small models never touches the disk; it is still the
    same streaming merge, so results do not depend on where it ran.
    """
    disk = spec.out / "models"
    if spec.keep or spec.in_memory_limit <= 0 or not ram.RAM.is_dir():
        return disk
    from chatvector.io.checkpoint import Checkpoint
    from chatvector.io.hub import resolve_model

    target_ref = spec.recipe_at(1.0).target
    if target_ref is None:  # a recipe without a target fails in the merge, with its own message
        return disk
    with Checkpoint.open(resolve_model(target_ref, "target")) as target:
        size = sum(info.nbytes for info in target.tensors.values())
    if size > spec.in_memory_limit or shutil.disk_usage(ram.RAM).free < 2 * size:
        return disk
    return ram.RAM


def _settings(spec: SweepSpec) -> dict[str, Any]:
    """The settings every ratio's evaluation must share (see :func:`chatvector.eval.job.settings_of`)."""
    from chatvector.eval.job import settings_of

    return settings_of(spec.eval_job(1.0, Path("model"), spec.out))


def _identity(spec: SweepSpec) -> dict[str, Any]:
    """What makes results comparable across ratios: a resumed sweep must not mix two setups."""
    return {"recipe_at_1": spec.recipe_at(1.0).model_dump(mode="json"), **_settings(spec)}


def _differences(now: dict[str, Any], before: dict[str, Any]) -> str:
    return ", ".join(sorted(k for k in now.keys() | before.keys() if now.get(k) != before.get(k)))


def _check_resumable(spec: SweepSpec) -> None:
    marker = spec.out / "sweep-spec.json"
    identity = _identity(spec)
    if marker.exists():
        previous = state.read_json(marker, "remove it (and OUT/ratios if unsure) to start afresh, or give a new -o")
        if previous != identity:
            raise InputError(
                f"{spec.out} holds a sweep with different settings ({_differences(identity, previous)}); "
                "resume with the same settings, or give a new -o directory"
            )
    else:
        state.write_json(marker, identity)


def finished(spec: SweepSpec, ratio: float) -> dict[str, Any] | None:
    """The results of ``ratio`` from an earlier run, once checked to have the sweep's settings.

    Raises:
        InputError: the folder holds results made with other settings (or with none recorded).
    """
    from chatvector.eval.job import read_settings

    folder = spec.out / "ratios" / ratio_name(ratio)
    if not (folder / "results.json").exists():
        return None
    recorded, expected = read_settings(folder), _settings(spec)
    if recorded != expected:
        what = (
            "no record of its settings" if recorded is None else f"other settings ({_differences(expected, recorded)})"
        )
        raise InputError(
            f"{folder} was evaluated with {what}; remove that folder to evaluate {ratio_name(ratio)} "
            "again, or give a new -o directory",
            file=folder,
        )
    return state.read_json(folder / "results.json", f"remove {folder} to evaluate {ratio_name(ratio)} again")


def _check_ratios(spec: SweepSpec) -> None:
    """Every ratio finite, representable, distinct once printed (:func:`check_ratios`), and a valid recipe."""
    try:
        check_ratios(spec.ratios)
    except ValueError as error:
        raise InputError(f"--ratios {error}", option="--ratios") from None
    for ratio in spec.evaluated:
        try:
            spec.recipe_at(ratio)
        except ValidationError as error:
            first = error.errors()[0]
            raise InputError(
                f"--ratios {ratio}: {first['msg'].removeprefix('Value error, ')}", option="--ratios"
            ) from None


def _check(spec: SweepSpec) -> None:
    """Refuse what cannot work before anything is written or merged."""
    from chatvector.eval.backends import check_backend, kind_of

    _check_ratios(spec)
    if not kind_of(spec.backend).capabilities.loads_weights:
        raise InputError(
            "a sweep evaluates a new model at each ratio: use the hf backend or --serve, not a fixed --base-url",
            option="--backend",
        )
    check_backend(spec.backend)  # a device this machine lacks, clashing flags: before any merge
    if spec.workers < 1:
        raise InputError(f"--workers {spec.workers}: give 1 or more", option="--workers")
    if spec.ray is not None and spec.workers > 1:
        raise InputError("--workers runs ratios in local processes, --ray as Ray tasks: choose one", option="--ray")
    if spec.gpus_per_ratio and spec.ray is None:
        raise InputError("--gpus-per-ratio is what each Ray task reserves; it needs --ray", option="--gpus-per-ratio")
    if spec.shared_dir is not None and spec.ray is None:
        raise InputError("--shared-dir is where Ray tasks write merged models; it needs --ray", option="--shared-dir")


def _rows(spec: SweepSpec, results: dict[float, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for ratio in spec.evaluated:
        row = row_from_results(ratio, results[ratio], spec.rank_by)
        timings = spec.out / "ratios" / ratio_name(ratio) / TIMINGS_FILE
        if timings.exists():
            row["seconds"] = state.read_json(timings, "remove it: it only records how long the ratio took")
        rows.append(row)
    return rows


def _run_here(
    jobs: list[RatioJob], on_ratio: Callable[[float, bool], None] | None, on_suite: Callable[[str, int], None] | None
) -> Iterator[tuple[float, dict[str, Any]]]:
    for job in jobs:
        if on_ratio is not None:
            on_ratio(job.ratio, False)
        yield job.ratio, evaluate_ratio(job, on_suite)


def run_sweep(
    spec: SweepSpec,
    *,
    on_ratio: Callable[[float, bool], None] | None = None,
    on_suite: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Merge and evaluate every ratio (skipping those already done); write sweep.json and reports.

    ``on_ratio(ratio, done)`` is called when a ratio is found done, and when it starts (one at a
    time) or finishes (in parallel runs).
    """
    from chatvector.sweep import distributed

    _check(spec)
    _identity(spec)  # every setting checked before OUT is made
    in_place = inplace.in_place_wanted(spec)
    reloading = reload.reload_wanted(spec) and not in_place  # asked first: --serve-reload is checked
    if ram.RAM.is_dir():
        ram.remove_stale()
    spec.out.mkdir(parents=True, exist_ok=True)
    _check_resumable(spec)
    results: dict[float, dict[str, Any]] = {}
    for ratio in spec.evaluated:
        earlier = finished(spec, ratio)
        if earlier is not None:
            results[ratio] = earlier
            if on_ratio is not None:
                on_ratio(ratio, True)
    todo = [r for r in spec.evaluated if r not in results]
    with ExitStack() as cleanup:  # this run's RAM folder, removed however the run ends
        root = _root_for(spec, cleanup) if todo else None
        jobs = [RatioJob(spec, r, root, spec.out / "ratios" / ratio_name(r)) for r in todo]
        if in_place and jobs:
            outcomes = _record_timings(inplace.run_in_place(jobs, root or spec.out / "models", on_ratio, on_suite))
        elif reloading and jobs:
            outcomes = _record_timings(reload.run_reloading(jobs, root or spec.out / "models", on_ratio, on_suite))
        elif spec.ray is not None:
            outcomes = distributed.run_on_ray(jobs, spec.ray, spec.gpus_per_ratio, on_ratio)
        elif spec.workers > 1:
            outcomes = distributed.run_in_processes(jobs, spec.workers, on_ratio)
        else:
            outcomes = _run_here(jobs, on_ratio, on_suite)
        for ratio, result in outcomes:
            results[ratio] = result
    return _summarise(spec, _rows(spec, results), in_place, reloading)


def _record_timings(
    outcomes: Iterator[tuple[RatioJob, dict[str, Any], dict[str, float]]],
) -> Iterator[tuple[float, dict[str, Any]]]:
    for job, result, seconds in outcomes:
        state.write_json(job.ratio_dir / TIMINGS_FILE, seconds)
        yield job.ratio, result


def _root_for(spec: SweepSpec, cleanup: ExitStack) -> Path | None:
    """Where this run merges: ``--shared-dir`` on Ray (None there without it: each task's own
    temporary directory, on its node), else a RAM folder of this run's own or ``OUT/models``."""
    if spec.ray is not None:
        if spec.shared_dir is not None:
            return spec.shared_dir / "models"
        return spec.out / "models" if spec.keep else None
    root = _models_root(spec)
    return cleanup.enter_context(ram.RamFolder()).path if root == ram.RAM else root


def _summarise(spec: SweepSpec, rows: list[dict[str, Any]], in_place: bool, reloading: bool) -> dict[str, Any]:
    advice = recommend(rows, spec.threshold, rank_by=spec.rank_by, seed=spec.generation.seed)
    summary = {
        "lang": spec.lang,
        "in_place": in_place,
        # with --serve: the server started once and told to reload each ratio, or restarted per ratio
        "serve_reload": reloading if spec.backend.serve is not None else None,
        "suites": list(spec.suites),
        "threshold": spec.threshold,
        "rank_by": spec.rank_by,
        "inputs": {k: getattr(spec, k) for k in ("target", "base", "chat", "vector")}
        | {"recipe": str(spec.recipe) if spec.recipe else None},
        "rows": rows,
        "recommendation": advice,
    }
    state.write_json(spec.out / "sweep.json", summary)
    write_reports(spec.out, summary)
    return summary


def merge_root(spec: SweepSpec) -> Path:
    """Where a local run of ``spec`` merges its models: :data:`chatvector.sweep.ram.RAM` (meaning a
    :class:`~chatvector.sweep.ram.RamFolder` of the run's own) for small models that are not kept,
    else ``OUT/models`` (the rule of :func:`_models_root`; ``chatvector search`` uses it too)."""
    return _models_root(spec)
