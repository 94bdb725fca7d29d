"""``chatvector compare A B ...``: paired differences between evaluation runs, with p-values."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from chatvector.cli.common import console, literal, say

__all__ = ["compare_command"]


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--force", is_flag=True, help="Compare even runs of different languages, suites or data (the output then warns)."
)
@click.option("--seed", default=0, show_default=True, help="Seed of the paired bootstrap.")
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write compare.json and compare.md here (default: print only).",
)
def compare_command(runs: tuple[Path, ...], force: bool, seed: int, out_dir: Path | None) -> None:
    """Compare eval directories with the first one: paired differences with 95% intervals and p-values.

    Samples are paired by (suite, id). Example: chatvector compare eval/cp eval/merged
    """
    from chatvector.eval.compare import HEADER, compare_runs, footnote, markdown, table

    if len(runs) < 2:
        raise click.UsageError("give at least two eval directories: chatvector compare A B [C ...]")
    comparisons = compare_runs(list(runs), force=force, seed=seed)
    for comparison in comparisons:
        for warning in comparison.warnings:
            say(f"warning: {warning}", err=True)
        shown = Table(title=literal(f"{comparison.other} − {comparison.first}"))
        for index, title in enumerate(HEADER):
            shown.add_column(title, justify="left" if index in (0, len(HEADER) - 1) else "right")
        for cells in table(comparison):
            shown.add_row(*(literal(c) for c in cells))
        console.print(shown)
        say(footnote(comparison))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        payload = {"comparisons": [c.to_json() for c in comparisons]}
        (out_dir / "compare.json").write_text(
            json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (out_dir / "compare.md").write_text(markdown(comparisons), encoding="utf-8")
        say(f"Wrote {out_dir / 'compare.json'} and {out_dir / 'compare.md'}")
