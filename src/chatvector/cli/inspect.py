"""``chatvector inspect``: per-layer norms of a chat vector, and its overlap with another delta."""

from __future__ import annotations

import math
from pathlib import Path

import click
from rich.table import Table

from chatvector.cli.common import console, literal, say


def _label(spec: str, is_model: bool) -> str:
    """A short column name: the folder's name (hub ids stay whole), with "Δ" for model − base."""
    path = Path(spec)
    name = path.name if path.exists() else spec
    return f"Δ{name}" if is_model else name


@click.command("inspect")
@click.argument("deltas", nargs=-1, required=True)
@click.option("--base", default=None, help="Base model: turns model directories among DELTAS into model − base.")
@click.option("--plot", type=click.Path(path_type=Path), default=None, help="Write a PNG heatmap here.")
def inspect_command(deltas: tuple[str, ...], base: str | None, plot: Path | None) -> None:
    """Per-layer norms of DELTAS[0]; with two, their per-layer cosine similarity.

    Each delta is a vector directory (from `chatvector extract`) or, with --base, a model directory.
    Example: chatvector inspect chat-vector cp-model --base base-model
    """
    from chatvector.analysis.vector_stats import Delta, compare, lineage
    from chatvector.merge.vector import VECTOR_MANIFEST

    if len(deltas) > 2:
        raise click.UsageError("give one or two deltas")
    opened = [Delta(d, None if (Path(d) / VECTOR_MANIFEST).exists() else base) for d in deltas]
    for delta, text in zip(opened, deltas, strict=True):
        if delta.base is None and not (Path(text) / VECTOR_MANIFEST).exists():
            raise click.UsageError(f"{text} is a model, not a vector: pass --base to inspect model − base")
    stats = compare(opened[0], opened[1] if len(opened) == 2 else None)
    labels = [_label(d, delta.base is not None) for d, delta in zip(deltas, opened, strict=True)]
    table = Table(title=literal(" vs ".join(labels) + (f" (Δ = model − {_label(base, False)})" if base else "")))
    table.add_column("group")
    table.add_column(literal(f"‖{labels[0]}‖"), justify="right")
    if len(opened) == 2:
        table.add_column(literal(f"‖{labels[1]}‖"), justify="right")
        table.add_column("cosine", justify="right")
    for group, sums in sorted(stats.by_group.items()):
        cells = [f"{sums.norm_a:.4g}"]
        if len(opened) == 2:
            cells += [f"{sums.norm_b:.4g}", "–" if math.isnan(sums.cosine) else f"{sums.cosine:+.3f}"]
        table.add_row(group, *cells)
    console.print(table)
    if stats.skipped:
        say(f"skipped {len(stats.skipped)} tensor(s) not comparable (e.g. {stats.skipped[0]})")
    found = lineage(opened[0], opened[1]) if len(opened) == 2 else None
    if found is not None:  # the second delta is a model minus the base: the merge's lineage check
        say(found.summary().replace("target", labels[1].removeprefix("Δ")).replace("chat − base", labels[0]))
        for problem in found.problems:
            say(f"warning: {problem}")
    if plot is not None:
        from chatvector.analysis.plot import heatmap

        heatmap(stats, plot, " vs ".join(labels), cosine=len(opened) == 2)
        say(f"wrote {plot}")
