"""lm-evaluation-harness tasks on the model under test (``--lm-eval tmmluplus,kmmlu,ifeval``).

The harness runs on the same model and backend as the suites:

- a local model (the hf backend) is handed to lm-eval's ``hf`` model as the instance already loaded,
  so it keeps its device, dtype and device map and is not loaded a second time;
- an endpoint (``--backend openai`` or ``--serve``) is reached through lm-eval's
  ``local-completions`` model, which does both log-likelihood (multiple choice: TMMLU+, KMMLU) and
  generation (IFEval) when the server takes lm-eval's requests (vLLM and SGLang do; ``transformers
  serve`` refuses prompt lists and stop sequences, so ``--serve transformers`` with ``--lm-eval`` is
  refused up front).

Prompts go through the model's chat template (``apply_chat_template``), since the models evaluated
here are chat models. Each task's headline numbers land in results.json as
``lm_eval.<task>.<metric>`` (``.<filter>`` appended when the task filters its outputs) with
``value``, ``stderr``, ``n`` and lm-eval's ``higher_is_better``; lm-eval's whole output, every
subtask included, goes to ``lm_eval.json`` beside it.

A task is a name lm-eval knows or a path to a task YAML of your own; when every task is a YAML path,
lm-eval's own catalogue (thousands of files, ~10 s to index) is not scanned.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chatvector.errors import EvalError, clashing_options
from chatvector.eval.backends.base import Backend
from chatvector.extras import require

__all__ = ["parse_tasks", "run_lm_eval", "metrics_of", "check_serve"]

log = logging.getLogger(__name__)


def parse_tasks(values: tuple[str, ...] | list[str]) -> list[str]:
    """``("tmmluplus,kmmlu", "ifeval")`` → ``["tmmluplus", "kmmlu", "ifeval"]`` (order kept, no repeats)."""
    tasks: list[str] = []
    for value in values:
        for name in (part.strip() for part in value.split(",")):
            if name and name not in tasks:
                tasks.append(name)
    return tasks


def _task_name(path: Path) -> str:
    """The ``task:`` name in a task YAML; lm-eval's ``!function`` tags are left for lm-eval to resolve."""
    import yaml

    class Lenient(yaml.SafeLoader):
        pass

    Lenient.add_multi_constructor("!", lambda loader, suffix, node: None)
    if not path.is_file():
        raise EvalError(f"--lm-eval {path}: no such task file", file=path, option="--lm-eval")
    try:
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=Lenient)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as error:
        raise EvalError(f"--lm-eval {path}: not valid YAML ({error})", file=path, option="--lm-eval") from None
    if not isinstance(config, dict) or not isinstance(config.get("task"), str):
        raise EvalError(f"--lm-eval {path}: a task YAML needs a 'task: NAME' line", file=path, option="--lm-eval")
    return config["task"]


def _task_manager(tasks: list[str]) -> tuple[Any, list[str]]:
    """lm-eval's TaskManager and the task names to ask it for (YAML paths become their task name)."""
    from lm_eval.tasks import TaskManager

    files = [Path(t) for t in tasks if t.endswith((".yaml", ".yml"))]
    names = [_task_name(Path(t)) if t.endswith((".yaml", ".yml")) else t for t in tasks]
    folders = sorted({str(p.resolve().parent) for p in files})
    manager = TaskManager(include_path=folders or None, include_defaults=len(files) < len(tasks))
    return manager, names


def _check_nltk(tasks: list[str]) -> None:
    """IFEval splits sentences with NLTK's punkt_tab, which lm-eval tries to download at import; offline
    that fails much later and obscurely, so say it before anything runs."""
    if not any(t.startswith("ifeval") for t in tasks):
        return
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab")
    except LookupError:
        raise EvalError(
            "--lm-eval ifeval needs NLTK's punkt_tab sentence splitter, which is not installed "
            "here; install it once with: python -m nltk.downloader punkt_tab "
            "(it needs the network)",
            option="--lm-eval",
        ) from None


@contextmanager
def _api_key(variable: str) -> Iterator[None]:
    """lm-eval's API models read ``OPENAI_API_KEY``; lend them the key from ``--api-key-env`` for the
    run only (an environment variable, so it is never part of the model arguments lm-eval logs)."""
    saved = os.environ.get("OPENAI_API_KEY")
    if variable != "OPENAI_API_KEY" and os.environ.get(variable):
        os.environ["OPENAI_API_KEY"] = os.environ[variable]
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = saved


