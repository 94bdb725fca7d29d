"""``chatvector eval``: evaluate a model directory, a served model, or a server started for it
(``chatvector compare`` compares finished runs).

Its options are generated from the option groups in :mod:`chatvector.eval.options` (backend and
serving, generation, judges, data), the same ones ``sweep`` and ``chat`` use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from chatvector.cli.common import console, literal, say
from chatvector.cli.options import build, flags
from chatvector.eval.options import BackendOptions, DataOptions, GenerationOptions, JudgeOptions

__all__ = ["eval_command", "eval_job"]


def eval_job(model: str, out: Path, values: dict[str, Any]) -> Any:
    """The :class:`~chatvector.eval.job.EvalJob` for parsed flag ``values``."""
    from chatvector.eval.job import EvalJob

    return EvalJob(
        model=model,
        out=out,
        backend=build(BackendOptions, values),
        generation=build(GenerationOptions, values),
        judge=build(JudgeOptions, values),
        data=build(DataOptions, values),
    )


@click.command("eval")
@click.argument("model")
@click.option(
    "-o",
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory for results.json, report.md and replies.jsonl (a rerun reuses the replies).",
)
@flags(DataOptions)
@flags(BackendOptions)
@flags(GenerationOptions)
@flags(JudgeOptions)
def eval_command(model: str, out: Path, **values: Any) -> None:
    """Evaluate MODEL: instruction following, safety, toxicity, multi-turn, language fidelity.

    MODEL is a model directory (run here with --backend hf, or served with --serve) or a model name
    at --base-url (--backend openai).
    """
    from chatvector.eval.job import run_eval
    from chatvector.eval.report import fmt, interval

    job = eval_job(model, out, values)
    if "instruct" in job.data.suite and not job.judge.judge_url:
        console.print("[yellow]instruct needs --judge-url for scores; its replies are collected only[/]")
    run = run_eval(job, on_suite=lambda name, n: say(f"running {name} ({n} prompts)"))
    result = run.result
    table = Table(title=literal(f"{model} ({result.lang})"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% interval", justify="right")
    table.add_column("n", justify="right")
    for name, entry in result.metrics.items():
        table.add_row(
            literal(f"{name} ({'↑' if entry['higher_is_better'] else '↓'})"),
            fmt(entry["value"]),
            interval(entry),
            str(entry.get("n") if entry.get("n") is not None else "–"),
        )
    console.print(table)
    if run.reused:
        say(f"{run.reused} replies reused from {out / 'replies.jsonl'}, {run.generated} generated")
    say(f"Wrote {run.path} and {out / 'report.md'}")
