"""results.json, report.md, and side-by-side comparison of several evaluations."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from chatvector.errors import EvalError
from chatvector.eval.runner import EvalResult


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def markdown(result: dict[str, Any], samples_per_suite: int = 3) -> str:
    lines = [
        f"# Evaluation of {result.get('model') or result['backend'].get('model', '?')}",
        "",
        f"Language: **{result['lang']}**; backend: `{result['backend'].get('backend')}`; "
        f"chatvector {result['chatvector_version']}; {result['created']}.",
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
    lines += ["| metric | value | better |", "|---|---|---|"]
    for name, entry in result["metrics"].items():
        lines.append(
            f"| {name} | {_fmt(entry['value'])} | {'higher' if entry['higher_is_better'] else 'lower'} |"
        )
    for suite, data in result["suites"].items():
        lines += ["", f"## {suite} (v{data['version']}, {data['n']} prompts)", ""]
        for record in data["samples"][:samples_per_suite]:
            reply = (record["replies"][-1] if record["replies"] else "").replace("\n", " ")[:200]
            lines.append(f"- `{record['turns'][-1][:80]}` → {reply or '(empty)'}")
    return "\n".join(lines) + "\n"


def write_results(result: EvalResult, out_dir: Path) -> Path:
    """Write results.json and report.md into ``out_dir``; return the JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = result.to_json()
    (out_dir / "report.md").write_text(markdown(data), encoding="utf-8")
    # results.json last and atomically: a sweep treats its presence as "this ratio is done".
    path = out_dir / "results.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=True) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def load_results(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "results.json"
    if not path.exists():
        raise EvalError(f"{folder}: no results.json (run chatvector eval -o {folder} first)")
    return json.loads(path.read_text(encoding="utf-8"))


def comparison_rows(folders: list[Path]) -> tuple[list[str], list[list[str]]]:
    """Header (metric, then one column per run) and rows for a side-by-side table."""
    runs = [load_results(f) for f in folders]
    names = sorted({m for r in runs for m in r["metrics"]})
    header = ["metric"] + [str(f) for f in folders]
    rows = []
    for name in names:
        better = next(r["metrics"][name]["higher_is_better"] for r in runs if name in r["metrics"])
        values = [r["metrics"].get(name, {}).get("value") for r in runs]
        rows.append([f"{name} ({'↑' if better else '↓'})"] + [_fmt(v) for v in values])
    return header, rows
