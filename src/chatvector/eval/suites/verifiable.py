"""``verifiable``: instructions whose replies are checked by rules (length, lists, keywords, JSON,
language; :mod:`chatvector.eval.rules`), IFEval style, with no judge.
"""

from __future__ import annotations

from typing import Any

from chatvector.eval.metrics import MetricSpec, flag
from chatvector.eval.rules import check_rule
from chatvector.eval.suites.base import Sample, Scoring, Suite, base_record, last_reply

__all__ = ["SUITE", "score_rules"]


def score_rules(samples: list[Sample], replies: list[list[str]], scoring: Scoring) -> list[dict[str, Any]]:
    """Each sample's last reply checked against its rules: every result, and whether all passed."""
    records = []
    for sample, reply_list in zip(samples, replies, strict=True):
        results = [check_rule(last_reply(reply_list), rule) for rule in sample.rules]
        records.append(
            {
                **base_record(sample, reply_list, scoring.lang),
                "rules": list(sample.rules),
                "rule_results": results,
                "passed": all(results),
            }
        )
    return records


SUITE = Suite(
    "verifiable",
    "2",
    "instructions checked by rules (length, lists, keywords, JSON, language)",
    (
        MetricSpec(
            "verifiable.pass_rate",
            "rate",
            True,
            lambda r: flag(r["passed"]),
            "prompts whose reply passes all its rules",
            tags=frozenset({"instruction"}),
        ),
        MetricSpec(
            "verifiable.rule_pass_rate",
            "rate",
            True,
            lambda r: [float(x) for x in r["rule_results"]],
            "rules passed (units are rules; a prompt's rules are not independent)",
        ),
    ),
    score_rules,
)
