"""Ratios in parallel: `--workers 2` and a local Ray instance give exactly the sequential sweep's results."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from chatvector.errors import InputError
from chatvector.eval.options import DataOptions, GenerationOptions
from chatvector.sweep.distributed import threads_per_worker
from chatvector.sweep.run import SweepSpec, run_sweep

RATIOS = (0.0, 0.5, 1.0, 1.5)


def outcome(out: Path) -> dict:
    """What must not depend on how the ratios were scheduled: every metric, reply and the recommendation."""
    summary = json.loads((out / "sweep.json").read_text())
    replies = {}
    for ratio in RATIOS:
        results = json.loads((out / "ratios" / f"r={ratio:g}" / "results.json").read_text())
        replies[ratio] = {s["id"]: s["replies"] for d in results["suites"].values() for s in d["samples"]}
    return {
        "rows": [(r["ratio"], r["metrics"]) for r in summary["rows"]],
        "replies": replies,
        "recommendation": summary["recommendation"],
    }


@pytest.fixture(scope="module")
def sequential(trios, tmp_path_factory) -> tuple[SweepSpec, dict]:
    trio = trios["llama"]
    spec = SweepSpec(
        out=tmp_path_factory.mktemp("sequential"),
        ratios=RATIOS,
        base=str(trio.base),
        chat=str(trio.chat),
        target=str(trio.cp),
        threshold=0.0,
        data=DataOptions(lang="en", suite=("verifiable", "multiturn"), limit=2),
        generation=GenerationOptions(max_new_tokens=4),
    )
    run_sweep(spec)
    return spec, outcome(spec.out)


def test_threads_are_split_between_workers():
    assert threads_per_worker(2, 16) == 8 and threads_per_worker(3, 2) == 1
    assert threads_per_worker(4, None) >= 1


def test_parallel_options_that_do_not_fit_are_refused(tmp_path):
    spec = SweepSpec(out=tmp_path / "s", ratios=(0.5,), vector="v", target="t")
    for changes, flag in (
        ({"workers": 2, "ray": "auto"}, "choose one"),
        ({"workers": 0}, "--workers 0"),
        ({"shared_dir": tmp_path}, "needs --ray"),
        ({"gpus_per_ratio": 1}, "needs --ray"),
    ):
        with pytest.raises(InputError, match=flag):
            run_sweep(replace(spec, **changes))
    assert not (tmp_path / "s").exists()  # refused before anything was written


@pytest.mark.slow
def test_two_worker_processes_give_the_sequential_results(sequential, tmp_path):
    spec, expected = sequential
    parallel = replace(spec, out=tmp_path / "workers", workers=2)
    finished = []
    run_sweep(parallel, on_ratio=lambda ratio, done: finished.append(ratio))
    assert sorted(finished) == sorted(RATIOS)
    assert outcome(parallel.out) == expected
    timings = json.loads((parallel.out / "ratios" / "r=0.5" / "timings.json").read_text())
    assert timings["merge"] > 0 and timings["generation"] > 0


@pytest.mark.slow
def test_ray_tasks_give_the_sequential_results(sequential, tmp_path):
    import ray

    spec, expected = sequential
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")  # a small local Ray instance
    try:
        on_ray = replace(spec, out=tmp_path / "ray", ray="auto", shared_dir=tmp_path / "shared")
        run_sweep(on_ray)
        assert ray.is_initialized()  # --ray auto joined the running instance and left it running
    finally:
        ray.shutdown()
    assert outcome(on_ray.out) == expected
    assert (on_ray.out / "ratios" / "r=1.5" / "replies.jsonl").exists()  # the task's files came back
    assert list((tmp_path / "shared" / "models").iterdir()) == []  # merged there, removed after evaluation
