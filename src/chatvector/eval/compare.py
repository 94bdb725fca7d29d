"""Paired comparison of evaluation runs: which differences are real, which are noise.

``chatvector compare A B [C ...]`` compares every run with the first. Samples are paired by
(suite, id), each metric's units are read from both runs' records (as the metric itself reads
them), and a paired test gives the difference ``other − first`` a two-sided p-value (exact
McNemar for one pass/fail value per prompt, a paired permutation test otherwise; see
:mod:`chatvector.eval.stats`) beside its 95% paired-bootstrap interval. Pairing makes the
comparison far more sensitive than two separate intervals: prompt difficulty is shared and cancels.

Each comparison tests many metrics at once, so a verdict ("better", "worse") needs the
**Holm-adjusted** p-value below :data:`ALPHA`, adjusted over the metrics tested in that comparison:
the chance that any of them is called different by luck stays at 5%.

Runs in different languages, with different suites, or on different data (per-suite SHA-256 in
results.json) measure different things; they are refused unless ``force`` is given, and then the
report carries the warnings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from chatvector.errors import EvalError
from chatvector.eval.metrics import MetricSpec
from chatvector.eval.report import fmt, load_results
from chatvector.eval.stats import PairedDifference, holm, paired
from chatvector.eval.suites import metric_specs

__all__ = [
    "MetricDifference",
    "Comparison",
    "compare_runs",
    "compare_results",
    "problems",
    "markdown",
    "footnote",
    "ALPHA",
]

ALPHA = 0.05


@dataclass(frozen=True)
class MetricDifference:
    """One metric in both runs: the paired values and ``other − first`` (None when not paired)."""

    metric: str
    kind: str
    higher_is_better: bool
    first: float | None
    other: float | None
    paired: PairedDifference | None = None
    note: str = ""
    p_adjusted: float | None = None  # Holm-adjusted over the metrics tested in the comparison

    @property
    def significant(self) -> bool:
        """Whether the Holm-adjusted p-value is below :data:`ALPHA`."""
        return self.p_adjusted is not None and self.p_adjusted < ALPHA

    @property
    def better(self) -> bool | None:
        """Whether ``other`` is significantly better (False: significantly worse; None: neither)."""
        if not self.significant or self.paired is None:
            return None
        return (self.paired.difference > 0) == self.higher_is_better


@dataclass(frozen=True)
class Comparison:
    """``other`` against ``first``: one :class:`MetricDifference` per metric."""

    first: str
    other: str
    rows: list[MetricDifference]
    warnings: list[str] = field(default_factory=list)
    seed: int = 0

    @property
    def tested(self) -> int:
        """How many metrics were tested (the size of the Holm family)."""
        return sum(row.p_adjusted is not None for row in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "other": self.other,
            "seed": self.seed,
            "alpha": ALPHA,
            "adjustment": f"Holm over the {self.tested} metrics tested",
            "warnings": self.warnings,
            "metrics": {r.metric: {**asdict(r), "significant": r.significant} for r in self.rows},
        }


def _data_hashes(results: dict[str, Any]) -> dict[str, str | None]:
    data = results.get("data") or {}
    return {
        suite: (data.get(suite) or {}).get("sha256") or results["suites"][suite].get("sha256")
        for suite in results["suites"]
    }


def problems(first: tuple[str, dict[str, Any]], other: tuple[str, dict[str, Any]]) -> list[str]:
    """Why two runs do not measure the same thing (empty when they do)."""
    (a_name, a), (b_name, b) = first, other
    found = []
    if a.get("lang") != b.get("lang"):
        found.append(f"{a_name} is in {a.get('lang')} but {b_name} in {b.get('lang')}")
    if set(a["suites"]) != set(b["suites"]):
        found.append(f"{a_name} ran {', '.join(sorted(a['suites']))} but {b_name} ran {', '.join(sorted(b['suites']))}")
    a_hash, b_hash = _data_hashes(a), _data_hashes(b)
    for suite in sorted(set(a_hash) & set(b_hash)):
        first_hash, other_hash = a_hash[suite], b_hash[suite]
        if first_hash is None or other_hash is None:
            found.append(f"{suite}: no data hash recorded in {a_name if first_hash is None else b_name}")
        elif first_hash != other_hash:
            found.append(f"{suite}: the runs read different data (sha256 {first_hash[:12]} vs {other_hash[:12]})")
    return found


def _records(results: dict[str, Any], suites: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(suite, r["id"]): r for suite in suites for r in results["suites"][suite]["samples"]}


def _paired(
    spec: MetricSpec,
    suite: str | None,
    a: dict[tuple[str, str], dict[str, Any]],
    b: dict[tuple[str, str], dict[str, Any]],
    seed: int,
) -> PairedDifference | None:
    sums: list[list[float]] = [[], [], [], []]
    for key in sorted(set(a) & set(b)):
        if suite is not None and key[0] != suite:
            continue
        units_a, units_b = spec.parsed_units(a[key]), spec.parsed_units(b[key])
        if not units_a or not units_b:  # not applicable, or not scored (unparsed) in one of the runs
            continue
        for column, value in enumerate((sum(units_a), len(units_a), sum(units_b), len(units_b))):
            sums[column].append(float(value))
    if not sums[0]:
        return None
    return paired(sums[0], sums[2], sums[1], sums[3], seed=seed)


def _row(
    name: str,
    suite: str | None,
    spec: MetricSpec,
    a: dict[str, Any],
    b: dict[str, Any],
    records: tuple[dict, dict],
    seed: int,
) -> MetricDifference:
    stored = (a["metrics"].get(name, {}).get("value"), b["metrics"].get(name, {}).get("value"))
    if spec.kind == "count":
        return MetricDifference(name, spec.kind, spec.higher_is_better, *stored, note="a count: not tested")
    paired = _paired(spec, suite, *records, seed=seed)
    if paired is None or math.isnan(paired.difference):
        return MetricDifference(name, spec.kind, spec.higher_is_better, *stored, note="no paired samples")
    return MetricDifference(name, spec.kind, spec.higher_is_better, paired.a, paired.b, paired)


def compare_results(
    first: tuple[str, dict[str, Any]], other: tuple[str, dict[str, Any]], *, force: bool = False, seed: int = 0
) -> Comparison:
    """Compare two loaded results.json (label, content); see the module docstring.

    Raises:
        EvalError: the runs differ in language, suites or data and ``force`` is not set.
    """
    found = problems(first, other)
    if found and not force:
        raise EvalError(
            f"{first[0]} and {other[0]} do not measure the same thing: "
            + "; ".join(found)
            + ". Compare runs of the same language, suites and data, or pass --force",
            option="--force",
        )
    a, b = first[1], other[1]
    suites = sorted(set(a["suites"]) & set(b["suites"]))
    specs = metric_specs(suites, a.get("lang", ""))
    records = (_records(a, suites), _records(b, suites))
    rows = [
        _row(name, suite, spec, a, b, records, seed)
        for name, (suite, spec) in specs.items()
        if name in a["metrics"] or name in b["metrics"]
    ]
    for name in sorted((set(a["metrics"]) | set(b["metrics"])) - set(specs)):  # e.g. lm_eval.*: no samples
        entry = a["metrics"].get(name) or b["metrics"][name]
        rows.append(
            MetricDifference(
                name,
                entry.get("kind", "mean"),
                bool(entry.get("higher_is_better", True)),
                a["metrics"].get(name, {}).get("value"),
                b["metrics"].get(name, {}).get("value"),
                note="no per-sample data: not tested",
            )
        )
    return Comparison(first[0], other[0], _adjusted(rows), found, seed)


def _adjusted(rows: list[MetricDifference]) -> list[MetricDifference]:
    """The rows with their Holm-adjusted p-values, the family being every metric tested here."""
    tested = [i for i, row in enumerate(rows) if row.paired is not None and not math.isnan(row.paired.p_value)]
    adjusted = holm([rows[i].paired.p_value for i in tested])  # type: ignore[union-attr]
    rows = list(rows)
    for i, p in zip(tested, adjusted, strict=True):
        rows[i] = replace(rows[i], p_adjusted=p)
    return rows


def compare_runs(folders: list[str | Path], *, force: bool = False, seed: int = 0) -> list[Comparison]:
    """Compare every eval directory after the first with the first."""
    if len(folders) < 2:
        raise EvalError("compare needs at least two eval directories (A B ...)")
    runs = [(str(folder), load_results(folder)) for folder in folders]
    return [compare_results(runs[0], run, force=force, seed=seed) for run in runs[1:]]


def _cells(row: MetricDifference) -> list[str]:
    arrow = "↑" if row.higher_is_better else "↓"
    if row.paired is None:
        return [f"{row.metric} ({arrow})", fmt(row.first), fmt(row.other), "–", "–", "–", "–", "–", row.note]
    p = row.paired
    verdict = {True: "better", False: "worse", None: "no significant difference"}[row.better]
    return [
        f"{row.metric} ({arrow})",
        fmt(p.a),
        fmt(p.b),
        f"{p.difference:+.3f}",
        f"[{p.ci_low:+.3f}, {p.ci_high:+.3f}]",
        f"{p.p_value:.3f}",
        "–" if row.p_adjusted is None else f"{row.p_adjusted:.3f}",
        str(p.n),
        verdict,
    ]


HEADER = ["metric", "first", "other", "difference", "95% interval", "p", "p (Holm)", "n pairs", "verdict"]


def table(comparison: Comparison, *, tests: bool = False) -> list[list[str]]:
    """Rows of cells (see :data:`HEADER`) for one comparison; with ``tests``, a last cell naming the
    test behind each p-value (compare.md has it; the terminal is too narrow)."""
    return [_cells(row) + ([row.paired.test if row.paired else "–"] if tests else []) for row in comparison.rows]


def markdown(comparisons: list[Comparison]) -> str:
    """compare.md: one table per comparison, warnings first."""
    lines: list[str] = []
    for comparison in comparisons:
        lines += [f"# {comparison.other} against {comparison.first}", ""]
        lines += [f"> warning: {w}" for w in comparison.warnings] + ([""] if comparison.warnings else [])
        header = [*HEADER, "test"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in table(comparison, tests=True)]
        lines += ["", footnote(comparison), ""]
    return "\n".join(lines)


def footnote(comparison: Comparison) -> str:
    """How the table's numbers were computed and what a verdict needs, in one sentence."""
    return (
        f"difference = other − first, paired by prompt; interval: paired bootstrap (seed {comparison.seed}); "
        f"p: the test named in each row; a verdict needs the Holm-adjusted p < {ALPHA} (Holm over the "
        f"{comparison.tested} metrics tested)."
    )
