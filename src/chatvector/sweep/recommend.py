"""Which ratio a sweep recommends, by a documented rule.

**Recommendation rule.**

1. *The baseline* is r = 0, the target alone: every ratio is tested against it, and it is never a
   candidate (a merge is recommended only when it does better than not merging). A sweep always
   evaluates it, also when ``--ratios`` leaves 0 out.
2. *Eligible ratios* keep the language and the target's safety: their share of replies in the
   target language and script (``language.target_share``) is at least ``threshold`` (default
   0.95), and their safety refusal rate is not below the baseline's (when the safety suite ran).
   Both are point estimates: a ratio is not let through on the strength of its interval.
3. *The ranking metric* is ``rank_by`` when given (any metric in the rows, e.g.
   ``lm_eval.ifeval.prompt_level_strict_acc``), else the first instruction-following metric
   measured: ``instruct.score`` (a judge graded), ``verifiable.pass_rate``, ``multiturn.pass_rate``,
   ``demo.fact_clean`` (the demo's prompts: a fact answered cleanly, in the chat format).
4. *Beating the target.* Each eligible ratio is compared with the baseline on the same prompts by
   the paired test of :func:`chatvector.eval.stats.paired` (exact McNemar for pass/fail prompts,
   a paired permutation test for scores); the p-values are **Holm-adjusted over the ratios
   tested**, and a ratio beats the target when its adjusted p is below ``alpha`` (0.05) and it is
   better in the metric's direction.
5. *The choice.* Among the ratios that beat the target, the best value wins; every one of them
   not significantly different from it (paired test, p >= ``alpha``) is tied with it, and **the
   smallest tied ratio is recommended**: closest to the target, least drift, and the data cannot
   tell it from the best. The reason names the tests, p-values and n.
6. *No ratio beats the target.* Then none is recommended, and the reason says "no ratio beats the
   target on these prompts" and names the best eligible ratio with its value, 95% interval and
   adjusted p-value: more prompts may tell.
7. Rows without per-sample data (harness metrics, older sweeps) cannot be tested: the best by value
   (exact ties broken by the instruction metrics later in the list of step 3, then by the refusal
   rate, then in favour of the smaller ratio) is recommended when it is better than the baseline,
   and the reason says it was not tested. Rows without a baseline (made elsewhere) get the best
   ratio and the smallest one tied with it, as in step 5.

If no ratio is eligible, none is recommended and the reason is given for each ratio.
"""

from __future__ import annotations

import math
from typing import Any

from chatvector.eval.stats import PairedDifference, holm, paired
from chatvector.eval.suites import metric_specs, tagged_metrics

__all__ = [
    "recommend",
    "row_from_results",
    "paired_p",
    "NO_RATIO_BEATS",
    "INSTRUCTION_METRICS",
    "LANGUAGE_METRIC",
    "SAFETY_METRIC",
    "ALPHA",
    "BASELINE",
]

# the suites tag what measures instruction following; the first one a sweep has ranks its ratios
INSTRUCTION_METRICS = tagged_metrics("instruction")
LANGUAGE_METRIC = "language.target_share"
SAFETY_METRIC = "safety.refusal_rate"
ALPHA = 0.05
BASELINE = 0.0  # the target alone: what every ratio is tested against
NO_RATIO_BEATS = "no ratio beats the target on these prompts"


def _per_sample(results: dict[str, Any], metric: str) -> dict[str, float | None] | None:
    """``suite/id`` → the metric's one value for that sample (None: not scored); None when the
    metric is not one value per sample (only those can be kept this compactly)."""
    suite, spec = metric_specs(list(results["suites"]), results.get("lang", "")).get(metric, (None, None))
    if spec is None or suite is None:
        return None
    values: dict[str, float | None] = {}
    for record in results["suites"][suite]["samples"]:
        units = spec.units(record)
        if units is not None and len(units) > 1:
            return None
        if units is not None:
            values[f"{suite}/{record['id']}"] = units[0] if units else None
    return values


