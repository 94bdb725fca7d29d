"""One sweep's definition (:class:`SweepSpec`) and one ratio's work (:class:`RatioJob`,
:func:`evaluate_ratio`: merge at the ratio, evaluate, write its folder).

Apart from :mod:`chatvector.sweep.run` so that the ways of running ratios (in processes or on Ray,
:mod:`~chatvector.sweep.distributed`; in place, :mod:`~chatvector.sweep.inplace`; through a
reloading server, :mod:`~chatvector.sweep.reload`) and the sweep that picks one of them import
these from below, not from each other.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chatvector
from chatvector.errors import EvalError, InputError
from chatvector.eval.options import BackendOptions, DataOptions, GenerationOptions, JudgeOptions
from chatvector.merge.recipe import PairTerm, Recipe, VectorTerm, load_recipe, swept_recipe
from chatvector.options import MergeOptions, RunOptions
from chatvector.sweep import state
from chatvector.sweep.options import ratio_name
from chatvector.sweep.recommend import BASELINE

__all__ = ["RatioJob", "SweepSpec", "TIMINGS_FILE", "evaluate_ratio"]

TIMINGS_FILE = "timings.json"


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep and how. Give base+chat+target, or vector+target, or a recipe (r scales every term).

    The option groups are those of ``merge`` (``merge``: embeddings, exclude, dtype; ``merge_run``:
    threads, shard size...) and ``eval`` (backend, generation, judge, data), with the same defaults.
    ``workers`` > 1 runs ratios in parallel local processes; ``ray`` (``auto`` or an address) runs
    each ratio as a Ray task with ``gpus_per_ratio`` GPUs, merged models in ``shared_dir``.
    """

    out: Path
    ratios: tuple[float, ...]
    target: str | None = None
    base: str | None = None
    chat: str | None = None
    vector: str | None = None
    recipe: Path | None = None
    keep: bool = False
    in_memory_limit: int = 2 * 10**9  # merge targets up to this many bytes in RAM (0: always on disk)
    threshold: float = 0.95
    rank_by: str | None = None
    merge: MergeOptions = field(default_factory=MergeOptions)
    merge_run: RunOptions = field(default_factory=RunOptions)
    backend: BackendOptions = field(default_factory=BackendOptions)
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    judge: JudgeOptions = field(default_factory=JudgeOptions)
    data: DataOptions = field(default_factory=DataOptions)
    workers: int = 1
    ray: str | None = None
    gpus_per_ratio: float = 0.0
    shared_dir: Path | None = None
    rule: str | None = None  # sweep only this rule's ratio (its exact 'match' or --ratio-rule regex)
    in_place: bool | None = None  # load once, merge each ratio into it (None: when possible, sweep/inplace.py)
    serve_reload: bool | None = None  # start --serve once, reload per ratio (None: where documented, sweep/reload.py)

    @property
    def evaluated(self) -> tuple[float, ...]:
        """The ratios evaluated: ``ratios`` and the baseline r = 0, in increasing order."""
        return tuple(sorted({r + 0.0 for r in self.ratios} | {BASELINE}))  # + 0.0: -0 is 0

    @property
    def lang(self) -> str:
        return self.data.lang

    @property
    def suites(self) -> tuple[str, ...]:
        from chatvector.eval.job import suites_of

        return tuple(suites_of(self.data))

    def recipe_at(self, ratio: float) -> Recipe:
        """The recipe merged at sweep point ``ratio``: every term scaled by it, or, with ``rule``, the
        recipe at ratio 1 with only that rule's ratio set to it."""
        if self.rule is None:
            return self._recipe(ratio)
        try:
            return swept_recipe(self._recipe(1.0), ratio, self.rule)
        except ValueError as error:
            raise InputError(f"--rule: {error}", option="--rule") from None

    def _recipe(self, ratio: float) -> Recipe:
        if self.recipe is not None:
            loaded = swept_recipe(load_recipe(self.recipe), ratio)
            return loaded.model_copy(update={"target": self.target} if self.target else {})
        if not self.target:
            raise InputError("sweep needs --target (or a --recipe with a target)", option="--target")
        if self.vector:
            return Recipe(target=self.target, terms=(VectorTerm(vector=self.vector, ratio=ratio),), options=self.merge)
        if not (self.base and self.chat):
            raise InputError("sweep needs --base and --chat, or --vector, or --recipe", option="--base")
        return Recipe(
            target=self.target, terms=(PairTerm(base=self.base, chat=self.chat, ratio=ratio),), options=self.merge
        )

    def eval_job(self, ratio: float, model_dir: Path, ratio_dir: Path, threads: int | None = None) -> Any:
        """The evaluation of the model merged at ``ratio`` (named by its recipe in the replies cache,
        since its directory is temporary)."""
        from chatvector.eval.job import EvalJob

        recipe = self.recipe_at(ratio).model_dump(mode="json")
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
        backend = self.backend if threads is None else self.backend.model_copy(update={"threads": threads})
        return EvalJob(
            model=str(model_dir),
            out=ratio_dir,
            backend=backend,
            generation=self.generation,
            judge=self.judge,
            data=self.data,
            model_id=f"merge:{digest}",
        )


@dataclass(frozen=True)
class RatioJob:
    """One ratio's work: merge into ``models_root`` (a temporary directory when None), evaluate into
    ``ratio_dir``, with ``threads`` CPU threads for a local model (None: the backend's setting)."""

    spec: SweepSpec
    ratio: float
    models_root: Path | None
    ratio_dir: Path
    threads: int | None = None

    def run(self, on_suite: Callable[[str, int], None] | None = None) -> dict[str, Any]:
        """:func:`evaluate_ratio` of this job (what worker processes and Ray tasks call)."""
        return evaluate_ratio(self, on_suite)


def evaluate_ratio(job: RatioJob, on_suite: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Merge at ``job.ratio``, evaluate, write ``ratio_dir`` (results last); remove the merged model
    unless kept. Returns results.json's content."""
    from chatvector.eval.job import run_eval

    spec = job.spec
    root = job.models_root or Path(tempfile.mkdtemp(prefix="chatvector-ratio-"))
    model_dir = root / ratio_name(job.ratio)
    try:
        started = time.perf_counter()
        chatvector.merge(
            recipe=spec.recipe_at(job.ratio), out=model_dir, run=spec.merge_run.model_copy(update={"force": True})
        )
        merged = time.perf_counter() - started
        if not (model_dir / "config.json").is_file():  # else a server would take the path for a hub id
            raise EvalError(
                f"{model_dir}: the merged model vanished before its evaluation (removed by another process?)"
            )
        run = run_eval(spec.eval_job(job.ratio, model_dir, job.ratio_dir, job.threads), on_suite=on_suite)
    finally:
        if not spec.keep:
            shutil.rmtree(model_dir if job.models_root else root, ignore_errors=True)
    seconds = {"merge": round(merged, 3), **run.timings}
    state.write_json(job.ratio_dir / TIMINGS_FILE, seconds)
    return run.result.to_json()
