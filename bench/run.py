"""Benchmark chatvector merge/apply against the I/O floor, a naive transformers merge and mergekit.

    .venv/bin/python bench/run.py [--sizes 0.3b,1.1b,3b] [--runs 3] [--ratio 0.5] [--work DIR]
                                  [--smoke] [--no-mergekit] [--no-naive]

For each size: generate (or reuse) synthetic base/chat/cp checkpoints, warm the page cache by
reading every input once, then time each approach ``--runs`` times, in rounds (one run of every
approach, then the next round), each run in a fresh measuring process (bench/measure.py: wall
time, peak RSS of the process tree, sync time). The first successful output of every approach
that writes a model is compared tensor by tensor with the float32 recomputation
(bench/check.py). Outputs are deleted after every run. The report goes to
``bench/results/<date>-<host>.md`` with the raw numbers in a ``.json`` beside it.

See bench/README.md for what every row and column means and the acceptance targets.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import floor
import mergekit_baseline
import report
import synth

DENSITY = 0.2
TIES, DARE = f"ties:density={DENSITY}", f"dare:density={DENSITY},seed=0"
# the other registered methods, chatvector only (mergekit's counterparts differ by design: docs/methods.md)
OTHER_METHODS = {
    "breadcrumbs": f"breadcrumbs:density={DENSITY},gamma=0.01",
    "dare_ties": f"dare_ties:density={DENSITY},seed=0",
    "della": f"della:density={DENSITY},epsilon=0.1,seed=0",
}
BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PYTHON = sys.executable
LARGE_BYTES = 4e9  # above this checkpoint size the slow baselines run once (see --large-runs)
CACHE_FRACTION = 0.5  # re-warm before each approach only when the inputs fill at most this share of RAM


@dataclass(frozen=True)
class Approach:
    """One way of producing the merged model (or, for the floor, of moving the same bytes)."""

    name: str
    what: str
    checked: bool = True  # its output is compared with the float32 reference
    baseline: bool = False  # a slow comparison point: fewer runs on large sizes
    max_runs: int | None = None
    method: bool = False  # sparsify / LoRA rows: run on --method-sizes only


APPROACHES = [
    Approach(
        "floor",
        "plain Python: read the three inputs once with readinto into one reused 8 MiB buffer, "
        "then write an output of the same size (blocks reserved, writeback started every 256 MB: the "
        "fastest plain write found here) and fsync it (bench/floor.py)",
        checked=False,
    ),
    Approach(
        "extract",
        "`chatvector extract --base B --chat C -o V` (float32 vector), once per size, so that "
        "apply starts from a vector on disk; not part of the apply row",
        checked=False,
        max_runs=1,
    ),
    Approach(
        "merge",
        "`chatvector merge --base B --chat C --target T --ratio r -o OUT --force` (one streaming pass, output fsynced)",
    ),
    Approach(
        "apply",
        "`chatvector apply --target T --vector V:r -o OUT` with the vector extracted above "
        "(reads T and the float32 vector)",
    ),
    Approach(
        "naive",
        "transformers: load base, chat and cp with AutoModelForCausalLM in bf16, "
        "`p.add_(chat − base, alpha=r)` per parameter (paired by name), save_pretrained (bench/naive.py)",
        baseline=True,
    ),
    Approach(
        "mergekit",
        "`mergekit-yaml` task_arithmetic, base_model = base, cp weight 1, chat weight r, "
        "dtype bfloat16 (the usual config; mergekit then computes in bf16)",
        baseline=True,
    ),
    Approach(
        "mergekit-fp32",
        "the same with dtype float32 and out_dtype bfloat16 (computed in float32, as "
        "base + 1·(cp − base) + r·(chat − base): a different expression, so a few results near zero "
        "round differently); one run, on 1.1b only, to show what exactness costs mergekit",
        baseline=True,
        max_runs=1,
    ),
    Approach(
        "ties",
        f"`chatvector merge --base B --chat C --target B --ratio r --sparsify {TIES}`: base + TIES of "
        "r·(chat − base), so that mergekit's ties computes the same thing (one extra pass per tensor for the "
        "magnitude threshold)",
        checked=False,
        method=True,
    ),
    Approach(
        "mergekit-ties",
        f"`mergekit-yaml` ties, base_model = base, chat at weight r and density {DENSITY}, "
        "normalize false, dtype float32, out_dtype bfloat16 (the same formula as the ties row)",
        checked=False,
        baseline=True,
        max_runs=1,
        method=True,
    ),
    Approach(
        "dare",
        f"`chatvector merge --base B --chat C --target B --ratio r --sparsify {DARE}`: base + "
        "r·DARE(chat − base) (rescale 1/density)",
        checked=False,
        method=True,
    ),
    Approach(
        "breadcrumbs",
        f"`chatvector merge --base B --chat C --target B --ratio r --method {OTHER_METHODS['breadcrumbs']}`",
        checked=False,
        method=True,
    ),
    Approach(
        "dare_ties",
        f"`chatvector merge --base B --chat C --target B --ratio r --method {OTHER_METHODS['dare_ties']}`",
        checked=False,
        method=True,
    ),
    Approach(
        "della",
        f"`chatvector merge --base B --chat C --target B --ratio r --method {OTHER_METHODS['della']}`",
        checked=False,
        method=True,
    ),
    Approach(
        "mergekit-dare",
        f"`mergekit-yaml` dare_linear, chat at weight r and density {DENSITY}, normalize "
        "false, dtype float32, out_dtype bfloat16 (rescale: mergekit matches the L1 norm of each tensor)",
        checked=False,
        baseline=True,
        max_runs=1,
        method=True,
    ),
    Approach(
        "lora64",
        "`chatvector lora --base B --chat C --rank 64 -o OUT`: a PEFT adapter from a randomized "
        "float32 SVD of every linear layer's delta (no vector on disk)",
        checked=False,
        method=True,
    ),
    Approach(
        "mergekit-lora64",
        "`mergekit-extract-lora --model C --base-model B --max-rank 64` (full torch SVD in "
        "float32 of the delta computed in the models' bf16; embeddings kept whole as modules_to_save)",
        checked=False,
        baseline=True,
        max_runs=1,
        method=True,
    ),
]
KEPT = {"ties", "mergekit-ties", "dare", "mergekit-dare", "lora64", "mergekit-lora64"}  # compared after a size


@dataclass
class Context:
    """Everything the approaches of one size need to build their commands."""

    size: str
    models: dict[str, Path]
    ratio: float
    out: Path
    vector: Path
    scratch: Path
    chatvector: str
    model_bytes: int
    # approach → (status, reason) when it cannot run at all: status is "skipped" or "failed"
    fail: dict[str, tuple[str, str]] = field(default_factory=dict)

    def bytes_read(self, approach: str) -> int:
        if approach == "apply":
            return self.model_bytes + synth.checkpoint_bytes(self.vector)
        two = ("extract", "lora64", "mergekit-lora64", "mergekit-ties", "mergekit-dare")  # base and chat only
        return self.model_bytes * (2 if approach in two else 3)


def command_for(approach: str, ctx: Context) -> list[str]:
    m, r = {role: str(path) for role, path in ctx.models.items()}, repr(ctx.ratio)
    out = str(ctx.out)
    if approach == "floor":
        return [PYTHON, str(BENCH / "floor.py"), out, m["base"], m["chat"], m["cp"]]
    if approach == "extract":
        return [ctx.chatvector, "extract", "--base", m["base"], "--chat", m["chat"], "-o", str(ctx.vector), "--force"]
    if approach == "merge":
        return [
            ctx.chatvector,
            "merge",
            "--base",
            m["base"],
            "--chat",
            m["chat"],
            "--target",
            m["cp"],
            "--ratio",
            r,
            "-o",
            out,
            "--force",
        ]
    if approach in ("ties", "dare"):
        return [
            ctx.chatvector,
            "merge",
            "--base",
            m["base"],
            "--chat",
            m["chat"],
            "--target",
            m["base"],
            "--ratio",
            r,
            "--sparsify",
            TIES if approach == "ties" else DARE,
            "-o",
            out,
            "--force",
        ]
    if approach in OTHER_METHODS:
        return [
            ctx.chatvector,
            "merge",
            "--base",
            m["base"],
            "--chat",
            m["chat"],
            "--target",
            m["base"],
            "--ratio",
            r,
            "--method",
            OTHER_METHODS[approach],
            "-o",
            out,
            "--force",
        ]
    if approach == "lora64":
        return [ctx.chatvector, "lora", "--base", m["base"], "--chat", m["chat"], "--rank", "64", "-o", out, "--force"]
    if approach == "mergekit-lora64":
        return mergekit_baseline.extract_lora_command(ctx.models["base"], ctx.models["chat"], ctx.out, 64)
    if approach in ("mergekit-ties", "mergekit-dare"):
        method = "ties" if approach == "mergekit-ties" else "dare_linear"
        config = mergekit_baseline.write_sparse_config(
            ctx.scratch / f"{approach}.yml", method, ctx.models["base"], ctx.models["chat"], ctx.ratio, DENSITY
        )
        return mergekit_baseline.command(config, ctx.out)
    if approach == "apply":
        return [ctx.chatvector, "apply", "--target", m["cp"], "--vector", f"{ctx.vector}:{r}", "-o", out]
    if approach == "naive":
        return [PYTHON, str(BENCH / "naive.py"), m["base"], m["chat"], m["cp"], r, out]
    if approach.startswith("mergekit"):
        config = mergekit_baseline.write_config(
            ctx.scratch / f"{approach}.yml",
            approach,
            ctx.models["base"],
            ctx.models["chat"],
            ctx.models["cp"],
            ctx.ratio,
        )
        return mergekit_baseline.command(config, ctx.out)
    raise ValueError(approach)


def measured(command: list[str], scratch: Path, tag: str) -> tuple[dict, str]:
    """Run ``command`` under bench/measure.py; return the measurement and the tail of its log."""
    result_file, log = scratch / f"{tag}.json", scratch / f"{tag}.log"
    subprocess.run(
        [PYTHON, str(BENCH / "measure.py"), "--json", str(result_file), "--log", str(log), "--", *command], check=True
    )
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    return json.loads(result_file.read_text()), "\n".join(tail)


def warm(models: dict[str, Path]) -> float:
    """Read every input once so that the page cache holds what it can; return the seconds taken."""
    started = time.perf_counter()
    floor.read_all([p for folder in models.values() for p in floor.shards(folder)], bytearray(floor.BUFFER_BYTES))
    return time.perf_counter() - started


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    os.sync()


def new_row(approach: Approach, ctx: Context) -> dict:
    row: dict = {"approach": approach.name, "size": ctx.size, "status": "ok", "reason": None, "runs": []}
    if approach.name in ctx.fail:
        row["status"], row["reason"] = ctx.fail[approach.name]
    return row


def run_once(approach: Approach, ctx: Context, row: dict, runs: int, log: Callable[[str], None]) -> None:
    """Time one more run of ``approach`` into ``row``; compare its first output with the reference."""
    index = len(row["runs"])
    remove(ctx.out)
    tag = f"{ctx.size}-{approach.name}-{index + 1}"
    measurement, tail = measured(command_for(approach.name, ctx), ctx.scratch, tag)
    if measurement["returncode"] != 0:
        remove(ctx.out)
        row["status"], row["reason"] = "failed", f"exit {measurement['returncode']}: {tail}"
        return
    if approach.name == "floor":
        measurement["phases"] = json.loads(tail.splitlines()[-1])
    row["runs"].append(measurement)
    log(
        f"[{ctx.size}] {approach.name} run {index + 1}/{runs}: {measurement['wall_s']:.2f} s, "
        f"RSS {measurement['maxrss_bytes'] / 1e9:.2f} GB, anon {measurement['peak_anon_tree_bytes'] / 1e9:.2f} GB"
    )
    if index == 0 and approach.checked:
        import check

        started = time.perf_counter()
        row["deviation"] = check.compare(ctx.models, ctx.out, ctx.ratio).to_json()
        log(
            f"[{ctx.size}] {approach.name} checked in {time.perf_counter() - started:.1f} s: "
            f"{row['deviation']['mismatched']} elements differ, max {row['deviation']['max_steps']} steps"
        )
    if approach.name in KEPT and index == 0:  # kept for the comparisons after the size (sparse_check.py)
        remove(ctx.scratch / "kept" / approach.name)
        (ctx.scratch / "kept").mkdir(exist_ok=True)
        os.rename(ctx.out, ctx.scratch / "kept" / approach.name)
    elif approach.name != "extract":
        remove(ctx.out)


def run_size(ctx: Context, args: argparse.Namespace, fits: bool, log: Callable[[str], None]) -> list[dict]:
    """Every approach on one size, in rounds (floor, merge, apply, ..., then again), so that a
    change of disk speed during the size's minutes touches every approach alike."""
    rows = {approach.name: new_row(approach, ctx) for approach in APPROACHES}
    planned = {approach.name: runs_for(approach, ctx, args) for approach in APPROACHES}
    for index in range(max(planned.values())):
        for approach in APPROACHES:
            row = rows[approach.name]
            if row["status"] != "ok" or index >= planned[approach.name]:
                continue
            if approach.name == "apply" and rows["extract"]["status"] != "ok":
                reason = rows["extract"]["reason"]
                row["status"], row["reason"] = "failed", f"no vector, because extract failed: {reason}"
                continue
            if fits and approach.name != "floor":
                warm(ctx.models)
            run_once(approach, ctx, row, planned[approach.name], log)
    for name, row in rows.items():
        row["bytes_read"] = ctx.bytes_read(name)  # after the runs: apply's includes the extracted vector
    compare_kept(ctx, rows, log)
    floor_row = summarize(rows["floor"], rows["floor"])
    return [floor_row] + [summarize(rows[a.name], floor_row) for a in APPROACHES if a.name != "floor"]


