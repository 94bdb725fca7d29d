"""The demo for one or several seeds, in pinned worker processes, and its aggregate report.

Work is split into stages (``base`` → ``chat`` and ``cp`` → evaluation) that run in a pool of
single-threaded worker processes as soon as their inputs exist: on two cores, chat and cp train
side by side, and several seeds keep every core busy. Each stage is deterministic on its own, so
the numbers do not depend on the schedule or on ``jobs``. Workers are started with
:data:`~chatvector.demo.determinism.PINNED_ENV` and their log lines are forwarded to this process.
"""

from __future__ import annotations

import dataclasses
import logging
import logging.handlers
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chatvector.demo import DEFAULT_RATIOS, report
from chatvector.demo.determinism import configure_torch, pinned_environment
from chatvector.demo.family import DemoConfig, family_paths, train_stage
from chatvector.demo.run import evaluate_family
from chatvector.interrupts import die_with_parent

log = logging.getLogger(__name__)


def default_jobs() -> int:
    """One worker per core, at most 4 (the stages of three seeds rarely keep more busy)."""
    return max(1, min(4, os.cpu_count() or 1))


def _init_worker(queue: multiprocessing.Queue, level: int, parent: int) -> None:
    die_with_parent(parent)  # a worker killed out from under would train on for minutes
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    root.setLevel(logging.WARNING)
    logging.getLogger("chatvector").setLevel(level)
    capability = configure_torch()
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    log.debug("worker %d: torch kernels for %s, one thread", os.getpid(), capability)


def _train(config: DemoConfig, stage: str, cache_dir: Path | None, rebuild: bool) -> float:
    started = time.perf_counter()
    train_stage(config, stage, cache_dir, rebuild)
    return time.perf_counter() - started


def _search(
    config: DemoConfig, cache_dir: Path | None, seed_dir: Path, ratios: tuple[float, ...], trials: int
) -> tuple[dict[str, Any], float]:
    from chatvector.demo.search import search_seed

    started = time.perf_counter()
    summary = search_seed(family_paths(config, cache_dir), seed_dir, trials, ratios, config.seed)
    return summary, time.perf_counter() - started


def _evaluate(config: DemoConfig, cache_dir: Path | None, out_dir: Path, ratios: tuple[float, ...]) -> dict[str, Any]:
    import torch

    summary = evaluate_family(config, family_paths(config, cache_dir), out_dir, ratios)
    summary["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return summary


class _Redispatch(logging.Handler):
    """Hands a worker's record to this process's logger of the same name (levels and handlers apply)."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


@contextmanager
def _forwarded_logs(context: multiprocessing.context.SpawnContext) -> Iterator[multiprocessing.Queue]:
    queue = context.Queue()
    listener = logging.handlers.QueueListener(queue, _Redispatch())
    listener.start()
    try:
        yield queue
    finally:
        listener.stop()


def run_demo(
    config: DemoConfig,
    out_dir: Path,
    *,
    seeds: tuple[int, ...] = (0,),
    ratios: tuple[float, ...] = DEFAULT_RATIOS,
    cache_dir: Path | None = None,
    rebuild: bool = False,
    jobs: int | None = None,
    search_trials: int | None = None,
) -> dict[str, Any]:
    """Train (or reuse) one family per seed, merge, evaluate, and write the aggregate report.

    Writes ``out_dir/seed-N/`` (merged models, ``results.json`` and the prompts as eval data per
    seed) and, for all seeds, ``results.json``, ``report.md`` and ``ratio.png`` in ``out_dir``;
    returns the aggregate. With ``search_trials``, each seed's evaluation is followed by
    ``chatvector search`` on its family (:mod:`chatvector.demo.search`, ``seed-N/search/``) with
    that many trials, and the aggregate holds the held-out comparison (``search``).
    """
    started = time.perf_counter()
    configs = {seed: dataclasses.replace(config, seed=seed) for seed in seeds}
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger("chatvector.demo").getEffectiveLevel()
    training: dict[int, float] = dict.fromkeys(seeds, 0.0)
    summaries: dict[int, dict] = {}
    searches: dict[int, dict] = {}
    searching: dict[int, float] = {}
    with pinned_environment(), _forwarded_logs(context) as queue:
        with ProcessPoolExecutor(
            jobs or default_jobs(), mp_context=context, initializer=_init_worker, initargs=(queue, level, os.getpid())
        ) as pool:
            pending: dict[Future[Any], tuple[int, str]] = {}
            for seed in seeds:
                pending[pool.submit(_train, configs[seed], "base", cache_dir, rebuild)] = (seed, "base")
            waiting_for_evaluation: dict[int, int] = {}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    seed, stage = pending.pop(future)
                    result = future.result()  # a worker's exception is raised here
                    if stage == "search":
                        searches[seed], searching[seed] = result
                        continue
                    if stage == "evaluate":
                        summaries[seed] = result
                        if search_trials is not None:
                            searched = pool.submit(
                                _search, configs[seed], cache_dir, out_dir / f"seed-{seed}", ratios, search_trials
                            )
                            pending[searched] = (seed, "search")
                        continue
                    training[seed] += result
                    if stage == "base":
                        for follower in ("chat", "cp"):
                            job = pool.submit(_train, configs[seed], follower, cache_dir, rebuild)
                            pending[job] = (seed, follower)
                        waiting_for_evaluation[seed] = 2
                        continue
                    waiting_for_evaluation[seed] -= 1
                    if waiting_for_evaluation[seed] == 0:
                        evaluation = pool.submit(_evaluate, configs[seed], cache_dir, out_dir / f"seed-{seed}", ratios)
                        pending[evaluation] = (seed, "evaluate")
    for seed in seeds:
        summaries[seed]["seconds"]["training"] = round(training[seed], 1)
    aggregate = report.aggregate([summaries[seed] for seed in seeds], time.perf_counter() - started)
    if search_trials is not None:
        from chatvector.demo.search import summarise

        aggregate["search"] = summarise(searches, searching)
    report.write(out_dir, aggregate)
    return aggregate