class _KnownWarnings(logging.Filter):
    """lm-eval warns whenever it is handed a loaded model, which is what chatvector does on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return "not of type `str`" not in text and "already-initialized model" not in text


@contextmanager
def _known_warnings_hidden() -> Iterator[None]:
    logger, known = logging.getLogger("lm_eval.models.huggingface"), _KnownWarnings()
    logger.addFilter(known)
    try:
        yield
    finally:
        logger.removeFilter(known)


def check_serve(serve: str | None) -> None:
    """Refuse, before a server starts, the one preset whose completions endpoint lm-eval cannot use.

    Raises:
        EvalError: ``--serve transformers`` with ``--lm-eval``.
    """
    if serve == "transformers":
        raise clashing_options(
            ["--lm-eval"],
            "--serve transformers",
            "lm-eval needs a /v1/completions that takes its requests (prompt lists, stop sequences, "
            "log-probabilities), which transformers serve does not; run --lm-eval with the hf backend "
            "(no --serve), or serve with vllm or sglang",
            kind=EvalError,
        )


def run_lm_eval(
    backend: Backend, tasks: list[str], *, model: str, limit: int | None = None, out_dir: Path | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Run lm-evaluation-harness ``tasks`` on ``backend``'s model.

    Args:
        model: the model directory or name (the tokenizer for an endpoint's log-likelihoods).
        limit: at most this many documents per task.
        out_dir: where ``lm_eval.json`` (lm-eval's whole output) is written.

    Returns:
        the ``lm_eval.<task>.<metric>`` metrics, and a summary of the run for results.json.

    Raises:
        EvalError: an unknown task, a missing NLTK resource, or lm-eval failing (its message kept).
    """
    require("--lm-eval", "lm_eval")
    import lm_eval

    _check_nltk(tasks)
    manager, names = _task_manager(tasks)
    with _known_warnings_hidden(), _api_key(getattr(backend, "api_key_env", "OPENAI_API_KEY")):
        lm, recorded = backend.lm_eval_model(model)
        log.info("lm-eval: %s on the %s model", ", ".join(names), recorded["model"])
        try:
            output = lm_eval.simple_evaluate(
                model=lm,
                tasks=names,
                task_manager=manager,
                limit=limit,
                apply_chat_template=True,
                fewshot_as_multiturn=True,
                log_samples=False,
            )
        except Exception as error:  # lm-eval's own failures come in many types; its message is what helps
            raise EvalError(
                f"lm-eval failed on {', '.join(names)} ({recorded['model']} model): {type(error).__name__}: {error}",
                option="--lm-eval",
            ) from error
    if output is None:
        raise EvalError("lm-eval returned no results", option="--lm-eval")
    if out_dir is not None:
        _write(out_dir / "lm_eval.json", output)
    summary = {
        "tasks": names,
        "lm": recorded,
        "versions": output.get("versions", {}),
        "n-shot": output.get("n-shot", {}),
        "lm_eval_version": output.get("lm_eval_version"),
        "limit": limit,
    }
    return metrics_of(output), summary


def _write(path: Path, output: dict[str, Any]) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    kept = {
        k: output[k]
        for k in (
            "results",
            "groups",
            "group_subtasks",
            "versions",
            "n-shot",
            "higher_is_better",
            "n-samples",
            "lm_eval_version",
            "transformers_version",
        )
        if k in output
    }
    path.write_text(json.dumps(kept, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None  # lm-eval writes "N/A" where it has no stderr
    return None if math.isnan(number) else number


def _top_level(output: dict[str, Any]) -> list[str]:
    """The tasks and groups that were asked for (not the subtasks of a group)."""
    tree = output.get("group_subtasks") or {}
    inner = {sub for subs in tree.values() for sub in subs}
    return [name for name in (tree or output["results"]) if name not in inner and name in output["results"]]


def metrics_of(output: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``lm_eval.<task>.<metric>`` entries (value, stderr, n, higher_is_better) from lm-eval's output."""
    metrics: dict[str, dict[str, Any]] = {}
    for task in _top_level(output):
        row = output["results"][task]
        better = _higher_is_better(output, task)
        n = _count(output, task)
        for key, value in row.items():
            metric, comma, filter_name = key.partition(",")
            if not comma or "_stderr" in metric or _number(value) is None:
                continue
            name = f"lm_eval.{task}.{metric}" + ("" if filter_name == "none" else f".{filter_name}")
            if metric not in better:
                log.warning("lm-eval gives no higher_is_better for %s; taken as higher is better", name)
            metrics[name] = {
                "value": _number(value),
                "stderr": _number(row.get(f"{metric}_stderr,{filter_name}")),
                "n": n,
                "higher_is_better": better.get(metric, True),
            }
    return metrics


def _count(output: dict[str, Any], task: str) -> int | None:
    """Documents scored for ``task``; for a group, the sum over its subtasks."""
    counted = (output.get("n-samples") or {}).get(task, {}).get("effective")
    if counted is not None:
        return int(counted)
    parts = [_count(output, sub) for sub in (output.get("group_subtasks") or {}).get(task, [])]
    known = [part for part in parts if part is not None]
    return sum(known) if parts and len(known) == len(parts) else None


def _higher_is_better(output: dict[str, Any], task: str) -> dict[str, bool]:
    """lm-eval's ``higher_is_better`` for ``task``; for a group, its subtasks' (lm-eval agrees on them)."""
    table = output.get("higher_is_better") or {}
    found = dict(table.get(task) or {})
    for sub in (output.get("group_subtasks") or {}).get(task, []):
        for metric, better in (table.get(sub) or {}).items():
            found.setdefault(metric, better)
    return {metric: bool(better) for metric, better in found.items() if better is not None}