def compare_kept(ctx: Context, rows: dict[str, dict], log: Callable[[str], None]) -> None:
    """Compare the first outputs of the sparsify and LoRA rows with mergekit's, then delete them."""
    import sparse_check

    kept = ctx.scratch / "kept"
    found = {p.name: p for p in kept.iterdir()} if kept.is_dir() else {}
    for ours, theirs, kind in (
        ("ties", "mergekit-ties", "ties"),
        ("dare", "mergekit-dare", "dare"),
        ("lora64", "mergekit-lora64", "lora"),
    ):
        present = {name: found[name] for name in (ours, theirs) if name in found}
        if not present:
            continue
        started = time.perf_counter()
        result = sparse_check.compare(kind, ctx.models, ctx.ratio, present)
        for name in present:
            rows[name]["comparison"] = result
        log(f"[{ctx.size}] {kind} outputs compared in {time.perf_counter() - started:.1f} s: {json.dumps(result)}")
    remove(kept)


def measure_startup(
    work: Path, scratch: Path, chatvector: str, args: argparse.Namespace, log: Callable[[str], None]
) -> dict | None:
    """The fixed cost in every merge/apply wall time: a merge of the tiny smoke model, timed like the rest."""
    models = synth.generate(work / "models", "smoke", synth.SMOKE_SIZES["smoke"], shard_bytes=synth.SMOKE_SHARD_BYTES)
    ctx = Context(
        "smoke",
        models,
        args.ratio,
        work / "out" / "merged",
        work / "vectors" / "smoke",
        scratch,
        chatvector,
        synth.checkpoint_bytes(models["cp"]),
    )
    walls = []
    for index in range(args.runs):
        remove(ctx.out)
        measurement, tail = measured(command_for("merge", ctx), scratch, f"startup-{index + 1}")
        remove(ctx.out)
        if measurement["returncode"] != 0:
            log(f"start-up merge failed: {tail}")
            return None
        walls.append(measurement["wall_s"])
    startup = {
        "what": "chatvector merge of a 0.1M-parameter model (start-up, imports, preflight, tiny output)",
        "runs": len(walls),
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "max_s": max(walls),
    }
    log(f"chatvector start-up (merge of a tiny model): {startup['median_s']:.2f} s median")
    return startup


