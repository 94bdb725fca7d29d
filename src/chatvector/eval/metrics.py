"""Metrics that know how to aggregate themselves and their error, as lm-eval's MetricSpec does.

A suite declares its metrics as :class:`MetricSpec` objects. Each one reads the *units* it counts
from one per-sample record of results.json (``[1.0]`` for a passed sample, one value per rule or
per reply, ``[]`` for a sample it applies to but could not score, ``None`` where it does not apply;
a ``None`` among the units is a judgment that could not be parsed: left out of the value, counted
in the metric's ``unparsed``) and aggregates them by its kind:

- ``rate``: successes / n, with a 95% Wilson interval;
- ``mean``: the mean, with a 95% seeded bootstrap interval;
- ``count``: a plain count (unparsed judgments), no interval.

A metric over no units has the value None (``null`` in results.json, never a bare NaN).

Because the units are read from the records, a saved results.json is enough to recompute any
metric, and ``chatvector compare`` pairs the same units prompt by prompt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from chatvector.eval.stats import bootstrap_mean, wilson

__all__ = ["Kind", "Metric", "MetricSpec", "Units"]

Kind = Literal["rate", "mean", "count"]
Units = Callable[[dict[str, Any]], "Sequence[float | None] | None"]


@dataclass(frozen=True)
class Metric:
    """One aggregated number with its sample size and 95% interval (None for counts)."""

    name: str
    value: float | None
    n: int
    ci_low: float | None
    ci_high: float | None
    higher_is_better: bool
    kind: Kind
    unparsed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The entry of results.json's ``metrics`` (the name is its key); ``unparsed`` for judged metrics."""
        entry: dict[str, Any] = {
            "value": self.value,
            "n": self.n,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "higher_is_better": self.higher_is_better,
            "kind": self.kind,
        }
        if self.unparsed is not None:
            entry["unparsed"] = self.unparsed
        return entry


@dataclass(frozen=True)
class MetricSpec:
    """How one metric is computed from records and aggregated.

    Attributes:
        name: ``SUITE.METRIC`` as it appears in results.json.
        kind: ``rate``, ``mean`` or ``count``.
        higher_is_better: the direction of "better", for reports, comparisons and sweeps.
        units: the values one record contributes (None: the metric does not apply to it; a None
            unit: a judgment that could not be parsed).
        about: one line for reports and docs.
        tags: what the metric measures, for readers that pick metrics by kind rather than by name
            (``instruction``: instruction following, what a sweep ranks ratios by).
        judged: a judge decides the units; the metric reports how many it left unparsed.
    """

    name: str
    kind: Kind
    higher_is_better: bool
    units: Units
    about: str
    tags: frozenset[str] = frozenset()
    judged: bool = False

    def parsed_units(self, record: dict[str, Any]) -> list[float] | None:
        """One record's units without the unparsed ones (None: the metric does not apply)."""
        units = self.units(record)
        return None if units is None else [float(u) for u in units if u is not None]

    def values(self, records: Iterable[dict[str, Any]]) -> list[float] | None:
        """Every parsed unit of ``records``, or None when the metric applies to none of them."""
        counted = self._units(records)
        return None if counted is None else counted[0]

    def _units(self, records: Iterable[dict[str, Any]]) -> tuple[list[float], int] | None:
        found: list[float] | None = None
        unparsed = 0
        for record in records:
            units = self.units(record)
            if units is not None:
                found = found or []
                found += [float(u) for u in units if u is not None]
                unparsed += sum(1 for u in units if u is None)
        return None if found is None else (found, unparsed)

    def compute(self, records: Iterable[dict[str, Any]], seed: int = 0) -> Metric | None:
        """Aggregate ``records`` into a :class:`Metric`; None when the metric applies to none."""
        counted = self._units(records)
        if counted is None:
            return None
        values, unparsed = counted
        n, left_out = len(values), (unparsed if self.judged else None)
        if self.kind == "count":
            return Metric(self.name, float(sum(values)), n, None, None, self.higher_is_better, self.kind, left_out)
        if n == 0:
            return Metric(self.name, None, 0, None, None, self.higher_is_better, self.kind, left_out)
        value = sum(values) / n
        if self.kind == "rate":
            low, high = wilson(round(sum(values)), n)
        else:
            low, high = bootstrap_mean(values, seed=seed)
        return Metric(self.name, value, n, _finite(low), _finite(high), self.higher_is_better, self.kind, left_out)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def flag(value: object) -> list[float]:
    """``[1.0]``/``[0.0]`` for a boolean record field, ``[]`` when it is None (not decided)."""
    return [] if value is None else [1.0 if value else 0.0]
