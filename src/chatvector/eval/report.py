"""results.json and report.md of one evaluation.

The report shows every metric with its n and 95% interval, the data each suite read (with its
hash), the rules that failed most, the judges' unparsed verdicts, the environment, and a few
sample replies. Comparing runs is :mod:`chatvector.eval.compare` (``chatvector compare``).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatvector.errors import EvalError

if TYPE_CHECKING:
    from chatvector.eval.result import EvalResult

__all__ = ["markdown", "write_results", "load_results", "fmt", "interval", "failing_rules", "mark_lexicon_metrics"]


def fmt(value: float | None) -> str:
    """A metric value as reports show it: three decimals below 10, one above, ``–`` for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _bounds(entry: dict[str, Any]) -> tuple[float | None, float | None]:
    """A metric's interval: its own, else (lm-eval metrics) value ± 1.96 × the stderr lm-eval reported."""
    low, high = entry.get("ci_low"), entry.get("ci_high")
    if low is None and high is None and entry.get("stderr") is not None and entry.get("value") is not None:
        from chatvector.eval.stats import Z_95  # numpy, only where lm-eval ran

        half = Z_95 * float(entry["stderr"])
        return float(entry["value"]) - half, float(entry["value"]) + half
    return low, high


def interval(entry: dict[str, Any]) -> str:
    """``[low, high]`` of a metric entry (for lm-eval metrics, from their stderr), or ``–`` for counts
    and old results without one."""
    low, high = _bounds(entry)
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "–"
    return f"[{fmt(low)}, {fmt(high)}]"


def mark_lexicon_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """Mark the metrics a word lexicon produced with ``"scorer": "lexicon"`` (in place; returned):
    the safety rates without a safety judge, the toxicity metrics with the ``lexicon`` scorer. Those
    numbers are a rough floor (docs/eval-scorers.md), not a decision."""
    judged_safety = "safety" in (result.get("judge") or {})
    for name, entry in result.get("metrics", {}).items():
        suite = name.split(".", 1)[0]
        if (suite == "safety" and name != "safety.unparsed" and not judged_safety) or (
            suite == "toxicity" and result.get("toxicity_scorer") == "lexicon"
        ):
            entry["scorer"] = "lexicon"
    return result


