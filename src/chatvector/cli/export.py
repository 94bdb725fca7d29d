"""``chatvector export gguf MODEL -o FILE``: parse, call :func:`chatvector.io.gguf_export.export_gguf`, print."""

from __future__ import annotations

from pathlib import Path

import click

from chatvector import __version__
from chatvector.cli.common import say
from chatvector.cli.options import flags
from chatvector.options import RunOptions

__all__ = ["export_command"]


@click.group("export")
def export_command() -> None:
    """Write an existing model in another format."""


@export_command.command("gguf")
@click.argument("model")
@click.option("--revision", default=None, help="Hub revision of MODEL.")
@flags(RunOptions, only=("gguf_type", "force"))
@click.option(
    "-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="The GGUF file to write (atomically)."
)
def export_gguf_command(model: str, revision: str | None, out: Path, gguf_type: str | None, force: bool | None) -> None:
    """Write MODEL (a Llama, Mistral or Qwen2 directory or hub id) as one GGUF file for llama.cpp."""
    from chatvector.io.gguf_export import export_gguf

    report = export_gguf(
        model, out, gguf_type=gguf_type or "f16", revision=revision, force=bool(force), version=__version__
    )
    say(report.summary())
