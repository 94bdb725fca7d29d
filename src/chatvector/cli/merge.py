"""``chatvector extract``, ``apply`` and ``merge``: parse, call :mod:`chatvector.api`, print the summary.

Their merge and run options are generated from :class:`~chatvector.options.MergeOptions` and
:class:`~chatvector.options.RunOptions`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from chatvector.cli.common import byte_progress, parse_vector_spec, say
from chatvector.cli.options import build, flags, given_on_command_line
from chatvector.errors import InputError, clashing_options
from chatvector.options import MergeOptions, RunOptions

__all__ = ["extract_command", "apply_command", "merge_command"]

_out = click.option(
    "-o",
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output directory (written atomically; must not exist or be empty).",
)


def _ratio(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    from chatvector.merge.ratios import check_ratio

    if value is None:
        return None
    try:
        return check_ratio(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _vector_spec(text: str) -> tuple[str, float]:
    from chatvector.merge.ratios import check_ratio

    path, ratio = parse_vector_spec(text)
    try:
        return path, check_ratio(ratio)
    except ValueError as error:
        raise InputError(f"--vector {text!r}: {error}", option="--vector") from None


@click.command("extract")
@click.option("--base", required=True, help="Base model: local directory or hub id.")
@click.option("--chat", required=True, help="Chat model tuned from the base: directory or hub id.")
@click.option("--base-revision", default=None, help="Hub revision of the base model.")
@click.option("--chat-revision", default=None, help="Hub revision of the chat model.")
@flags(MergeOptions, only=("exclude", "dtype"), defaults={"dtype": "float32"}, command="extract")
@flags(RunOptions)
@_out
def extract_command(
    base: str, chat: str, base_revision: str | None, chat_revision: str | None, out: Path, **values: Any
) -> None:
    """Extract the chat vector CHAT - BASE into a reusable vector directory (float32 by default)."""
    from chatvector import api  # here, not at the top: `--help` should not load the merge engine

    with byte_progress("extracting") as progress:
        report = api.extract(
            base=base,
            chat=chat,
            out=out,
            options=build(MergeOptions, values),
            run=build(RunOptions, values),
            base_revision=base_revision,
            chat_revision=chat_revision,
            progress=progress,
        )
    say(report.summary())


@click.command("apply")
@click.option("--target", required=True, help="CP model to receive the vector(s).")
@click.option(
    "--vector",
    "vectors",
    multiple=True,
    required=True,
    metavar="VECTOR[:RATIO]",
    help="A vector directory and its ratio (default 1.0; negative allowed). Repeatable.",
)
@flags(MergeOptions)
@flags(RunOptions)
@_out
def apply_command(target: str, vectors: tuple[str, ...], out: Path, **values: Any) -> None:
    """Apply one or more extracted chat vectors to TARGET: target + sum(r_i * v_i)."""
    from chatvector import api

    with byte_progress("applying") as progress:
        report = api.apply(
            target=target,
            vectors=[_vector_spec(v) for v in vectors],
            out=out,
            options=build(MergeOptions, values),
            run=build(RunOptions, values),
            progress=progress,
        )
    say(report.summary())


@click.command("merge")
@click.option("--base", default=None, help="Base model: local directory or hub id.")
@click.option("--chat", default=None, help="Chat model tuned from the base.")
@click.option("--target", default=None, help="CP model continually pre-trained from the base.")
@click.option(
    "--ratio",
    default=None,
    type=float,
    callback=_ratio,
    help="Chat-vector coefficient r in target + r * (chat - base).  [default: 1.0]",
)
@click.option(
    "--recipe",
    type=click.Path(path_type=Path),
    default=None,
    help="YAML recipe with a target and several (base, chat, ratio) or (vector, ratio) terms, "
    "instead of --base/--chat/--target/--ratio and the merge options.",
)
@click.option(
    "--mergekit",
    "mergekit_config",
    type=click.Path(path_type=Path),
    default=None,
    help="A mergekit YAML configuration of a method chatvector has (task_arithmetic, ties, dare_linear, "
    "dare_ties, breadcrumbs, della), run as a recipe; what it cannot map is refused naming the key.",
)
@flags(MergeOptions)
@flags(RunOptions)
@_out
@click.pass_context
def merge_command(
    ctx: click.Context,
    base: str | None,
    chat: str | None,
    target: str | None,
    ratio: float | None,
    recipe: Path | None,
    mergekit_config: Path | None,
    out: Path,
    **values: Any,
) -> None:
    """Merge TARGET + RATIO * (CHAT - BASE) in one streaming pass, or a whole --recipe (or --mergekit config)."""
    run = build(RunOptions, values)
    if mergekit_config is not None and recipe is not None:
        raise clashing_options(["--mergekit"], "--recipe", "give one of them")
    if mergekit_config is not None or recipe is not None:
        given = "--mergekit" if mergekit_config is not None else "--recipe"
        # A recipe holds its terms and policies; flags beside it would be silently ignored otherwise.
        clashing = [
            flag for flag, value in (("--base", base), ("--chat", chat), ("--ratio", ratio)) if value is not None
        ] + given_on_command_line(ctx, MergeOptions)
        if clashing:
            raise clashing_options(
                clashing,
                given,
                "it defines the terms and options; edit it instead (--target may override its target)",
            )
        options = None
    else:
        options = build(MergeOptions, values)
    from chatvector import api
    from chatvector.merge.mergekit import recipe_from_mergekit

    with byte_progress("merging") as progress:
        report = api.merge(
            base=base,
            chat=chat,
            target=target,
            ratio=ratio,
            recipe=recipe_from_mergekit(mergekit_config) if mergekit_config is not None else recipe,
            out=out,
            options=options,
            run=run,
            progress=progress,
        )
    say(report.summary())