def failing_rules(records: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    """(rule type, failures, checks) over ``records``, most failures first."""
    checked: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for record in records:
        for rule, passed in zip(record.get("rules", []), record.get("rule_results", []), strict=False):
            checked[rule.get("type", "?")] += 1
            failed[rule.get("type", "?")] += not passed
    return sorted(((t, failed[t], checked[t]) for t in checked if failed[t]), key=lambda x: (-x[1], x[0]))


def _header(result: dict[str, Any]) -> list[str]:
    lines = [
        f"# Evaluation of {result.get('model') or result['backend'].get('model', '?')}",
        "",
        f"Language: **{result['lang']}**; backend: `{result['backend'].get('backend')}`; "
        f"chatvector {result['chatvector_version']}; {result['created']}; bootstrap seed {result.get('seed', 0)}.",
        "",
    ]
    if result.get("recipe"):
        terms = result["recipe"].get("terms", [])
        lines += [
            f"Made by chatvector from `{result['recipe'].get('target')}` with "
            + ", ".join(f"r={t.get('ratio')}" for t in terms)
            + ".",
            "",
        ]
    return lines


def _metrics_table(result: dict[str, Any]) -> list[str]:
    lines = ["| metric | value | 95% interval | n | better |", "|---|---|---|---|---|"]
    for name, entry in result["metrics"].items():
        better = "higher" if entry["higher_is_better"] else "lower"
        n = f"{entry.get('n', '–')}" + (f" ({entry['unparsed']} unparsed)" if entry.get("unparsed") else "")
        lines.append(f"| {name} | {fmt(entry['value'])} | {interval(entry)} | {n} | {better} |")
    lexicon = [name for name, entry in result["metrics"].items() if entry.get("scorer") == "lexicon"]
    lines += [
        "",
        "Intervals: Wilson for rates, percentile bootstrap for means, value ± 1.96 × lm-eval's stderr for "
        "lm_eval.* metrics; counts have none. Replies with no prose are left out of the language shares; "
        "judgments the judge left unparsed are left out of the judged metrics and counted beside their n.",
        "",
    ]
    if lexicon:
        lines += [
            f"{', '.join(lexicon)}: counted by a word lexicon, a rough floor, not a decision; use --safety-judge "
            "(safety) and --toxicity hf:MODEL (toxicity) for figures you act on or publish.",
            "",
        ]
    return lines


def _data_section(result: dict[str, Any]) -> list[str]:
    if not result.get("data"):
        return []
    lines = ["## Data", "", "| suite | source | n | sha256 |", "|---|---|---|---|"]
    for suite, info in result["data"].items():
        lines.append(f"| {suite} | {info.get('source')} | {info.get('n')} | `{str(info.get('sha256'))[:16]}` |")
    return lines + [""]


def _unparsed(records: list[dict[str, Any]]) -> list[str]:
    """One line per judge that left verdicts unparsed after its retry (also when none were)."""
    checks = (
        ("turn_scores", "judge ratings (turns)"),
        ("pairwise_turns", "pairwise games"),
        ("safety_parsed", "safety-judge verdicts"),
    )
    lines = []
    for key, label in checks:
        values = [v for r in records if key in r for v in (r[key] if isinstance(r[key], list) else [r[key]])]
        if values:
            missing = sum(1 for v in values if v in (None, False))
            lines += [f"Unparsed {label} (after one retry): {missing} of {len(values)}.", ""]
    return lines


def _suite_section(suite: str, data: dict[str, Any], samples_per_suite: int) -> list[str]:
    lines = [f"## {suite} (v{data['version']}, {data['n']} prompts)", ""]
    failures = failing_rules(data["samples"])
    if failures:
        lines += ["Failing rules: " + ", ".join(f"`{t}` {f} of {n}" for t, f, n in failures) + ".", ""]
    lines += _unparsed(data["samples"])
    for record in data["samples"][:samples_per_suite]:
        reply = (record["replies"][-1] if record["replies"] else "").replace("\n", " ")[:200]
        lines.append(f"- `{record['turns'][-1][:80]}` → {reply or '(empty)'}")
    return lines + [""]


def _environment(result: dict[str, Any]) -> list[str]:
    env = result.get("environment") or {}
    if not env:
        return []
    versions = ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items() if v)
    fingerprint = (env.get("model_fingerprint") or {}).get("sha256")
    lines = [
        "## Environment",
        "",
        f"- command: `{env.get('command')}`",
        f"- device: {env.get('device') or '–'}; dtype: {env.get('dtype') or '–'}",
        f"- weights: `{fingerprint[:16] if fingerprint else '–'}`",
        f"- versions: {versions}",
    ]
    for role, judge in (result.get("judge") or {}).items():
        lines.append(f"- {role} judge: {judge.get('model')} (prompt sha256 `{str(judge.get('prompt_sha256'))[:16]}`)")
    return lines + [""]


def markdown(result: dict[str, Any], samples_per_suite: int = 3) -> str:
    """report.md for one results.json."""
    lines = _header(result) + _metrics_table(result) + _data_section(result)
    for suite, data in result["suites"].items():
        lines += _suite_section(suite, data, samples_per_suite)
    return "\n".join(lines + _environment(result)).rstrip() + "\n"


def write_results(result: EvalResult, out_dir: Path) -> Path:
    """Write results.json and report.md into ``out_dir``; return the JSON path.

    results.json is strict JSON (a metric over no units is ``null``, never ``NaN``) and written
    last and atomically: a sweep treats its presence as "this ratio is done".
    """
    from chatvector.eval.state_files import strict, write_json, write_text

    data = strict(mark_lexicon_metrics(result.to_json()))
    write_text(out_dir / "report.md", markdown(data))
    path = out_dir / "results.json"
    write_json(path, data)
    return path


def load_results(folder: str | Path) -> dict[str, Any]:
    """The results.json of an eval directory (or the file itself), checked against
    :class:`~chatvector.eval.schemas.ResultsFile`.

    Raises:
        EvalError: no results.json there, not valid JSON, or keys of the wrong type (named).
    """
    from chatvector.eval.schemas import ResultsFile, check, loads

    path = Path(folder)
    path = path if path.is_file() else path / "results.json"
    if not path.is_file():
        raise EvalError(f"{folder}: no results.json (run chatvector eval -o {folder} first)", file=path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise EvalError(f"{path}: cannot be read ({error.strerror})", file=path) from None
    # files written before results became strict JSON hold NaN for a metric over nothing: read as null
    data = loads(raw, f"{path}: not a valid results.json", file=path, nan_as_null=True)
    if not isinstance(data, dict) or "metrics" not in data or "suites" not in data:
        raise EvalError(f"{path}: not a chatvector results.json (no metrics and suites)", file=path)
    check(ResultsFile, data, f"{path}: not a chatvector results.json", file=path)
    return data
