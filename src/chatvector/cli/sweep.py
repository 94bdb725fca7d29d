"""``chatvector sweep``: merge at several ratios, evaluate each, plot, recommend a ratio.

It takes every option ``merge`` and ``eval`` take, generated from the same option groups; where
two groups name a field alike, the merge's is renamed: its output dtype is ``--merge-dtype`` and
its streaming threads ``--merge-threads`` (``--dtype`` and ``--threads`` are the evaluated model's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from chatvector.cli.common import console, literal, parse_ratios, say
from chatvector.cli.options import build, flags, given_on_command_line
from chatvector.errors import InputError, clashing_options
from chatvector.eval.options import BackendOptions, DataOptions, GenerationOptions, JudgeOptions
from chatvector.extras import require
from chatvector.options import MergeOptions, RunOptions, parse_size

__all__ = ["sweep_command"]

MERGE_RENAME = {"dtype": "merge_dtype"}
RUN_RENAME = {"threads": "merge_threads"}
RUN_FLAGS = ("allow_pickle", "allow_nonfinite", "shard_size", "threads")  # each ratio's merge always replaces


def _ram_limit(text: str) -> int:
    if text.strip() == "0":
        return 0
    try:
        return parse_size(text)
    except ValueError as error:
        raise InputError(f"--ram-limit {error}", option="--ram-limit") from None


@click.command("sweep")
@click.option("--target", help="CP model (optional with --recipe).")
@click.option("--base", help="Base model.")
@click.option("--chat", help="Chat model.")
@click.option("--vector", help="A vector directory instead of --base/--chat.")
@click.option("--recipe", type=click.Path(path_type=Path), help="A recipe; each ratio scales all its terms.")
@click.option(
    "--rule",
    default=None,
    metavar="REGEX",
    help="Sweep only the ratio of the rule whose match (or --ratio-rule regex) is exactly REGEX; the "
    "other ratios stay fixed.",
)
@click.option("--ratios", default="0,0.25,0.5,0.75,1.0", show_default=True)
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True)
@click.option(
    "--keep", is_flag=True, help="Keep each merged model in OUT/models (default: removed after its evaluation)."
)
@click.option(
    "--in-place/--no-in-place",
    "in_place",
    default=None,
    help="Load the model once and merge each ratio into its weights (bit for bit the merged model; "
    "nothing written unless --keep). Default: in place when the backend can (hf, one process, "
    "one device) and the model fits in memory; served engines restart per ratio.",
)
@click.option(
    "--ram-limit",
    default="2GB",
    show_default=True,
    help="Merge targets up to this size in RAM (/dev/shm) instead of on disk; 0 = always on disk.",
)
@click.option("--threshold", default=0.95, show_default=True, help="Minimum target-language share to recommend.")
@click.option(
    "--rank-by",
    metavar="METRIC",
    help="Rank the eligible ratios by this metric instead of the "
    "instruction-following ones (e.g. lm_eval.tmmluplus.acc).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    help="Ratios evaluated at once in local processes (the CPU threads are split between them).",
)
@click.option(
    "--ray",
    "ray_address",
    metavar="auto|ADDRESS",
    help="Run each ratio as a Ray task: auto joins "
    "the running cluster (or starts a local one), ADDRESS joins that one.",
)
@click.option("--gpus-per-ratio", default=0.0, show_default=True, help="GPUs each Ray task reserves.")
@click.option(
    "--shared-dir",
    type=click.Path(path_type=Path),
    help="With --ray: a folder every node sees, where merged models are written.",
)
@flags(MergeOptions, rename=MERGE_RENAME)
@flags(RunOptions, only=RUN_FLAGS, rename=RUN_RENAME)
@flags(DataOptions)
@flags(BackendOptions)
@flags(GenerationOptions)
@flags(JudgeOptions)
@click.pass_context
def sweep_command(
    ctx: click.Context,
    target: str | None,
    base: str | None,
    chat: str | None,
    vector: str | None,
    recipe: Path | None,
    rule: str | None,
    ratios: str,
    out: Path,
    keep: bool,
    in_place: bool | None,
    ram_limit: str,
    threshold: float,
    rank_by: str | None,
    workers: int,
    ray_address: str | None,
    gpus_per_ratio: float,
    shared_dir: Path | None,
    **values: Any,
) -> None:
    """Sweep the chat-vector ratio: merge, evaluate, plot, and recommend a ratio (resumable)."""
    require("sweeps", "matplotlib")
    from chatvector.sweep.run import SweepSpec

    clashing = given_on_command_line(ctx, MergeOptions, rename=MERGE_RENAME)
    if recipe is not None and clashing:
        raise clashing_options(clashing, "--recipe", "the recipe holds the merge options; edit the recipe instead")
    spec = SweepSpec(
        out=out,
        ratios=parse_ratios(ratios),
        target=target,
        base=base,
        chat=chat,
        vector=vector,
        recipe=recipe,
        keep=keep,
        in_place=in_place,
        in_memory_limit=_ram_limit(ram_limit),
        threshold=threshold,
        rank_by=rank_by,
        merge=build(MergeOptions, values, rename=MERGE_RENAME),
        merge_run=build(RunOptions, values, rename=RUN_RENAME),
        backend=build(BackendOptions, values),
        generation=build(GenerationOptions, values),
        judge=build(JudgeOptions, values),
        data=build(DataOptions, values),
        workers=workers,
        ray=ray_address,
        gpus_per_ratio=gpus_per_ratio,
        shared_dir=shared_dir,
        rule=rule,
    )
    _quiet_loading()
    summary = _run(spec)
    _print(summary, spec)


def _quiet_loading() -> None:
    """One loading bar per ratio drowns the sweep's own lines."""
    from chatvector.extras import available

    if available("transformers"):
        import transformers

        transformers.utils.logging.disable_progress_bar()