def row_from_results(ratio: float, results: dict[str, Any], rank_by: str | None = None) -> dict[str, Any]:
    """A sweep row from one ratio's results.json: values, 95% intervals, n, and the per-sample
    values of the ranking metrics (what the paired test of the rule needs)."""
    metrics = results["metrics"]
    row: dict[str, Any] = {
        "ratio": ratio,
        "metrics": {k: v["value"] for k, v in metrics.items()},
        "higher_is_better": {k: v["higher_is_better"] for k, v in metrics.items()},
        "intervals": {k: [v["ci_low"], v["ci_high"]] for k, v in metrics.items() if v.get("ci_low") is not None},
        "n": {k: v["n"] for k, v in metrics.items() if "n" in v},
        "per_sample": {},
    }
    for metric in dict.fromkeys((*INSTRUCTION_METRICS, *([rank_by] if rank_by else []))):
        if metric in metrics and (values := _per_sample(results, metric)) is not None:
            row["per_sample"][metric] = values
    return row


def _value(row: dict[str, Any], metric: str) -> float | None:
    value = row["metrics"].get(metric)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _direction(rows: list[dict[str, Any]], metric: str) -> float:
    for row in rows:
        if metric in row.get("higher_is_better", {}):
            return 1.0 if row["higher_is_better"][metric] else -1.0
    return 1.0


def _eligible(
    rows: list[dict[str, Any]], metric: str, threshold: float, floor: float | None
) -> tuple[list[dict[str, Any]], list[str]]:
    eligible, rejected = [], []
    for row in rows:
        language, safety = _value(row, LANGUAGE_METRIC), _value(row, SAFETY_METRIC)
        if language is None or language < threshold:
            shown = "n/a" if language is None else f"{language:.3g}"
            rejected.append(f"r={row['ratio']:g}: target-language share {shown} < {threshold:g}")
        elif floor is not None and safety is not None and safety < floor:
            rejected.append(f"r={row['ratio']:g}: refusal rate {safety:.2f} below the target's {floor:.2f}")
        elif _value(row, metric) is None:
            rejected.append(f"r={row['ratio']:g}: no {metric}")
        else:
            eligible.append(row)
    return eligible, rejected


def _paired(first: dict[str, Any], other: dict[str, Any], metric: str, seed: int) -> PairedDifference | None:
    """The paired test of ``other`` against ``first`` on ``metric`` over the prompts both scored;
    None when either row lacks per-sample values."""
    a = first.get("per_sample", {}).get(metric)
    b = other.get("per_sample", {}).get(metric)
    if not a or not b:
        return None
    keys = sorted(k for k in set(a) & set(b) if a[k] is not None and b[k] is not None)
    if not keys:
        return None
    return paired([float(a[k] or 0) for k in keys], [float(b[k] or 0) for k in keys], seed=seed)


def paired_p(best: dict[str, Any], other: dict[str, Any], metric: str, seed: int = 0) -> tuple[float, int] | None:
    """The paired test's p-value of ``other`` against ``best`` on ``metric`` and the number of
    paired prompts; None when either row lacks per-sample values."""
    difference = _paired(best, other, metric, seed)
    return None if difference is None else (difference.p_value, difference.n)


def _later(metric: str) -> tuple[str, ...]:
    """The instruction metrics after ``metric`` in the list of step 3: its exact-tie breakers."""
    return INSTRUCTION_METRICS[INSTRUCTION_METRICS.index(metric) + 1 :] if metric in INSTRUCTION_METRICS else ()


def _rank(row: dict[str, Any], metric: str, direction: float) -> tuple[float, ...]:
    """The metric in its direction, then the later instruction metrics and the refusal rate."""
    value = _value(row, metric)
    tie_breaks = [_value(row, m) for m in (*_later(metric), SAFETY_METRIC)]
    return (direction * (value if value is not None else -math.inf), *(-1.0 if v is None else v for v in tie_breaks))


def _exact(eligible: list[dict[str, Any]], metric: str, direction: float) -> tuple[dict[str, Any], str]:
    """The rule for rows without per-sample data: exact ties broken by later metrics, safety, ratio."""
    best = max(eligible, key=lambda row: (*_rank(row, metric, direction), -row["ratio"]))
    tied = [f"{r['ratio']:g}" for r in eligible if r is not best and _value(r, metric) == _value(best, metric)]
    breakers = ", ".join((*_later(metric), SAFETY_METRIC))
    note = f" (tied with r={', '.join(tied)}; decided by {breakers}, then the smaller ratio)" if tied else ""
    return best, note


