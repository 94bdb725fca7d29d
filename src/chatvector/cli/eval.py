"""``chatvector eval``: evaluate a model directory or a served model; compare runs."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from chatvector.cli.common import console, literal, say
from chatvector.eval.suites import OFFLINE_SUITES, SUITES


def _data_files(pairs: tuple[str, ...]) -> dict[str, str]:
    files = {}
    for pair in pairs:
        suite, sep, source = pair.partition("=")
        if not sep or suite not in SUITES:
            raise click.BadParameter(
                f"{pair!r}: write SUITE=FILE.jsonl with SUITE one of {', '.join(SUITES)}"
            )
        files[suite] = source
    return files


def print_comparison(folders: list[Path]) -> None:
    from chatvector.eval.report import comparison_rows

    header, rows = comparison_rows(folders)
    table = Table(title="Evaluation comparison")
    for index, title in enumerate(header):
        table.add_column(literal(title), justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*(literal(cell) for cell in row))
    console.print(table)


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
@click.option("--judge-url", help="OpenAI-compatible endpoint of the judge (enables instruct scores).")
@click.option("--judge-model", help="Judge model name.")
@click.option(
    "--judge-key-env", default="JUDGE_API_KEY", show_default=True, help="Variable holding the judge's key."
)
@click.option(
    "--toxicity",
    default="lexicon",
    show_default=True,
    help="Toxicity scorer: lexicon, perspective or hf:PATH.",
)
@click.option(
    "--data",
    multiple=True,
    metavar="SUITE=FILE",
    help="Your own prompt file for a suite (JSONL or hf://OWNER/NAME/FILE).",
)
@click.option("--max-new-tokens", default=256, show_default=True)
@click.option("--batch-size", default=8, show_default=True)
@click.option("--repetition-penalty", default=1.0, show_default=True)
@click.option("--temperature", default=0.0, show_default=True, help="0 = greedy.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--compare",
    "compare",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Instead of evaluating: print results of these eval directories side by side.",
)
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
    judge_url: str | None,
    judge_model: str | None,
    judge_key_env: str,
    toxicity: str,
    data: tuple[str, ...],
    max_new_tokens: int,
    batch_size: int,
    repetition_penalty: float,
    temperature: float,
    seed: int,
    compare: tuple[Path, ...],
) -> None:
    """Evaluate MODEL: instruction following, safety, toxicity, multi-turn, language fidelity."""
    if compare:
        print_comparison(list(compare))
        return
    if model is None or out_dir is None:
        raise click.UsageError("give MODEL and -o DIR (or --compare DIR DIR ...)")
    from chatvector.eval.backends import GenerationSettings, HFBackend, OpenAIBackend
    from chatvector.eval.judge import Judge
    from chatvector.eval.report import write_results
    from chatvector.eval.runner import evaluate, load_recipe_of

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
    judge = None
    if judge_url:
        judge = Judge(
            OpenAIBackend(
                judge_url,
                judge_model or "judge",
                api_key_env=judge_key_env,
                settings=GenerationSettings(max_new_tokens=512),
                concurrency=concurrency,
            )
        )
    chosen = list(suites) or list(OFFLINE_SUITES)
    if "instruct" in chosen and judge is None:
        console.print("[yellow]instruct needs --judge-url for scores; its replies are collected only[/]")
    result = evaluate(
        runner,
        chosen,
        lang,
        judge=judge,
        toxicity=toxicity,
        data=_data_files(data),
        model=model,
        recipe=load_recipe_of(Path(model)) if backend == "hf" else None,
        on_suite=lambda name, n: say(f"running {name} ({n} prompts)"),
    )
    path = write_results(result, out_dir)
    table = Table(title=literal(f"{model} ({result.lang})"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, entry in result.metrics.items():
        table.add_row(literal(f"{name} ({'↑' if entry['higher_is_better'] else '↓'})"), f"{entry['value']:.3f}")
    console.print(table)
    say(f"Wrote {path} and {out_dir / 'report.md'}")
