"""One evaluation of one model, as ``chatvector eval`` and every ratio of a sweep run it.

:class:`EvalJob` holds everything it needs (the model, ``OUT``, and the option groups of
:mod:`chatvector.eval.options`); it pickles, so sweep workers and Ray tasks receive it whole.
:func:`run_eval` opens the backend (starting a server for ``--serve``), generates what
``OUT/replies.jsonl`` does not already hold, scores, runs lm-evaluation-harness tasks if asked,
and writes ``OUT/results.json``, ``report.md`` and ``settings.json`` (what decides the results,
checked before a sweep trusts an earlier run).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatvector.errors import EvalError
from chatvector.eval.options import BackendOptions, DataOptions, GenerationOptions, JudgeOptions

if TYPE_CHECKING:  # the evaluation imports the scorers; loaded when an evaluation runs
    from chatvector.eval.backends import Backend
    from chatvector.eval.result import EvalResult

__all__ = [
    "EvalJob",
    "EvalRun",
    "run_eval",
    "settings_of",
    "suites_of",
    "read_settings",
    "SETTINGS_FILE",
    "REPLIES_FILE",
]

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
REPLIES_FILE = "replies.jsonl"


@dataclass(frozen=True)
class EvalJob:
    """What to evaluate, where the results go, and how.

    Args:
        model: a model directory (hf backend, ``--serve``) or a model name at ``--base-url``.
        out: the output directory (results.json, report.md, replies.jsonl, server.log).
        model_id: what names the model in the replies cache when its directory is temporary (a
            sweep's merged model); default: ``model``.
        recipe: the merge recipe to record (default: the one a chatvector output carries).
    """

    model: str
    out: Path
    backend: BackendOptions = field(default_factory=BackendOptions)
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    judge: JudgeOptions = field(default_factory=JudgeOptions)
    data: DataOptions = field(default_factory=DataOptions)
    model_id: str | None = None
    recipe: dict[str, Any] | None = None


@dataclass
class EvalRun:
    """An evaluation's result, where it was written, and how many replies were made or reused."""

    result: EvalResult
    path: Path
    generated: int
    reused: int
    timings: dict[str, float] = field(default_factory=dict)


class _Timed:
    """A backend whose ``generate`` calls are timed (the rest of an evaluation is scoring)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def generate(self, conversations: list[Any], on_reply: Any = None) -> list[str]:
        started = time.perf_counter()
        try:
            return self.backend.generate(conversations, on_reply=on_reply)
        finally:
            self.seconds += time.perf_counter() - started


def suites_of(data: DataOptions) -> list[str]:
    """The suites to run: ``--suite`` as given, else every suite that needs no judge."""
    from chatvector.eval.suites import OFFLINE_SUITES, check_suite_name

    return [check_suite_name(name) for name in data.suite] or list(OFFLINE_SUITES)


def settings_of(job: EvalJob) -> dict[str, Any]:
    """What decides an evaluation's results (not how fast it ran): language, suites, data, decoding,
    judge, lm-eval tasks, and the backend's kind, dtype and server. Two runs with equal settings of
    the same model are comparable; a sweep refuses to mix runs whose settings differ."""
    from chatvector.eval.backends import kind_of

    backend, kind = job.backend, kind_of(job.backend)
    return {
        "lang": job.data.lang,
        "suites": suites_of(job.data),
        "data": job.data.model_dump(mode="json", exclude={"lang", "suite"}),
        "generation": job.generation.model_dump(mode="json"),
        "judge": job.judge.model_dump(mode="json", exclude={"judge_timeout"}),  # how long, not what
        "backend": {
            "backend": kind.name,
            "dtype": backend.dtype,
            "serve": backend.serve,
            "serve_arg": list(backend.serve_arg),
            "base_url": None if kind.capabilities.per_model_endpoint else backend.base_url,
            "model_name": backend.model_name,
        },
    }


def _resumable(error: EvalError, generated: int, kept: int, replies: Path, verdicts: int = 0) -> EvalError:
    if kept == 0 and verdicts == 0:
        return error
    judged = f" and {verdicts} judge verdicts in {replies.with_name('judgments.jsonl')}" if verdicts else ""
    note = (
        f"{kept} replies ({generated} new in this run) are kept in {replies}{judged}; rerun the same command to "
        "resume: only what is missing will be generated or judged"
    )
    return type(error)(f"{error}\n{note}", file=error.file, option=error.option)


def run_eval(
    job: EvalJob, *, on_suite: Callable[[str, int], None] | None = None, backend: Backend | None = None
) -> EvalRun:
    """Evaluate ``job.model`` and write its results into ``job.out``.

    ``backend``: one already open (a sweep's model updated in place), used as it is and left open;
    by default the backend ``job.backend`` asks for is opened here and closed at the end.

    Raises:
        InputError: options that do not fit (checked before any model is loaded or server started).
        EvalError: a backend, server, judge or lm-eval failure; the replies made so far are kept in
            ``OUT/replies.jsonl`` and the message says how to resume.
    """
    from chatvector.eval.backends import check_backend, open_backend
    from chatvector.eval.datasets import parse_data_map, parse_data_sources
    from chatvector.eval.evaluation import evaluate, load_recipe_of
    from chatvector.eval.generate import RepliesCache
    from chatvector.eval.judge import judges_from_options
    from chatvector.eval.judgments import JUDGMENTS_FILE, JudgmentStore
    from chatvector.eval.lmeval import check_serve, parse_tasks, run_lm_eval
    from chatvector.eval.provenance import content_identity
    from chatvector.eval.report import write_results
    from chatvector.eval.suites import SUITES, check_suite_name

    # every option is checked before a model is loaded or a server started
    suites, tasks = suites_of(job.data), parse_tasks(job.data.lm_eval)
    sources = parse_data_sources(job.data.data, check_suite_name)
    data_map = parse_data_map(job.data.data_map, check_suite_name)
    for suite in suites:
        SUITES[suite].check_source(sources.get(suite))
    check_backend(job.backend)
    if tasks:
        check_serve(job.backend.serve)
    store = JudgmentStore(job.out / JUDGMENTS_FILE)  # read if there; created with the first verdict
    judges = judges_from_options(job.judge, concurrency=job.backend.concurrency, store=store)
    recipe = (
        job.recipe
        if job.recipe is not None
        else (load_recipe_of(Path(job.model)) if Path(job.model, "config.json").exists() else None)
    )
    job.out.mkdir(parents=True, exist_ok=True)
    replies = job.out / REPLIES_FILE
    marks = [time.perf_counter()]
    opened = (
        nullcontext(backend)
        if backend is not None
        else open_backend(job.model, job.backend, job.generation, log_dir=job.out, model_id=job.model_id)
    )
    with opened as backend:
        marks.append(time.perf_counter())
        timed = _Timed(backend)
        # keyed by content: new weights under the same path are a new model, whose replies are new
        context = {"backend": backend.identity(), "generation": job.generation.model_dump()}
        cache = RepliesCache(replies, {**context, "weights": content_identity(job.model)})
        try:
            result = evaluate(
                timed,
                suites,
                job.data.lang,
                toxicity=job.data.toxicity,
                data=sources,
                data_map=data_map,
                limit=job.data.limit,
                seed=job.generation.seed,
                model=job.model,
                recipe=recipe,
                on_suite=on_suite,
                cache=cache,
                **judges,
            )
            marks.append(time.perf_counter())
            if tasks:
                metrics, summary = run_lm_eval(backend, tasks, model=job.model, limit=job.data.limit, out_dir=job.out)
                result.metrics.update(metrics)
                result.backend["lm_eval"] = summary
            marks.append(time.perf_counter())
        except EvalError as error:
            raise _resumable(error, cache.generated, len(cache.replies), replies, len(store.records)) from error
        finally:
            cache.close()
            store.close()
    marks.append(time.perf_counter())
    log.info("%d replies generated, %d reused from %s", cache.generated, cache.reused, replies)
    _write_json(job.out / SETTINGS_FILE, settings_of(job))
    spans = [round(b - a, 3) for a, b in zip(marks, marks[1:], strict=False)]
    timings = {
        "load": spans[0],
        "generation": round(timed.seconds, 3),
        "scoring": round(spans[1] - timed.seconds, 3),
        "lm_eval": spans[2],
        "stop": spans[3],
    }
    return EvalRun(result, write_results(result, job.out), cache.generated, cache.reused, timings)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from chatvector.eval.state_files import write_json

    write_json(path, data)


def read_settings(folder: Path) -> dict[str, Any] | None:
    """The settings an evaluation in ``folder`` ran with, or None when it recorded none."""
    path = folder / SETTINGS_FILE
    try:
        settings = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return settings if isinstance(settings, dict) else None  # anything else: as if none were recorded