def summarize(row: dict, floor_row: dict | None) -> dict:
    """Add medians, throughput and the ratio to the floor to a successful row."""
    if row["status"] != "ok":
        return row
    walls = [run["wall_s"] for run in row["runs"]]
    row["wall_s"] = {"median": statistics.median(walls), "min": min(walls), "max": max(walls)}
    row["sync_s_median"] = statistics.median(run["sync_s"] for run in row["runs"])
    for key in ("maxrss_bytes", "peak_rss_tree_bytes", "peak_anon_tree_bytes"):
        row[key] = max(run[key] for run in row["runs"])
    row["input_gb_per_s"] = row["bytes_read"] / 1e9 / row["wall_s"]["median"]
    if floor_row and floor_row["status"] == "ok":
        row["vs_floor"] = row["wall_s"]["median"] / floor_row["wall_s"]["median"]
    return row


def runs_for(approach: Approach, ctx: Context, args: argparse.Namespace) -> int:
    runs = args.runs
    if approach.baseline and ctx.model_bytes > LARGE_BYTES:
        runs = min(runs, args.large_runs)
    return min(runs, approach.max_runs or runs)


def skip_reason(
    approach: Approach, size: str, args: argparse.Namespace, mergekit_error: str | None
) -> tuple[str, str] | None:
    """(status, reason) when ``approach`` does not run on ``size``; None when it runs."""
    if approach.name == "naive":
        if args.no_naive:
            return "skipped", "--no-naive"
        if size not in args.naive_sizes:
            return "skipped", (
                "needs the three whole models in memory (~20 GB in bf16 for 3b, plus the "
                "output while saving) and minutes per run on this 24 GiB machine; naive runs on "
                f"{', '.join(args.naive_sizes)} only"
            )
    if args.only and approach.name not in args.only:
        return "skipped", "--only"
    if approach.method and size not in args.method_sizes:
        return "skipped", f"runs on {', '.join(args.method_sizes) or 'no size'} only (--method-sizes)"
    if approach.name.startswith("mergekit"):
        if args.no_mergekit:
            return "skipped", "--no-mergekit"
        if mergekit_error:
            return "failed", f"mergekit could not be installed: {mergekit_error}"
        if approach.name == "mergekit-fp32" and size not in args.mergekit_fp32_sizes:
            return "skipped", f"runs on {', '.join(args.mergekit_fp32_sizes) or 'no size'} only (time budget)"
    return None


