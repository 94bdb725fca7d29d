"""Suites: each one a module declaring a versioned prompt set, how its replies are scored, which
metrics it reports and what scoring needs (:class:`~chatvector.eval.suites.base.Suite`).

This module is the registry: :data:`SUITES` lists the declarations in the order they run and are
reported. Adding a suite is one module beside this one (docs/extending.md) plus its line in
``_DECLARED``; nothing else names it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from chatvector.errors import EvalError
from chatvector.eval.metrics import MetricSpec
from chatvector.eval.suites import demo, instruct, multiturn, safety, toxicity, verifiable
from chatvector.eval.suites.base import (
    Need,
    Sample,
    Scoring,
    Suite,
    SuiteData,
    base_record,
    builtin_languages,
    sample_from_row,
)
from chatvector.eval.suites.language import language_metrics

__all__ = [
    "Need",
    "Sample",
    "SuiteData",
    "Scoring",
    "Suite",
    "SUITES",
    "BUILTIN_SUITES",
    "OFFLINE_SUITES",
    "check_suite_name",
    "load_suite_data",
    "load_samples",
    "builtin_languages",
    "language_metrics",
    "metric_specs",
    "tagged_metrics",
    "base_record",
    "sample_from_row",
]

_DECLARED = (instruct.SUITE, verifiable.SUITE, safety.SUITE, toxicity.SUITE, multiturn.SUITE, demo.SUITE)

SUITES: dict[str, Suite] = {suite.name: suite for suite in _DECLARED}

# the suites with built-in prompts (the others run only on --data SUITE=FILE)
BUILTIN_SUITES = tuple(name for name, suite in SUITES.items() if suite.builtin_data)

# what `--suite` defaults to: every suite with built-in prompts scored without an LLM judge
OFFLINE_SUITES = tuple(name for name in BUILTIN_SUITES if not SUITES[name].needs_judge)


def check_suite_name(name: str) -> str:
    """``name`` if it is a suite, else an :class:`EvalError` with the closest name."""
    if name not in SUITES:
        close = difflib.get_close_matches(name, SUITES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = "; ".join(f"{suite.name} ({suite.about})" for suite in SUITES.values())
        raise EvalError(f"unknown suite {name!r}{hint} Known suites: {known}", option="--suite")
    return name


def load_suite_data(
    suite: str,
    lang: str,
    source: str | None = None,
    *,
    data_map: Mapping[str, str] | None = None,
    limit: int | None = None,
) -> SuiteData:
    """The samples of ``suite`` in ``lang``: built-in, from a JSONL file, or from ``hf:NAME[:CONFIG]:SPLIT``
    (see :func:`chatvector.eval.suites.base.load_suite_data`)."""
    return SUITES[check_suite_name(suite)].load(lang, source, data_map=data_map, limit=limit)


def load_samples(suite: str, lang: str, source: str | None = None) -> list[Sample]:
    """The samples of ``suite`` in ``lang`` (built-in, or from ``source``)."""
    return load_suite_data(suite, lang, source).samples


def metric_specs(suites: list[str], lang: str) -> dict[str, tuple[str | None, MetricSpec]]:
    """Every metric of ``suites`` and the language metrics: name → (suite, or None for all suites, spec)."""
    specs: dict[str, tuple[str | None, MetricSpec]] = {}
    for suite in suites:
        if suite in SUITES:
            specs.update({m.name: (suite, m) for m in SUITES[suite].metrics})
    specs.update({m.name: (None, m) for m in language_metrics(lang)})
    return specs


def tagged_metrics(tag: str) -> tuple[str, ...]:
    """The names of every suite's metrics tagged ``tag``, in registry order (e.g. ``instruction``)."""
    return tuple(m.name for suite in SUITES.values() for m in suite.metrics if tag in m.tags)