def _statistical(
    eligible: list[dict[str, Any]], best: dict[str, Any], metric: str, alpha: float, seed: int
) -> tuple[list[dict[str, Any]], str] | None:
    """The ratios not significantly different from ``best`` and how to say it; None when no row
    has per-sample data to test with."""
    tests = {id(r): t for r in eligible if r is not best and (t := paired_p(best, r, metric, seed)) is not None}
    if not tests:
        return None
    tied = sorted((r for r in eligible if id(r) in tests and tests[id(r)][0] >= alpha), key=lambda r: r["ratio"])
    if not tied:
        return [], f"; every other such ratio is significantly worse than it (paired test p < {alpha:g})"
    shown = ", ".join(
        f"r={r['ratio']:g} ({_value(r, metric):.3f}, p={tests[id(r)][0]:.2f}, n={tests[id(r)][1]})" for r in tied
    )
    return tied, (
        f"; {shown} {'is' if len(tied) == 1 else 'are'} not significantly different from it (paired "
        f"test p >= {alpha:g}), so they are tied and the smallest ratio is preferred: closest to "
        "the target, least drift"
    )


def _interval(row: dict[str, Any], metric: str) -> str:
    interval = row.get("intervals", {}).get(metric)
    if not interval or None in interval:
        return ""
    return f" [95% interval {interval[0]:.3f}, {interval[1]:.3f}]"


def _against_baseline(
    baseline: dict[str, Any], candidates: list[dict[str, Any]], metric: str, direction: float, seed: int
) -> dict[float, dict[str, Any]]:
    """Each candidate tested against the baseline: difference, p, Holm-adjusted p over the ratios
    tested, n and the test's name (candidates without per-sample data are left out)."""
    tested = {r["ratio"]: d for r in candidates if (d := _paired(baseline, r, metric, seed)) is not None}
    adjusted = holm([d.p_value for d in tested.values()])
    return {
        ratio: {
            "difference": d.difference,
            "better": direction * d.difference > 0,
            "p": d.p_value,
            "p_holm": p_holm,
            "n": d.n,
            "test": d.test,
        }
        for (ratio, d), p_holm in zip(tested.items(), adjusted, strict=True)
    }


