"""``chatvector verify``: check an output's tensors, and recompute them from the recorded recipe."""

from __future__ import annotations

from pathlib import Path

import click

from chatvector.cli.common import say

__all__ = ["verify_command"]


@click.command("verify")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--against",
    type=click.Path(path_type=Path),
    default=None,
    help="Recipe to recompute from (default: the recipe stored in MODEL).",
)
@click.option(
    "--recompute/--no-recompute",
    default=False,
    help="Recompute tensors from the recipe's inputs and report the max error.",
)
@click.option("--full", is_flag=True, help="Recompute every tensor, not a sample.")
@click.option("--allow-pickle", is_flag=True, help="Allow pickled inputs when recomputing.")
def verify_command(model: Path, against: Path | None, recompute: bool, full: bool, allow_pickle: bool) -> None:
    """Check a merged model or vector: every tensor readable and finite; optionally recompute."""
    from chatvector import api  # here, not at the top: `--help` should not load numpy and ml_dtypes

    report = api.verify(
        model, against=against, recompute=recompute or against is not None, full=full, allow_pickle=allow_pickle
    )
    say(report.summary())
    if not report.ok:
        raise SystemExit(1)
