"""``chatvector eval``: evaluate a model directory or a served model (``chatvector compare`` compares runs)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from chatvector.cli.common import console, literal, say
from chatvector.cli.options import build, flags
from chatvector.eval.options import DataOptions, JudgeOptions
from chatvector.eval.suites import OFFLINE_SUITES, SUITES


@click.command("eval")
@click.argument("model", required=False)
@click.option(
    "--lang", default="zh-Hant", show_default=True, help="Target language (zh-Hant, zh-Hans, ko, en, ...)."
)
@click.option(
    "--suite",
    "suites",
    multiple=True,
    type=click.Choice(sorted(SUITES)),
    help=f"Suites to run (repeatable; default: the offline ones: {', '.join(OFFLINE_SUITES)}).",
)
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    help="Directory for results.json and report.md.",
)
@click.option("--backend", type=click.Choice(["hf", "openai"]), default="hf", show_default=True)
@click.option(
    "--base-url", help="OpenAI-compatible endpoint for --backend openai (e.g. http://127.0.0.1:8000/v1)."
)
@click.option("--model-name", help="Model name to request from the endpoint (default: MODEL).")
@click.option(
    "--api-key-env", default="OPENAI_API_KEY", show_default=True, help="Variable holding the endpoint's key."
)
@click.option("--concurrency", default=8, show_default=True, help="Parallel requests (openai backend).")
@flags(JudgeOptions)
@click.option(
    "--toxicity",
    default="lexicon",
    show_default=True,
    help="Toxicity scorer: lexicon, perspective or hf:PATH.",
)
@flags(DataOptions, only=("data", "data_map", "limit"))
@click.option("--max-new-tokens", default=256, show_default=True)
@click.option("--batch-size", default=8, show_default=True)
@click.option("--repetition-penalty", default=1.0, show_default=True)
@click.option("--temperature", default=0.0, show_default=True, help="0 = greedy.")
@click.option("--seed", default=0, show_default=True)
def eval_command(
    model: str | None,
    lang: str,
    suites: tuple[str, ...],
    out_dir: Path | None,
    backend: str,
    base_url: str | None,
    model_name: str | None,
    api_key_env: str,
    concurrency: int,
    toxicity: str,
    max_new_tokens: int,
    batch_size: int,
    repetition_penalty: float,
    temperature: float,
    seed: int,
    **options: object,
) -> None:
    """Evaluate MODEL: instruction following, safety, toxicity, multi-turn, language fidelity."""
    if model is None or out_dir is None:
        raise click.UsageError("give MODEL and -o DIR (chatvector compare A B compares finished runs)")
    from chatvector.eval.backends import GenerationSettings, HFBackend, OpenAIBackend
    from chatvector.eval.datasets import parse_data_map, parse_data_sources
    from chatvector.eval.judge import judges_from_options
    from chatvector.eval.report import fmt, interval, write_results
    from chatvector.eval.runner import evaluate, load_recipe_of

    # judges and data options are checked before a model is loaded
    judges = judges_from_options(build(JudgeOptions, options), concurrency=concurrency)
    data_options = build(DataOptions, options)
    data, data_map = parse_data_sources(data_options.data), parse_data_map(data_options.data_map)
    settings = GenerationSettings(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        repetition_penalty=repetition_penalty,
        seed=seed,
        batch_size=batch_size,
    )
    if backend == "openai":
        if not base_url:
            raise click.UsageError("--backend openai needs --base-url")
        runner = OpenAIBackend(
            base_url, model_name or model, api_key_env=api_key_env, settings=settings, concurrency=concurrency
        )
    else:
        runner = HFBackend(model, settings)
    chosen = list(suites) or list(OFFLINE_SUITES)
    if "instruct" in chosen and judges["judge"] is None and judges["pairwise"] is None:
        console.print("[yellow]instruct needs --judge-url for scores; its replies are collected only[/]")
    result = evaluate(
        runner,
        chosen,
        lang,
        toxicity=toxicity,
        data=data,
        data_map=data_map,
        limit=data_options.limit,
        seed=seed,
        **judges,
        model=model,
        recipe=load_recipe_of(Path(model)) if backend == "hf" else None,
        on_suite=lambda name, n: say(f"running {name} ({n} prompts)"),
    )
    path = write_results(result, out_dir)
    table = Table(title=literal(f"{model} ({result.lang})"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% interval", justify="right")
    table.add_column("n", justify="right")
    for name, entry in result.metrics.items():
        table.add_row(literal(f"{name} ({'↑' if entry['higher_is_better'] else '↓'})"), fmt(entry["value"]),
                      interval(entry), str(entry.get("n", "–")))
    console.print(table)
    say(f"Wrote {path} and {out_dir / 'report.md'}")