def _run(spec: Any) -> dict[str, Any]:
    from chatvector.sweep.run import ratio_name, run_sweep

    def on_ratio(ratio: float, done: bool) -> None:
        if done:
            state = "already evaluated, skipped"
        else:
            state = "done" if spec.workers > 1 or spec.ray else "merging and evaluating"
        console.print(Text(ratio_name(ratio), style="bold"), Text(f": {state}"), sep="")

    return run_sweep(spec, on_ratio=on_ratio, on_suite=lambda name, n: say(f"  {name} ({n} prompts)"))


def _print(summary: dict[str, Any], spec: Any) -> None:
    from chatvector.sweep.report import chosen_ratio, metric_names

    # Metrics as rows and ratios as columns: metric names stay readable however many ratios.
    table = Table(title=literal(f"Sweep ({spec.lang})"))
    table.add_column("metric")
    for row in summary["rows"]:
        table.add_column(f"r={row['ratio']:g}", justify="right")
    for name in metric_names(summary):
        table.add_row(literal(name), *(_cell(row, name) for row in summary["rows"]))
    console.print(table)
    say("Cells: value [95% interval]; n and the interval method per metric are in report.md.")
    say(f"Recommended: {chosen_ratio(summary)}. {summary['recommendation']['reason']}")
    say(f"Wrote {spec.out / 'sweep.json'}, {spec.out / 'report.md'}, {spec.out / 'report.html'}, plots.")


def _cell(row: dict[str, Any], name: str) -> str:
    """``0.42 [0.30–0.55]``: a point estimate alone would hide how little 64 prompts decide."""
    value = row["metrics"].get(name)
    if not isinstance(value, int | float):
        return "–"
    interval = row.get("intervals", {}).get(name)
    if interval is None or None in interval:
        return f"{value:.2f}"
    return f"{value:.2f} [{interval[0]:.2f}–{interval[1]:.2f}]"
