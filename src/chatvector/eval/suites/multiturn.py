"""``multiturn``: conversations whose last turn depends on earlier ones, its reply checked by rules
(scored as ``verifiable`` is, on the last reply).
"""

from __future__ import annotations

from chatvector.eval.metrics import MetricSpec, flag
from chatvector.eval.suites.base import Suite
from chatvector.eval.suites.verifiable import score_rules

__all__ = ["SUITE"]

SUITE = Suite(
    "multiturn",
    "2",
    "conversations whose last turn depends on earlier ones, checked by rules",
    (
        MetricSpec(
            "multiturn.pass_rate",
            "rate",
            True,
            lambda r: flag(r["passed"]),
            "conversations whose last reply passes its rules",
            tags=frozenset({"instruction"}),
        ),
    ),
    score_rules,
)
