"""Core commands: ``extract``, ``apply``, ``merge`` and ``verify``.

Each command parses its options, calls the library (``chatvector.api``) and prints a summary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from chatvector.errors import InputError

# Wide enough for result tables when output is not a terminal (logs, CI).
console = Console(width=None if Console().is_terminal else 132)

EMBEDDING_POLICIES = ("auto", "align", "add", "skip")
DTYPES = ("float32", "bfloat16", "float16")


def parse_vector_spec(spec: str) -> tuple[str, float]:
    """Split ``PATH[:RATIO]`` into a path and a ratio (default 1.0).

    The ratio is taken from the last ``:`` only when what follows is a number, so hub ids and
    paths that contain a colon still work.
    """
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return spec, 1.0


def parse_ratios(text: str) -> tuple[float, ...]:
    """Parse ``--ratios`` such as ``0,0.5,1.0``."""
    try:
        ratios = tuple(float(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: give comma-separated numbers, e.g. 0,0.5,1.0") from None
    if not ratios:
        raise click.BadParameter("give at least one ratio")
    return ratios


def parse_size(text: str, option: str = "--shard-size") -> int:
    """Parse a byte size such as ``5GB``, ``500MB``, ``1GiB`` or ``123456``."""
    units = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
             "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
    cleaned = text.strip().lower().replace(" ", "")
    number = cleaned.rstrip("kmgtib")
    unit = cleaned[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in units or value <= 0:
        raise InputError(f"{option} {text!r} is not a size; write it like 5GB, 500MB or 2GiB")
    return int(value * units[unit])


def _common_output_options(func):  # noqa: ANN001, ANN202 - decorator plumbing
    options = [
        click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path),
                     help="Output directory (written atomically; must not exist or be empty)."),
        click.option("--force", is_flag=True, help="Replace an existing non-empty OUT."),
        click.option("--exclude", multiple=True, metavar="REGEX",
                     help="Leave tensors whose name matches REGEX as in the target (repeatable)."),
        click.option("--allow-pickle", is_flag=True,
                     help="Read pickled .bin checkpoints (with torch weights_only=True)."),
        click.option("--allow-nonfinite", is_flag=True,
                     help="Proceed when an input or result tensor holds NaN or Inf."),
        click.option("--shard-size", default="5GB", show_default=True,
                     help="Largest output shard (e.g. 2GB, 500MB)."),
        click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 64),
                     help="Worker threads streaming chunks (each overlaps its I/O with the other's arithmetic)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _merge_options(func):  # noqa: ANN001, ANN202 - decorator plumbing
    options = [
        click.option("--embeddings", type=click.Choice(EMBEDDING_POLICIES), default="auto",
                     show_default=True,
                     help="Embedding/output-head policy when vocabularies differ: align rows by "
                          "token string, add (equal shapes only), skip (keep the target's), or "
                          "auto (add if vocabularies are identical, else align)."),
        click.option("--dtype", type=click.Choice(DTYPES), default=None,
                     help="Output dtype (default: each tensor keeps the target's dtype)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar (bytes read, rate) fed by the engine's (done, total) callback."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _print_report(report) -> None:  # noqa: ANN001 - MergeReport, imported lazily
    console.print(report.summary(), soft_wrap=True, highlight=False)


@click.command("extract")
@click.option("--base", required=True, help="Base model: local directory or hub id.")
@click.option("--chat", required=True, help="Chat model tuned from the base: directory or hub id.")
@click.option("--base-revision", default=None, help="Hub revision of the base model.")
@click.option("--chat-revision", default=None, help="Hub revision of the chat model.")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
              help="Storage dtype of the deltas (computed in float32 either way).")
@_common_output_options
def extract_command(base: str, chat: str, base_revision: str | None, chat_revision: str | None,
                    dtype: str, out: Path, force: bool, exclude: tuple[str, ...],
                    allow_pickle: bool, allow_nonfinite: bool, shard_size: str,
                    threads: int) -> None:
    """Extract the chat vector CHAT - BASE into a reusable vector directory."""
    from chatvector import api

    with _progress("extracting") as progress:
        report = api.extract(base=base, chat=chat, out=out, dtype=dtype, exclude=exclude,
                             force=force, allow_pickle=allow_pickle,
                             allow_nonfinite=allow_nonfinite, shard_size=parse_size(shard_size),
                             threads=threads, base_revision=base_revision,
                             chat_revision=chat_revision, progress=progress)
    _print_report(report)


@click.command("apply")
@click.option("--target", required=True, help="CP model to receive the vector(s).")
@click.option("--vector", "vectors", multiple=True, required=True, metavar="VECTOR[:RATIO]",
              help="A vector directory and its ratio (default 1.0; negative allowed). Repeatable.")
@_merge_options
@_common_output_options
def apply_command(target: str, vectors: tuple[str, ...], embeddings: str, dtype: str | None,
                  out: Path, force: bool, exclude: tuple[str, ...], allow_pickle: bool,
                  allow_nonfinite: bool, shard_size: str, threads: int) -> None:
    """Apply one or more extracted chat vectors to TARGET: target + sum(r_i * v_i)."""
    from chatvector import api

    with _progress("applying") as progress:
        report = api.apply(target=target, vectors=[parse_vector_spec(v) for v in vectors],
                           out=out, embeddings=embeddings, dtype=dtype, exclude=exclude,
                           force=force, allow_pickle=allow_pickle,
                           allow_nonfinite=allow_nonfinite, shard_size=parse_size(shard_size),
                           threads=threads, progress=progress)
    _print_report(report)


@click.command("merge")
@click.option("--base", default=None, help="Base model: local directory or hub id.")
@click.option("--chat", default=None, help="Chat model tuned from the base.")
@click.option("--target", default=None, help="CP model continually pre-trained from the base.")
@click.option("--ratio", default=1.0, show_default=True, type=float,
              help="Chat-vector coefficient r in target + r * (chat - base).")
@click.option("--recipe", type=click.Path(path_type=Path), default=None,
              help="YAML recipe with a target and several (base, chat, ratio) or "
                   "(vector, ratio) terms, instead of --base/--chat/--target.")
@_merge_options
@_common_output_options
def merge_command(base: str | None, chat: str | None, target: str | None, ratio: float,
                  recipe: Path | None, embeddings: str, dtype: str | None, out: Path,
                  force: bool, exclude: tuple[str, ...], allow_pickle: bool,
                  allow_nonfinite: bool, shard_size: str, threads: int) -> None:
    """Merge TARGET + RATIO * (CHAT - BASE) in one streaming pass, or a whole --recipe."""
    from chatvector import api

    with _progress("merging") as progress:
        report = api.merge(base=base, chat=chat, target=target, ratio=ratio, recipe=recipe,
                           out=out, embeddings=embeddings, dtype=dtype, exclude=exclude,
                           force=force, allow_pickle=allow_pickle,
                           allow_nonfinite=allow_nonfinite, shard_size=parse_size(shard_size),
                           threads=threads, progress=progress)
    _print_report(report)


@click.command("verify")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--against", type=click.Path(path_type=Path), default=None,
              help="Recipe to recompute from (default: the recipe stored in MODEL).")
@click.option("--recompute/--no-recompute", default=False,
              help="Recompute tensors from the recipe's inputs and report the max error.")
@click.option("--full", is_flag=True, help="Recompute every tensor, not a sample.")
@click.option("--allow-pickle", is_flag=True, help="Allow pickled inputs when recomputing.")
def verify_command(model: Path, against: Path | None, recompute: bool, full: bool,
                   allow_pickle: bool) -> None:
    """Check a merged model or vector: every tensor readable and finite; optionally recompute."""
    from chatvector import api

    report = api.verify(model, against=against, recompute=recompute or against is not None,
                        full=full, allow_pickle=allow_pickle)
    console.print(report.summary(), soft_wrap=True, highlight=False)
    if not report.ok:
        raise SystemExit(1)


CORE_COMMANDS = [extract_command, apply_command, merge_command, verify_command]
