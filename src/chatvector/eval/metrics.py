"""Metrics that know how to aggregate themselves and their error, as lm-eval's MetricSpec does.

A suite declares its metrics as :class:`MetricSpec` objects. Each one reads the *units* it counts
from one per-sample record of results.json (``[1.0]`` for a passed sample, one value per rule or
per reply, ``[]`` for a sample it applies to but could not score, ``None`` where it does not apply)
and aggregates them by its kind:

- ``rate``: successes / n, with a 95% Wilson interval;
- ``mean``: the mean, with a 95% seeded bootstrap interval;
- ``count``: a plain count (unparsed judgments), no interval.

Because the units are read from the records, a saved results.json is enough to recompute any
metric, and ``chatvector compare`` pairs the same units prompt by prompt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from chatvector.eval.stats import bootstrap_mean, wilson

__all__ = ["Kind", "Metric", "MetricSpec", "Units"]

Kind = Literal["rate", "mean", "count"]
Units = Callable[[dict[str, Any]], "list[float] | None"]


@dataclass(frozen=True)
class Metric:
    """One aggregated number with its sample size and 95% interval (None for counts)."""

    name: str
    value: float
    n: int
    ci_low: float | None
    ci_high: float | None
    higher_is_better: bool
    kind: Kind

    def as_dict(self) -> dict[str, Any]:
        """The entry of results.json's ``metrics`` (the name is its key)."""
        return {
            "value": self.value,
            "n": self.n,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "higher_is_better": self.higher_is_better,
            "kind": self.kind,
        }


@dataclass(frozen=True)
class MetricSpec:
    """How one metric is computed from records and aggregated.

    Attributes:
        name: ``SUITE.METRIC`` as it appears in results.json.
        kind: ``rate``, ``mean`` or ``count``.
        higher_is_better: the direction of "better", for reports, comparisons and sweeps.
        units: the values one record contributes (None: the metric does not apply to it).
        about: one line for reports and docs.
        tags: what the metric measures, for readers that pick metrics by kind rather than by name
            (``instruction``: instruction following, what a sweep ranks ratios by).
    """

    name: str
    kind: Kind
    higher_is_better: bool
    units: Units
    about: str
    tags: frozenset[str] = frozenset()

    def values(self, records: Iterable[dict[str, Any]]) -> list[float] | None:
        """Every unit of ``records``, or None when the metric applies to none of them."""
        found: list[float] | None = None
        for record in records:
            units = self.units(record)
            if units is not None:
                found = (found or []) + [float(u) for u in units]
        return found

    def compute(self, records: Iterable[dict[str, Any]], seed: int = 0) -> Metric | None:
        """Aggregate ``records`` into a :class:`Metric`; None when the metric applies to none."""
        values = self.values(records)
        if values is None:
            return None
        n = len(values)
        if self.kind == "count":
            return Metric(self.name, float(sum(values)), n, None, None, self.higher_is_better, self.kind)
        value = sum(values) / n if n else math.nan
        if self.kind == "rate":
            low, high = wilson(round(sum(values)), n)
        else:
            low, high = bootstrap_mean(values, seed=seed)
        return Metric(self.name, value, n, low, high, self.higher_is_better, self.kind)


def flag(value: object) -> list[float]:
    """``[1.0]``/``[0.0]`` for a boolean record field, ``[]`` when it is None (not decided)."""
    return [] if value is None else [1.0 if value else 0.0]
