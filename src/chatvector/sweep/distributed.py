"""Ratios in parallel: local worker processes (``--workers N``) or Ray tasks (``--ray auto|ADDRESS``).

Each ratio is the same :func:`~chatvector.sweep.job.evaluate_ratio` a sequential sweep runs
(merge, load or serve, evaluate; called as ``RatioJob.run``), so the files under ``OUT/ratios/r=R/`` are the same too.

- **Processes.** A pool of ``N`` spawned processes, each taking the next ratio when done with one,
  each with ``cores // N`` torch threads (or ``--threads // N``), so the workers together never ask
  for more threads than the machine has. Stopping the sweep (Ctrl-C, SIGTERM) stops the workers
  with SIGTERM, which they turn into an exit that runs their clean-up (servers stopped, merged
  models removed). Killing it outright (``kill -9``) does too: each worker asks the kernel for
  SIGTERM when the sweep dies (:func:`chatvector.interrupts.die_with_parent`), so no worker
  finishes its ratio or writes into OUT after the sweep is gone.
- **Ray.** Each ratio is a task with ``--gpus-per-ratio`` GPUs (Ray sets ``CUDA_VISIBLE_DEVICES``).
  A task evaluates into a staging folder on its node, seeded with the ratio's earlier
  ``replies.jsonl``, and returns the folder's files, which the driver writes into ``OUT`` (results
  last), so ``OUT`` need not be on a shared filesystem. Merged models go to ``--shared-dir``
  (default: a temporary folder on the task's node, removed after the task). Inputs (base, chat,
  target) must be readable at the same paths on every node, or be hub ids.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatvector import errors, interrupts
from chatvector.errors import ChatVectorError
from chatvector.extras import require

if TYPE_CHECKING:
    from chatvector.sweep.job import RatioJob

__all__ = ["run_in_processes", "run_on_ray", "threads_per_worker"]

log = logging.getLogger(__name__)

OnRatio = Callable[[float, bool], None] | None
Outcome = tuple[float, dict[str, Any]]


def threads_per_worker(workers: int, threads: int | None) -> int:
    """Each worker's share of ``threads`` (default: every core), at least one."""
    return max(1, (threads or os.cpu_count() or 1) // workers)


def _reraise(ratio: float, failure: tuple[str, str]) -> None:
    """Raise a worker's chatvector error here, as its own class when that rebuilds from a message."""
    kind, message = failure
    cls = getattr(errors, kind, ChatVectorError)
    if (
        not isinstance(cls, type)
        or not issubclass(cls, ChatVectorError)
        or cls in (errors.PreflightError, errors.MissingExtraError)
    ):
        cls = ChatVectorError
    raise cls(f"r={ratio:g}: {message}")


def _attempt(job: RatioJob) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
    """Run one ratio; a chatvector error comes back as (class name, message), which always pickles."""
    try:
        return job.run(), None
    except ChatVectorError as error:
        return None, (type(error).__name__, str(error))


# --- local processes --------------------------------------------------------------------------------


def _stop(signum: int, frame: object) -> None:
    interrupts.request_stop(signum)
    interrupts.check()  # SystemExit: `finally` blocks stop servers and remove merged models


def _quiet() -> None:
    """No model-loading progress bars from workers: they interleave into noise."""
    import transformers

    transformers.utils.logging.disable_progress_bar()


def _init_worker(threads: int, parent: int) -> None:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    interrupts.die_with_parent(parent)  # after the handler: the death signal runs the clean-up
    import torch

    torch.set_num_threads(threads)
    _quiet()


def _process_job(job: RatioJob) -> tuple[float, dict[str, Any] | None, tuple[str, str] | None]:
    result, failure = _attempt(job)
    return job.ratio, result, failure


def run_in_processes(jobs: list[RatioJob], workers: int, on_ratio: OnRatio = None) -> Iterator[Outcome]:
    """Evaluate ``jobs`` in ``workers`` spawned processes; yield (ratio, results) as each finishes."""
    if not jobs:
        return
    spec = jobs[0].spec
    threads = threads_per_worker(workers, spec.backend.threads)
    jobs = [replace(job, threads=threads) for job in jobs]
    context = multiprocessing.get_context("spawn")  # torch and threads do not survive fork
    log.info("%d ratios in %d processes of %d threads", len(jobs), workers, threads)
    # Leaving the block terminates the workers (SIGTERM). A worker takes the next ratio when done with
    # one; what a ratio loaded is freed when its evaluation returns.
    with context.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(threads, os.getpid())) as pool:
        for ratio, result, failure in pool.imap_unordered(_process_job, jobs):
            if failure is not None:
                _reraise(ratio, failure)
            if on_ratio is not None:
                on_ratio(ratio, False)
            assert result is not None  # a job without a failure has a result
            yield ratio, result


# --- Ray --------------------------------------------------------------------------------------------


def _ray_job(
    job: RatioJob, replies: bytes | None
) -> tuple[dict[str, Any] | None, tuple[str, str] | None, dict[str, bytes]]:
    """One ratio in a Ray task: evaluate into a staging folder; return its files with the outcome
    (the replies too when it failed, so a rerun resumes from them)."""
    _quiet()
    staging = Path(tempfile.mkdtemp(prefix="chatvector-ray-"))
    try:
        if replies:
            (staging / "replies.jsonl").write_bytes(replies)
        result, failure = _attempt(replace(job, ratio_dir=staging))
        files = {p.name: p.read_bytes() for p in sorted(staging.iterdir()) if p.is_file()}
        return result, failure, files
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(folder: Path, files: dict[str, bytes]) -> None:
    """Write a task's files into ``folder``, results.json last (its presence means "done")."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(files, key=lambda n: n == "results.json"):
        partial = folder / f".{name}.partial"
        partial.write_bytes(files[name])
        partial.replace(folder / name)


def _connect(address: str) -> bool:
    """Join the Ray cluster (``auto``: the one this process or machine already runs, else a new local
    one); True when this call started Ray here, so it should shut it down again."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=None if address == "auto" else address, include_dashboard=False, logging_level=logging.WARNING)
    return True


def run_on_ray(
    jobs: list[RatioJob],
    address: str,
    gpus_per_ratio: float,
    on_ratio: OnRatio = None,
) -> Iterator[Outcome]:
    """Evaluate ``jobs`` as Ray tasks; yield (ratio, results) as each finishes."""
    require("--ray", "ray")
    import ray

    if not jobs:
        return
    started = _connect(address)
    task = ray.remote(num_cpus=1, num_gpus=gpus_per_ratio, max_retries=0)(_ray_job)
    pending = {}
    for job in jobs:
        earlier = job.ratio_dir / "replies.jsonl"
        pending[task.remote(job, earlier.read_bytes() if earlier.exists() else None)] = job
    try:
        while pending:
            [ready], _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready)
            result, failure, files = ray.get(ready)
            _publish(job.ratio_dir, files)
            if failure is not None:
                _reraise(job.ratio, failure)
            if on_ratio is not None:
                on_ratio(job.ratio, False)
            yield job.ratio, result
    finally:
        for ref in pending:
            ray.cancel(ref)  # KeyboardInterrupt in the task: its clean-up runs
        if started:
            ray.shutdown()
