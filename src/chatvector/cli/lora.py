"""``chatvector lora``: a chat vector as a PEFT LoRA adapter, or an adapter rescaled for another ratio.

Its options are generated from :class:`~chatvector.lora.options.LoraOptions`, ``--embeddings`` and
``--exclude`` from :class:`~chatvector.options.MergeOptions` (the extraction is planned like a merge)
and ``--force`` from :class:`~chatvector.options.RunOptions`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from chatvector.cli.common import say
from chatvector.cli.options import build, flags
from chatvector.errors import InputError
from chatvector.lora.options import LoraOptions
from chatvector.options import MergeOptions, RunOptions

__all__ = ["lora_command"]


@click.command("lora")
@click.argument("source", required=False)
@click.option("--base", default=None, help="Base model (with --chat, instead of a VECTOR directory).")
@click.option("--chat", default=None, help="Chat model tuned from the base.")
@flags(LoraOptions)
@flags(MergeOptions, only=("embeddings", "exclude"))
@flags(RunOptions, only=("force",))
@click.option(
    "-o",
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output adapter directory (written atomically).",
)
def lora_command(source: str | None, base: str | None, chat: str | None, out: Path, **values: Any) -> None:
    """Write SOURCE (a vector directory) or CHAT - BASE as a rank-R PEFT LoRA adapter; or, with an adapter
    as SOURCE and --ratio, a copy scaled by that ratio.

    Examples: chatvector lora llama2-cv --rank 64 -o cv-lora64;
    chatvector lora --base B --chat C --rank 64 --target T -o cv-lora64;
    chatvector lora cv-lora64 --ratio 0.5 -o cv-lora64-r0.5
    """
    from chatvector.io.adapter import is_adapter

    options = build(LoraOptions, values)
    merge_options = build(MergeOptions, {k: values[k] for k in ("embeddings", "exclude")})
    force = build(RunOptions, values).force
    if source is not None and is_adapter(Path(source)):
        extraction_only = options.keep_whole or options.target or merge_options != MergeOptions()
        if options.rank is not None or options.ratio is None or base or chat or extraction_only:
            raise InputError(
                f"{source} is already an adapter: give only --ratio R to write a scaled copy", option="--ratio"
            )
        from chatvector.lora.scale import scale_adapter

        scale_adapter(source, options.ratio, out, force=force)
        say(f"Wrote {out}: {source} with lora_B scaled by {options.ratio:g}")
        return
    if options.rank is None:
        raise InputError("give --rank R (the LoRA rank), e.g. --rank 64", option="--rank")
    from chatvector.lora.extract import extract_lora

    report = extract_lora(
        out,
        options.rank,
        vector=source,
        base=base,
        chat=chat,
        target=options.target,
        ratio=1.0 if options.ratio is None else options.ratio,
        keep_whole=options.keep_whole,
        force=force,
        merge_options=merge_options,
    )
    say(report.summary())
