"""``chatvector search``: choose a ratio per group of tensors, check the choice on held-out prompts.

It takes every option ``sweep`` takes for the merge and the evaluation (generated from the same
option groups, renamed alike: ``--merge-dtype``, ``--merge-threads``), plus the search's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.text import Text

from chatvector.cli.common import console, parse_ratios, say
from chatvector.cli.options import build, flags, given_on_command_line
from chatvector.cli.sweep import MERGE_RENAME, RUN_FLAGS, RUN_RENAME, _quiet_loading, _ram_limit
from chatvector.errors import clashing_options
from chatvector.eval.options import BackendOptions, DataOptions, GenerationOptions, JudgeOptions
from chatvector.extras import require
from chatvector.options import MergeOptions, RunOptions

__all__ = ["search_command"]


@click.command("search")
@click.option("--target", help="CP model (optional with --recipe).")
@click.option("--base", help="Base model.")
@click.option("--chat", help="Chat model.")
@click.option("--vector", help="A vector directory instead of --base/--chat.")
@click.option(
    "--recipe",
    type=click.Path(path_type=Path),
    help="A recipe whose terms have plain ratios; each group's ratio scales them.",
)
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True)
@click.option(
    "--objective",
    required=True,
    metavar="METRIC",
    help="The metric to optimise on the dev prompts (e.g. verifiable.pass_rate).",
)
@click.option(
    "--require",
    "requires",
    multiple=True,
    metavar="METRIC>=VALUE",
    help="A constraint: METRIC>=VALUE, METRIC<=VALUE, or METRIC>=target (the target's own value). Repeatable.",
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="NAME=REGEX",
    help="A group of tensors with its own ratio (first match wins; repeatable). Default: embeddings and "
    "head, norms, and --bands layer bands.",
)
@click.option("--bands", default=3, show_default=True, help="Layer bands of the default groups (early, middle, late).")
@click.option(
    "--bounds",
    multiple=True,
    metavar="NAME=LO:HI",
    help="A group's ratio range (default 0:2; repeatable).",
)
@click.option("--grid", default="0.5,1.0,1.5", show_default=True, help="Uniform ratios evaluated first, as baselines.")
@click.option("--trials", default=30, show_default=True, help="Trials in all, the grid included.")
@click.option("--timeout", type=float, default=None, help="Start no new trial after this many seconds.")
@click.option("--sampler", type=click.Choice(["tpe", "cmaes"]), default="tpe", show_default=True)
@click.option("--search-seed", default=0, show_default=True, help="Seed of the sampler and of the dev/held-out split.")
@click.option("--heldout", default=0.5, show_default=True, help="Share of each suite's prompts held out.")
@click.option(
    "--stages",
    default=2,
    show_default=True,
    help="Growing parts of the dev prompts a trial is scored on; after each but the last, a hopeless trial is pruned.",
)
@click.option("--prune/--no-prune", default=True, show_default=True, help="Prune with Optuna's median pruner.")
@click.option("--merge", "merge_out", type=click.Path(path_type=Path), help="Write the best model here.")
@click.option("--keep", is_flag=True, help="Keep each candidate's merged model in OUT/models.")
@click.option(
    "--ram-limit",
    default="2GB",
    show_default=True,
    help="Merge targets up to this size in RAM (/dev/shm) instead of on disk; 0 = always on disk.",
)
@flags(MergeOptions, rename=MERGE_RENAME)
@flags(RunOptions, only=RUN_FLAGS, rename=RUN_RENAME)
@flags(DataOptions)
@flags(BackendOptions)
@flags(GenerationOptions)
@flags(JudgeOptions)
@click.pass_context
def search_command(
    ctx: click.Context,
    target: str | None,
    base: str | None,
    chat: str | None,
    vector: str | None,
    recipe: Path | None,
    out: Path,
    objective: str,
    requires: tuple[str, ...],
    groups: tuple[str, ...],
    bands: int,
    bounds: tuple[str, ...],
    grid: str,
    trials: int,
    timeout: float | None,
    sampler: str,
    search_seed: int,
    heldout: float,
    stages: int,
    prune: bool,
    merge_out: Path | None,
    keep: bool,
    ram_limit: str,
    **values: Any,
) -> None:
    """Search a ratio per group of tensors on dev prompts; check the best against the best uniform ratio
    on held-out prompts."""
    require("search", "optuna", "matplotlib")
    from chatvector.search.plan import SearchSpec
    from chatvector.sweep.run import SweepSpec

    clashing = given_on_command_line(ctx, MergeOptions, rename=MERGE_RENAME)
    if recipe is not None and clashing:
        raise clashing_options(clashing, "--recipe", "the recipe holds the merge options; edit the recipe instead")
    inputs = SweepSpec(
        out=out,
        ratios=(1.0,),
        target=target,
        base=base,
        chat=chat,
        vector=vector,
        recipe=recipe,
        keep=keep,
        in_memory_limit=_ram_limit(ram_limit),
        merge=build(MergeOptions, values, rename=MERGE_RENAME),
        merge_run=build(RunOptions, values, rename=RUN_RENAME),
        backend=build(BackendOptions, values),
        generation=build(GenerationOptions, values),
        judge=build(JudgeOptions, values),
        data=build(DataOptions, values),
    )
    spec = SearchSpec(
        out=out,
        inputs=inputs,
        objective=objective,
        requires=requires,
        groups=groups,
        bands=bands,
        bounds=bounds,
        grid=parse_ratios(grid),
        trials=trials,
        timeout=timeout,
        sampler=sampler,  # type: ignore[arg-type]
        seed=search_seed,
        heldout=heldout,
        stages=stages,
        prune=prune,
        merge_out=merge_out,
    )
    _quiet_loading()
    _quiet_optuna()
    summary = _run(spec)
    _print(summary, spec)


def _quiet_optuna() -> None:
    """Optuna logs every trial at INFO; the search prints its own line per trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _run(spec: Any) -> dict[str, Any]:
    from chatvector.search.run import run_search

    def on_trial(row: dict[str, Any]) -> None:
        value = "–" if row["value"] is None else f"{row['value']:.3f}"
        ratios = ", ".join(f"{k}={v:.2f}" for k, v in row["params"].items())
        kind = " (uniform)" if row["uniform"] else ""
        console.print(Text(f"trial {row['number']}{kind}: {row['state']}, {spec.objective} {value}; {ratios}"))

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
