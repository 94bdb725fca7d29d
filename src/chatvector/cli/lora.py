"""``chatvector lora``: a chat vector as a PEFT LoRA adapter, or an adapter rescaled for another ratio."""

from __future__ import annotations

from pathlib import Path

import click

from chatvector.cli.common import say
from chatvector.errors import InputError

__all__ = ["lora_command"]


@click.command("lora")
@click.argument("source", required=False)
@click.option("--base", default=None, help="Base model (with --chat, instead of a VECTOR directory).")
@click.option("--chat", default=None, help="Chat model tuned from the base.")
@click.option("--rank", type=int, default=None, help="LoRA rank r of every linear layer's truncated SVD.")
@click.option(
    "--ratio",
    type=float,
    default=None,
    help="Fold this ratio into lora_B (default 1); alone with an ADAPTER as SOURCE: a rescaled copy.",
)
@click.option(
    "--keep-whole",
    is_flag=True,
    help="Store tensors a LoRA cannot hold (norms, embeddings) whole as modules_to_save (they then "
    "replace the target's); needs --base/--chat.",
)
@click.option(
    "-o",
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output adapter directory (written atomically).",
)
@click.option("--force", is_flag=True, help="Replace an existing non-empty OUT.")
def lora_command(
    source: str | None,
    base: str | None,
    chat: str | None,
    rank: int | None,
    ratio: float | None,
    keep_whole: bool,
    out: Path,
    force: bool,
) -> None:
    """Write SOURCE (a vector directory) or CHAT - BASE as a rank-R PEFT LoRA adapter; or, with an adapter
    as SOURCE and --ratio, a copy scaled by that ratio.

    Examples: chatvector lora llama2-cv --rank 64 -o cv-lora64;
    chatvector lora --base B --chat C --rank 64 -o cv-lora64;
    chatvector lora cv-lora64 --ratio 0.5 -o cv-lora64-r0.5
    """
    from chatvector.lora.extract import extract_lora, scale_adapter
    from chatvector.merge.lora import is_adapter

    if source is not None and is_adapter(Path(source)):
        if rank is not None or ratio is None or base or chat or keep_whole:
            raise InputError(
                f"{source} is already an adapter: give only --ratio R to write a scaled copy", option="--ratio"
            )
        scale_adapter(source, ratio, out, force=force)
        say(f"Wrote {out}: {source} with lora_B scaled by {ratio:g}")
        return
    if rank is None:
        raise InputError("give --rank R (the LoRA rank), e.g. --rank 64", option="--rank")
    report = extract_lora(
        out,
        rank,
        vector=source,
        base=base,
        chat=chat,
        ratio=1.0 if ratio is None else ratio,
        keep_whole=keep_whole,
        force=force,
    )
    say(report.summary())
