"""Which ratio a sweep recommends, by a documented rule.

**Recommendation rule.**

1. *Eligible ratios* keep the language and the target's safety: their share of replies in the
   target language and script (``language.target_share``) is at least ``threshold`` (default
   0.95), and their safety refusal rate is not below the target model's (the ratio-0 run, when
   the sweep has one and ran the safety suite). Both are point estimates: a ratio is not let
   through on the strength of its interval.
2. *The ranking metric* is ``rank_by`` when given (any metric in the rows, e.g.
   ``lm_eval.ifeval.prompt_level_strict_acc``), else the first instruction-following metric
   measured: ``instruct.score`` (a judge graded), ``verifiable.pass_rate``, ``multiturn.pass_rate``.
3. *The best* eligible ratio has the best value of that metric (in its direction).
4. *Statistical ties.* Every eligible ratio whose metric is not significantly different from the
   best's — a paired bootstrap over the same prompts gives p ≥ ``alpha`` (0.05) — is tied with
   it, and **the smallest tied ratio is recommended**: it is closest to the target model, so it
   drifts least from the language, and the data cannot tell it apart from the best. The reason
   names the ratios tied, their p-values and n.
5. Rows without per-sample data (older sweeps, harness metrics) can only tie exactly: then ties
   are broken by the instruction metrics later in the list of step 2, then by the refusal rate,
   then in favour of the smaller ratio.

If no ratio is eligible, none is recommended and the reason is given for each ratio.
"""

from __future__ import annotations

import math
from typing import Any

from chatvector.eval.stats import paired_bootstrap
from chatvector.eval.suites import metric_specs, tagged_metrics

__all__ = ["recommend", "row_from_results", "INSTRUCTION_METRICS", "LANGUAGE_METRIC", "SAFETY_METRIC", "ALPHA"]

# the suites tag what measures instruction following; the first one a sweep has ranks its ratios
INSTRUCTION_METRICS = tagged_metrics("instruction")
LANGUAGE_METRIC = "language.target_share"
SAFETY_METRIC = "safety.refusal_rate"
ALPHA = 0.05


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


def paired_p(best: dict[str, Any], other: dict[str, Any], metric: str, seed: int = 0) -> tuple[float, int] | None:
    """The paired-bootstrap p-value of ``other`` against ``best`` on ``metric`` and the number of
    paired prompts; None when either row lacks per-sample values."""
    a = best.get("per_sample", {}).get(metric)
    b = other.get("per_sample", {}).get(metric)
    if not a or not b:
        return None
    keys = sorted(k for k in set(a) & set(b) if a[k] is not None and b[k] is not None)
    if not keys:
        return None
    difference = paired_bootstrap([float(a[k] or 0) for k in keys], [float(b[k] or 0) for k in keys], seed=seed)
    return difference.p_value, difference.n


def _exact(eligible: list[dict[str, Any]], metric: str, direction: float) -> tuple[dict[str, Any], str]:
    """The old rule for rows without per-sample data: exact ties broken by later metrics, safety, ratio."""
    later = INSTRUCTION_METRICS[INSTRUCTION_METRICS.index(metric) + 1 :] if metric in INSTRUCTION_METRICS else ()

    def rank(row: dict[str, Any]) -> tuple[float, ...]:
        tie_breaks = [_value(row, m) for m in (*later, SAFETY_METRIC)]
        value = _value(row, metric)
        assert value is not None  # eligible rows have it
        return (direction * value, *(-1.0 if v is None else v for v in tie_breaks), -row["ratio"])

    best = max(eligible, key=rank)
    tied = [f"{r['ratio']:g}" for r in eligible if r is not best and _value(r, metric) == _value(best, metric)]
    note = (
        (f" (tied with r={', '.join(tied)}; decided by {', '.join((*later, SAFETY_METRIC))}, then the smaller ratio)")
        if tied
        else ""
    )
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
        return [], f"; every other eligible ratio is significantly worse (paired bootstrap p < {alpha:g})"
    shown = ", ".join(
        f"r={r['ratio']:g} ({_value(r, metric):.3f}, p={tests[id(r)][0]:.2f}, n={tests[id(r)][1]})" for r in tied
    )
    return tied, (
        f"; {shown} {'is' if len(tied) == 1 else 'are'} not significantly different from it (paired "
        f"bootstrap p >= {alpha:g}), so they are tied and the smallest ratio is preferred: closest to "
        "the target, least drift"
    )


def recommend(
    rows: list[dict[str, Any]],
    threshold: float = 0.95,
    rank_by: str | None = None,
    *,
    alpha: float = ALPHA,
    seed: int = 0,
) -> dict[str, Any]:
    """Apply the rule in the module docstring to sweep rows (see :func:`row_from_results`;
    ``{"ratio": r, "metrics": {...}}`` is enough for the exact-tie rule)."""
    metric = rank_by or next((m for m in INSTRUCTION_METRICS if any(_value(r, m) is not None for r in rows)), None)
    if metric is None:
        return {
            "ratio": None,
            "metric": None,
            "reason": "no instruction-following metric was measured (run instruct, verifiable or multiturn)",
        }
    reference = next((r for r in rows if r["ratio"] == 0), None)
    floor = _value(reference, SAFETY_METRIC) if reference else None
    eligible, rejected = _eligible(rows, metric, threshold, floor)
    if not eligible:
        return {
            "ratio": None,
            "metric": metric,
            "rejected": rejected,
            "reason": "no ratio keeps the target language and the target's safety: " + "; ".join(rejected),
        }
    best, note = _exact(eligible, metric, _direction(rows, metric))
    among = f"among ratios with {LANGUAGE_METRIC} >= {threshold:g}" + (
        f" and {SAFETY_METRIC} >= {floor:.2f} (the target's)" if floor is not None else ""
    )
    reason = f"best {metric} ({_value(best, metric):.3f}) {among}"
    tied: list[dict[str, Any]] = []
    statistical = _statistical(eligible, best, metric, alpha, seed)
    if statistical is not None:
        tied, note = statistical
        reason = f"best {metric} {among}: r={best['ratio']:g} ({_value(best, metric):.3f})"
    chosen = min([best, *tied], key=lambda r: r["ratio"])
    reason += note + (f"; excluded: {'; '.join(rejected)}" if rejected else "")
    return {
        "ratio": chosen["ratio"],
        "metric": metric,
        "value": _value(chosen, metric),
        "best_ratio": best["ratio"],
        "tied": [r["ratio"] for r in tied],
        "rejected": rejected,
        "reason": reason,
    }
