"""``chatvector sweep``: merge at several ratios, evaluate each, plot, recommend a ratio.

Its own options are generated from :class:`~chatvector.sweep.options.SweepOptions`, and it takes
every option ``merge`` and ``eval`` take, generated from the same option groups; where two groups
name a field alike, the merge's is renamed: its output dtype is ``--merge-dtype`` and its streaming
threads ``--merge-threads`` (``--dtype`` and ``--threads`` are the evaluated model's). Only ``-o``
is written here, as on ``merge``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from chatvector.cli.common import console, literal, say
from chatvector.cli.options import build, flags, given_on_command_line
from chatvector.errors import clashing_options
from chatvector.eval.options import BackendOptions, DataOptions, GenerationOptions, JudgeOptions
from chatvector.extras import require
from chatvector.options import MergeOptions, RunOptions
from chatvector.sweep.options import SweepOptions

__all__ = ["sweep_command"]

MERGE_RENAME = {"dtype": "merge_dtype"}
RUN_RENAME = {"threads": "merge_threads"}
RUN_FLAGS = ("allow_pickle", "allow_nonfinite", "shard_size", "threads")  # each ratio's merge always replaces


@click.command("sweep")
@click.option(
    "-o", "--out", "out", type=click.Path(path_type=Path), required=True, help="The sweep's folder (resumable)."
)
@flags(SweepOptions)
@flags(MergeOptions, rename=MERGE_RENAME)
@flags(RunOptions, only=RUN_FLAGS, rename=RUN_RENAME)
@flags(DataOptions)
@flags(BackendOptions)
@flags(GenerationOptions)
@flags(JudgeOptions)
@click.pass_context
def sweep_command(ctx: click.Context, out: Path, **values: Any) -> None:
    """Sweep the chat-vector ratio: merge, evaluate, plot, and recommend a ratio (resumable)."""
    require("sweeps", "matplotlib")
    sweep = build(SweepOptions, values)  # every sweep option checked before anything else
    clashing = given_on_command_line(ctx, MergeOptions, rename=MERGE_RENAME)
    if sweep.recipe is not None and clashing:
        raise clashing_options(clashing, "--recipe", "the recipe holds the merge options; edit the recipe instead")
    spec = spec_from_flags(
        out,
        sweep,
        values,
        ratios=sweep.ratio_values,
        threshold=sweep.threshold,
        rank_by=sweep.rank_by,
        workers=sweep.workers,
        ray=sweep.ray,
        gpus_per_ratio=sweep.gpus_per_ratio,
        shared_dir=None if sweep.shared_dir is None else Path(sweep.shared_dir),
        rule=sweep.rule,
    )
    quiet_loading()
    summary = _run(spec)
    _print(summary, spec)


def spec_from_flags(out: Path, sweep: SweepOptions, values: dict[str, Any], **fields: Any) -> Any:
    """The sweep spec the flags `sweep` and `search` share describe; ``fields`` are the command's own."""
    from chatvector.sweep.run import SweepSpec

    return SweepSpec(
        out=out,
        target=sweep.target,
        base=sweep.base,
        chat=sweep.chat,
        vector=sweep.vector,
        recipe=None if sweep.recipe is None else Path(sweep.recipe),
        keep=sweep.keep,
        in_place=sweep.in_place,
        serve_reload=sweep.serve_reload,
        in_memory_limit=sweep.ram_limit,
        merge=build(MergeOptions, values, rename=MERGE_RENAME),
        merge_run=build(RunOptions, values, rename=RUN_RENAME),
        backend=build(BackendOptions, values),
        generation=build(GenerationOptions, values),
        judge=build(JudgeOptions, values),
        data=build(DataOptions, values),
        **fields,
    )


def quiet_loading() -> None:
    """One loading bar per model load drowns the command's own lines (a sweep's ratios, a search's candidates)."""
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
