"""``chatvector search``: choose a ratio per group of tensors, check the choice on held-out prompts.

It takes every option ``sweep`` takes for the merge and the evaluation (generated from the same
option groups, renamed alike: ``--merge-dtype``, ``--merge-threads``), plus the search's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.text import Text

from chatvector.cli.common import console, say
from chatvector.cli.options import build, flags, given_on_command_line
from chatvector.cli.sweep import MERGE_RENAME, RUN_FLAGS, RUN_RENAME, quiet_loading, spec_from_flags
from chatvector.errors import clashing_options
from chatvector.eval.options import BackendOptions, DataOptions, GenerationOptions, JudgeOptions
from chatvector.extras import require
from chatvector.options import MergeOptions, RunOptions
from chatvector.search.options import SearchOptions
from chatvector.sweep.options import SweepOptions

__all__ = ["search_command"]


SWEEP_FIELDS = ("target", "base", "chat", "vector", "recipe", "keep", "ram_limit", "in_place", "serve_reload")


@click.command("search")
@click.option(
    "-o", "--out", "out", type=click.Path(path_type=Path), required=True, help="The search's folder (resumable)."
)
@flags(SearchOptions)
@flags(SweepOptions, only=SWEEP_FIELDS, command="search")
@flags(MergeOptions, rename=MERGE_RENAME)
@flags(RunOptions, only=RUN_FLAGS, rename=RUN_RENAME)
@flags(DataOptions)
@flags(BackendOptions)
@flags(GenerationOptions)
@flags(JudgeOptions)
@click.pass_context
def search_command(ctx: click.Context, out: Path, **values: Any) -> None:
    """Search a ratio per group of tensors on dev prompts; check the best against the best uniform ratio
    on held-out prompts (resumable)."""
    require("search", "optuna", "matplotlib")
    from chatvector.search.plan import SearchSpec

    search = build(SearchOptions, values)  # every search option checked before anything else
    sweep = build(SweepOptions, values)
    clashing = given_on_command_line(ctx, MergeOptions, rename=MERGE_RENAME)
    if sweep.recipe is not None and clashing:
        raise clashing_options(clashing, "--recipe", "the recipe holds the merge options; edit the recipe instead")
    inputs = spec_from_flags(out, sweep, values, ratios=(1.0,))
    spec = SearchSpec(out=out, inputs=inputs, options=search)
    _quiet()
    summary = _run(spec)
    _print(summary, spec)


def _quiet() -> None:
    """Optuna's INFO line per trial, like a loading bar per candidate, drowns the search's own lines."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet_loading()


def _run(spec: Any) -> dict[str, Any]:
    from chatvector.search.run import run_search

    summary_name = spec.options.objective

    def on_trial(row: dict[str, Any]) -> None:
        value = "–" if row["value"] is None else f"{row['value']:.3f}"
        ratios = ", ".join(f"{k}={v:.2f}" for k, v in row["params"].items())
        kind = " (uniform)" if row["uniform"] else ""
        console.print(Text(f"trial {row['number']}{kind}: {row['state']}, {summary_name} {value}; {ratios}"))

    return run_search(spec, on_trial=on_trial)


def _print(summary: dict[str, Any], spec: Any) -> None:
    best, uniform, held = summary["best"], summary["best_uniform"], summary["heldout"]
    name = summary["objective"]
    say(
        f"Best: trial {best['number']}, dev {name} {best['value']:.3f}, held out "
        f"{_value(held['metrics']['best'].get(name))} (optimism {_value(held['optimism']['best'])})."
    )
    say(
        f"Best uniform: r = {next(iter(uniform['params'].values())):g}, dev {uniform['value']:.3f}, held out "
        f"{_value(held['metrics']['uniform'].get(name))} (optimism {_value(held['optimism']['uniform'])})."
    )
    paired = held["comparison"]["metrics"].get(name, {}).get("paired")
    if paired is not None:
        say(
            f"Held out, best − uniform: {paired['difference']:+.3f} [{paired['ci_low']:+.3f}, "
            f"{paired['ci_high']:+.3f}], p = {paired['p_value']:.3f}, n = {paired['n']}."
        )
    written = ", ".join(str(spec.out / f) for f in ("search.json", "best-recipe.yaml", "report.md", "report.html"))
    say(f"Wrote {written}" + (f", and the best model to {spec.merge_out}." if spec.merge_out else "."))


def _value(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"