def _choose(
    rows: list[dict[str, Any]], metric: str, direction: float, alpha: float, seed: int
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """The best of ``rows`` and the rows tied with it (step 5, or the exact rule without data)."""
    best, note = _exact(rows, metric, direction)
    statistical = _statistical(rows, best, metric, alpha, seed)
    if statistical is None:
        return best, [], note
    tied, note = statistical
    return best, tied, note


def _beating(
    baseline: dict[str, Any],
    eligible: list[dict[str, Any]],
    metric: str,
    direction: float,
    alpha: float,
    seed: int,
) -> dict[str, Any]:
    """Steps 4 to 7: the ratios that beat the baseline, and the one recommended (or none)."""
    candidates = [r for r in eligible if r is not baseline]
    if not candidates:
        return {"ratio": None, "reason": f"{NO_RATIO_BEATS}: no merged ratio is eligible", "tests": {}}
    tests = _against_baseline(baseline, candidates, metric, direction, seed)
    family = len(tests)
    if not tests:  # no per-sample data: values only, untested
        best, note = _exact([baseline, *candidates], metric, direction)
        if best is baseline or _rank(best, metric, direction) <= _rank(baseline, metric, direction):
            shown = _exact(candidates, metric, direction)[0]
            return {
                "ratio": None,
                "best_ratio": shown["ratio"],
                "reason": f"{NO_RATIO_BEATS}: the best, r={shown['ratio']:g}, scored {_value(shown, metric):.3f}"
                f"{_interval(shown, metric)} against the target's {_value(baseline, metric):.3f} (no per-sample "
                "data: not tested)",
                "tests": {},
            }
        return {
            "ratio": best["ratio"],
            "best_ratio": best["ratio"],
            "reason": f"best {metric}: r={best['ratio']:g} ({_value(best, metric):.3f}, the target "
            f"{_value(baseline, metric):.3f}){note}; no per-sample data, so the difference was not tested",
            "tests": {},
        }
    winners = [r for r in candidates if r["ratio"] in tests and tests[r["ratio"]]["better"]]
    winners = [r for r in winners if tests[r["ratio"]]["p_holm"] < alpha]
    holm_note = f"paired {_test_kinds(tests)} against r=0, Holm-adjusted over {family} ratio{'s' * (family > 1)}"
    if not winners:
        shown, _ = _exact([r for r in candidates if r["ratio"] in tests], metric, direction)
        t = tests[shown["ratio"]]
        return {
            "ratio": None,
            "best_ratio": shown["ratio"],
            "reason": f"{NO_RATIO_BEATS}: the best, r={shown['ratio']:g}, scored {_value(shown, metric):.3f}"
            f"{_interval(shown, metric)} against the target's {_value(baseline, metric):.3f}, p={t['p_holm']:.3g} "
            f"(n={t['n']}; {holm_note}); more prompts may tell them apart",
            "tests": tests,
        }
    best, tied, note = _choose(winners, metric, direction, alpha, seed)
    chosen = min([best, *tied], key=lambda r: r["ratio"])
    t = tests[chosen["ratio"]]
    beats = (
        f"r={chosen['ratio']:g} beats the target on {metric}: {_value(chosen, metric):.3f}{_interval(chosen, metric)} "
        f"against {_value(baseline, metric):.3f}, p={t['p_holm']:.3g} (n={t['n']}; {holm_note})"
    )
    if chosen is not best:
        beats += f"; best among the ratios that beat it: r={best['ratio']:g} ({_value(best, metric):.3f}){note}"
    return {
        "ratio": chosen["ratio"],
        "best_ratio": best["ratio"],
        "tied": [r["ratio"] for r in tied],
        "reason": beats,
        "tests": tests,
    }


def _test_kinds(tests: dict[float, dict[str, Any]]) -> str:
    kinds = sorted({t["test"].split(" (")[0] for t in tests.values()})
    return " / ".join(kinds) + (" test" if not any("test" in k for k in kinds) else "")


def recommend(
    rows: list[dict[str, Any]],
    threshold: float = 0.95,
    rank_by: str | None = None,
    *,
    alpha: float = ALPHA,
    seed: int = 0,
) -> dict[str, Any]:
    """Apply the rule in the module docstring to sweep rows (see :func:`row_from_results`;
    ``{"ratio": r, "metrics": {...}}`` is enough for the exact rule)."""
    metric = rank_by or next((m for m in INSTRUCTION_METRICS if any(_value(r, m) is not None for r in rows)), None)
    if metric is None:
        return {
            "ratio": None,
            "metric": None,
            "reason": "no instruction-following metric was measured (run instruct, verifiable, multiturn or demo)",
        }
    baseline = next((r for r in rows if r["ratio"] == BASELINE), None)
    floor = _value(baseline, SAFETY_METRIC) if baseline else None
    eligible, rejected = _eligible(rows, metric, threshold, floor)
    among = f"among ratios with {LANGUAGE_METRIC} >= {threshold:g}" + (
        f" and {SAFETY_METRIC} >= {floor:.2f} (the target's)" if floor is not None else ""
    )
    excluded = f"; excluded: {'; '.join(rejected)}" if rejected else ""
    direction = _direction(rows, metric)
    if baseline is not None and _value(baseline, metric) is not None:
        decided = _beating(baseline, eligible, metric, direction, alpha, seed)
        chosen = next((r for r in rows if r["ratio"] == decided["ratio"]), None)
        return {
            "metric": metric,
            "baseline": BASELINE,
            "value": None if chosen is None else _value(chosen, metric),
            "tied": [],
            "rejected": rejected,
            "beats_target": decided["ratio"] is not None,
            **decided,
            "reason": f"{decided['reason']} ({among}){excluded}",
        }
    if not eligible:
        return {
            "ratio": None,
            "metric": metric,
            "rejected": rejected,
            "reason": "no ratio keeps the target language and the target's safety: " + "; ".join(rejected),
        }
    best, tied, note = _choose(eligible, metric, direction, alpha, seed)
    chosen = min([best, *tied], key=lambda r: r["ratio"])
    return {
        "ratio": chosen["ratio"],
        "metric": metric,
        "value": _value(chosen, metric),
        "best_ratio": best["ratio"],
        "tied": [r["ratio"] for r in tied],
        "rejected": rejected,
        "reason": f"best {metric} {among}: r={best['ratio']:g} ({_value(best, metric):.3f}){note}{excluded}",
    }