def machine_info(work: Path) -> dict[str, object]:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    disk = shutil.disk_usage(work)
    return {
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "RAM": f"{int(meminfo['MemTotal'].split()[0]) / 2**20:.1f} GiB",
        "work dir disk free": f"{disk.free / 1e9:.0f} GB",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def versions(mergekit_error: str | None, use_mergekit: bool) -> dict[str, str]:
    import importlib.metadata as metadata

    found = {name: metadata.version(name) for name in ("chatvector", "torch", "transformers", "safetensors")}
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    found["chatvector commit"] = commit or "unknown"
    if use_mergekit and not mergekit_error:
        found.update(
            {f"mergekit venv {k}" if k != "mergekit" else k: v for k, v in mergekit_baseline.versions().items()}
        )
    elif use_mergekit:
        found["mergekit"] = "not installed"
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark chatvector merge and apply.")
    parser.add_argument("--sizes", default="0.3b,1.1b,3b", help=f"comma-separated, of {', '.join(synth.SIZES)}")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per approach and size (median reported)")
    parser.add_argument("--ratio", type=float, default=0.5, help="r in cp + r·(chat − base)")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(os.environ.get("CHATVECTOR_BENCH_DIR", "/tmp/chatvector-bench")),
        help="cache of generated models and scratch space ($CHATVECTOR_BENCH_DIR)",
    )
    parser.add_argument("--results", type=Path, help="report folder (default bench/results; WORK/results with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="a tiny model, one run, no mergekit: < 1 minute")
    parser.add_argument("--no-mergekit", action="store_true", help="leave out the mergekit rows")
    parser.add_argument("--no-naive", action="store_true", help="leave out the naive transformers rows")
    parser.add_argument("--naive-sizes", default="0.3b,1.1b", help="sizes the naive merge runs on")
    parser.add_argument("--mergekit-fp32-sizes", default="1.1b", help="sizes the float32 mergekit variant runs on")
    parser.add_argument(
        "--method-sizes",
        default="1.1b",
        help="sizes the sparsify (ties, dare) and LoRA rows run on, with their mergekit counterparts",
    )
    parser.add_argument("--only", default="", help="comma-separated approaches to run (default: all)")
    parser.add_argument(
        "--large-runs",
        type=int,
        default=1,
        help="runs of the slow baselines (naive, mergekit) on checkpoints over 4 GB",
    )
    args = parser.parse_args(argv)
    args.sizes = [s for s in args.sizes.split(",") if s]
    args.naive_sizes = [s for s in args.naive_sizes.split(",") if s]
    args.mergekit_fp32_sizes = [s for s in args.mergekit_fp32_sizes.split(",") if s]
    args.method_sizes = [s for s in args.method_sizes.split(",") if s]
    args.only = [s for s in args.only.split(",") if s]
    unknown_rows = [s for s in args.only if s not in {a.name for a in APPROACHES}]
    if unknown_rows:
        parser.error(f"unknown approach(es) {unknown_rows} in --only")
    if args.smoke:
        args.sizes, args.runs, args.no_mergekit = list(synth.SMOKE_SIZES), 1, True
        args.naive_sizes = list(synth.SMOKE_SIZES)
        args.method_sizes = list(synth.SMOKE_SIZES)
    unknown = [s for s in args.sizes if s not in synth.SIZES and s not in synth.SMOKE_SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose from {', '.join(synth.SIZES)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.results = args.results or (args.work / "results" if args.smoke else BENCH / "results")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    work = args.work.resolve()
    scratch, out = work / "scratch", work / "out"
    for folder in (scratch, out.parent):
        folder.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(f"{time.perf_counter() - started:7.1f}s  {message}", flush=True)

    mergekit_error = None
    if not args.no_mergekit:
        log("checking mergekit in bench/.venv-mergekit (installed on first use)")
        mergekit_error = mergekit_baseline.ensure_installed(log=scratch / "mergekit-install.log")
        if mergekit_error:
            log(f"mergekit unavailable: {mergekit_error}")
    chatvector = str(Path(PYTHON).parent / "chatvector")
    if not Path(chatvector).exists():
        chatvector = shutil.which("chatvector") or "chatvector"
    shapes = {**synth.SIZES, **synth.SMOKE_SIZES}
    shard_bytes = synth.SMOKE_SHARD_BYTES if args.smoke else synth.SHARD_BYTES
    rows, notes, generate_s = [], [], 0.0
    startup = None if args.smoke else measure_startup(work, scratch, chatvector, args, log)
    for size in args.sizes:
        t0 = time.perf_counter()
        models = synth.generate(work / "models", size, shapes[size], shard_bytes=shard_bytes)
        generate_s += time.perf_counter() - t0
        model_bytes = synth.checkpoint_bytes(models["cp"])
        log(f"[{size}] inputs ready ({3 * model_bytes / 1e9:.2f} GB) in {time.perf_counter() - t0:.1f} s")
        ctx = Context(
            size, models, args.ratio, out / "merged", work / "vectors" / size, scratch, chatvector, model_bytes
        )
        fits = 3 * model_bytes <= CACHE_FRACTION * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        log(f"[{size}] page cache warmed in {warm(models):.1f} s")
        if not fits:
            notes.append(
                f"{size}: the three inputs ({3 * model_bytes / 1e9:.1f} GB) plus an output do not fit "
                "in the page cache of this machine, so its runs read partly from disk; inputs were "
                "warmed once for the size, not before each approach"
            )
        for approach in APPROACHES:
            reason = skip_reason(approach, size, args, mergekit_error)
            if reason:
                ctx.fail[approach.name] = reason
        rows += run_size(ctx, args, fits, log)
        remove(ctx.vector)
    results = {
        "date": datetime.date.today().isoformat(),
        "command": shlex.join([Path(PYTHON).name, "bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine_info(work),
        "versions": versions(mergekit_error, not args.no_mergekit),
        "approaches": {a.name: a.what for a in APPROACHES},
        "columns": {name: {"meaning": meaning, "higher_is_better": better} for name, meaning, better in report.COLUMNS},
        "rows": rows,
        "notes": notes + standard_notes(rows) + comparison_notes(rows),
        "generate_s": generate_s,
        "startup": startup,
    }
    results["total_s"] = time.perf_counter() - started
    results["acceptance"] = report.acceptance(results)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = f"{results['date']}-{results['machine']['host']}"
    (args.results / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report.render(results)
    (args.results / f"{stem}.md").write_text(text)
    print(text)
    log(f"report written to {args.results / stem}.md and .json")
    return 0


def comparison_notes(rows: list[dict]) -> list[str]:
    """The sparsify and LoRA rows against mergekit's, from bench/sparse_check.py."""
    notes, seen = [], set()
    for row in rows:
        result = row.get("comparison")
        key = (row["size"], json.dumps(result, sort_keys=True))
        if not result or key in seen:
            continue
        seen.add(key)
        size = row["size"]
        if "elements" in result:  # ties / dare
            parts = [
                f"{name}: {v['changed_share']:.2%} of entries changed, Σ|out − base| / Σ|r·δ| = {v['l1_ratio']:.3f}"
                for name, v in result.items()
                if isinstance(v, dict)
            ]
            if "identical_share" in result:
                parts.append(
                    f"the two outputs agree on {result['identical_share']:.4%} of elements "
                    f"(at most {result['max_steps']} bf16 steps apart)"
                )
            notes.append(f"{size} {row['approach'].removeprefix('mergekit-')}: " + "; ".join(parts) + ".")
        else:
            parts = [
                f"{name}: {v['bytes'] / 1e6:.0f} MB, {v['modules']} LoRA modules"
                + (f" + {len(v['whole_modules'])} whole" if v["whole_modules"] else "")
                + f", keeps {v['energy_share']:.2%} of the linear layers' delta energy "
                f"(relative error {v['relative_error']:.3f})"
                for name, v in result.items()
            ]
            notes.append(f"{size} LoRA rank 64: " + "; ".join(parts) + ".")
    return notes


def standard_notes(rows: list[dict]) -> list[str]:
    """How things were measured, plus the floor's two phases so its own overhead can be judged."""
    notes = [
        "Wall time is measured around the child process by bench/measure.py (a fresh process per run), "
        "so it includes interpreter start-up and imports (the smallest size shows their share); "
        "the merge outputs of chatvector and the floor are fsynced inside that time, the others are "
        "not: '+sync s' is what flushing their output took right after they exited.",
        "Peak RSS: 'RSS GB' is getrusage(RUSAGE_CHILDREN).ru_maxrss of the measuring process (exact, "
        "largest single process); 'RSS tree' and 'anon' sum VmRSS and RssAnon over the process tree, "
        "polled from /proc every 20 ms. RSS includes pages of memory-mapped input files (reclaimable "
        "page cache), RssAnon only memory the tool allocated itself.",
        "Errors: the first output of each approach is compared tensor by tensor with "
        "bf16(cp.float() + r·(chat.float() − base.float())), streamed with safetensors.safe_open.",
    ]
    for row in rows:
        if row["approach"] == "floor" and row["status"] == "ok":
            phases = [run["phases"] for run in row["runs"]]
            read_s = statistics.median(p["read_s"] for p in phases)
            write_s = statistics.median(p["write_fsync_s"] for p in phases)
            notes.append(
                f"floor {row['size']}: reading took {read_s:.2f} s, writing + fsync {write_s:.2f} s "
                "(median); the floor does them one after the other, a tool that overlaps them can "
                f"approach max = {max(read_s, write_s):.2f} s."
            )
    return notes


if __name__ == "__main__":
    sys.exit(main())
