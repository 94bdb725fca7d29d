"""Which ratio a sweep recommends, by a documented rule.

**Recommendation rule.** Among the ratios whose share of replies in the target language and
script (``language.target_share``) is at least ``threshold`` (default 0.95), and whose safety
refusal rate is not below the target model's (the ratio-0 run, when the sweep has one and ran the
safety suite), pick the one with the best instruction-following score: ``instruct.score`` when a
judge graded it, else ``verifiable.pass_rate``, else ``multiturn.pass_rate``. Ties are broken by
the instruction metrics that follow in that list, then by the refusal rate, then in favour of the
smaller ratio (closest to the target, least drift). If no ratio qualifies, none is recommended and
the reason is given for each.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["recommend", "INSTRUCTION_METRICS", "LANGUAGE_METRIC", "SAFETY_METRIC"]

INSTRUCTION_METRICS = ("instruct.score", "verifiable.pass_rate", "multiturn.pass_rate")
LANGUAGE_METRIC = "language.target_share"
SAFETY_METRIC = "safety.refusal_rate"


def _value(row: dict[str, Any], metric: str) -> float | None:
    value = row["metrics"].get(metric)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def recommend(rows: list[dict[str, Any]], threshold: float = 0.95) -> dict[str, Any]:
    """Apply the rule in the module docstring to ``[{"ratio": r, "metrics": {...}}, ...]``."""
    instruction = next((m for m in INSTRUCTION_METRICS if any(_value(r, m) is not None for r in rows)), None)
    if instruction is None:
        return {"ratio": None, "metric": None,
                "reason": "no instruction-following metric was measured (run instruct, verifiable or multiturn)"}
    reference = next((r for r in rows if r["ratio"] == 0), None)
    floor = _value(reference, SAFETY_METRIC) if reference else None
    eligible, rejected = [], []
    for row in rows:
        language, safety = _value(row, LANGUAGE_METRIC), _value(row, SAFETY_METRIC)
        if language is None or language < threshold:
            shown = "n/a" if language is None else f"{language:.3g}"
            rejected.append(f"r={row['ratio']:g}: target-language share {shown} < {threshold:g}")
        elif floor is not None and safety is not None and safety < floor:
            rejected.append(f"r={row['ratio']:g}: refusal rate {safety:.2f} below the target's {floor:.2f}")
        elif _value(row, instruction) is None:
            rejected.append(f"r={row['ratio']:g}: no {instruction}")
        else:
            eligible.append(row)
    if not eligible:
        return {"ratio": None, "metric": instruction, "rejected": rejected,
                "reason": "no ratio keeps the target language and the target's safety: " + "; ".join(rejected)}
    later = INSTRUCTION_METRICS[INSTRUCTION_METRICS.index(instruction) + 1:]

    def rank(row: dict[str, Any]) -> tuple[float, ...]:
        tie_breaks = [_value(row, m) for m in (*later, SAFETY_METRIC)]
        return (_value(row, instruction), *(-1.0 if v is None else v for v in tie_breaks), -row["ratio"])

    best = max(eligible, key=rank)
    score = _value(best, instruction)
    tied = [f"{r['ratio']:g}" for r in eligible if r is not best and _value(r, instruction) == score]
    tie_note = (f" (tied with r={', '.join(tied)}; decided by {', '.join((*later, SAFETY_METRIC))}, then the "
                "smaller ratio)") if tied else ""
    return {"ratio": best["ratio"], "metric": instruction, "value": score,
            "rejected": rejected,
            "reason": (f"best {instruction} ({score:.3f}) among ratios with "
                       f"{LANGUAGE_METRIC} >= {threshold:g}"
                       + (f" and {SAFETY_METRIC} >= {floor:.2f} (the target's)" if floor is not None else "")
                       + tie_note
                       + (f"; excluded: {'; '.join(rejected)}" if rejected else ""))}
