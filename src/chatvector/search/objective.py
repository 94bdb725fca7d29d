"""The objective and the constraints of a search, read from an evaluation's metrics.

``--objective METRIC`` is any metric the evaluation reports (``verifiable.pass_rate``); it is
maximised when the metric's higher values are better, minimised otherwise. ``--require`` adds a
constraint ``METRIC>=VALUE`` or ``METRIC<=VALUE``; the value ``target`` means the metric of the
target alone (every ratio 0) on the same dev prompts. A constraint is met when its value
(:meth:`Requirement.violation`) is at most 0, the convention of Optuna's ``constraints_func``.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

from chatvector.errors import InputError

__all__ = ["Requirement", "parse_requirement", "check_metric", "known_metrics", "metric_value", "higher_is_better"]

_FORM = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(>=|<=)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Requirement:
    """``metric >= bound`` or ``metric <= bound``; ``bound`` None means the target's own value."""

    metric: str
    at_least: bool
    bound: float | None

    def __str__(self) -> str:
        return f"{self.metric}{'>=' if self.at_least else '<='}{'target' if self.bound is None else f'{self.bound:g}'}"

    def violation(self, metrics: dict[str, Any], target: dict[str, Any] | None) -> float:
        """How far ``metrics`` miss the requirement (<= 0: met; inf: not measured)."""
        value = metric_value(metrics, self.metric)
        bound = self.bound if self.bound is not None else metric_value(target or {}, self.metric)
        if value is None or bound is None:
            return math.inf
        return bound - value if self.at_least else value - bound


def parse_requirement(text: str) -> Requirement:
    """``METRIC>=VALUE``, ``METRIC<=VALUE`` or ``METRIC>=target`` (``--require``).

    Raises:
        InputError: another form, or a value that is not a number or ``target``.
    """
    found = _FORM.match(text)
    if not found:
        raise InputError(
            f"--require {text!r} is not METRIC>=VALUE or METRIC<=VALUE, e.g. 'language.target_share>=0.9' "
            "or 'safety.refusal_rate>=target'",
            option="--require",
        )
    metric, operator, value = found.groups()
    if value == "target":
        return Requirement(metric, operator == ">=", None)
    try:
        bound = float(value)
    except ValueError:
        bound = math.nan
    if not math.isfinite(bound):
        raise InputError(f"--require {text!r}: {value!r} is neither a finite number nor 'target'", option="--require")
    return Requirement(metric, operator == ">=", bound)


def known_metrics(suites: list[str], lang: str) -> dict[str, bool]:
    """Every metric the suites report in ``lang``: name → higher is better."""
    from chatvector.eval.suites import metric_specs

    return {name: spec.higher_is_better for name, (_, spec) in metric_specs(suites, lang).items()}


def check_metric(name: str, known: dict[str, bool], option: str) -> str:
    """``name`` if the evaluation reports it, else a one-line InputError listing the known ones.

    Raises:
        InputError: naming ``option``, the closest name, and every metric the suites report.
    """
    if name in known:
        return name
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise InputError(
        f"{option} {name!r} is not a metric these suites report{hint}; they report: {', '.join(sorted(known))}",
        option=option,
    )


def higher_is_better(name: str, known: dict[str, bool]) -> bool:
    return known[name]


def metric_value(results: dict[str, Any], name: str) -> float | None:
    """The value of metric ``name`` in results.json content (None when missing or not a number)."""
    entry = (results.get("metrics") or {}).get(name)
    value = entry.get("value") if isinstance(entry, dict) else None
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return float(value)
